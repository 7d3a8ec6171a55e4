"""The figures' layout: every tile lands where its caption is placed, and the drawings are PNGs."""

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
        figures.loss_curves([0, 1, 2], [0.5, 0.3, 0.2], [0.6, 0.4, 0.3], [0.5, 0.9, 0.95], "curves"),
    ]
    for fig in drawn:
        assert _png(fig).startswith(b"\x89PNG")
