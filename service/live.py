"""Live metrics per served version, champion and shadow alike: what it answers, how sure it is, and
how often it says "neither" beside how often it expects to; and how the shadow compares.

Counted per call, not per image through prometheus_client's lock, and turned into Prometheus families
only when scraped: a 1024-image call costs a few array operations, and a call of a few images a few
Python steps, since each numpy operation's own overhead is many times a few images' arithmetic."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from service.predictor import Predictions, ServedModel

CHAMPION, SHADOW = "champion", "shadow"
P_THREE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 10))
# p(neither) lies in [0, 1]; thresholds sit near 0.01 to 0.1, so the buckets are finest there.
OOD_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9)
ANSWERS = ("3", "7", "neither")
# How a shadow's answer to one image compares with the champion's.
OUTCOMES = ("same_digit", "both_neither", "other_digit", "only_champion_neither", "only_shadow_neither")
AGREEING = ("same_digit", "both_neither")
FEW = 8  # images a call may have and be counted without numpy


def outcomes(champion: Predictions, shadow: Predictions) -> np.ndarray:
    """How many images fall in each of OUTCOMES; a version that cannot abstain knows every image."""
    n = len(champion.digits)
    known_c = np.ones(n, bool) if champion.known is None else champion.known
    known_s = np.ones(n, bool) if shadow.known is None else shadow.known
    same = champion.digits == shadow.digits
    return np.array(
        [
            np.sum(known_c & known_s & same),
            np.sum(~known_c & ~known_s),
            np.sum(known_c & known_s & ~same),
            np.sum(~known_c & known_s),
            np.sum(known_c & ~known_s),
        ],
        dtype=np.int64,
    )


def _answers(predictions: Predictions) -> np.ndarray:
    """How many images were answered 3, 7 and neither."""
    digits, n = predictions.digits, len(predictions.digits)
    if n <= FEW:
        known = [True] * n if predictions.known is None else predictions.known.tolist()
        threes = sum(1 for digit, k in zip(digits.tolist(), known, strict=True) if k and digit == 3)
        recognised = sum(known)
    else:
        known_array = np.ones(n, bool) if predictions.known is None else predictions.known
        threes = int(np.sum(known_array & (digits == 3)))
        recognised = int(np.sum(known_array))
    return np.array([threes, recognised - threes, n - recognised], np.int64)


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: np.ndarray = field(init=False)  # per bucket, the last one past every bound
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.bounds) + 1, np.int64)

    def add(self, values: np.ndarray) -> None:
        if len(values) <= FEW:
            for value in values.tolist():
                # As searchsorted below: a value on a bound goes in its bucket, NaN past every bound.
                self.counts[len(self.bounds) if math.isnan(value) else bisect.bisect_left(self.bounds, value)] += 1
                self.total += value
            return
        # Prometheus's buckets are "less than or equal": side="left" puts a value on a bound in it.
        self.counts += np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        self.total += float(values.sum())

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = np.cumsum(self.counts)
        return [(str(b), float(c)) for b, c in zip(self.bounds, cumulative, strict=False)] + [
            ("+Inf", float(cumulative[-1]))
        ]


@dataclass
class _Version:
    """What one (role, version) has answered since this server started serving it."""

    expected_neither: float | None
    answers: np.ndarray = field(default_factory=lambda: np.zeros(len(ANSWERS), np.int64))
    p_three: _Histogram = field(default_factory=lambda: _Histogram(P_THREE_BUCKETS))
    ood_score: _Histogram = field(default_factory=lambda: _Histogram(OOD_BUCKETS))


@dataclass(frozen=True)
class Agreement:
    """The shadow beside the champion, over every image both have answered since either changed."""

    champion: str
    shadow: str
    compared: int
    agreeing: int
    by_outcome: dict[str, int]

    @property
    def share(self) -> float:
        return self.agreeing / self.compared if self.compared else 0.0


class LiveMetrics(Collector):
    """Observed on the event loop; read by scrapes on the metrics server's thread, hence the lock."""

    def __init__(self, registry: CollectorRegistry, replica: str = "") -> None:
        self._replica = replica
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], _Version] = {}
        self._compared: dict[tuple[str, str], np.ndarray] = {}  # (champion, shadow) → counts per outcome
        self._shadow_seconds = _Histogram((0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0))
        self._dropped: dict[str, int] = {"queue_full": 0, "failed": 0}
        registry.register(self)

    def serving(self, role: str, model: ServedModel) -> None:
        """A version starts serving in `role`; counts start from nothing, and old versions are kept
        (Prometheus reads a counter's whole life) until a few newer ones replace them."""
        with self._lock:
            self._versions.setdefault((role, model.version), _Version(model.expected_neither_share))
            kept = [key for key in self._versions if key[0] == role][-4:]
            for key in [key for key in self._versions if key[0] == role and key not in kept]:
                del self._versions[key]

    def answered(self, role: str, predictions: Predictions) -> None:
        counts = _answers(predictions)
        with self._lock:
            version = self._versions.setdefault((role, predictions.version), _Version(None))
            version.answers += counts
            version.p_three.add(predictions.p_three)
            if predictions.ood_score is not None:
                version.ood_score.add(predictions.ood_score)

    def compared(self, champion: Predictions, shadow: Predictions) -> None:
        counts = outcomes(champion, shadow)
        with self._lock:
            key = (champion.version, shadow.version)
            self._compared[key] = self._compared.get(key, np.zeros(len(OUTCOMES), np.int64)) + counts

    def shadow_forward(self, seconds: float) -> None:
        with self._lock:
            self._shadow_seconds.add(np.array([seconds]))

    def dropped(self, reason: str, images: int) -> None:
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + images

    def dropped_images(self) -> int:
        with self._lock:
            return sum(self._dropped.values())

    def agreement(self, champion: str, shadow: str) -> Agreement:
        with self._lock:
            counts = self._compared.get((champion, shadow), np.zeros(len(OUTCOMES), np.int64))
        by_outcome = {name: int(c) for name, c in zip(OUTCOMES, counts, strict=True)}
        agreeing = sum(by_outcome[name] for name in AGREEING)
        return Agreement(champion, shadow, int(counts.sum()), agreeing, by_outcome)

    def collect(self) -> Iterator[Metric]:
        replica = self._replica
        answers = CounterMetricFamily(
            "mnist37_answers",
            "Images answered, by role, version and answer (3, 7, neither)",
            labels=["role", "version", "answer", "replica"],
        )
        expected = GaugeMetricFamily(
            "mnist37_expected_neither_share",
            "Share of genuine test 3s and 7s the version turned away as neither when trained",
            labels=["role", "version", "replica"],
        )
        p_three = HistogramMetricFamily(
            "mnist37_p_three", "p(three) of each image answered", labels=["role", "version", "replica"]
        )
        ood = HistogramMetricFamily(
            "mnist37_ood_score", "p(neither) of each image answered", labels=["role", "version", "replica"]
        )
        comparisons = CounterMetricFamily(
            "mnist37_shadow_comparisons",
            "Images the shadow answered beside the champion, by how the answers compare",
            labels=["champion", "shadow", "outcome", "replica"],
        )
        dropped = CounterMetricFamily(
            "mnist37_shadow_dropped_images",
            "Images the shadow did not answer: its queue was full, or its forward failed",
            labels=["reason", "replica"],
        )
        seconds = HistogramMetricFamily(
            "mnist37_shadow_forward_seconds",
            "Time from a shadow forward's start to its answer, waiting behind calls' forwards included",
            labels=["replica"],
        )
        with self._lock:
            for (role, version), live in self._versions.items():
                for answer, count in zip(ANSWERS, live.answers, strict=True):
                    answers.add_metric([role, version, answer, replica], float(count))
                if live.expected_neither is not None:
                    expected.add_metric([role, version, replica], live.expected_neither)
                p_three.add_metric([role, version, replica], live.p_three.buckets(), live.p_three.total)
                if live.ood_score.counts.any():
                    ood.add_metric([role, version, replica], live.ood_score.buckets(), live.ood_score.total)
            for (champion, shadow), counts in self._compared.items():
                for outcome, count in zip(OUTCOMES, counts, strict=True):
                    comparisons.add_metric([champion, shadow, outcome, replica], float(count))
            for reason, count in self._dropped.items():
                dropped.add_metric([reason, replica], float(count))
            seconds.add_metric([replica], self._shadow_seconds.buckets(), self._shadow_seconds.total)
        yield from (answers, expected, p_three, ood, comparisons, dropped, seconds)
