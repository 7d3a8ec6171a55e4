"""bench.rest's goals from given figures: which of MLServer's figures each of ours is held against,
and how the targets table shows a ratio. Run by test_rest_targets.py in an interpreter of their own
(it says why)."""

from __future__ import annotations

from bench.load import Point
from bench.report import _target_rows, target
from bench.rest import RestFigures, rest_targets

Server = dict[str, RestFigures | str]


def figures(p50_ms: float, per_s: float, images_per_s: float) -> RestFigures:
    return RestFigures(p50_ms, 2 * p50_ms, Point(32, per_s, 10.0, 20.0), Point(1024, images_per_s, 15.0, 30.0))


def test_binary_goals_are_held_against_mlservers_json_where_it_refuses_binary() -> None:
    ours: Server = {"binary": figures(1.0, 1600, 70000), "json": figures(2.0, 1000, 2000)}
    theirs: Server = {"binary": "refused: [422] unprocessable", "json": figures(2.5, 700, 3500)}
    checks = {check.name: check for check in rest_targets({"mnist37": ours, "mlserver": theirs})}
    assert len(checks) == 5
    p50 = checks["REST binary: one image p50 ≤ ½ of MLServer's"]
    assert p50.ratio == 0.4 and p50.result == "pass" and "(MLServer in json)" in p50.figures
    clients = checks["REST binary: 32 clients ≥ 2× MLServer's req/s"]
    assert round(clients.ratio or 0, 3) == 2.286 and clients.result == "pass"
    assert checks["REST binary: 1024-image messages ≥ 3× MLServer's images/s"].ratio == 20
    json_p50 = checks["REST json: one image p50 ≤ ½ of MLServer's"]
    assert json_p50.ratio == 0.8 and json_p50.result == "fail" and "MLServer in" not in json_p50.figures


def test_goals_without_mlserver_are_not_measured() -> None:
    ours: Server = {"binary": figures(1.0, 1600, 70000), "json": figures(2.0, 1000, 2000)}
    cases: list[tuple[Server, str]] = [({}, "no MLServer"), ({"binary": "refused: a", "json": "refused: b"}, "refused")]
    for theirs, why in cases:
        checks = rest_targets({"mnist37": ours, "mlserver": theirs})
        assert len(checks) == 5
        assert all(check.result == "not measured" and why in check.figures for check in checks)


def test_a_ratio_that_misses_its_limit_by_a_hair_does_not_read_as_the_limit() -> None:
    rows = _target_rows(
        [
            target("p50 at most", "0.972 ms / 0.881 ms", 0.972 / 0.881, 1.1),  # 1.1033…: fails
            target("p50 at most", "", 1.0996, 1.1),  # passes, and 3 figures say so
            target("rate at least", "", 2.9996, 3.0, at_most=False),  # fails; 3 figures would show 3
            target("rate at least", "", 20.24, 3.0, at_most=False),
            target("rate at least", "", 1234.5, 3.0, at_most=False),
            target("not measured", "no MLServer", None, 2.0),
        ]
    )
    assert [(ratio, limit, result) for _, _, ratio, limit, result in rows] == [
        ("1.103", "≤ 1.1", "fail"),
        ("1.1", "≤ 1.1", "pass"),
        ("2.9996", "≥ 3", "fail"),
        ("20.2", "≥ 3", "pass"),
        ("1234", "≥ 3", "pass"),
        ("—", "≤ 2", "not measured"),
    ]
