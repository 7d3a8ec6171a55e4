"""`python -m service.client watch`: each version's live behaviour from the services' Prometheus
endpoints, without a Prometheus: its images, digit mix and "neither" share beside the share it
expects, and how often the shadow agrees with the champion; printed as it goes and, on request,
drawn for the window watched."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

AGREEING = ("same_digit", "both_neither")
Key = tuple[str, str]  # (role, version)


@dataclass
class Reading:
    """One scrape of every endpoint, summed over replicas."""

    at: float
    answers: dict[Key, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    expected: dict[Key, float] = field(default_factory=dict)
    compared: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # outcome → images
    dropped: float = 0.0


def read(urls: Sequence[str], timeout: float = 5.0) -> Reading:
    reading = Reading(time.monotonic())
    for url in urls:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "mnist37_answers_total":
                    reading.answers[(labels["role"], labels["version"])][labels["answer"]] += sample.value
                elif sample.name == "mnist37_expected_neither_share":
                    reading.expected[(labels["role"], labels["version"])] = sample.value
                elif sample.name == "mnist37_shadow_comparisons_total":
                    reading.compared[labels["outcome"]] += sample.value
                elif sample.name == "mnist37_shadow_dropped_images_total":
                    reading.dropped += sample.value
    return reading


@dataclass(frozen=True)
class Window:
    """What changed between two readings."""

    seconds: float
    images: dict[Key, dict[str, float]]  # (role, version) → answer → images
    expected: dict[Key, float]
    compared: float
    agreeing: float
    dropped: float


def between(before: Reading, after: Reading) -> Window:
    images: dict[Key, dict[str, float]] = {}
    for key, answers in after.answers.items():
        old = before.answers.get(key, {})
        delta = {a: n - old.get(a, 0.0) for a, n in answers.items()}
        if sum(delta.values()) > 0:
            images[key] = delta
    compared = sum(after.compared.values()) - sum(before.compared.values())
    agreeing = sum(after.compared.get(o, 0.0) - before.compared.get(o, 0.0) for o in AGREEING)
    return Window(after.at - before.at, images, after.expected, compared, agreeing, after.dropped - before.dropped)


def describe(window: Window) -> list[str]:
    """A line per version that answered in the window, then the shadow's agreement."""
    lines = []
    for (role, version), answers in sorted(window.images.items()):
        total = sum(answers.values())
        mix = " ".join(f"{a} {100 * answers.get(a, 0.0) / total:.0f}%" for a in ("3", "7"))
        neither = 100 * answers.get("neither", 0.0) / total
        expected = window.expected.get((role, version))
        against = f" (expects {100 * expected:.2f}%)" if expected is not None else ""
        rate = total / window.seconds if window.seconds > 0 else 0.0
        lines.append(f"{role:>8} v{version}: {rate:7.1f} images/s · {mix} · neither {neither:.2f}%{against}")
    if window.compared or window.dropped:
        agreement = (
            f"{100 * window.agreeing / window.compared:.2f}% of {window.compared:.0f}" if window.compared else "-"
        )
        lines.append(f"  shadow agrees on {agreement} images · {window.dropped:.0f} dropped")
    return lines


def watch(urls: Sequence[str], every: float, seconds: float | None, png: Path | None) -> int:
    """Print each window as it ends; after `seconds` (or Ctrl-C), draw the windows to `png`."""
    windows: list[Window] = []
    previous = read(urls)
    start = previous.at
    try:
        while seconds is None or time.monotonic() - start < seconds:
            time.sleep(every)
            current = read(urls)
            window = between(previous, current)
            previous = current
            windows.append(window)
            print(time.strftime("%H:%M:%S"), *(describe(window) or ["no answers"]), sep="\n  ", flush=True)
    except KeyboardInterrupt:
        pass
    if png is not None:
        from service.client.watch_figure import draw

        draw(windows, png)
        print(f"wrote {png}")
    return 0
