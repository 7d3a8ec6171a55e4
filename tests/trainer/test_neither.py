"""Calibrating "neither": the threshold turns away the share of validation 3s and 7s it is meant to,
AUROC is the chance an outlier scores above a 3 or 7; and the default recipe, trained once, meets
the targets, carries its threshold in its version and turns away non-digits it never saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from service.client.images import mnist_style
from service.loading import load_program
from tests.conftest import DefaultRun
from tests.trainer.unseen import non_digits
from trainer.data import load_dataset
from trainer.loop import OUTLIER, evaluate, loss_fn
from trainer.models import CNN, Probability
from trainer.neither import auroc, calibrate, measure


def test_the_threshold_rejects_about_the_share_asked_for_and_never_more() -> None:
    scores = np.random.default_rng(0).random(5000)
    for share in (0.01, 0.05):
        threshold = calibrate(scores, share)
        rejected = np.mean(scores > threshold)
        assert share - 0.001 <= rejected <= share


def test_auroc_counts_pairs_and_ties() -> None:
    assert auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert auroc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert auroc(np.array([0.5]), np.array([0.5])) == 0.5
    known, unknown = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.6])
    pairs = np.mean([[u > k for k in known] for u in unknown])
    assert auroc(known, unknown) == pytest.approx(pairs)


def test_the_report_carries_the_share_of_each_kind_of_outlier_accepted(mnist_dir: str) -> None:
    torch.manual_seed(0)
    net, cpu = torch.nn.Linear(784, 2), torch.device("cpu")  # any network with a second, "neither" logit
    data = load_dataset(mnist_dir, 0)
    report = measure(net, data, evaluate(net, data.val, "bce", cpu), evaluate(net, data.test, "bce", cpu), cpu)
    scores, shares, metrics = report.scores, report.outliers_accepted, report.metrics
    assert list(shares) == [f"digit {d}" for d in "01245689"] + list(scores.made)
    fives = scores.others[scores.other_digits == 5]
    assert shares["digit 5"] == np.count_nonzero(fives <= report.threshold) / len(fives)
    for digit in "01245689":  # the same figures as the metrics logged for the run
        assert shares[f"digit {digit}"] == metrics[f"test_accepted_share_digit_{digit}"]
    for kind in scores.made:
        assert shares[kind] == pytest.approx(1 - metrics[f"made_rejected_share_{kind}"])
    assert 0 < shares["digit 5"] < 1  # an untrained network takes some fives and not others: the count is checked


def test_the_loss_of_a_network_that_abstains_asks_3_or_7_only_of_3s_and_7s() -> None:
    logits = torch.tensor([[10.0, -10.0], [-10.0, -10.0], [100.0, 10.0]])  # a 3, a 7, an outlier called "3"
    labels = torch.tensor([1.0, 0.0, OUTLIER])
    assert float(loss_fn("bce", logits, labels)) < 0.01  # the outlier's 3-or-7 logit costs nothing
    wrong = torch.tensor([[10.0, -10.0], [-10.0, -10.0], [100.0, -10.0]])  # the outlier taken for a digit
    assert float(loss_fn("bce", wrong, labels)) > 1.0


def test_a_network_that_abstains_serves_two_probabilities_per_image() -> None:
    net = CNN(abstains=True).eval()
    assert net(torch.rand(4, 784)).shape == (4, 2)
    out = Probability(net)(torch.rand(4, 784))
    assert out.shape == (4, 2) and bool(((out >= 0) & (out <= 1)).all())


@pytest.fixture(scope="module")
def champion(default_run: DefaultRun) -> tuple[MlflowClient, ModelVersion, dict[str, float]]:
    assert default_run.returncode == 0, default_run.stderr[-2000:]
    client = MlflowClient(default_run.uri, default_run.uri)
    version = client.get_model_version_by_alias("mnist-3v7", "champion")
    assert version.run_id is not None
    return client, version, client.get_run(version.run_id).data.metrics


@pytest.mark.slow
def test_the_default_recipe_meets_the_targets_on_the_test_split(
    champion: tuple[MlflowClient, ModelVersion, dict[str, float]],
) -> None:
    client, version, metrics = champion
    assert metrics["test_rejected_share"] <= 0.01  # of true 3s and 7s
    assert metrics["test_accepted_accuracy"] >= 0.999
    assert metrics["test_others_auroc"] >= 0.995
    assert metrics["test_others_accepted_share"] <= 0.02
    # Calibrated to about 1% of the validation digits, as drawn and varied, never more. The recipe
    # varies its digits more widely than the calibration does, so the digits as drawn are turned away
    # about as often as the varied ones, and not always less: 1.05% against 0.97% for seed 0 under
    # torch's avx2 kernels on a Zen 5 EPYC. Half a point more would mean the calibration missed them.
    assert 0.005 <= metrics["val_calibration_rejected_share"] <= 0.01
    assert metrics["val_rejected_share"] <= 0.015
    assert metrics["made_rejected_share"] >= 0.99
    per_digit = {k[-1] for k in metrics if k.startswith("test_accepted_share_digit_")}
    assert per_digit == set("01245689")
    figures = {a.path for a in client.list_artifacts(str(version.run_id), "figures")}
    assert {"figures/neither_scores.png", "figures/outliers_accepted.png"} <= figures
    assert version.tags["ood_threshold"] == repr(metrics["ood_threshold"])
    assert "Says neither 3 nor 7" in version.description


@pytest.mark.slow
def test_the_threshold_travels_in_the_version_and_non_digits_are_rejected(
    champion: tuple[MlflowClient, ModelVersion, dict[str, float]], mnist_dir: str
) -> None:
    client, version, metrics = champion
    program = load_program(client.get_model_version_download_uri("mnist-3v7", version.version), client.tracking_uri)
    assert program.ood_threshold == pytest.approx(metrics["ood_threshold"], rel=1e-12)

    def scores(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = program.forward(torch.from_numpy(images.astype(np.float32) / 255)).numpy()
        assert out.shape == (len(images), 2)
        return out[:, 1]

    made = non_digits()
    accepted = [
        name for name, s in zip(made, scores(np.stack(list(made.values()))), strict=True) if s <= program.ood_threshold
    ]
    assert accepted == [], f"taken for a 3 or a 7: {accepted}"
    # Test 3s and 7s redrawn the way the CLI client prepares a photo are still accepted.
    test = load_dataset(mnist_dir, 0).test
    redrawn = np.stack([mnist_style(image.reshape(28, 28)) for image in test.images.numpy()])
    assert np.mean(scores(redrawn) > program.ood_threshold) <= 0.02
