"""The figures: every tile lands where its caption is placed, titles count what they show, and each draws."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from trainer import figures
from trainer.data import Split
from trainer.loop import EpochStats, Evaluation
from trainer.models import CNN, MLP
from trainer.neither import Report, Scores


def test_montage_places_each_tile_at_its_origin() -> None:
    tiles = np.arange(5 * 28 * 28, dtype=np.float32).reshape(5, 28, 28)
    canvas = figures._montage(tiles, cols=3, gap=4, top=9)
    assert canvas.shape == (2 * (28 + 4 + 9), 3 * (28 + 4) - 4)
    for i, tile in enumerate(tiles):
        x, y = figures._tile_origin(i, 3, (28, 28), gap=4, top=9)
        np.testing.assert_array_equal(canvas[y + 9 : y + 9 + 28, x : x + 28], tile)
    assert np.isnan(canvas).sum() == canvas.size - tiles.size  # gaps, captions and the empty sixth cell


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def test_each_figure_renders_for_every_network_shape() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 100)
    images = rng.integers(0, 256, (100, 784)).astype(np.uint8)
    drawn = [
        figures.weight_maps(rng.standard_normal((1, 28, 28)), "single layer"),
        figures.weight_maps(rng.standard_normal((128, 28, 28)), "mlp"),
        figures.weight_maps(rng.standard_normal((16, 3, 3)), "cnn"),
        figures.misclassified_grid(images, labels, labels.astype(float)),  # no mistakes
        figures.misclassified_grid(images, labels, rng.random(100)),  # more than fit
        figures.confusion_matrix(labels, 1 - labels, "all wrong"),
        figures.loss_curves([0, 1, 2], [None, 0.3, 0.2], [0.6, 0.4, 0.3], [0.5, 0.9, 0.95], "curves"),
        # p(neither) of exactly 0 and 1, as float32 sigmoids give, sit in the outermost bins
        figures.neither_scores(
            np.r_[rng.random(50) * 0.01, 0.0],
            np.r_[rng.random(50), 1.0],
            rng.random(20),
            0.005,
            {"digit 5": 0.01},
            "cnn",
        ),
    ]
    for fig in drawn:
        assert _png(fig).startswith(b"\x89PNG")


def _title(fig: Figure) -> str:
    title = fig.get_suptitle()
    plt.close(fig)
    return title


def test_the_misclassified_title_counts_what_it_shows_of_how_many() -> None:
    labels = np.array([1, 0] * 50)
    images = np.zeros((100, 784), np.uint8)
    all_wrong = 1.0 - labels  # every answer confidently wrong
    assert _title(figures.misclassified_grid(images, labels, all_wrong)) == "32 shown of 100 misclassified test images"
    three_wrong = labels.astype(float)
    three_wrong[:3] = 1 - three_wrong[:3]
    assert _title(figures.misclassified_grid(images, labels, three_wrong)) == "3 misclassified test images"
    assert _title(figures.misclassified_grid(images, labels, labels.astype(float))) == "no misclassified test images"


def test_the_loss_curves_leave_out_the_missing_train_loss() -> None:
    fig = figures.loss_curves([0, 1, 2], [None, 0.3, 0.2], [0.6, 0.4, 0.3], [0.5, 0.9, 0.95], "curves")
    train, val = fig.axes[0].get_lines()
    assert np.asarray(train.get_xdata()).tolist() == [1, 2] and np.asarray(val.get_xdata()).tolist() == [0, 1, 2]
    plt.close(fig)


def test_a_run_draws_four_figures_and_the_neither_one_when_the_network_abstains() -> None:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 784), dtype=np.uint8), rng.integers(0, 2, 64).astype(np.float32)
    test = Split(torch.from_numpy(images), torch.from_numpy(labels))
    evaluation = Evaluation(loss=0.4, accuracy=0.9, errors=6, p_three=torch.from_numpy(rng.random(64)))
    val = Evaluation(loss=0.5, accuracy=0.8, errors=0, p_three=torch.zeros(0))
    history = [EpochStats(0, None, val), EpochStats(1, 0.4, val)]
    plain = figures.for_run("mlp", history, MLP(), test, evaluation, None)
    assert list(plain) == ["loss_curves.png", "weights.png", "confusion_matrix.png", "misclassified.png"]
    assert plain["weights.png"].get_suptitle() == "mlp: learned first-layer weights"

    made = {"noise": rng.random(20)}
    others, made_images = rng.integers(0, 256, (70, 784), dtype=np.uint8), {"noise": images[:20]}
    scores = Scores(
        rng.random(50),
        rng.random(50),
        rng.random(64),
        rng.random(70),
        rng.integers(0, 2, 70),
        made,
        others,
        made_images,
    )
    accepted = {"digit 0": 0.02, "digit 1": 0.0, "noise": 0.1}
    drawn = figures.for_run("cnn", history, CNN(abstains=True), test, evaluation, Report(0.9, {}, scores, accepted))
    assert list(drawn) == [*plain, "neither_scores.png", "outliers_accepted.png"]
    bars = drawn["neither_scores.png"].axes[1]  # the share of each kind of outlier accepted, as the report has it
    assert [tick.get_text() for tick in bars.get_yticklabels()] == list(accepted)
    assert [bar.get_width() for bar in bars.patches if isinstance(bar, Rectangle)] == pytest.approx(
        [100 * share for share in accepted.values()]
    )
    for fig in (*plain.values(), *drawn.values()):
        assert _png(fig).startswith(b"\x89PNG")


def test_the_outliers_accepted_are_shown_most_confidently_accepted_first() -> None:
    rng = np.random.default_rng(0)
    others = rng.integers(0, 256, (4, 784), dtype=np.uint8)
    made = rng.integers(0, 256, (3, 784), dtype=np.uint8)
    scores = Scores(
        val=np.zeros(2),
        val_varied=np.zeros(2),
        test=np.zeros(2),
        others=np.array([0.9, 0.05, 0.6, 0.2]),
        other_digits=np.array([0, 1, 2, 4]),
        made={"scribbles": np.array([0.01, 0.99, 0.3])},
        others_images=others,
        made_images={"scribbles": made},
    )
    fig = figures.outliers_accepted(scores, threshold=0.5)
    assert fig.get_suptitle() == "4 outliers accepted as a 3 or a 7 (kind, ood_score)"
    captions = [text.get_text() for text in fig.axes[0].texts]
    assert captions == ["scribbles, 0.01", "digit 1, 0.05", "digit 4, 0.2", "scribbles, 0.3"]
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert np.array_equal(shown[9 : 9 + 28, :28], made[0].reshape(28, 28))  # the first tile, under its caption
    assert figures.outliers_accepted(scores, threshold=0.5, limit=2).get_suptitle().startswith("2 shown of 4 ")
    assert figures.outliers_accepted(scores, threshold=0.001).get_suptitle().startswith("no outliers accepted")
    plt.close("all")
