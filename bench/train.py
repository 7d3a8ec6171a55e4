"""What `python -m trainer` costs end to end, and what MLflow adds to it, measured from outside.

Run: `python -m bench.train [--recipes cnn,mlp] [--seeds 0,1,2] [--pairs 3]` from the checkout; MNIST comes
from $MNIST_DATA_DIR, else ./data, as for `python -m trainer`. With `--spread`, the default recipe
over seeds × torch thread counts × CPU kernels instead: what one recipe reaches on every machine.
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
from trainer.recipes import DEFAULT_RECIPE, RECIPES
from trainer.robustness import DISTORTIONS

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


def tracked_run(
    recipe: str, seed: str, env_extra: dict[str, str] | None = None, flags: tuple[str, ...] = ()
) -> dict[str, float]:
    """`python -m trainer` as a user runs it, into a fresh SQLite store whose tables already exist
    (as for every run after a store's first); the figures it printed and every metric it logged."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        client = MlflowClient(uri)
        client.create_experiment(DEFAULT_EXPERIMENT, artifact_location=f"{folder}/artifacts")
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_NAME"} | {"MLFLOW_TRACKING_URI": uri}
        argv = [sys.executable, "-m", "trainer", "--quiet", "--recipe", recipe, "--seed", seed, *flags]
        wall, cpu, out = timed(argv, Path(folder), env | (env_extra or {}))
        found = SUMMARY.search(out)
        if found is None:
            sys.exit(f"no summary line in:\n{out}")
        logged = client.get_run(out.split()[1]).data.metrics
    return logged | {"wall": wall, "cpu": cpu, "accuracy": float(found[1]) / 100, "errors": float(found[2])}


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


def kernels_here() -> list[str]:
    """Each ATEN_CPU_CAPABILITY torch runs on this CPU: `default` (its plain C++ kernels), then each of
    avx2 and avx512 up to the best it detects with no variable set, which is what a user's run gets.
    Asked for by the variable, torch takes a kernel on trust, even one the CPU lacks."""
    probe = [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"]
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    best = subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip().lower()
    ladder = ["default", "avx2", "avx512"]
    return ladder[: ladder.index(best) + 1] if best in ladder else ["default"]


# The default recipe's targets over every run of the spread: (metric, worst allowed, higher is better).
TARGETS: list[tuple[str, float, bool]] = [
    ("errors", 2, False),
    ("test_accepted_accuracy", 0.999, True),
    ("test_rejected_share", 0.01, False),
    *((f"robust_rejected_{name}", 0.02, False) for name in DISTORTIONS),
    ("test_others_accepted_share", 0.01, False),
    ("made_rejected_share", 0.99, True),
    ("wall", 30.0, False),
]


def _shown(metric: str, value: float) -> str:
    if metric == "wall":
        return f"{value:.1f} s"
    if metric == "errors":  # a median of an even number of runs may fall between two counts
        return f"{value:g}"
    return f"{100 * value:.2f}%"


def spread(recipe: str, seeds: list[str], threads: list[str], kernels: list[str], flags: tuple[str, ...]) -> None:
    """One tracked run per seed × torch thread count × kernel, a row each; then each target's spread."""
    runs: list[dict[str, float]] = []
    print(
        "| seed | threads | kernel | errors | right of accepted | 3s/7s rejected | worst distortion rejected "
        "| other digits accepted | made rejected | `python -m trainer` |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in seeds:
        for count in threads:
            for kernel in kernels:
                env = {"OMP_NUM_THREADS": count, "ATEN_CPU_CAPABILITY": kernel}
                run = tracked_run(recipe, seed, env, flags)
                runs.append(run)
                worst = max(DISTORTIONS, key=lambda name: run[f"robust_rejected_{name}"])
                cells = [seed, count, kernel, _shown("errors", run["errors"])]
                cells += [_shown(m, run[m]) for m in ("test_accepted_accuracy", "test_rejected_share")]
                cells += [f"{_shown('', run[f'robust_rejected_{worst}'])} ({worst})"]
                cells += [_shown(m, run[m]) for m in ("test_others_accepted_share", "made_rejected_share", "wall")]
                print(f"| {' | '.join(cells)} |", flush=True)
    print(f"\nOver the {len(runs)} runs:\n")
    print("| figure | min | median | max | target, every run | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for metric, limit, higher in TARGETS:
        values = sorted(run[metric] for run in runs)
        met = values[0] >= limit if higher else values[-1] <= limit
        if metric == "errors":  # and the median run at most 1
            met = met and statistics.median(values) <= 1
        bound = f"{'≥' if higher else '≤'} {_shown(metric, limit)}" + (", median ≤ 1" if metric == "errors" else "")
        row = [metric, *(_shown(metric, v) for v in (values[0], statistics.median(values), values[-1])), bound]
        print(f"| {' | '.join(row)} | {'yes' if met else 'no'} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; the table shows medians (default: 0)")
    p.add_argument("--pairs", type=int, default=3, help="tracked/untracked pairs per seed (default: 3)")
    p.add_argument(
        "--spread",
        action="store_true",
        help=f"run {DEFAULT_RECIPE} once per seed × --threads × --kernels and report the spread (default: off)",
    )
    p.add_argument("--threads", default="1,2", help="with --spread: torch thread counts (default: 1,2)")
    p.add_argument(
        "--kernels",
        help="with --spread: ATEN_CPU_CAPABILITY values (default: each of default, avx2, avx512 this CPU runs)",
    )
    p.add_argument("--epochs", help="with --spread: train this many epochs, to check the script quickly")
    p.add_argument("--untracked", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.spread:
        kernels = args.kernels.split(",") if args.kernels else kernels_here()
        seeds = args.seeds.split(",")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        cpu = platform.processor() or platform.machine()
        print(f"{os.cpu_count()} cores ({cpu}), load average at start {load}; {DEFAULT_RECIPE}, kernels {kernels}\n")
        flags = ("--epochs", args.epochs) if args.epochs else ()
        spread(DEFAULT_RECIPE, seeds, args.threads.split(","), kernels, flags)
        return
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
