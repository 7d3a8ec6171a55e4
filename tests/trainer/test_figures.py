"""The figures: every tile lands where its caption is placed, titles count what they show, and each draws."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from trainer import figures


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
