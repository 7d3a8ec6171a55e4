"""Serving speed over real gRPC and REST, measured with the unmodified `tritonclient` (Open Inference Protocol v2).

Run: `python -m bench.serve [--recipe article-fixed] [--mlserver PATH] [--seconds 2] [--json PATH] [--png PATH]
[--shadow-only]`
from the checkout; MNIST comes from $MNIST_DATA_DIR, else ./data, as for `python -m trainer`.

Trains a model into a temporary SQLite registry (and a second version, seed 1, for the alias switch),
then starts each server as a separate process and measures it from this one, on loopback:
  - the floor: a bare grpcio echo server on the ModelInfer path, driven by a bare grpcio client with
    the bytes tritonclient sends, on grpcio's thread-pool server and on grpc.aio (which the service
    runs on); and a bare grpcio server that parses the ModelInferRequest and answers a fixed
    ModelInferResponse, driven by tritonclient (bench.floors; the service's message limits);
  - `python -m service` with its default settings;
  - with `--mlserver PATH` (the `mlserver` executable of an environment with mlserver and
    mlserver-mlflow), MLServer's MLflow runtime on the same registered version.
For each: single-image latency one call at a time (p50, p99 of --calls calls); a concurrency sweep
(1 to 64 clients sending single images: requests/s, p50, p99) and a batch sweep (1 to 1024 images
per message from one client: images/s, p50, p99), each point --seconds long after a quarter as much
to ramp up. The model alone is timed in-process on the same images (bench.model_alone), and an
alias switch under load moves @champion between the two versions on a second `python -m service`
polling every --poll-seconds. Over REST, the service and MLServer are measured again with the unmodified
`tritonclient.http`, tensors as binary data and as JSON (bench.rest), beside a REST floor (bench.http_floor:
aiohttp parsing each request's JSON and answering a fixed response): one image at a time, 32 clients,
and one client sending 1024-image messages. The shadow's cost (bench.shadow): the service with the
second version in shadow and without, one image at a time and from 32 clients. Every figure is
printed with its ratio to the echo floor and to MLServer, then the targets, each with its ratio
from this run and pass or fail.
Clients are threads of this process; client and servers share this machine's cores, for all alike,
and the echo floor's requests/s is the most this client can send.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as triton  # our stubs define the same proto package: never import service.generated here
from mlflow import MlflowClient

from bench.load import Dial, RawClient, TritonClient, batch_sweep, concurrency_sweep, sequential
from bench.plot import draw
from bench.report import NAMES, Figures, print_report, print_targets, targets
from bench.rest import FLOOR, RestFigures, measure_rest, print_rest, rest_targets
from bench.shadow import CHALLENGER, ShadowCost, measure_shadow, print_shadow, shadow_parameters, shadow_targets
from bench.switch import alias_switch
from trainer.config import DEFAULT_ALIAS as ALIAS
from trainer.config import DEFAULT_MODEL_NAME as MODEL
from trainer.config import parse_config
from trainer.data import load_dataset

REPO = Path(__file__).resolve().parent.parent  # the checkout: bench's own servers run from here as `-m bench.X`
CLIENTS = [1, 2, 4, 8, 16, 32, 64]
SIZES = [2**k for k in range(11)]  # 1 to 1024 images per message
SWITCH_CLIENTS = 8


def train(store: Path, recipe: str, seed: int, epochs: list[str]) -> tuple[str, str]:
    """Register one version; returns (tracking URI, version)."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--quiet", "--recipe", recipe, "--seed", str(seed), *epochs],
        cwd=store,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    version = out.split(f"{MODEL} version ")[1].split()[0]
    return uri, version


def triton_at(port: int) -> Dial:
    return lambda batch: TritonClient(port, batch)


def model_ready(port: int) -> Callable[[], bool]:
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    return lambda: bool(client.is_model_ready(MODEL))


def http_answers(port: int) -> Callable[[], bool]:
    """Whether an HTTP server on 127.0.0.1:port answers the model's metadata route."""

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{MODEL}", timeout=1) as reply:
            return bool(reply.status == 200)

    return ready


