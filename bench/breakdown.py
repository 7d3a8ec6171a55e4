"""Where one image's time goes in `python -m service`: its Python stages (parsing, the guard, decoding,
the forward pass, encoding, metrics) sampled with py-spy, and the rest of the call (gRPC's C core,
loopback, the client).

Run: `MNIST_DATA_DIR=../shared/data .venv/bin/python bench/breakdown.py [--recipe article-fixed] [--seconds 20]`

Trains the recipe into a temporary SQLite registry, starts `python -m service` on it as its own
process with its default settings (metrics on), and sends single-image FP32 ModelInfer requests one
at a time over loopback from a plain grpcio client in this process: first for the p50 as a client
sees it, then for --seconds while py-spy samples the service from outside without pausing it (a
sampling profiler: the service runs near full speed, unlike under a tracing one). Each sample is
charged to the innermost frame that belongs to a stage, and samples of parked threads (the event loop
waiting for work, the forward thread, the registry poll) are left out; a stage's samples over the calls
sent are its milliseconds per call. What no Python frame shows (gRPC's C core, hand-overs between
threads, loopback, and the client) is the p50 less the server's Python.

Then a ladder over the wire: servers that each do one more stage of the service's work than the one
before (bench/floors.py's echo, fixed, decode, model and servicer on grpc.aio, as the service runs,
then `python -m service`), each its own process, measured by the same client one call at a time,
--rounds times in alternating order. A rung's step up is what that stage adds to a call's latency,
which is more than its own CPU time when it costs the call a hand-over between threads or cold caches.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.floors import MODEL_INFER  # noqa: E402
from service.generated.inference import grpc_predict_v2_pb2 as pb  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from trainer.config import DEFAULT_MODEL_NAME as MODEL  # noqa: E402

PY_SPY = Path(sys.executable).with_name("py-spy")
# (stage, file name or package folder, function or "" for any): the innermost matching frame decides.
RULES = [
    ("the forward pass (torch, the exported program)", "follower.py", "predict"),
    ("the forward pass (torch, the exported program)", "/torch/", ""),
    ("coalescing concurrent calls (batching.py)", "batching.py", ""),
    ("predict_digits: digits, thresholds (predictor.py)", "predictor.py", ""),
    ("decoding the image (pixels.py, request_images)", "pixels.py", ""),
    ("decoding the image (pixels.py, request_images)", "inference_servicer.py", "request_images"),
    ("metrics (Prometheus)", "metrics.py", ""),
    ("metrics (Prometheus)", "/prometheus_client/", ""),
    ("request parsing (protobuf)", "calls.py", "parse"),
    ("checks and response building (ModelInfer)", "inference_servicer.py", ""),
    ("checks and response building (ModelInfer)", "status.py", ""),
    ("the guard: admission, limits, timing (calls.py)", "calls.py", ""),
    ("gRPC's Python layer in the server", "/grpc/", ""),
    ("the event loop (asyncio)", "/asyncio/", ""),
]
OTHER = "anything else (the registry poll, other threads)"
WAITING = "waiting"  # a thread parked on a queue, lock or poll: not time the call spends working
# Innermost frames of threads that are parked, which py-spy cannot always tell from running ones here.
# A thread whose innermost Python frame is Thread.run runs native code: gRPC's aio poller, which waits
# in the C core; what it does there is the C core's, counted below with what no Python frame shows.
PARKED = {
    ("thread.py", "_worker"),
    ("_server.py", "_serve"),
    ("threading.py", "wait"),
    ("threading.py", "run"),
    ("selectors.py", "select"),
}
# The ladder's rungs: bench/floors.py's kinds, then the service itself.
RUNGS = [
    ("echo", "gRPC alone: the request's bytes echoed (floors.py echo --aio)"),
    ("fixed", "+ parsing the request, sending a prebuilt response (floors.py fixed --aio)"),
    ("decode", "+ decoding the image (request_images)"),
    ("model", "+ the forward pass and predict_digits, coalesced as served"),
    ("servicer", "+ checks and building the response: the service's ModelInfer"),
    ("service", "+ the call guard, metrics, health, registry polling: python -m service"),
]


def train(folder: Path, recipe: str, epochs: int | None) -> str:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    argv = [sys.executable, "-m", "trainer", "--quiet", "--recipe", recipe]
    argv += [] if epochs is None else ["--epochs", str(epochs)]
    subprocess.run(argv, cwd=folder, env=env, check=True, capture_output=True)
    return uri


def request(image: np.ndarray) -> bytes:
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=[1, 784])
    message = pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[image.tobytes()])
    return message.SerializeToString()


Call = Callable[[bytes], bytes]


def timed_calls(call: Call, requests: list[bytes], seconds: float) -> list[float]:
    """One call at a time, cycling through `requests`, for `seconds`; returns each call's seconds."""
    took: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        call(requests[len(took) % len(requests)])
        took.append(time.perf_counter() - start)
    return took


