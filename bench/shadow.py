"""bench.serve's shadow cost: the champion measured with a challenger in shadow and without, in one run.

Two `python -m service` processes on the same registry, one with `--shadow-alias challenger`, both
running, measured with the unmodified `tritonclient.grpc`. This machine drifts from minute to minute,
so the two are interleaved finely and the drift weighs on both alike: single images one at a time
in blocks of 50 calls, off and on by turns, each mode's latencies pooled (p50); then 32 clients
sending single images in short turns, off on, on off, ... (requests/s, each mode's median turn). The
shadowed service's model metadata says how many images its shadow compared and dropped, so that "on"
is seen to have done the work."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from bench.load import Dial, percentiles, under_load
from bench.report import Target, target
from trainer.config import DEFAULT_MODEL_NAME as MODEL

CHALLENGER = "challenger"
CLIENTS = 32
ORDER = ("off", "on", "on", "off") * 3
BLOCK = 50  # single-image calls per block


@dataclass(frozen=True)
class Turn:
    mode: str  # off or on
    per_s: float  # requests/s from CLIENTS clients


@dataclass(frozen=True)
class ShadowCost:
    p50_ms: dict[str, float]  # off, on → p50 of the mode's single-image calls, pooled
    calls: int  # single-image calls per mode
    turns: list[Turn]
    compared: int  # images the shadow answered beside the champion, over the whole run
    dropped: int

    def per_s(self, mode: str) -> float:
        return statistics.median(t.per_s for t in self.turns if t.mode == mode)


def shadow_parameters(http_port: int) -> dict[str, str | float]:
    """The model metadata's parameters over REST: shadow_version, shadow_compared, shadow_dropped among them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/{MODEL}", timeout=5) as reply:
        parameters: dict[str, str | float] = json.loads(reply.read())["parameters"]
    return parameters


def measure_shadow(
    servers: Callable[[], AbstractContextManager[tuple[Dial, Dial, int]]],
    images: np.ndarray,
    calls: int,
    seconds: float,
) -> ShadowCost:
    """`servers()` starts both services: yields a dial for the one without the shadow, one for the one
    with it, and the latter's HTTP port."""
    turns = []
    with servers() as (off, on, http_port):
        dials = {"off": off, "on": on}
        clients = {mode: dial(images[:1]) for mode, dial in dials.items()}
        for client in clients.values():
            for _ in range(BLOCK):  # warm both up
                client.call()
        latencies: dict[str, list[float]] = {"off": [], "on": []}
        blocks = max(calls // BLOCK, 2)
        for block in range(blocks):
            for mode in ("off", "on") if block % 2 == 0 else ("on", "off"):
                for _ in range(BLOCK):
                    start = time.perf_counter()
                    clients[mode].call()
                    latencies[mode].append(time.perf_counter() - start)
        for client in clients.values():
            client.close()
        for mode in ORDER:
            turns.append(Turn(mode, under_load(dials[mode], images[:1], CLIENTS, seconds / 2).per_s))
        parameters = shadow_parameters(http_port)
    p50 = {mode: percentiles(values)[0] for mode, values in latencies.items()}
    return ShadowCost(p50, blocks * BLOCK, turns, int(parameters["shadow_compared"]), int(parameters["shadow_dropped"]))


def shadow_targets(cost: ShadowCost) -> list[Target]:
    """With the shadow on, one-image p50 and 32-client requests/s within 10% of off."""
    p50_off, p50_on = cost.p50_ms["off"], cost.p50_ms["on"]
    rps_off, rps_on = cost.per_s("off"), cost.per_s("on")
    return [
        target("shadow on: one image p50 ≤ 1.1× off", f"{p50_on:.3f} ms / {p50_off:.3f} ms", p50_on / p50_off, 1.1),
        target(
            f"shadow on: {CLIENTS} clients ≥ 0.9× off's req/s",
            f"{rps_on:,.0f} / {rps_off:,.0f} req/s",
            rps_on / rps_off,
            0.9,
            at_most=False,
        ),
    ]


def print_shadow(cost: ShadowCost) -> None:
    print("\n### Shadow\n")
    print(f"One image at a time, {cost.calls:,} calls each, in alternating blocks of {BLOCK}:\n")
    print("| shadow | p50 single image |")
    print("| --- | --- |")
    for mode in ("off", "on"):
        print(f"| {mode} | {cost.p50_ms[mode]:.3f} ms |")
    print(f"\n### Shadow under load\n\n| turn | shadow | req/s, {CLIENTS} clients |")
    print("| --- | --- | --- |")
    for i, turn in enumerate(cost.turns, 1):
        print(f"| {i} | {turn.mode} | {turn.per_s:,.0f} |")
    print(f"\nThe shadow compared {cost.compared:,} images with the champion's answers and dropped {cost.dropped:,}.")