def port_open(port: int) -> Callable[[], bool]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def ready() -> bool:
        grpc.channel_ready_future(channel).result(timeout=1)  # raises until the port accepts
        return True

    return ready


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, for a server about to start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def started(argv: list[str], env: dict[str, str], ready: Callable[[], bool], cwd: Path) -> Iterator[None]:
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if ready():
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} did not become ready (exit code {proc.poll()})")
            time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(dial: Dial, images: np.ndarray, args: argparse.Namespace) -> Figures:
    one = dial(images[:1])
    p50, p99 = sequential(one, args.calls)
    one.close()
    return Figures(
        p50_ms=p50,
        p99_ms=p99,
        concurrency=concurrency_sweep(dial, images, CLIENTS, args.seconds),
        batches=batch_sweep(dial, images, SIZES, args.seconds),
    )


def floor(kind: str, images: np.ndarray, args: argparse.Namespace, aio: bool = False) -> Figures:
    """bench.floors' `kind` floor in its own process (on grpc.aio if `aio`), measured as the servers are."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.floors", kind, "--port", str(port), *(["--aio"] if aio else [])]
    dial = triton_at(port) if kind == "fixed" else lambda batch: RawClient(port, batch)
    with started(argv, dict(os.environ), port_open(port), REPO):
        return measure(dial, images, args)


def service(uri: str, extra: list[str], http_port: int = 0) -> tuple[list[str], dict[str, str], int]:
    """`python -m service` on a free gRPC port; HTTP on `http_port` (0: off)."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "GRPC_PORT": str(port), "METRICS_PORT": "0"}
    env["HTTP_PORT"] = str(http_port)
    return [sys.executable, "-m", "service", "--host", "127.0.0.1", *extra], env, port


def shadow_run(uri: str, challenger: str, images: np.ndarray, args: argparse.Namespace) -> ShadowCost:
    """The service without a shadow and with `challenger` in shadow, both running, measured in turn."""
    MlflowClient(uri).set_registered_model_alias(MODEL, CHALLENGER, challenger)

    @contextmanager
    def servers() -> Iterator[tuple[Dial, Dial, int]]:
        argv, env, port = service(uri, [])
        http = free_port()
        shadowed, shadowed_env, shadowed_port = service(uri, ["--shadow-alias", CHALLENGER], http_port=http)
        loaded = model_ready(shadowed_port)

        def shadow_ready() -> bool:
            return loaded() and shadow_parameters(http).get("shadow_version") == challenger

        with started(argv, env, model_ready(port), REPO), started(shadowed, shadowed_env, shadow_ready, REPO):
            yield triton_at(port), triton_at(shadowed_port), http

    return measure_shadow(servers, images, args.calls, args.seconds)


def model_alone(store: Path, uri: str, version: str, args: argparse.Namespace) -> dict[str, float]:
    argv = [sys.executable, "-m", "bench.model_alone", uri, version, str(store / "images.npy")]
    argv += ["--calls", str(args.calls), "--seconds", str(args.seconds)]
    out = subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(out)
    return figures


