"""A served model: its registry identity and a plain function from images to p(three)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from service.errors import ModelError, SmokeTestError, first_line

# (N, 784) float32 in [0, 1] → (N,) float32 probability that each image is a 3
PredictFn = Callable[[np.ndarray], np.ndarray]
THREE, SEVEN = 3, 7


@dataclass(frozen=True)
class ServedModel:
    name: str
    alias: str
    version: str
    run_id: str
    test_accuracy: float
    recipe: str
    loaded_at: datetime
    predict: PredictFn


@dataclass(frozen=True)
class Predictions:
    digits: np.ndarray  # (N,) int32, 3 or 7
    p_three: np.ndarray  # (N,) float32
    version: str


def predict_digits(model: ServedModel, images: np.ndarray) -> Predictions:
    """images: (N, 784) float32 in [0, 1]; every answer comes from this one model version."""
    try:
        p_three = np.asarray(model.predict(images), dtype=np.float32).reshape(-1)
    except Exception as err:
        failure = f"version {model.version} of {model.name} failed on {len(images)} images: {first_line(err)}"
        raise ModelError(failure) from err
    if p_three.shape != (len(images),):
        raise ModelError(f"version {model.version} of {model.name} gave {p_three.shape[0]} answers for {len(images)}")
    digits = np.where(p_three >= 0.5, THREE, SEVEN).astype(np.int32)
    return Predictions(digits=digits, p_three=p_three, version=model.version)


def smoke_test(predict: PredictFn, max_images: int) -> None:
    """Refuse a model that does not map (N, 784) to N finite probabilities, for every N the server
    may send it: one image, a few, and the largest forward the coalescing predictor runs."""
    rng = np.random.default_rng(0)
    for n in sorted({1, min(3, max_images), max_images}):
        images = rng.random((n, 784), dtype=np.float32)
        try:
            out = np.asarray(predict(images))
        except Exception as err:
            raise SmokeTestError(f"failed on a batch of {n} images: {first_line(err)}") from None
        if out.shape != (n,):
            raise SmokeTestError(f"expected output shape ({n},) for {n} images, got {out.shape}")
        if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1:
            raise SmokeTestError(f"expected finite probabilities in [0, 1], got values in [{out.min()}, {out.max()}]")
