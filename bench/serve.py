"""Serving speed over real gRPC, measured with the unmodified `tritonclient.grpc` (Open Inference Protocol v2).

Run: `MNIST_DATA_DIR=../shared/data .venv/bin/python bench/serve.py [--recipe article-fixed] [--mlserver PATH]`

Trains one model into a temporary SQLite registry, starts `python -m service` on it as a separate
process, and measures, on loopback:
  - latency of single-image ModelInfer calls, one at a time (p50, p99);
  - throughput in FP32 images/s with 1024-image messages (raw_input_contents);
  - requests/s with 32 concurrent clients sending single images.
With `--mlserver PATH` (the `mlserver` executable of an environment with mlserver and mlserver-mlflow),
it serves the same registered version with MLServer's MLflow runtime and measures it the same way.
Client and server share this machine's cores, for both servers alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton  # our stubs define the same proto package: never import service.generated here

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402
from trainer.config import DEFAULT_MODEL_NAME as MODEL  # noqa: E402
from trainer.config import parse_config  # noqa: E402
from trainer.data import load_dataset  # noqa: E402


def train(store: Path, recipe: str) -> tuple[str, str]:
    """Register one version; returns (tracking URI, version)."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--quiet", "--recipe", recipe],
        cwd=store,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    version = out.split(f"{MODEL} version ")[1].split()[0]
    return uri, version


@contextmanager
def started(argv: list[str], env: dict[str, str], port: int, cwd: Path) -> Iterator[None]:
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.is_model_ready(MODEL):
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


def _request(images: np.ndarray) -> list[triton.InferInput]:
    inp = triton.InferInput("image", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    return [inp]


def _answered(result: triton.InferResult, n: int) -> None:
    outputs = result.get_response().outputs
    if not outputs or outputs[0].shape[0] != n:
        raise RuntimeError(f"expected an output of {n} rows, got {outputs}")


def measure(port: int, images: np.ndarray, seconds: float) -> dict[str, float]:
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    one = _request(images[:1])
    for _ in range(50):  # warm-up
        _answered(client.infer(MODEL, one), 1)
    latencies = []
    for i in range(2000):
        request = _request(images[i % len(images) : i % len(images) + 1])
        start = time.perf_counter()
        client.infer(MODEL, request)
        latencies.append(time.perf_counter() - start)
    batch = _request(np.ascontiguousarray(images[:1024]))
    _answered(client.infer(MODEL, batch), 1024)
    start, sent = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        client.infer(MODEL, batch)
        sent += 1024
    throughput = sent / (time.perf_counter() - start)

    counts = [0] * 32
    stop = threading.Event()

    def worker(k: int) -> None:
        own = triton.InferenceServerClient(f"127.0.0.1:{port}")
        request = _request(images[k : k + 1])
        while not stop.is_set():
            own.infer(MODEL, request)
            counts[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    time.sleep(1)  # ramp up
    before, start = sum(counts), time.perf_counter()
    time.sleep(seconds)
    rate = (sum(counts) - before) / (time.perf_counter() - start)
    stop.set()
    for t in threads:
        t.join()
    ms = sorted(1000 * x for x in latencies)
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(0.99 * len(ms))],
        "images_per_s": throughput,
        "req_per_s_32": rate,
    }


def test_images() -> np.ndarray:
    """The first 1024 test images, (1024, 784) float32, from the folder `python -m trainer` reads."""
    config = parse_config([])
    return load_dataset(config.data_dir, seed=0, download=config.download).test.floats()[:1024].numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="article-fixed", help="model to serve (default: article-fixed, one layer)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput phase (default: 5)")
    p.add_argument("--mlserver", help="path to an `mlserver` executable to compare against")
    args = p.parse_args()
    images = test_images()
    print(f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), model: {args.recipe}\n")
    print("| server | p50 single image | p99 single image | images/s (1024 per message) | req/s, 32 clients |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder)
        uri, version = train(store, args.recipe)
        port = free_port()
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "GRPC_PORT": str(port), "METRICS_PORT": "0"}
        rows = []
        with started([sys.executable, "-m", "service", "--host", "127.0.0.1"], env, port, REPO):
            rows.append(("mnist37 (`python -m service`)", measure(port, images, args.seconds)))
        if args.mlserver:
            rows.append(("MLServer + mlserver-mlflow", run_mlserver(args.mlserver, store, uri, version, images, args)))
        for name, r in rows:
            print(
                f"| {name} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
                f"{r['images_per_s']:,.0f} | {r['req_per_s_32']:,.0f} |",
                flush=True,
            )


def run_mlserver(
    binary: str, store: Path, uri: str, version: str, images: np.ndarray, args: argparse.Namespace
) -> dict[str, float]:
    """MLServer's MLflow runtime on the same registered version, downloaded to a folder it can load."""
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
    with started([binary, "start", str(folder)], env, port, folder):
        return measure(port, images, args.seconds)


if __name__ == "__main__":
    main()
