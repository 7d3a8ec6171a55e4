"""bench.serve's REST side: the Open Inference Protocol over HTTP with the unmodified `tritonclient.http`,
tensors as binary data (the extension, tritonclient's default) and as JSON, against MLServer's REST."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import tritonclient.http as triton_http

from bench.load import Dial, Point, percentiles, sequential, under_load
from bench.report import Target, ratio_text, target
from trainer.config import DEFAULT_MODEL_NAME as MODEL

MODES = ("binary", "json")
FLOOR = "http-floor"  # bench.http_floor's key in the figures
CLIENTS = 32
BATCH = 1024


class HttpClient:
    """One `tritonclient.http` connection sending one prebuilt request; asks for every output the model's
    metadata lists, in the same encoding as the input. tritonclient.http runs on gevent, whose
    connections belong to the thread that made them: a client called from another thread first opens
    a connection of its own there."""

    def __init__(self, port: int, images: np.ndarray, binary: bool) -> None:
        self._url = f"127.0.0.1:{port}"
        self._connect()
        self._inputs = [triton_http.InferInput("image", list(images.shape), "FP32")]
        self._inputs[0].set_data_from_numpy(images, binary_data=binary)
        names = [output["name"] for output in self._client.get_model_metadata(MODEL).get("outputs", [])]
        self._outputs = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in names] or None
        result = self._client.infer(MODEL, self._inputs, outputs=self._outputs)
        # By the answer's own names: MLServer's metadata lists `output-0`, and its answers name `output-1`.
        answered = [output["name"] for output in result.get_response().get("outputs", [])]
        first = result.as_numpy(answered[0]) if answered else None
        if first is None or len(first) != len(images):
            raise RuntimeError(f"expected an output of {len(images)} rows, got {result.get_response()}")

    def _connect(self) -> None:
        self._client = triton_http.InferenceServerClient(self._url, network_timeout=120)
        self._thread = threading.get_ident()

    def call(self) -> str:
        if self._thread != threading.get_ident():
            self._client.close()
            self._connect()
        response = self._client.infer(MODEL, self._inputs, outputs=self._outputs).get_response()
        return str(response.get("model_version", ""))

    def close(self) -> None:
        self._client.close()


def http_at(port: int, binary: bool) -> Dial:
    return lambda batch: HttpClient(port, batch, binary)


@dataclass(frozen=True)
class RestFigures:
    """One server's REST figures in one encoding (where it refused the encoding, measure_rest gives why)."""

    p50_ms: float
    p99_ms: float
    clients: Point  # CLIENTS clients sending single images
    batch: Point  # one client sending BATCH images per message (per_s: images/s)


def measure_rest(port: int, images: np.ndarray, calls: int, seconds: float) -> dict[str, RestFigures | str]:
    """Each mode's figures, or why the server could not be measured in it (MLServer may refuse binary)."""
    measured: dict[str, RestFigures | str] = {}
    for mode in MODES:
        dial = http_at(port, binary=mode == "binary")
        try:
            one = dial(images[:1])
        except Exception as err:  # the server refused this encoding: a finding, reported as such
            measured[mode] = f"refused: {str(err).splitlines()[0][:120]}"
            continue
        try:
            p50, p99 = sequential(one, calls)
        finally:
            one.close()
        clients = under_load(dial, images[:1], CLIENTS, seconds)
        measured[mode] = RestFigures(p50, p99, clients, _batches(dial, images[:BATCH], seconds))
    return measured


def _batches(dial: Dial, images: np.ndarray, seconds: float, least: int = 3) -> Point:
    """One client sending messages of `images` back to back for `seconds` and at least `least` of them
    (a 1024-image JSON message may take longer than a short run's window): images/s and latency."""
    client = dial(np.ascontiguousarray(images))
    try:
        latencies: list[float] = []
        start = time.perf_counter()
        while len(latencies) < least or time.perf_counter() - start < seconds:
            sent = time.perf_counter()
            client.call()
            latencies.append(time.perf_counter() - sent)
    finally:
        client.close()
    p50, p99 = percentiles(latencies)
    return Point(len(images), len(images) * len(latencies) / sum(latencies), p50, p99)


