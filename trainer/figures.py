"""Figures logged with each run: loss curves, learned weights, confusion matrix, mistakes, and how the
"neither" score separates 3s and 7s from everything else."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never open a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from trainer.data import Split
from trainer.loop import EpochStats, Evaluation
from trainer.models import Network
from trainer.neither import Report, Scores


def loss_curves(
    epochs: list[int], train: list[float | None], val: list[float], val_acc: list[float], title: str
) -> Figure:
    """Per-epoch curves; a train loss of None (the untrained network at epoch 0) is left out."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    trained = [(e, loss) for e, loss in zip(epochs, train, strict=True) if loss is not None]
    ax_loss.plot([e for e, _ in trained], [loss for _, loss in trained], label="train")
    ax_loss.plot(epochs, val, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * a for a in val_acc], color="tab:green")
    ax_acc.axhline(50, color="grey", linestyle=":", label="chance")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"{title}: accuracy")
    ax_acc.legend()
    fig.tight_layout()
    return fig


def _tile_origin(i: int, cols: int, shape: tuple[int, int], gap: int, top: int) -> tuple[int, int]:
    """Top-left pixel (x, y) of cell i in a montage made by _montage; its tile starts `top` lower."""
    r, c = divmod(i, cols)
    return c * (shape[1] + gap), r * (shape[0] + gap + top)


def _montage(tiles: np.ndarray, cols: int, gap: int, top: int) -> np.ndarray:
    """tiles (K, H, W) laid out `cols` to a row on a NaN background (drawn blank), with `gap` pixels
    between tiles and `top` more above each row for a caption. One image in one axes draws far
    faster than one axes per tile."""
    k, h, w = tiles.shape
    rows = max(1, math.ceil(k / cols))
    canvas = np.full((rows * (h + gap + top), cols * (w + gap) - gap), np.nan, dtype=np.float32)
    for i, tile in enumerate(tiles):
        x, y = _tile_origin(i, cols, (h, w), gap, top)
        canvas[y + top : y + top + h, x : x + w] = tile
    return canvas


def _montage_axes(
    canvas: np.ndarray, inches_per_pixel: float, title: str, extra_width: float = 0.0
) -> tuple[Figure, Axes]:
    """A figure sized so the montage fills it at `inches_per_pixel`, below a title line; `extra_width`
    inches on the right for a colour bar."""
    height, width = canvas.shape
    image_w, image_h, title_h = width * inches_per_pixel, height * inches_per_pixel, 0.45
    fig = plt.figure(figsize=(image_w + extra_width + 0.2, image_h + title_h + 0.1))
    fig_w, fig_h = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((0.1 / fig_w, 0.05 / fig_h, image_w / fig_w, image_h / fig_h))
    ax.axis("off")
    fig.suptitle(title, y=1 - 0.08 / fig_h, va="top")
    return fig, ax


