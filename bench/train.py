"""Wall time, test accuracy and MLflow's share of wall time for each recipe, on this machine.

Run: `MNIST_DATA_DIR=../shared/data .venv/bin/python bench/train.py [--recipes cnn,mlp] [--seeds 0,1,2]`
Each run is a fresh process, as `python -m trainer` is, logging into its own SQLite store in a
temporary folder; the store's tables are created before the clock starts (as for every run after a
store's first, which spends another ~2 s creating them). "imports" is the time the process spends
importing torch, torchvision, MLflow and matplotlib; "wall" is everything after: data, training,
evaluation, figures, the pt2 model and registration. "MLflow waited" is the part of wall the run
spent waiting on MLflow; "background CPU" is the CPU time of the threads that write to MLflow and
pay its one-off costs during training. On a machine whose cores the training already keeps busy,
that CPU time slows training by up to as much, so the last column bounds MLflow's share from above.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the heavy imports below

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import mlflow  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.cli import run  # noqa: E402
from trainer.config import DEFAULT_EXPERIMENT, parse_config  # noqa: E402
from trainer.recipes import RECIPES  # noqa: E402

IMPORTED = time.perf_counter()


def one_run(recipe: str, seed: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as store:
        mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
        mlflow.create_experiment(DEFAULT_EXPERIMENT, artifact_location=f"{store}/artifacts")
        result = run(parse_config(["--quiet", "--recipe", recipe, "--seed", seed]))
    return {
        "imports": IMPORTED - START,
        "wall": result.wall_seconds,
        "mlflow": result.mlflow_seconds,
        "background": result.mlflow_background_cpu_seconds,
        "accuracy": result.metrics["test_accuracy"],
        "errors": result.metrics["test_errors"],
    }


def in_fresh_process(recipe: str, seed: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", recipe, seed], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows medians (default: 0)")
    p.add_argument("--one", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(*args.one)))
        return
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores ({cpu})\n")
    print(
        "| recipe | seeds | test accuracy (median) | errors per seed | imports | wall (median) "
        "| MLflow waited (median) | MLflow background CPU (median) | waited / wall, per seed "
        "| (waited + background CPU) / wall, per seed |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.recipes.split(","):
        results = [in_fresh_process(name, seed) for seed in args.seeds.split(",")]
        acc = statistics.median(r["accuracy"] for r in results)
        errors = ", ".join(str(int(r["errors"])) for r in results)
        imports = statistics.median(r["imports"] for r in results)
        wall = statistics.median(r["wall"] for r in results)
        waited = statistics.median(r["mlflow"] for r in results)
        background = statistics.median(r["background"] for r in results)
        shares = ", ".join(f"{100 * r['mlflow'] / r['wall']:.1f}%" for r in results)
        bounds = ", ".join(f"{100 * (r['mlflow'] + r['background']) / r['wall']:.1f}%" for r in results)
        row = [
            name,
            args.seeds,
            f"{100 * acc:.2f}%",
            errors,
            f"{imports:.1f} s",
            f"{wall:.1f} s",
            f"{waited:.2f} s",
            f"{background:.2f} s",
            shares,
            bounds,
        ]
        print(f"| {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
