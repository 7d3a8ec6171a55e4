"""The served model, the one way a call reads it, and prediction as a plain function on arrays."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np

from service.errors import ModelError, NotServingError, SmokeTestError, first_line

if TYPE_CHECKING:  # the follower imports this module
    from service.follower import Refusal

# (N, 784) float32 in [0, 1] → (N,) p(three), or (N, 2) [p(three), ood score] from a model that abstains
PredictFn = Callable[[np.ndarray], np.ndarray]
# How the server runs a version's PredictFn on a call's images (service.forwards.ForwardBatcher).
RunForward = Callable[[PredictFn, np.ndarray], Awaitable[np.ndarray]]
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
    # Scores above it mean "neither 3 nor 7"; None for a version that cannot abstain.
    ood_threshold: float | None = None
    # The share of genuine test digits its threshold turned away when it was trained (its run's
    # test_rejected_share): what a live "neither" share is compared with. None: not recorded.
    expected_neither_share: float | None = None


class ModelSource(Protocol):
    """What the servicers see of the registry follower."""

    def current(self) -> ServedModel | None: ...
    def problem(self) -> str: ...
    def refusal(self) -> Refusal | None: ...


def require_model(source: ModelSource) -> ServedModel:
    """The served model, read once for the whole call; NotServingError, saying why, when there is none."""
    model = source.current()
    if model is None:
        raise NotServingError(source.problem())
    return model


@dataclass(frozen=True)
class Predictions:
    digits: np.ndarray  # (N,) int32, 3 or 7
    p_three: np.ndarray  # (N,) float32
    version: str
    known: np.ndarray | None = None  # (N,) bool: recognised as a 3 or a 7 at all
    ood_score: np.ndarray | None = None  # (N,) float32, higher = less like a 3 or a 7


async def predict_digits(forward: RunForward, model: ServedModel, images: np.ndarray) -> Predictions:
    """images: (N, 784) float32 in [0, 1]; every answer comes from this one model version."""
    try:
        out = np.asarray(await forward(model.predict, images), dtype=np.float32)
    except Exception as err:
        failure = f"version {model.version} of {model.name} failed on {len(images)} images: {first_line(err)}"
        raise ModelError(failure) from err
    expected = (len(images),) if model.ood_threshold is None else (len(images), 2)
    if out.shape != expected:
        raise ModelError(f"version {model.version} of {model.name} answered {out.shape} for {len(images)} images")
    p_three = out if model.ood_threshold is None else out[:, 0]
    digits = np.where(p_three >= 0.5, THREE, SEVEN).astype(np.int32)
    if model.ood_threshold is None:
        return Predictions(digits=digits, p_three=p_three, version=model.version)
    ood_score = out[:, 1]
    known = ood_score <= model.ood_threshold
    return Predictions(digits, p_three, model.version, known=known, ood_score=ood_score)


def smoke_test(predict: PredictFn, max_images: int, abstains: bool) -> None:
    """Refuse a model that does not map (N, 784) to N finite probabilities (and N finite scores, if it
    abstains), for every N the server may send it: one image, a few, and the largest forward."""
    rng = np.random.default_rng(0)
    for n in sorted({1, min(3, max_images), max_images}):
        images = rng.random((n, 784), dtype=np.float32)
        try:
            out = np.asarray(predict(images))
        except Exception as err:
            raise SmokeTestError(f"failed on a batch of {n} images: {first_line(err)}") from None
        expected = (n, 2) if abstains else (n,)
        if out.shape != expected:
            raise SmokeTestError(f"expected output shape {expected} for {n} images, got {out.shape}")
        if not np.isfinite(out).all():
            raise SmokeTestError(f"expected finite outputs for {n} images, got NaN or infinity")
        p_three = out[:, 0] if abstains else out
        if p_three.min() < 0 or p_three.max() > 1:
            raise SmokeTestError(f"expected probabilities in [0, 1], got values in [{p_three.min()}, {p_three.max()}]")
