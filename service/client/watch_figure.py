"""The picture of a watched window: images per second, the "neither" share beside the expected one,
and the shadow's agreement, per version over time."""

from __future__ import annotations

from itertools import accumulate
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
from matplotlib import pyplot as plt

from service.client.watch import Window


def draw(windows: list[Window], png: Path) -> None:
    ends = list(accumulate(w.seconds for w in windows))
    keys = sorted({key for w in windows for key in w.images})
    fig, (rate, neither, agree) = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True, constrained_layout=True)
    for role, version in keys:
        label = f"{role} v{version}"
        totals = [sum(w.images.get((role, version), {}).values()) for w in windows]
        rate.plot(ends, [t / w.seconds for t, w in zip(totals, windows, strict=True)], label=label)
        shares = [
            100 * w.images[(role, version)].get("neither", 0.0) / t if t else float("nan")
            for t, w in zip(totals, windows, strict=True)
        ]
        (line,) = neither.plot(ends, shares, label=label)
        expected = next((w.expected[(role, version)] for w in windows if (role, version) in w.expected), None)
        if expected is not None:
            neither.axhline(100 * expected, color=line.get_color(), linestyle="--", label=f"{label} expects")
    agree.plot(
        ends, [100 * w.agreeing / w.compared if w.compared else float("nan") for w in windows], color="tab:green"
    )
    rate.set_ylim(bottom=0)
    neither.set_ylim(bottom=0)
    rate.set_ylabel("images / s")
    neither.set_ylabel('answered "neither" (%)')
    agree.set_ylabel("shadow agrees (%)")
    agree.set_xlabel("seconds watched")
    for ax in (rate, neither):
        if keys:
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("mnist37: each version's live answers")
    fig.savefig(png, dpi=110)
    plt.close(fig)
