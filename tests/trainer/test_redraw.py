"""Re-drawing a digit as a mouse would: the skeleton is one pixel wide and keeps the strokes' shape, and
the re-drawn digit is MNIST-style, in its place, and close to the digit it came from."""

from __future__ import annotations

import numpy as np

from service.client.images import mnist_style
from trainer.data import load_dataset
from trainer.redraw import redrawn, skeleton


def test_the_skeleton_of_a_thick_bar_is_a_one_pixel_line_along_its_middle() -> None:
    bar = np.zeros((1, 28, 28), dtype=bool)
    bar[0, 5:23, 10:15] = True  # 5 pixels wide, 18 tall
    bones = skeleton(bar)[0]
    rows = np.nonzero(bones.any(1))[0]
    assert bones.sum(1).max() == 1  # one pixel per row
    assert set(np.nonzero(bones)[1]) == {12}  # the middle column
    assert rows.min() >= 5 and rows.max() <= 22 and len(rows) >= 12  # most of its length


def test_a_ring_stays_a_closed_loop() -> None:
    ys, xs = np.indices((28, 28))
    radius = np.hypot(ys - 13.5, xs - 13.5)
    bones = skeleton(((radius > 6) & (radius < 10))[None])[0]
    assert bones.sum() > 30 and not bones[13:15, 13:15].any()  # thinned, the hole kept
    angles = np.arctan2(*(np.nonzero(bones) - np.array([[13.5], [13.5]])))
    assert np.histogram(angles, bins=8, range=(-np.pi, np.pi))[0].min() > 0  # unbroken all round


def test_redrawn_digits_are_mnist_style_and_close_to_their_originals(mnist_dir: str) -> None:
    test = load_dataset(mnist_dir, 0).test
    originals = test.images[:64].numpy()
    again = redrawn(originals)
    assert again.shape == originals.shape and again.dtype == np.uint8
    assert np.array_equal(again, redrawn(originals))  # seeded
    ys, xs = np.indices((28, 28))
    for image in again.reshape(-1, 28, 28).astype(np.float64):
        ink = np.nonzero(image > 0.15 * 255)
        assert max(np.ptp(ink[0]), np.ptp(ink[1])) + 1 <= 21  # the 20-pixel box
        mass = image.sum()
        assert abs((ys * image).sum() / mass - 13.5) <= 1 and abs((xs * image).sum() / mass - 13.5) <= 1
    # Close to the digit it traces, made MNIST-style by the same steps: it overlaps its own original
    # far more than other digits, the most like another 3 or 7 of its own kind; re-drawn, not copied.
    reference = np.stack([mnist_style(image.reshape(28, 28)) for image in originals])
    a, b = again > 127, reference > 127
    overlap = (a[:, None] & b[None]).sum(-1) / (a[:, None] | b[None]).sum(-1)
    own, others = np.diag(overlap), overlap[~np.eye(len(a), dtype=bool)]
    assert float(np.median(own)) > 2 * float(np.median(others))
    labels = test.labels[:64].numpy()
    assert np.mean(labels[overlap.argmax(1)] == labels) >= 0.95
    assert float(np.median(own)) < 0.8
