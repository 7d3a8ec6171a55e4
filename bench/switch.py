"""An alias switch under load: clients call the service while @champion moves between two versions."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from mlflow import MlflowClient

from bench.load import Call, Dial, clients, percentiles
from trainer.config import DEFAULT_ALIAS as ALIAS
from trainer.config import DEFAULT_MODEL_NAME as MODEL

SETTLE_SECONDS = 1.0  # kept in a switch's window after the new version first answers: the old one's release


@dataclass(frozen=True)
class SwitchResult:
    clients: int
    switches: int
    calls: int
    failed: int
    steady_p99_ms: float
    switch_p99_ms: float
    switch_calls: int
    takeover_s: list[float]  # per switch: alias moved → first answer from the new version


def _first_answer(calls: list[Call], version: str, after: float, timeout: float) -> float:
    """When a call sent after `after` was first answered by `version`."""
    deadline, seen = time.perf_counter() + timeout, 0
    while time.perf_counter() < deadline:
        now = len(calls)
        for call in calls[seen:now]:
            if call.version == version and call.start > after:
                return call.start + call.seconds
        seen = now
        time.sleep(0.01)
    raise RuntimeError(f"version {version} did not answer within {timeout} s of @{ALIAS} moving to it")


def alias_switch(
    dial: Dial, images: np.ndarray, uri: str, versions: tuple[str, str], n: int, switches: int, seconds: float
) -> SwitchResult:
    """`n` single-image clients: `seconds` of steady state on versions[0], then `switches` alias moves,
    alternating to versions[1] and back; p99 of calls sent in the switch windows against steady p99."""
    registry = MlflowClient(uri)
    windows: list[tuple[float, float]] = []
    takeover: list[float] = []
    with clients(dial, images[:1], n) as calls:
        time.sleep(seconds / 4)  # ramp up
        steady_start = time.perf_counter()
        time.sleep(seconds)
        steady_end = time.perf_counter()
        for k in range(switches):
            target = versions[(k + 1) % 2]
            moved = time.perf_counter()
            registry.set_registered_model_alias(MODEL, ALIAS, target)
            answered = _first_answer(calls, target, moved, timeout=120)
            takeover.append(answered - moved)
            time.sleep(SETTLE_SECONDS)
            windows.append((moved, time.perf_counter()))
    steady = [c.seconds for c in calls if steady_start <= c.start < steady_end and c.version is not None]
    during = [c for c in calls if any(a <= c.start < b for a, b in windows)]
    return SwitchResult(
        clients=n,
        switches=switches,
        calls=len(calls),
        failed=sum(c.version is None for c in calls),
        steady_p99_ms=percentiles(steady)[1],
        switch_p99_ms=percentiles([c.seconds for c in during if c.version is not None])[1],
        switch_calls=len(during),
        takeover_s=takeover,
    )
