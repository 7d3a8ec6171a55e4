"""Wall time, test accuracy and MLflow's share of wall time for each recipe, on this machine.

Run: `MNIST_DATA_DIR=../shared/data .venv/bin/python bench/train.py [--recipes cnn,mlp] [--seeds 0]`
Each run logs into a fresh SQLite store in a temporary folder, as `python -m trainer` would.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import mlflow
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.cli import run
from trainer.config import parse_config
from trainer.recipes import RECIPES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows the median (default: 0)")
    args = p.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores ({cpu})\n")
    print("| recipe | seeds | test accuracy (median) | errors per seed | wall (median) | MLflow share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.recipes.split(","):
        results = []
        for seed in args.seeds.split(","):
            with tempfile.TemporaryDirectory() as store:
                mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
                results.append(run(parse_config(["--quiet", "--recipe", name, "--seed", seed])))
        acc = statistics.median(r.metrics["test_accuracy"] for r in results)
        errors = ", ".join(str(int(r.metrics["test_errors"])) for r in results)
        wall = statistics.median(r.wall_seconds for r in results)
        share = statistics.median(r.mlflow_seconds / r.wall_seconds for r in results)
        print(
            f"| {name} | {args.seeds} | {100 * acc:.2f}% | {errors} | {wall:.1f} s | {100 * share:.0f}% |", flush=True
        )


if __name__ == "__main__":
    main()