@contextmanager
def serving(argv: list[str], env: dict[str, str], port: int, probe: bytes) -> Iterator[tuple[Call, int]]:
    """Starts a server process and yields (a raw-bytes ModelInfer call to it, its pid) once a call
    with `probe` succeeds: for the service, once it serves a version."""
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        call = channel.unary_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)  # raw bytes
        deadline = time.monotonic() + 120
        while True:
            try:
                call(probe, timeout=2)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{' '.join(argv[1:3])} did not answer (exit code {server.poll()})") from None
                time.sleep(0.2)
        yield functools.partial(call, timeout=10), server.pid
    finally:
        channel.close()
        server.terminate()
        server.wait(timeout=30)


def service_argv(uri: str, port: int) -> tuple[list[str], dict[str, str]]:
    """`python -m service` with its defaults (metrics on) on `port`."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "GRPC_PORT": str(port), "METRICS_PORT": str(free_port())}
    return [sys.executable, "-m", "service"], env


def ladder(uri: str, requests: list[bytes], seconds: float, rounds: int) -> dict[str, float]:
    """Each rung's median over rounds of its p50 in ms; the order of the rungs alternates by round."""
    p50s: dict[str, list[float]] = {kind: [] for kind, _ in RUNGS}
    for k in range(rounds):
        for kind, _ in RUNGS if k % 2 == 0 else RUNGS[::-1]:
            port = free_port()
            if kind == "service":
                argv, env = service_argv(uri, port)
            else:
                argv = [sys.executable, str(REPO / "bench" / "floors.py"), kind, "--aio", "--port", str(port)]
                env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
            with serving(argv, env, port, requests[0]) as (call, _):
                timed_calls(call, requests, min(1.0, seconds))  # warm-up
                p50s[kind].append(1000 * statistics.median(timed_calls(call, requests, seconds)))
    return {kind: statistics.median(values) for kind, values in p50s.items()}


def _frame(frame: str) -> tuple[str, str]:
    """'Class.method (path:line)' → (path, method)."""
    function, _, where = frame.partition(" (")
    return where.rsplit(":", 1)[0], function.rsplit(".", 1)[-1]


def stage_of(stack: list[str]) -> str:
    """The stage of one sampled stack ("function (path:line)" frames, outermost first)."""
    path, function = _frame(stack[-1])
    if (Path(path).name, function) in PARKED:
        return WAITING
    for frame in reversed(stack):
        path, function = _frame(frame)
        for stage, place, name in RULES:
            if (place in path if place.startswith("/") else Path(path).name == place) and name in ("", function):
                return stage
    return OTHER