def _compared(theirs: dict[str, RestFigures | str], mode: str) -> tuple[str, RestFigures] | str:
    """MLServer's figures to hold ours in `mode` against, and their mode: the same mode, or for binary
    its JSON where it refuses binary, since a tritonclient.http user can reach it only so. Else why not."""
    for their_mode in ("binary", "json") if mode == "binary" else (mode,):
        figures = theirs.get(their_mode)
        if isinstance(figures, RestFigures):
            return their_mode, figures
    if not theirs:
        return "no MLServer"
    refused = theirs.get(mode)
    return f"MLServer {refused}" if isinstance(refused, str) else "MLServer refused both"


def rest_targets(rest: dict[str, dict[str, RestFigures | str]]) -> list[Target]:
    """The REST goals as ratios to MLServer's REST: ours in JSON against MLServer's in JSON, and ours in
    binary (tritonclient.http's default) against MLServer's best (see `_compared`)."""
    ours, theirs = rest["mnist37"], rest.get("mlserver", {})
    checks = []
    for mode in MODES:
        mine = ours[mode]
        assert isinstance(mine, RestFigures), f"the service refused REST {mode}: {mine}"
        goals = [
            (f"REST {mode}: one image p50 ≤ ½ of MLServer's", 0.5, True),
            (f"REST {mode}: {CLIENTS} clients ≥ 2× MLServer's req/s", 2.0, False),
        ]
        if mode == "binary":
            goals.append((f"REST binary: {BATCH}-image messages ≥ 3× MLServer's images/s", 3.0, False))
        compared = _compared(theirs, mode)
        if isinstance(compared, str):
            checks += [target(name, compared, None, limit, at_most) for name, limit, at_most in goals]
            continue
        their_mode, other = compared
        said = "" if their_mode == mode else f" (MLServer in {their_mode})"
        figures = [
            (f"{mine.p50_ms:.3f} / {other.p50_ms:.3f} ms{said}", mine.p50_ms / other.p50_ms),
            (
                f"{mine.clients.per_s:,.0f} / {other.clients.per_s:,.0f} req/s{said}",
                mine.clients.per_s / other.clients.per_s,
            ),
            (
                f"{mine.batch.per_s:,.0f} / {other.batch.per_s:,.0f} images/s{said}",
                mine.batch.per_s / other.batch.per_s,
            ),
        ]
        for (name, limit, at_most), (shown, ratio) in zip(goals, figures, strict=False):
            checks.append(target(name, shown, ratio, limit, at_most))
    return checks


def _vs(value: float, floor: float | None, theirs: float | None, unit: str) -> str:
    """`value`, with its ratios to the REST floor's and MLServer's where there are those."""
    text = f"{value:.3f}{unit}" if unit else f"{value:,.0f}"
    ratios = [
        f"{ratio_text(value / other)}× {name}" for other, name in ((floor, "floor"), (theirs, "MLServer")) if other
    ]
    return f"{text} ({', '.join(ratios)})" if ratios else text


def _figures(f: RestFigures) -> list[float]:
    return [f.p50_ms, f.p99_ms, f.clients.per_s, f.clients.p99_ms, f.batch.per_s]


def print_rest(rest: dict[str, dict[str, RestFigures | str]], names: dict[str, str]) -> None:
    """The REST table: a row per server and encoding, with its ratios to the floor's and MLServer's in the
    same encoding."""
    print(f"\n### REST: tritonclient.http, binary tensors and JSON ({CLIENTS} clients; {BATCH} images per message)\n")
    header = ["server", "tensors", "p50 single image", "p99 single image", f"req/s, {CLIENTS} clients"]
    header += [f"p99, {CLIENTS} clients", f"images/s ({BATCH} per message)"]
    print(f"| {' | '.join(header)} |")
    print(f"|{' --- |' * len(header)}")
    units = [" ms", " ms", "", " ms", ""]
    for key, modes in rest.items():
        for mode, f in modes.items():
            if not isinstance(f, RestFigures):
                print(f"| {names[key]} | {mode} | {f} |{' — |' * (len(header) - 3)}")
                continue
            floor = rest.get(FLOOR, {}).get(mode) if key != FLOOR else None
            theirs = rest.get("mlserver", {}).get(mode) if key != "mlserver" else None
            none: list[float | None] = [None] * len(units)
            floors: list[float | None] = [*_figures(floor)] if isinstance(floor, RestFigures) else none
            mlserver: list[float | None] = [*_figures(theirs)] if isinstance(theirs, RestFigures) else none
            columns = zip(_figures(f), floors, mlserver, units, strict=True)
            cells = [_vs(value, at_floor, at_mlserver, unit) for value, at_floor, at_mlserver, unit in columns]
            print(f"| {names[key]} | {mode} | {' | '.join(cells)} |")
