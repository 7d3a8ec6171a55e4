"""bench.serve's sweeps drawn: throughput and latency against clients and against images per message."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import NAMES, Figures


def draw(servers: dict[str, Figures], recipe: str, path: Path) -> None:
    """Four panels, one line per server, log axes; latency panels show p50 solid and p99 dashed."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    panels = [
        ("concurrency", "clients (one image per message)", "requests/s"),
        ("batches", "images per message (one client)", "images/s"),
    ]
    for row, (points, xlabel, rate) in zip(axes, panels, strict=True):
        for key, figures in servers.items():
            sweep = getattr(figures, points)
            xs = [p.x for p in sweep]
            (line,) = row[0].plot(xs, [p.per_s for p in sweep], marker="o", label=NAMES[key])
            row[1].plot(xs, [p.p50_ms for p in sweep], marker="o", color=line.get_color(), label=f"{NAMES[key]}, p50")
            row[1].plot(
                xs, [p.p99_ms for p in sweep], linestyle="--", color=line.get_color(), label=f"{NAMES[key]}, p99"
            )
        row[0].set_ylabel(rate)
        row[1].set_ylabel("latency per message (ms)")
        for ax in row:
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    axes[0][1].legend(fontsize=7)
    fig.suptitle(f"ModelInfer over loopback gRPC, model: {recipe}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
