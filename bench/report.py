"""What bench.serve prints: Markdown tables with every figure's ratio to the floor and MLServer, and the targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.load import Point
from bench.switch import SwitchResult

NAMES = {
    "echo": "floor: bare grpcio echo",
    "echo-aio": "floor: bare grpcio echo on grpc.aio",
    "fixed": "floor: grpcio, request parsed, fixed answer",
    "http-floor": "floor: aiohttp, request parsed, fixed answer",
    "mnist37": "mnist37 (`python -m service`)",
    "mlserver": "MLServer + mlserver-mlflow",
}
ALONE = "model alone, in-process"
ONE_LAYER = ("article", "article-fixed")  # recipes whose target is a multiple of the floor


@dataclass(frozen=True)
class Figures:
    """One server's figures: single images one at a time, then the two sweeps."""

    p50_ms: float
    p99_ms: float
    concurrency: list[Point]
    batches: list[Point]

    def clients(self, n: int) -> Point:
        return next(p for p in self.concurrency if p.x == n)

    def batch(self, size: int) -> Point:
        return next(p for p in self.batches if p.x == size)


@dataclass(frozen=True)
class Target:
    """One target of the issue: `ratio` against `limit` (≤ when at_most, else ≥); ratio None: not measured."""

    name: str
    figures: str
    ratio: float | None
    limit: float
    at_most: bool
    result: str


def _meets(ratio: float, limit: float, at_most: bool) -> bool:
    return ratio <= limit if at_most else ratio >= limit


def target(name: str, figures: str, ratio: float | None, limit: float, at_most: bool = True) -> Target:
    met = None if ratio is None else _meets(ratio, limit, at_most)
    result = {None: "not measured", True: "pass", False: "fail"}[met]
    return Target(name, figures, ratio, limit, at_most, result)


def _ms(ours: float, theirs: float) -> str:
    return f"{ours:.3f} ms / {theirs:.3f} ms"


def _per_s(ours: float, theirs: float) -> str:
    return f"{ours:,.0f} / {theirs:,.0f} req/s"


def _against_mlserver(
    name: str,
    ours: float,
    theirs: float | None,
    shown: Callable[[float, float], str],
    limit: float,
    at_most: bool = True,
) -> Target:
    """A target on our figure over MLServer's; not measured when MLServer was not run."""
    if theirs is None:
        return target(name, "no MLServer", None, limit, at_most)
    return target(name, shown(ours, theirs), ours / theirs, limit, at_most)


def ratio_text(r: float) -> str:
    return f"{r:.3g}" if r < 100 else f"{r:.0f}"


def _shown_ratio(t: Target) -> str:
    """A target's ratio to 3 figures, or to more where 3 would round it onto the limit or past it: a
    ratio of 1.103 against ≤ 1.1 shows as 1.103, not 1.1, so that its row reads as the fail it is."""
    assert t.ratio is not None
    text, digits = ratio_text(t.ratio), 3
    while _meets(float(text), t.limit, t.at_most) != (t.result == "pass") and digits < 17:
        digits += 1
        text = f"{t.ratio:.{digits}g}"
    return text


def targets(recipe: str, servers: dict[str, Figures], alone: dict[str, float], switch: SwitchResult) -> list[Target]:
    ours, floor, theirs = servers["mnist37"], servers["echo"], servers.get("mlserver")
    checks = []
    if recipe in ONE_LAYER:
        checks.append(
            target(
                "one image p50 ≤ 1.5× the echo floor's",
                f"{ours.p50_ms:.3f} ms / {floor.p50_ms:.3f} ms",
                ours.p50_ms / floor.p50_ms,
                1.5,
            )
        )
    else:
        bound = floor.p50_ms + 1.2 * alone["p50_ms"]
        checks.append(
            target(
                "one image p50 ≤ the echo floor's + 1.2× the model alone's",
                f"{ours.p50_ms:.3f} ms / ({floor.p50_ms:.3f} ms + 1.2 × {alone['p50_ms']:.3f} ms)",
                ours.p50_ms / bound,
                1.0,
            )
        )
    served, own = ours.batch(1024).per_s, alone["images_per_s"]
    ours32 = ours.clients(32)
    theirs32 = theirs.clients(32) if theirs else None
    checks += [
        _against_mlserver(
            "one image p50 ≤ ⅓ of MLServer's", ours.p50_ms, theirs.p50_ms if theirs else None, _ms, 1 / 3
        ),
        target(
            "1024-image messages ≥ 85% of the model alone's images/s",
            f"{served:,.0f} / {own:,.0f} images/s",
            served / own,
            0.85,
            at_most=False,
        ),
        _against_mlserver(
            "32 clients: req/s ≥ 3× MLServer's",
            ours32.per_s,
            theirs32.per_s if theirs32 else None,
            _per_s,
            3.0,
            at_most=False,
        ),
        _against_mlserver(
            "32 clients: p99 ≤ ½ of MLServer's", ours32.p99_ms, theirs32.p99_ms if theirs32 else None, _ms, 0.5
        ),
        target("alias switch under load: zero failed calls", f"{switch.failed} of {switch.calls}", switch.failed, 0),
        target(
            "alias switch under load: p99 ≤ 2× steady state's",
            f"{switch.switch_p99_ms:.3f} ms / {switch.steady_p99_ms:.3f} ms",
            switch.switch_p99_ms / switch.steady_p99_ms,
            2.0,
        ),
    ]
    return checks