def test_images() -> np.ndarray:
    """The first 1024 test images, (1024, 784) float32, from the folder `python -m trainer` reads."""
    config = parse_config([])
    return load_dataset(config.data_dir, seed=0, download=config.download).test.floats()[:1024].numpy()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="article-fixed", help="model to serve (default: article-fixed, one layer)")
    p.add_argument("--epochs", help="train for this many epochs, to test the script quickly (default: the recipe's)")
    p.add_argument("--seconds", type=float, default=2.0, help="duration of each sweep point (default: 2)")
    p.add_argument("--calls", type=int, default=2000, help="single-image calls one at a time (default: 2000)")
    p.add_argument("--switches", type=int, default=4, help="alias moves under load (default: 4)")
    p.add_argument("--poll-seconds", default="1", help="the switched service's --poll-seconds (default: 1)")
    p.add_argument("--mlserver", help="path to an `mlserver` executable to compare against (default: none)")
    p.add_argument("--json", type=Path, help="write every figure to this JSON file (default: none)")
    p.add_argument(
        "--shadow-only", action="store_true", help="measure only the shadow's cost, with and without (default: all)"
    )
    p.add_argument(
        "--png", type=Path, default=REPO / "bench" / "serve.png", help="sweeps drawn (default: bench/serve.png)"
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    images = test_images()
    machine = f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    load_start = os.getloadavg()[0]
    print(f"{machine}, model: {args.recipe}, load average {load_start:.2f} at the start\n", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder)
        np.save(store / "images.npy", images)
        epochs = ["--epochs", args.epochs] if args.epochs else []
        uri, version = train(store, args.recipe, seed=0, epochs=epochs)
        _, other = train(store, args.recipe, seed=1, epochs=epochs)
        MlflowClient(uri).set_registered_model_alias(MODEL, ALIAS, version)  # seed 1 may have been promoted
        if args.shadow_only:
            shadow = shadow_run(uri, other, images, args)
            print_shadow(shadow)
            print_targets(shadow_targets(shadow))
            return
        alone = model_alone(store, uri, version, args)
        servers = {
            "echo": floor("echo", images, args),
            "echo-aio": floor("echo", images, args, aio=True),
            "fixed": floor("fixed", images, args),
        }
        rest: dict[str, dict[str, RestFigures | str]] = {}
        http = free_port()
        rest_floor = [sys.executable, "-m", "bench.http_floor", "--port", str(http)]
        with started(rest_floor, dict(os.environ), http_answers(http), REPO):
            rest[FLOOR] = measure_rest(http, images, args.calls, args.seconds)
        http = free_port()
        argv, env, port = service(uri, [], http_port=http)
        with started(argv, env, model_ready(port), REPO):
            servers["mnist37"] = measure(triton_at(port), images, args)
            rest["mnist37"] = measure_rest(http, images, args.calls, args.seconds)
        if args.mlserver:
            servers["mlserver"], rest["mlserver"] = run_mlserver(args.mlserver, store, uri, version, images, args)
        shadow = shadow_run(uri, other, images, args)
        argv, env, port = service(uri, ["--poll-seconds", args.poll_seconds])
        with started(argv, env, model_ready(port), REPO):
            switch = alias_switch(
                triton_at(port), images, uri, (version, other), SWITCH_CLIENTS, args.switches, args.seconds
            )
    checks = targets(args.recipe, servers, alone, switch) + rest_targets(rest) + shadow_targets(shadow)
    print_report(servers, alone, switch)
    print_rest(rest, NAMES)
    print_shadow(shadow)
    print_targets(checks)
    load_end = os.getloadavg()[0]
    print(f"\nload average {load_end:.2f} at the end")
    draw(servers, args.recipe, args.png)
    if args.json:
        results = {
            "recipe": args.recipe,
            "machine": machine,
            "seconds_per_point": args.seconds,
            "load_average": {"start": load_start, "end": load_end},
            "versions": {"served": version, "switched_to": other},
            "model_alone": alone,
            "servers": {key: asdict(figures) for key, figures in servers.items()},
            "rest": {
                key: {mode: f if isinstance(f, str) else asdict(f) for mode, f in modes.items()}
                for key, modes in rest.items()
            },
            "alias_switch": asdict(switch),
            "shadow": asdict(shadow),
            "targets": [asdict(check) for check in checks],
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def run_mlserver(
    binary: str, store: Path, uri: str, version: str, images: np.ndarray, args: argparse.Namespace
) -> tuple[Figures, dict[str, RestFigures | str]]:
    """MLServer's MLflow runtime on the same registered version, downloaded to a folder it can load:
    over gRPC, then over REST."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version}", dst_path=str(store / "mlserver-model"))
    folder = store / "mlserver"
    folder.mkdir()
    port, http = free_port(), free_port()
    (folder / "settings.json").write_text(
        json.dumps({"grpc_port": port, "http_port": http, "metrics_endpoint": None, "parallel_workers": 0})
    )
    (folder / "model-settings.json").write_text(
        json.dumps({"name": MODEL, "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": local}})
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    with started([binary, "start", str(folder)], env, model_ready(port), folder):
        return measure(triton_at(port), images, args), measure_rest(http, images, args.calls, args.seconds)


if __name__ == "__main__":
    main()
