"""Client side of bench.serve: ModelInfer calls over loopback, one client or many, every call recorded."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np
import tritonclient.grpc as triton  # our stubs define the same proto package: never import service.generated here
from tritonclient.grpc import service_pb2

from bench.floors import MAX_MESSAGE_BYTES, MODEL_INFER
from trainer.config import DEFAULT_MODEL_NAME as MODEL


class Client(Protocol):
    """One connection sending one prebuilt request; call() returns the version that answered."""

    def call(self) -> str: ...

    def close(self) -> None: ...


Dial = Callable[[np.ndarray], Client]  # a new client that sends these (N, 784) images


class TritonClient:
    """The unmodified `tritonclient.grpc`, as users of the Open Inference Protocol call a server."""

    def __init__(self, port: int, images: np.ndarray) -> None:
        self._client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        self._inputs = [triton.InferInput("image", list(images.shape), "FP32")]
        self._inputs[0].set_data_from_numpy(images)
        outputs = self._client.infer(MODEL, self._inputs).get_response().outputs
        if not outputs or outputs[0].shape[0] != len(images):
            raise RuntimeError(f"expected an output of {len(images)} rows, got {outputs}")

    def call(self) -> str:
        version: str = self._client.infer(MODEL, self._inputs).get_response().model_version
        return version

    def close(self) -> None:
        self._client.close()


def request_bytes(images: np.ndarray) -> bytes:
    """The ModelInferRequest tritonclient sends for `images`, serialized."""
    tensor = service_pb2.ModelInferRequest().InferInputTensor(name="image", datatype="FP32", shape=images.shape)
    request = service_pb2.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[images.tobytes()])
    return bytes(request.SerializeToString())


def channel_to(port: int) -> grpc.Channel:
    """A plain grpcio channel to 127.0.0.1:port that takes messages up to the service's limit."""
    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    options.append(("grpc.max_receive_message_length", MAX_MESSAGE_BYTES))
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=options)


class RawClient:
    """A bare grpcio channel sending the serialized request and taking the answer's bytes unparsed."""

    def __init__(self, port: int, images: np.ndarray) -> None:
        self._channel = channel_to(port)
        self._infer = self._channel.unary_unary(
            MODEL_INFER, request_serializer=None, response_deserializer=None
        )  # raw bytes
        self._request = request_bytes(images)
        if len(self._infer(self._request)) != len(self._request):
            raise RuntimeError("the echo floor did not answer with the request's bytes")

    def call(self) -> str:
        self._infer(self._request)
        return ""

    def close(self) -> None:
        self._channel.close()


@dataclass(frozen=True)
class Call:
    start: float  # time.perf_counter() when sent
    seconds: float
    version: str | None  # the version that answered; None: the call failed


@dataclass(frozen=True)
class Point:
    """One point of a sweep: calls per second (images/s for batches) and latency per call."""

    x: int
    per_s: float
    p50_ms: float
    p99_ms: float


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    ms = sorted(1000 * x for x in seconds)
    return statistics.median(ms), ms[int(0.99 * len(ms))]


def sequential(client: Client, calls: int) -> tuple[float, float]:
    """(p50, p99) in ms of `calls` calls one after another, after 50 to warm up."""
    for _ in range(50):
        client.call()
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        client.call()
        latencies.append(time.perf_counter() - start)
    return percentiles(latencies)


@contextmanager
def clients(dial: Dial, images: np.ndarray, n: int) -> Iterator[list[Call]]:
    """`n` threads, each with its own client, calling back to back until the block ends; yields every call."""
    calls: list[Call] = []  # appended from every thread; list.append is atomic
    stop = threading.Event()
    own = [dial(images) for _ in range(n)]

    def work(client: Client) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                version: str | None = client.call()
            except Exception:  # a failed call is a figure here, not a crash
                version = None
            calls.append(Call(start, time.perf_counter() - start, version))

    threads = [threading.Thread(target=work, args=(client,)) for client in own]
    for t in threads:
        t.start()
    try:
        yield calls
    finally:
        stop.set()
        for t in threads:
            t.join()
        for client in own:
            client.close()


def within(calls: list[Call], start: float, end: float) -> list[Call]:
    """The calls answered between `start` and `end`."""
    return [c for c in calls if start <= c.start + c.seconds <= end]


def under_load(dial: Dial, images: np.ndarray, n: int, seconds: float) -> Point:
    """`n` clients sending `images` for `seconds` after a ramp: calls/s and latency; fails on a failed call."""
    with clients(dial, images, n) as calls:
        time.sleep(seconds / 4)  # ramp up
        start = time.perf_counter()
        time.sleep(seconds)
        end = time.perf_counter()
    done = within(calls, start, end)
    failed = sum(c.version is None for c in calls)
    if failed or not done:
        raise RuntimeError(f"{failed} failed calls and {len(done)} answered with {n} clients")
    p50, p99 = percentiles([c.seconds for c in done])
    return Point(n, len(done) / (end - start), p50, p99)


def concurrency_sweep(dial: Dial, images: np.ndarray, counts: list[int], seconds: float) -> list[Point]:
    """Single-image calls from each count of clients: requests/s and latency."""
    return [under_load(dial, images[:1], n, seconds) for n in counts]


def batch_sweep(dial: Dial, images: np.ndarray, sizes: list[int], seconds: float) -> list[Point]:
    """One client sending messages of each size: images/s and latency per message."""
    points = []
    for size in sizes:
        point = under_load(dial, np.ascontiguousarray(images[:size]), 1, seconds)
        points.append(Point(size, point.per_s * size, point.p50_ms, point.p99_ms))
    return points