def cell(value: float, floor: float, mlserver: float | None, unit: str = "") -> str:
    """`value` with its ratio to the floor's and MLServer's figure of the same kind."""
    text = f"{value:.3f}{unit}" if unit else f"{value:,.0f}"
    ratios = [f"{ratio_text(value / floor)}× floor"]
    if mlserver is not None:
        ratios.append(f"{ratio_text(value / mlserver)}× MLServer")
    return f"{text} ({', '.join(ratios)})"


def _table(header: list[str], rows: list[list[str]]) -> None:
    print(f"| {' | '.join(header)} |")
    print(f"|{' --- |' * len(header)}")
    for row in rows:
        print(f"| {' | '.join(row)} |")


# column → unit ("": a rate, printed whole)
SUMMARY = {
    "p50 single image": " ms",
    "p99 single image": " ms",
    "images/s (1024 per message)": "",
    "req/s, 32 clients": "",
    "p99, 32 clients": " ms",
}


def _summary_figures(f: Figures) -> list[float]:
    return [f.p50_ms, f.p99_ms, f.batch(1024).per_s, f.clients(32).per_s, f.clients(32).p99_ms]


def _cells(values: list[float], floor: list[float], mlserver: list[float] | None) -> list[str]:
    units = list(SUMMARY.values())
    return [cell(v, floor[i], mlserver[i] if mlserver else None, units[i]) for i, v in enumerate(values)]


def _sweep(servers: dict[str, Figures], points: str) -> list[list[str]]:
    """Rows of one sweep (`points`: "concurrency" or "batches"), point by point, one row per server."""
    sweeps = {key: getattr(f, points) for key, f in servers.items()}
    rows = []
    for i, floor in enumerate(sweeps["echo"]):
        theirs = sweeps["mlserver"][i] if "mlserver" in sweeps else None
        for key, sweep in sweeps.items():
            p = sweep[i]
            rows.append(
                [
                    str(p.x),
                    NAMES[key],
                    cell(p.per_s, floor.per_s, theirs.per_s if theirs else None),
                    cell(p.p50_ms, floor.p50_ms, theirs.p50_ms if theirs else None, " ms"),
                    cell(p.p99_ms, floor.p99_ms, theirs.p99_ms if theirs else None, " ms"),
                ]
            )
    return rows


def _switch(switch: SwitchResult) -> tuple[list[str], list[list[str]]]:
    header = ["calls", "failed", "steady p99", "calls during switches", "p99 during switches"]
    header.append("alias moved → new version answers")
    row = [
        f"{switch.calls:,}",
        str(switch.failed),
        f"{switch.steady_p99_ms:.3f} ms",
        f"{switch.switch_calls:,}",
        f"{switch.switch_p99_ms:.3f} ms",
        ", ".join(f"{s:.2f}" for s in switch.takeover_s) + " s",
    ]
    return header, [row]


def _target_rows(checks: list[Target]) -> list[list[str]]:
    return [
        [
            t.name,
            t.figures,
            "—" if t.ratio is None else _shown_ratio(t),
            f"{'≤' if t.at_most else '≥'} {ratio_text(t.limit)}",
            t.result,
        ]
        for t in checks
    ]


def print_report(servers: dict[str, Figures], alone: dict[str, float], switch: SwitchResult) -> None:
    """bench.serve's gRPC tables; ratios are to the echo floor's and MLServer's figure of the same kind."""
    floor = _summary_figures(servers["echo"])
    theirs = _summary_figures(servers["mlserver"]) if "mlserver" in servers else None
    rows = [[NAMES[key], *_cells(_summary_figures(f), floor, theirs)] for key, f in servers.items()]
    own = _cells([alone["p50_ms"], alone["p99_ms"], alone["images_per_s"]], floor, theirs)
    rows.append([ALONE, *own, "—", "—"])
    print("### Summary\n")
    _table(["server", *SUMMARY], rows)
    print("\n### Concurrency sweep: clients each sending single images\n")
    _table(["clients", "server", "req/s", "p50", "p99"], _sweep(servers, "concurrency"))
    print("\n### Batch sweep: one client, N images per message\n")
    _table(["images per message", "server", "images/s", "p50", "p99"], _sweep(servers, "batches"))
    print(f"\n### Alias switch under load: {switch.clients} clients, @champion moved {switch.switches} times\n")
    _table(*_switch(switch))


def print_targets(checks: list[Target]) -> None:
    print("\n### Targets (ratios from this run)\n")
    _table(["target", "figures", "ratio", "limit", "result"], _target_rows(checks))