def stages(raw: str) -> Counter[str]:
    """py-spy's raw output ("frame;frame;... count" per line) → samples per stage."""
    samples: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            samples[stage_of(stack.split(";"))] += int(count)
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="article-fixed", help="model to serve (default: article-fixed, one layer)")
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each phase (default: 20)")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default: 250)")
    p.add_argument("--epochs", type=int, help="train the recipe for this many epochs (default: the recipe's)")
    p.add_argument("--stacks", type=int, default=0, help="also print the N most sampled stacks (default: 0)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the ladder; 0 skips it (default: 3)")
    args = p.parse_args()
    from trainer.data import load_dataset

    images = load_dataset(os.environ.get("MNIST_DATA_DIR", "data"), seed=0).test.floats()[:256].numpy()
    requests = [request(image) for image in images]
    with tempfile.TemporaryDirectory() as folder:
        uri = train(Path(folder), args.recipe, args.epochs)
        port = free_port()
        argv, env = service_argv(uri, port)
        with serving(argv, env, port, requests[0]) as (call, pid):
            timed_calls(call, requests, 1.0)  # warm-up
            plain = timed_calls(call, requests, args.seconds)
            out = Path(folder) / "samples.txt"
            spy_argv = [
                str(PY_SPY),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--full-filenames",
                "--nonblocking",
            ]
            spy = subprocess.Popen(
                [*spy_argv, "--rate", str(args.rate), "--duration", str(round(args.seconds)), "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # py-spy attaches
            sampled = timed_calls(call, requests, args.seconds - 1)
            spy.wait(timeout=60)
            raw = out.read_text()
            samples = stages(raw)
        rungs = ladder(uri, requests, args.seconds / 4, args.rounds) if args.rounds else {}

    p50 = statistics.median(plain)
    calls = len(sampled) * round(args.seconds) / (args.seconds - 1)  # calls while py-spy sampled, about
    per_call = {stage: 1000 * n / args.rate / calls for stage, n in samples.items() if stage != WAITING}
    python = sum(per_call.values())
    print(f"{os.cpu_count()} cores, model: {args.recipe}, single-image FP32 ModelInfer, one call at a time, ", end="")
    print(f"load average {os.getloadavg()[0]:.2f}")
    sampled_p50 = 1000 * statistics.median(sampled)
    print(f"p50 {1000 * p50:.3f} ms over {len(plain)} calls; while sampled, p50 {sampled_p50:.3f} ms")
    print()
    print("| where | ms per call | share of the p50 |")
    print("| --- | --- | --- |")
    order = [stage for stage, _, _ in RULES] + [OTHER]
    for stage in dict.fromkeys(order):
        if stage in per_call:
            print(f"| {stage} | {per_call[stage]:.3f} | {100 * per_call[stage] / (1000 * p50):.0f}% |")
    rest = 1000 * p50 - python
    outside = "not in the server's Python: gRPC's C core, loopback, the client"
    print(f"| {outside} | {rest:.3f} | {100 * rest / (1000 * p50):.0f}% |")
    print(f"| the call (p50) | {1000 * p50:.3f} | 100% |")
    if rungs:
        print(f"\nThe ladder: each rung one more stage of the service's work, p50 over {args.rounds} rounds\n")
        print("| rung | p50 | step up |")
        print("| --- | --- | --- |")
        below = 0.0
        for kind, what in RUNGS:
            step = f"{rungs[kind] - below:+.3f} ms" if below else ""
            print(f"| {what} | {rungs[kind]:.3f} ms | {step} |")
            below = rungs[kind]
    if args.stacks:
        print(f"\nThe {args.stacks} most sampled stacks, innermost frame last:")
        lines = sorted(raw.splitlines(), key=lambda line: -int(line.rpartition(" ")[2]))
        for line in lines[: args.stacks]:
            stack, _, count = line.rpartition(" ")
            print(
                f"{count:>6}  "
                + " ; ".join(
                    Path(f.split(" (")[1].rsplit(":", 1)[0]).name + ":" + f.split(" (")[0]
                    for f in stack.split(";")[-6:]
                )
            )


if __name__ == "__main__":
    main()
