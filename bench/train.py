"""Wall time, test accuracy and MLflow's share of wall time for each recipe, on this machine.

Run: `MNIST_DATA_DIR=../shared/data .venv/bin/python bench/train.py [--recipes cnn,mlp] [--seeds 0,1,2]`
Each run is a fresh process, as `python -m trainer` is, logging into its own SQLite store in a
temporary folder; the store's tables are created before the clock starts (as for every run after a
store's first, which spends another ~2 s creating them). "imports" is the time the process spends
importing torch, torchvision, MLflow and matplotlib; "wall" is everything after: data, training,
evaluation, figures, the pt2 model and registration. "MLflow waited" is the part of wall the run
spent inside MLflow: starting the run, waiting for the writer thread, logging the model,
registering, ending the run; MLflow's share is that over wall. The writer thread, which writes the
curves, params, datasets and figures while training goes on, is the only MLflow work outside it.
As a check on that account, every seed's run is repeated untracked in a fresh process right before
or after it (the order alternates): the same data, training, evaluation and figures, with nothing
written anywhere. 1 - untracked / wall is what tracking added to the run, all effects included, but
on this machine two identical runs differ by up to ~15%, so it is a noisy figure; `--pairs N` runs
N tracked/untracked pairs per seed and compares the medians (and every column shows medians).
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

from trainer.background import Job  # noqa: E402
from trainer.cli import pick_device, run, train_and_log  # noqa: E402
from trainer.config import DEFAULT_EXPERIMENT, TrainConfig, parse_config  # noqa: E402
from trainer.data import load_dataset  # noqa: E402
from trainer.recipes import RECIPES  # noqa: E402
from trainer.tracking import RunLog, Stopwatch  # noqa: E402

IMPORTED = time.perf_counter()


class Nowhere:
    """A run's records dropped: what the untracked baseline writes them to."""

    def put(self, metrics: dict[str, float], step: int) -> None:
        pass

    def submit(self, job: Job) -> None:
        pass

    def close(self) -> None:
        pass


def untracked(config: TrainConfig) -> tuple[float, dict[str, float]]:
    """What run() does, minus MLflow: the baseline that MLflow's share is measured against."""
    start = time.perf_counter()
    device = pick_device(config.device)
    data = load_dataset(config.data_dir, config.seed)
    log = RunLog("untracked", Stopwatch(), Nowhere())
    _, metrics = train_and_log(config, data, device, log)
    log.flush()
    return time.perf_counter() - start, metrics


def one_run(recipe: str, seed: str, tracked: bool) -> dict[str, float]:
    config = parse_config(["--quiet", "--recipe", recipe, "--seed", seed])
    if not tracked:
        wall, metrics = untracked(config)
        return {"wall": wall, "errors": metrics["test_errors"]}
    with tempfile.TemporaryDirectory() as store:
        mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
        mlflow.create_experiment(DEFAULT_EXPERIMENT, artifact_location=f"{store}/artifacts")
        result = run(config)
    return {
        "imports": IMPORTED - START,
        "wall": result.wall_seconds,
        "mlflow": result.mlflow_seconds,
        "accuracy": result.metrics["test_accuracy"],
        "errors": result.metrics["test_errors"],
    }


def in_fresh_process(recipe: str, seed: str, tracked: bool) -> dict[str, float]:
    mode = "tracked" if tracked else "untracked"
    out = subprocess.run(
        [sys.executable, __file__, "--one", recipe, seed, mode], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(recipe: str, seed: str, pairs: int, tracked_first: bool) -> dict[str, float]:
    """`pairs` tracked runs and untracked baselines, each pair back to back so that both meet the
    same machine, with the order alternating from pair to pair; medians of each mode's figures."""
    tracked: list[dict[str, float]] = []
    baselines: list[dict[str, float]] = []
    for k in range(pairs):
        first = tracked_first == (k % 2 == 0)
        for is_tracked in (first, not first):
            (tracked if is_tracked else baselines).append(in_fresh_process(recipe, seed, is_tracked))
    for r in baselines:  # the baseline must have done the same work
        if r["errors"] != tracked[0]["errors"]:
            sys.exit(f"{recipe} seed {seed}: {tracked[0]['errors']} errors tracked but {r['errors']} untracked")
    result = {key: statistics.median(r[key] for r in tracked) for key in tracked[0]}
    result["untracked"] = statistics.median(r["wall"] for r in baselines)
    result["share"] = 1 - result["untracked"] / result["wall"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows medians (default: 0)")
    p.add_argument(
        "--pairs", type=int, default=1, help="tracked/untracked pairs per seed; medians of each (default: 1)"
    )
    p.add_argument("--one", nargs=3, metavar=("RECIPE", "SEED", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.pairs < 1:
        p.error(f"--pairs must be at least 1, got {args.pairs}")
    if args.one:
        recipe, seed, mode = args.one
        print(json.dumps(one_run(recipe, seed, tracked=mode == "tracked")))
        return
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores ({cpu})\n")
    print(
        "| recipe | seeds | test accuracy (median) | errors per seed | imports | wall (median) "
        "| MLflow waited (median) | MLflow share: waited / wall, per seed "
        "| untracked wall (median) | 1 - untracked / wall, per seed |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.recipes.split(","):
        seeds = args.seeds.split(",")
        results = [measure(name, seed, args.pairs, i % 2 == 0) for i, seed in enumerate(seeds)]
        row = [
            name,
            args.seeds,
            f"{100 * statistics.median(r['accuracy'] for r in results):.2f}%",
            ", ".join(str(int(r["errors"])) for r in results),
            f"{statistics.median(r['imports'] for r in results):.1f} s",
            f"{statistics.median(r['wall'] for r in results):.1f} s",
            f"{statistics.median(r['mlflow'] for r in results):.2f} s",
            ", ".join(f"{100 * r['mlflow'] / r['wall']:.1f}%" for r in results),
            f"{statistics.median(r['untracked'] for r in results):.1f} s",
            ", ".join(f"{100 * r['share']:.1f}%" for r in results),
        ]
        print(f"| {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
