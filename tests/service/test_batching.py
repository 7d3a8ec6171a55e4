"""Concurrent calls share forward passes, and each caller still gets exactly its own answers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from service.batching import CoalescingPredictor


class SlowRowIds:
    """A model stand-in that answers each image's first pixel and records every forward's size;
    the real exported models go through this path in the service tests."""

    def __init__(self, seconds: float = 0.005, fail_on: float | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.sizes: list[int] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.sizes.append(len(images))
        time.sleep(self.seconds)  # long enough for other callers to queue up behind this forward
        if self.fail_on is not None and (images[:, 0] == self.fail_on).any():
            raise RuntimeError("model failed")
        return images[:, 0].copy()


def _images(caller: int, n: int) -> np.ndarray:
    images = np.zeros((n, 784), np.float32)
    images[:, 0] = caller * 100 + np.arange(n)
    return images


def _call_concurrently(predictor: CoalescingPredictor, callers: int, rows: int = 3) -> dict[int, object]:
    results: dict[int, object] = {}
    start = threading.Barrier(callers)

    def call(caller: int) -> None:
        start.wait()
        try:
            results[caller] = predictor(_images(caller, 1 + caller % rows))
        except Exception as err:
            results[caller] = err

    threads = [threading.Thread(target=call, args=(k,)) for k in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_each_concurrent_caller_gets_its_own_rows_from_fewer_forwards() -> None:
    model = SlowRowIds()
    predictor = CoalescingPredictor(model, images_per_forward=1024)
    results = _call_concurrently(predictor, callers=24)
    for caller, out in results.items():
        assert np.array_equal(out, _images(caller, 1 + caller % 3)[:, 0]), caller  # type: ignore[arg-type]
    assert sum(model.sizes) == sum(1 + k % 3 for k in range(24))
    assert len(model.sizes) < 24  # callers shared forward passes


def test_a_lone_caller_runs_its_own_forward_at_once() -> None:
    model = SlowRowIds(seconds=0)
    predictor = CoalescingPredictor(model, images_per_forward=1024)
    for k in range(5):
        assert np.array_equal(predictor(_images(k, 2)), _images(k, 2)[:, 0])
    assert model.sizes == [2] * 5


def test_no_forward_exceeds_the_image_limit() -> None:
    model = SlowRowIds()
    predictor = CoalescingPredictor(model, images_per_forward=4)
    results = _call_concurrently(predictor, callers=16)
    assert all(isinstance(out, np.ndarray) for out in results.values())
    assert max(model.sizes) <= 4


def test_an_error_reaches_the_callers_of_that_forward_and_not_the_next() -> None:
    model = SlowRowIds(seconds=0.05, fail_on=0.0)  # caller 0's first image
    predictor = CoalescingPredictor(model, images_per_forward=1024)
    results = _call_concurrently(predictor, callers=4)
    assert isinstance(results[0], RuntimeError)
    assert predictor(_images(7, 1))[0] == 700  # the next call is served
    with pytest.raises(RuntimeError, match="model failed"):
        predictor(_images(0, 1))
