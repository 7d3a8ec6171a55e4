"""Calibrating and measuring "neither 3 nor 7": the threshold comes from the validation split's 3s
and 7s, as they are and as a hand might vary them; the test split's 3s and 7s, its other eight digits
and made non-digits only measure it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainer import outliers
from trainer.augment import Augmentation
from trainer.data import Dataset3v7
from trainer.loop import Evaluation, logits_of

REJECT_SHARE = 0.01  # of true 3s and 7s, on the validation split
MADE_SEED = 20261128  # made non-digits for measuring come from their own seed, never the training one
MADE_PER_KIND = 250
# A threshold set on MNIST's own tidy digits alone turns away the first off-centre or thick-penned
# ones a person draws; set on the validation digits and a copy varied as the default recipe's
# augmentation varies them, it follows more of how handwriting really varies.
CALIBRATION_VARIATION = Augmentation(shift_px=2.0, scale=0.12, rotate_deg=10.0, thinner=0.5, thicker=0.5)
CALIBRATION_SEED = 20261203


@dataclass(frozen=True)
class Scores:
    """p(neither) of the images each measurement looks at, on the CPU."""

    val: np.ndarray  # validation 3s and 7s
    val_varied: np.ndarray  # the same, varied by CALIBRATION_VARIATION
    test: np.ndarray  # test 3s and 7s
    others: np.ndarray  # test split's other digits
    other_digits: np.ndarray  # which digit each of `others` is
    made: dict[str, np.ndarray]  # made non-digits, per kind
    # The outliers themselves, (N, 784) uint8 beside their scores, to show the ones a threshold lets through.
    others_images: np.ndarray
    made_images: dict[str, np.ndarray]


@dataclass(frozen=True)
class Report:
    threshold: float
    metrics: dict[str, float]
    scores: Scores
    outliers_accepted: dict[str, float]  # share of each kind taken for a 3 or a 7: "digit 0", …, then made kinds


def calibrate(val_scores: np.ndarray, reject: float = REJECT_SHARE) -> float:
    """The score above which an image is "neither": the (1 − reject) quantile of the validation 3s'
    and 7s' scores, so that about `reject` of them (never more) are turned away."""
    return float(np.quantile(val_scores, 1 - reject, method="higher"))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """The chance that an unknown image scores above a known one (ties count half): the area under the
    ROC curve of the score as a detector of unknown images."""
    ordered = np.sort(known)
    below = np.searchsorted(ordered, unknown, side="left")
    ties = np.searchsorted(ordered, unknown, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(known) * len(unknown)))


def _neither(net: nn.Module, images: torch.Tensor, device: torch.device) -> np.ndarray:
    return torch.sigmoid(logits_of(net, images, device)[:, 1]).numpy()


def measure(net: nn.Module, data: Dataset3v7, val: Evaluation, test: Evaluation, device: torch.device) -> Report:
    """Calibrate on `val` (the validation split's evaluation), then measure on the test split."""
    assert val.neither is not None and test.neither is not None, "the network does not abstain"
    made_images = {
        kind: images.mul(255).round().to(torch.uint8)
        for kind, images in outliers.made_per_kind(MADE_PER_KIND, data.test.floats(), MADE_SEED).items()
    }
    varied = CALIBRATION_VARIATION(data.val.floats(), torch.Generator().manual_seed(CALIBRATION_SEED))
    scores = Scores(
        val=val.neither.numpy(),
        val_varied=_neither(net, varied.mul(255).round().to(torch.uint8), device),
        test=test.neither.numpy(),
        others=_neither(net, data.test_others.images, device),
        other_digits=data.test_others.digits.numpy(),
        made={kind: _neither(net, images, device) for kind, images in made_images.items()},
        others_images=data.test_others.images.numpy(),
        made_images={kind: images.numpy() for kind, images in made_images.items()},
    )
    correct = (test.p_three.numpy() >= 0.5) == (data.test.labels.numpy() == 1)
    return judged(scores, calibrate(np.concatenate([scores.val, scores.val_varied])), correct)


def judged(scores: Scores, threshold: float, correct: np.ndarray) -> Report:
    """What `threshold` turns away and lets through of each set of `scores`; `correct`: whether each
    test image's 3-or-7 answer is right."""
    calibration = np.concatenate([scores.val, scores.val_varied])
    accepted = scores.test <= threshold
    made_all = np.concatenate(list(scores.made.values()))
    metrics = {
        "ood_threshold": threshold,
        "val_rejected_share": float(np.mean(scores.val > threshold)),
        "val_calibration_rejected_share": float(np.mean(calibration > threshold)),
        "test_rejected_share": float(np.mean(~accepted)),
        "test_accepted_accuracy": float(np.mean(correct[accepted])) if accepted.any() else 0.0,
        "test_others_auroc": auroc(scores.test, scores.others),
        "test_others_accepted_share": float(np.mean(scores.others <= threshold)),
        "made_rejected_share": float(np.mean(made_all > threshold)),
    }
    outliers_accepted: dict[str, float] = {}
    for digit in np.unique(scores.other_digits):
        share = float(np.mean(scores.others[scores.other_digits == digit] <= threshold))
        metrics[f"test_accepted_share_digit_{digit}"] = share
        outliers_accepted[f"digit {digit}"] = share
    for kind, made in scores.made.items():
        metrics[f"made_rejected_share_{kind}"] = float(np.mean(made > threshold))
        outliers_accepted[kind] = float(np.mean(made <= threshold))
    return Report(threshold, metrics, scores, outliers_accepted)
