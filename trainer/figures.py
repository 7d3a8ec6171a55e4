"""Figures logged with each run: loss curves, learned weights, confusion matrix, mistakes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never open a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def loss_curves(epochs: list[int], train: list[float], val: list[float], val_acc: list[float], title: str) -> Figure:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, train, label="train")
    ax_loss.plot(epochs, val, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * a for a in val_acc], color="tab:green")
    ax_acc.axhline(50, color="grey", linestyle=":", label="chance")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"{title}: accuracy")
    ax_acc.legend()
    fig.tight_layout()
    return fig


def weight_maps(weights: np.ndarray, title: str) -> Figure:
    """weights: (K, H, W), one map per unit or filter; red pushes towards 3, blue towards 7 for one unit."""
    k = min(len(weights), 16)
    cols = min(k, 8)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols + 1, 1.8 * rows + 0.6), squeeze=False)
    limit = float(np.abs(weights[:k]).max()) or 1.0
    image = None
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            image = ax.imshow(weights[i], cmap="coolwarm", vmin=-limit, vmax=limit)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title)
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


def misclassified_grid(images: np.ndarray, labels: np.ndarray, p_three: np.ndarray, limit: int = 32) -> Figure:
    """images: (N, 784) uint8 of the test split; shows the wrong answers, most confident first."""
    predicted = (p_three >= 0.5).astype(labels.dtype)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-np.abs(p_three[wrong] - 0.5))][:limit]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(images[i].reshape(28, 28), cmap="gray_r")
        truth = 3 if labels[i] == 1 else 7
        ax.set_title(f"true {truth}, p(3)={p_three[i]:.2f}", fontsize=7)
    fig.suptitle(f"{len(wrong)} misclassified test images" if len(wrong) else "no misclassified test images")
    fig.tight_layout()
    return fig
