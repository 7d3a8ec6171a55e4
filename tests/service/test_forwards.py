"""Concurrent calls share forward passes, each caller still gets exactly its own answers from the
version it read, and only forwards known to be cheap hold the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.forwards import ForwardBatcher


class SlowRowIds:
    """A model stand-in that answers each image's first pixel and records every forward's size and
    thread; the real exported models go through this path in the service tests."""

    def __init__(self, seconds: float = 0.005, fail_on: float | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.sizes: list[int] = []
        self.threads: list[str] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.sizes.append(len(images))
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)  # long enough for other callers to queue up behind this forward
        if self.fail_on is not None and (images[:, 0] == self.fail_on).any():
            raise RuntimeError("model failed")
        return images[:, 0].copy()


def _images(caller: int, n: int) -> np.ndarray:
    images = np.zeros((n, 784), np.float32)
    images[:, 0] = caller * 100 + np.arange(n)
    return images


async def _call_concurrently(forwards: ForwardBatcher, model: SlowRowIds, callers: int, rows: int = 3) -> list[object]:
    calls = [forwards(model, _images(k, 1 + k % rows)) for k in range(callers)]
    return await asyncio.gather(*calls, return_exceptions=True)


def test_each_concurrent_caller_gets_its_own_rows_from_fewer_forwards() -> None:
    model = SlowRowIds()
    results = asyncio.run(_call_concurrently(ForwardBatcher(images_per_forward=1024), model, callers=24))
    for caller, out in enumerate(results):
        assert np.array_equal(out, _images(caller, 1 + caller % 3)[:, 0]), caller  # type: ignore[arg-type]
    assert sum(model.sizes) == sum(1 + k % 3 for k in range(24))
    assert len(model.sizes) < 24  # callers shared forward passes


def test_a_lone_caller_runs_its_own_forward_at_once() -> None:
    model = SlowRowIds(seconds=0)
    forwards = ForwardBatcher(images_per_forward=1024)

    async def one_at_a_time() -> None:
        for k in range(5):
            assert np.array_equal(await forwards(model, _images(k, 2)), _images(k, 2)[:, 0])

    asyncio.run(one_at_a_time())
    assert model.sizes == [2] * 5


def test_no_forward_exceeds_the_image_limit() -> None:
    model = SlowRowIds()
    results = asyncio.run(_call_concurrently(ForwardBatcher(images_per_forward=4), model, callers=16))
    assert all(isinstance(out, np.ndarray) for out in results)
    assert max(model.sizes) <= 4


def test_calls_for_different_versions_never_share_a_forward() -> None:
    old, new = SlowRowIds(), SlowRowIds()
    forwards = ForwardBatcher(images_per_forward=1024)

    async def mixed() -> list[object]:
        calls = [forwards(old if k % 2 else new, _images(k, 1)) for k in range(12)]
        return await asyncio.gather(*calls)

    results = asyncio.run(mixed())
    assert all(np.array_equal(out, _images(k, 1)[:, 0]) for k, out in enumerate(results))  # type: ignore[arg-type]
    assert sum(old.sizes) == 6 and sum(new.sizes) == 6


def test_an_error_reaches_the_callers_of_that_forward_and_not_the_next() -> None:
    model = SlowRowIds(seconds=0.05, fail_on=0.0)  # caller 0's first image
    forwards = ForwardBatcher(images_per_forward=1024)

    async def run() -> None:
        results = await _call_concurrently(forwards, model, callers=4)
        assert isinstance(results[0], RuntimeError)
        assert (await forwards(model, _images(7, 1)))[0] == 700  # the next call is served
        with pytest.raises(RuntimeError, match="model failed"):
            await forwards(model, _images(0, 1))

    asyncio.run(run())


def test_a_caller_that_went_away_is_not_forwarded_and_the_queue_goes_on() -> None:
    model = SlowRowIds(seconds=0.1)
    forwards = ForwardBatcher(images_per_forward=1024)

    async def run() -> None:
        first = asyncio.ensure_future(forwards(model, _images(1, 1)))
        await asyncio.sleep(0.02)  # the first forward is running
        gone = asyncio.ensure_future(forwards(model, _images(2, 1)))
        kept = asyncio.ensure_future(forwards(model, _images(3, 1)))
        await asyncio.sleep(0)
        gone.cancel()
        assert (await first)[0] == 100 and (await kept)[0] == 300

    asyncio.run(run())
    assert model.sizes == [1, 1]  # caller 2's image was never forwarded


def test_only_a_forward_measured_as_cheap_runs_on_the_event_loop() -> None:
    fast, slow = SlowRowIds(seconds=0), SlowRowIds(seconds=0.01)
    forwards = ForwardBatcher(images_per_forward=1024, loop_budget=0.005)
    loop_thread = ""

    async def run() -> None:
        nonlocal loop_thread
        loop_thread = threading.current_thread().name
        for model in (fast, slow):
            for _ in range(3):
                await forwards(model, _images(0, 1))
        await forwards(slow, _images(0, 1))

    asyncio.run(run())
    assert fast.threads[0] != loop_thread  # not measured yet: off the loop
    assert fast.threads[1:3] == [loop_thread] * 2  # measured as cheap
    assert loop_thread not in slow.threads  # measured as slow


def test_a_forward_on_the_thread_is_charged_its_own_time_not_the_hand_over() -> None:
    fast = SlowRowIds(seconds=0)
    forwards = ForwardBatcher(images_per_forward=1024, loop_budget=0.005)
    loop_thread = ""

    async def run() -> None:
        nonlocal loop_thread
        loop_thread = threading.current_thread().name
        first = asyncio.ensure_future(forwards(fast, _images(0, 1)))  # not measured yet: to the thread
        for _ in range(3):
            await asyncio.sleep(0)  # the forward is handed to the thread
        time.sleep(0.05)  # the loop is busy meanwhile, so the answer waits far longer than the forward took
        await first
        await forwards(fast, _images(0, 1))

    asyncio.run(run())
    assert fast.threads[0] != loop_thread
    assert fast.threads[1] == loop_thread  # its own time counts, not the wait to be taken back


def test_a_forward_of_a_few_images_runs_on_one_torch_thread_wherever_it_runs() -> None:
    import torch

    from service.forwards import ONE_THREAD_MAX_IMAGES

    default = torch.get_num_threads()
    seen: list[tuple[str, int, int]] = []

    def model(images: np.ndarray) -> np.ndarray:
        seen.append((threading.current_thread().name, len(images), torch.get_num_threads()))
        return images[:, 0].copy()

    async def run() -> None:
        forwards = ForwardBatcher(images_per_forward=1024)
        for n in (1, 1, ONE_THREAD_MAX_IMAGES, ONE_THREAD_MAX_IMAGES + 1):  # the first is unmeasured: the thread
            await forwards(model, _images(0, n))

    try:
        asyncio.run(run())
    finally:
        torch.set_num_threads(default)  # forwards on this test's loop set this thread's own count
    main = threading.current_thread().name
    assert [(where == main, n, threads) for where, n, threads in seen] == [
        (False, 1, 1),
        (True, 1, 1),
        (True, ONE_THREAD_MAX_IMAGES, 1),
        (True, ONE_THREAD_MAX_IMAGES + 1, default),
    ]


def test_a_request_of_many_images_is_decoded_off_the_event_loop() -> None:
    from service.pixels import DECODE_ON_LOOP_MAX_IMAGES, decoded

    where: list[str] = []

    def decode() -> np.ndarray:
        where.append(threading.current_thread().name)
        return np.zeros((1, 784), np.float32)

    async def run() -> str:
        await decoded(DECODE_ON_LOOP_MAX_IMAGES, decode)
        await decoded(DECODE_ON_LOOP_MAX_IMAGES + 1, decode)
        return threading.current_thread().name

    loop_thread = asyncio.run(run())
    assert where[0] == loop_thread and where[1] != loop_thread