def weight_maps(weights: np.ndarray, title: str) -> Figure:
    """weights: (K, H, W), one map per unit or filter; red pushes towards 3, blue towards 7 for one unit."""
    maps = weights[:16]
    scale = max(1, 28 // maps.shape[1])  # 3×3 filters drawn as 27×27 blocks, so gaps stay thin
    maps = maps.repeat(scale, axis=1).repeat(scale, axis=2)
    cols = min(len(maps), 8)
    canvas = _montage(maps, cols, gap=2, top=0)
    tile_inches = 4.0 if len(maps) == 1 else 1.6  # a single-layer network's one map is the story
    fig, ax = _montage_axes(canvas, tile_inches / maps.shape[2], title, extra_width=0.9)
    limit = float(np.abs(maps).max()) or 1.0
    cmap = plt.get_cmap("coolwarm").with_extremes(bad="white")
    image = ax.imshow(canvas, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    bar = fig.add_axes((ax.get_position().x1 + 0.15 / fig.get_figwidth(), 0.1, 0.15 / fig.get_figwidth(), 0.75))
    fig.colorbar(image, cax=bar)
    return fig


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """labels, predicted: (N,) with 1 for a 3 and 0 for a 7."""
    digits = ["3", "7"]
    counts = np.array([[np.sum((labels == t) & (predicted == p)) for p in (1, 0)] for t in (1, 0)])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(counts, cmap="Blues")
    for (r, c), n in np.ndenumerate(counts):
        ax.text(c, r, str(n), ha="center", va="center", color="white" if n > counts.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=digits, yticklabels=digits, xlabel="predicted", ylabel="true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _captioned_grid(images: np.ndarray, captions: list[str], title: str) -> Figure:
    """images (K, 784) uint8, eight to a row, each under its caption, dark ink on white."""
    cols, gap, top = max(1, min(len(images), 8)), 4, 9  # room above each digit for its caption
    canvas = _montage(images.reshape(-1, 28, 28).astype(np.float32), cols, gap, top)  # (0, 28, 28) when none
    fig, ax = _montage_axes(canvas, 1.6 / 32, title)
    ax.imshow(canvas, cmap=plt.get_cmap("gray_r").with_extremes(bad="white"), vmin=0, vmax=255)
    for n, caption in enumerate(captions):
        x, y = _tile_origin(n, cols, (28, 28), gap, top)
        ax.text(x + 14, y + top - 1, caption, fontsize=6.5, ha="center", va="bottom")
    return fig


def _shown_of(shown: int, total: int, what: str) -> str:
    return f"{shown} shown of {total} {what}" if shown < total else f"{total} {what}" if total else f"no {what}"


def misclassified_grid(images: np.ndarray, labels: np.ndarray, p_three: np.ndarray, limit: int = 32) -> Figure:
    """images: (N, 784) uint8 of the test split; shows the wrong answers, most confident first."""
    predicted = (p_three >= 0.5).astype(labels.dtype)
    all_wrong = np.flatnonzero(predicted != labels)
    wrong = all_wrong[np.argsort(-np.abs(p_three[all_wrong] - 0.5), kind="stable")][:limit]
    captions = [f"true {3 if labels[i] == 1 else 7}, p(3)={p_three[i]:.2f}" for i in wrong]
    return _captioned_grid(images[wrong], captions, _shown_of(len(wrong), len(all_wrong), "misclassified test images"))


def outliers_accepted(scores: Scores, threshold: float, limit: int = 32) -> Figure:
    """The test split's other digits and the made non-digits that `threshold` lets through as a 3 or a
    7, the most confidently accepted (lowest ood_score) first: what "neither" misses, to look at."""
    kinds = [f"digit {d}" for d in scores.other_digits] + [k for k, s in scores.made.items() for _ in s]
    images = np.concatenate([scores.others_images, *scores.made_images.values()])
    ood = np.concatenate([scores.others, *scores.made.values()])
    taken = np.flatnonzero(ood <= threshold)
    shown = taken[np.argsort(ood[taken], kind="stable")][:limit]
    captions = [f"{kinds[i]}, {ood[i]:.2g}" for i in shown]
    title = _shown_of(len(shown), len(taken), "outliers accepted as a 3 or a 7 (kind, ood_score)")
    return _captioned_grid(images[shown], captions, title)


def neither_scores(
    known: np.ndarray,
    others: np.ndarray,
    made: np.ndarray,
    threshold: float,
    accepted: dict[str, float],
    title: str,
) -> Figure:
    """Left: how p(neither) spreads for the test split's 3s and 7s, its other digits and made non-digits,
    on a log-odds axis, with the threshold. Right: the share of each kind of outlier accepted."""
    fig, (ax_hist, ax_bar) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    edge = 1 / (1 + math.exp(18))
    bins = 1 / (1 + np.exp(-np.linspace(-18, 18, 73)))
    groups = (("test 3s and 7s", known, "tab:blue"), ("test: other digits", others, "tab:orange"))
    for label, scores, colour in (*groups, ("made non-digits", made, "tab:grey")):
        clipped = np.clip(scores.astype(np.float64), edge, 1 - edge)
        ax_hist.hist(clipped, bins=bins, histtype="step", linewidth=1.6, color=colour, label=f"{label} ({len(scores)})")
    ax_hist.axvline(float(np.clip(threshold, edge, 1 - edge)), color="tab:red", linestyle="--", label="threshold")
    ax_hist.set_xscale("logit")
    ax_hist.set_yscale("log")
    ax_hist.set(xlabel='ood_score: p(neither 3 nor 7); right of the line is "neither"', ylabel="images")
    ax_hist.set_title(f"{title}: ood_score, threshold {threshold:.3g}")
    ax_hist.legend(fontsize=8, loc="upper center")
    names = list(accepted)
    ax_bar.barh(names, [100 * accepted[n] for n in names], color="tab:orange")
    ax_bar.invert_yaxis()
    ax_bar.set(xlabel="accepted as a 3 or a 7 (%)", title="outliers accepted, by kind")
    for y, name in enumerate(names):
        ax_bar.text(100 * accepted[name], y, f" {100 * accepted[name]:.1f}%", va="center", fontsize=8)
    ax_bar.set_xlim(0, max(5.0, 120 * max(accepted.values(), default=0)))
    fig.tight_layout()
    return fig


def for_run(
    title: str, history: Sequence[EpochStats], net: Network, test: Split, evaluation: Evaluation, report: Report | None
) -> dict[str, Figure]:
    """Every figure of a run, by file name: `evaluation` is the trained network's on the `test` split,
    `report` its "neither" measurements when it abstains."""
    labels, p_three = test.labels.numpy(), evaluation.p_three.numpy()
    epochs = [s.epoch for s in history]
    val_loss, val_accuracy = [s.val.loss for s in history], [s.val.accuracy for s in history]
    drawn = {
        "loss_curves.png": loss_curves(epochs, [s.train_loss for s in history], val_loss, val_accuracy, title),
        "weights.png": weight_maps(net.first_layer_weights().cpu().numpy(), f"{title}: learned first-layer weights"),
        "confusion_matrix.png": confusion_matrix(labels, (p_three >= 0.5).astype(labels.dtype), f"{title}: test split"),
        "misclassified.png": misclassified_grid(test.images.numpy(), labels, p_three),
    }
    if report is not None:
        scores = report.scores
        made = np.concatenate(list(scores.made.values()))
        drawn["neither_scores.png"] = neither_scores(
            scores.test, scores.others, made, report.threshold, report.outliers_accepted, title
        )
        drawn["outliers_accepted.png"] = outliers_accepted(scores, report.threshold)
    return drawn
