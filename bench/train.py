"""What `python -m trainer` costs end to end, and what MLflow adds to it, measured from outside.

Run: `python -m bench.train [--recipes cnn,mlp] [--seeds 0,1,2] [--pairs 3]` from the checkout; MNIST comes
from $MNIST_DATA_DIR, else ./data, as for `python -m trainer`.
See bench/README.md for what each column means and the figures measured so far.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.config import DEFAULT_EXPERIMENT
from trainer.recipes import RECIPES

# Where `bench` imports from, for the untracked run, which starts as `-m bench.train` in a folder of its own.
REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"test accuracy ([\d.]+)% \((\d+) errors\)")


def untracked(recipe_name: str, seed: int) -> int:
    """What `python -m trainer` does with a recipe and seed, minus MLflow: load, train, evaluate,
    measure robustness and draw the figures, writing nothing. Returns the test errors."""
    import io

    from matplotlib import pyplot as plt

    from trainer import figures
    from trainer.cli import final_metrics, pick_device  # imports MLflow too, as the tracked run does
    from trainer.config import parse_config
    from trainer.data import load_dataset
    from trainer.loop import EpochStats, train

    config = parse_config(["--quiet", "--recipe", recipe_name, "--seed", str(seed)])
    recipe = config.recipe
    device = pick_device(config.device)
    data = load_dataset(config.data_dir, config.seed, download=config.download)
    history: list[EpochStats] = []
    net = train(recipe, data, device, config.seed, history.append)
    test, report, metrics = final_metrics(net, data, recipe, device)
    for fig in figures.for_run(recipe.name, history, net, data.test, test, report).values():
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)
    return int(metrics["test_errors"])


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Seconds from starting the process to its exit, the CPU seconds it used (user + system, all
    threads), and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def tracked_run(recipe: str, seed: str) -> dict[str, float]:
    """`python -m trainer` as a user runs it, into a fresh SQLite store whose tables already exist
    (as for every run after a store's first)."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        MlflowClient(uri).create_experiment(DEFAULT_EXPERIMENT, artifact_location=f"{folder}/artifacts")
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_NAME"} | {"MLFLOW_TRACKING_URI": uri}
        argv = [sys.executable, "-m", "trainer", "--quiet", "--recipe", recipe, "--seed", seed]
        wall, cpu, out = timed(argv, Path(folder), env)
    found = SUMMARY.search(out)
    if found is None:
        sys.exit(f"no summary line in:\n{out}")
    return {"wall": wall, "cpu": cpu, "accuracy": float(found[1]) / 100, "errors": float(found[2])}


def untracked_run(recipe: str, seed: str) -> dict[str, float]:
    argv = [sys.executable, "-m", "bench.train", "--untracked", recipe, seed]
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        wall, cpu, out = timed(argv, Path(folder), env)
    return {"wall": wall, "cpu": cpu, "errors": float(json.loads(out.strip().splitlines()[-1])["errors"])}


def measure(recipe: str, seed: str, pairs: int, tracked_first: bool) -> dict[str, float]:
    """`pairs` tracked runs and untracked baselines, each pair back to back so that both meet the
    same machine, the order alternating from pair to pair; medians of each."""
    tracked: list[dict[str, float]] = []
    baselines: list[dict[str, float]] = []
    for k in range(pairs):
        first = tracked_first == (k % 2 == 0)
        for is_tracked in (first, not first):
            if is_tracked:
                tracked.append(tracked_run(recipe, seed))
            else:
                baselines.append(untracked_run(recipe, seed))
    for r in baselines:  # the baseline must have done the same work
        if r["errors"] != tracked[0]["errors"]:
            sys.exit(f"{recipe} seed {seed}: {tracked[0]['errors']} errors tracked but {r['errors']} untracked")
    medians = {key: statistics.median(r[key] for r in tracked) for key in ("wall", "cpu")}
    baseline = {key: statistics.median(r[key] for r in baselines) for key in ("wall", "cpu")}
    return {
        **tracked[0],
        **medians,
        "untracked": baseline["wall"],
        "mlflow": medians["wall"] - baseline["wall"],
        "mlflow_cpu": medians["cpu"] - baseline["cpu"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows medians (default: 0)")
    p.add_argument("--pairs", type=int, default=3, help="tracked/untracked pairs per seed (default: 3)")
    p.add_argument("--untracked", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.untracked:
        recipe, seed = args.untracked
        print(json.dumps({"errors": untracked(recipe, int(seed))}))
        return
    if args.pairs < 1:
        p.error(f"--pairs must be at least 1, got {args.pairs}")
    cpu = platform.processor() or platform.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores ({cpu}), load average at start {load}; {args.pairs} pairs per seed\n")
    print(
        "| recipe | seeds | test accuracy (median) | errors per seed | `python -m trainer` (median) "
        "| untracked (median) | MLflow: tracked − untracked (median) | MLflow's share (median) "
        "| MLflow's CPU: tracked − untracked (median) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.recipes.split(","):
        seeds = args.seeds.split(",")
        results = [measure(name, seed, args.pairs, i % 2 == 0) for i, seed in enumerate(seeds)]
        row = [
            name,
            args.seeds,
            f"{100 * statistics.median(r['accuracy'] for r in results):.2f}%",
            ", ".join(str(int(r["errors"])) for r in results),
            f"{statistics.median(r['wall'] for r in results):.1f} s",
            f"{statistics.median(r['untracked'] for r in results):.1f} s",
            f"{statistics.median(r['mlflow'] for r in results):.1f} s",
            f"{100 * statistics.median(r['mlflow'] / r['wall'] for r in results):.0f}%",
            f"{statistics.median(r['mlflow_cpu'] for r in results):.1f} s",
        ]
        print(f"| {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
