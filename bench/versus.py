"""`python -m service` at two or more revisions of this repository, side by side on one registry.

Run: `MNIST_DATA_DIR=../shared/data .venv/bin/python bench/versus.py REV [REV ...] [--recipe article-fixed]
      [--rounds 3] [--seconds 3] [--calls 2000]`

REV is anything `git archive` takes (a commit, a tag, HEAD~2) or `.` for the working tree as it is.
Each revision is exported to a folder of its own and served from there with this environment's
packages; the recipe is trained once, with the working tree's trainer, into a temporary SQLite
registry that every revision serves. Rounds alternate the order of the revisions, so that a machine
that slows down or speeds up during the run weighs on each alike. Each server gets, from unmodified
`tritonclient.grpc` clients in this process over loopback: single-image latency one call at a time
(p50, p99 of --calls), 32 clients sending single images (requests/s, p99), and one client sending
1024-image messages (images/s); then, from plain grpcio clients, 16 clients sending 1024-image
messages as typed contents (fp32_contents) rather than raw bytes (images/s), while a health Check
every 10 ms on a channel of its own is timed (p99). Each load is --seconds long after a quarter as
much to ramp up. Prints a Markdown table of every round, then each revision's medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import ContentsClient, batch_sweep, health_checks, percentiles, sequential, under_load  # noqa: E402
from bench.serve import model_ready, started, test_images, train, triton_at  # noqa: E402
from tests.conftest import free_port  # noqa: E402

COLUMNS = (
    "p50, one image",
    "p99, one image",
    "req/s, 32 clients",
    "p99, 32 clients",
    "images/s, 1024 per message",
    "images/s, 16 clients, 1024 as contents",
    "health p99 meanwhile",
)
CONTENTS_CLIENTS = 16


def export(revision: str, into: Path) -> Path:
    """The tree at `revision` (`.`: the working tree itself) as a folder to serve from."""
    if revision == ".":
        return REPO
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, check=True, capture_output=True).stdout
    folder = into / revision.replace("/", "_")
    folder.mkdir()
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def measure(tree: Path, uri: str, images: np.ndarray, args: argparse.Namespace) -> list[float]:
    port = free_port()
    # PYTHONPATH puts the exported `service` ahead of the working tree's, which is installed editable.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(tree), "METRICS_PORT": "0"}
    dial = triton_at(port)
    with started([sys.executable, "-m", "service", "--port", str(port)], env, model_ready(port), tree):
        one = dial(images[:1])
        p50, p99 = sequential(one, args.calls)
        one.close()
        crowd = under_load(dial, images[:1], 32, args.seconds)
        [large] = batch_sweep(dial, images, [1024], args.seconds)
        health: list[float] = []
        typed = under_load(
            lambda batch: ContentsClient(port, batch),
            images[:1024],
            CONTENTS_CLIENTS,
            args.seconds,
            meanwhile=health_checks(port, health),
        )
    _, health_p99 = percentiles(health)
    return [p50, p99, crowd.per_s, crowd.p99_ms, large.per_s, typed.per_s * 1024, health_p99]


def cells(figures: list[float]) -> list[str]:
    p50, p99, per_s, crowd_p99, images, typed, health_p99 = figures
    return [
        f"{p50:.3f} ms",
        f"{p99:.3f} ms",
        f"{per_s:,.0f}",
        f"{crowd_p99:.1f} ms",
        f"{images:,.0f}",
        f"{typed:,.0f}",
        f"{health_p99:.1f} ms",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("revisions", nargs="+", metavar="REV", help="git revisions to serve; `.` is the working tree")
    p.add_argument("--recipe", default="article-fixed", help="model to serve (default: article-fixed, one layer)")
    p.add_argument("--epochs", help="train for this many epochs, to test the script quickly (default: the recipe's)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every revision (default: 3)")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each load (default: 3)")
    p.add_argument("--calls", type=int, default=2000, help="single-image calls one at a time (default: 2000)")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds: expected 1 or more, got {args.rounds}")
    print(f"{os.cpu_count()} cores, model: {args.recipe}, load average {os.getloadavg()[0]:.2f} at the start\n")
    images = test_images()
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder)
        trees = {revision: export(revision, store) for revision in args.revisions}
        (store / "registry").mkdir()
        uri, _ = train(store / "registry", args.recipe, seed=0, epochs=["--epochs", args.epochs] if args.epochs else [])
        runs: dict[str, list[list[float]]] = {revision: [] for revision in args.revisions}
        print("| revision | round | " + " | ".join(COLUMNS) + " |")
        print("| --- " * (len(COLUMNS) + 2) + "|")
        for k in range(args.rounds):
            for revision in args.revisions if k % 2 == 0 else args.revisions[::-1]:
                figures = measure(trees[revision], uri, images, args)
                runs[revision].append(figures)
                print(f"| {revision} | {k + 1} | " + " | ".join(cells(figures)) + " |", flush=True)
    print(f"\nMedians over {args.rounds} rounds\n")
    print("| revision | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 1) + "|")
    for revision, rounds in runs.items():
        medians = [statistics.median(column) for column in zip(*rounds, strict=True)]
        print(f"| {revision} | " + " | ".join(cells(medians)) + " |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
