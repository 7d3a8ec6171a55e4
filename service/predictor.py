"""A served model: its registry identity and a plain function from images to p(three)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

# (N, 784) float32 in [0, 1] → (N,) float32 probability that each image is a 3
PredictFn = Callable[[np.ndarray], np.ndarray]
THREE, SEVEN = 3, 7


class SmokeTestError(RuntimeError):
    """A loaded model gave answers of the wrong shape or outside [0, 1]."""


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
class Answers:
    digits: np.ndarray  # (N,) int32, 3 or 7
    p_three: np.ndarray  # (N,) float32
    version: str


def classify(model: ServedModel, images: np.ndarray) -> Answers:
    """images: (N, 784) float32 in [0, 1]; every answer comes from this one model version."""
    p_three = np.asarray(model.predict(images), dtype=np.float32).reshape(-1)
    digits = np.where(p_three >= 0.5, THREE, SEVEN).astype(np.int32)
    return Answers(digits=digits, p_three=p_three, version=model.version)


def smoke_test(predict: PredictFn) -> None:
    """Refuse a model that does not map (N, 784) to N finite probabilities, for N = 1 and 3."""
    rng = np.random.default_rng(0)
    for n in (1, 3):
        images = rng.random((n, 784), dtype=np.float32)
        out = np.asarray(predict(images))
        if out.shape != (n,):
            raise SmokeTestError(f"expected output shape ({n},) for {n} images, got {out.shape}")
        if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1:
            raise SmokeTestError(f"expected finite probabilities in [0, 1], got {out.tolist()}")
