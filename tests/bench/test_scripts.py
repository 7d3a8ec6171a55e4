"""The benchmarks as a person reruns them: each script runs to its end and prints a Markdown table
whose figures parse and hang together, so a script that no longer runs fails here rather than when
the README's tables are next measured. What the figures are is the scripts' business, not a test's."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def bench(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=cwd,  # anything a script leaves behind lands in the test's folder, not the checkout
        capture_output=True,
        text=True,
        timeout=300,
    )


def table(stdout: str) -> list[dict[str, str]]:
    """The rows of the one Markdown table in `stdout`, keyed by the header's cells."""
    lines = [line.strip().strip("|") for line in stdout.splitlines() if line.startswith("|")]
    assert len(lines) >= 2, f"no Markdown table in:\n{stdout}"
    header, rule, *rows = ([cell.strip() for cell in line.split("|")] for line in lines)
    assert set("".join(rule)) == {"-"}, f"no Markdown table in:\n{stdout}"
    return [dict(zip(header, row, strict=True)) for row in rows]


def tables(stdout: str) -> list[list[dict[str, str]]]:
    """Each Markdown table in `stdout` (tables are separated by lines that are not rows)."""
    blocks = "\n".join(line if line.startswith("|") else "" for line in stdout.splitlines()).split("\n\n")
    return [table(block) for block in blocks if block.strip()]


def number(cell: str, unit: str) -> float:
    assert cell.endswith(unit), f"expected a figure in {unit!r}, got {cell!r}"
    return float(cell.removesuffix(unit).replace(",", ""))


def test_train_bench_prints_a_row_per_recipe(mnist_dir: str, tmp_path: Path) -> None:
    done = bench("train.py", tmp_path, "--recipes", "mlp", "--seeds", "0", "--pairs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = table(done.stdout)
    assert (row["recipe"], row["seeds"]) == ("mlp", "0")
    errors = int(row["errors per seed"])
    accuracy = number(row["test accuracy (median)"], "%")
    assert accuracy == pytest.approx(100 * (1 - errors / 2038), abs=0.005)
    assert accuracy > 95  # trained, not a coin
    tracked, untracked = number(row["`python -m trainer` (median)"], " s"), number(row["untracked (median)"], " s")
    assert tracked > 0 and untracked > 0
    mlflow = number(row["MLflow: tracked − untracked (median)"], " s")  # of either sign: the machine is noisy
    assert mlflow == pytest.approx(tracked - untracked, abs=0.15)  # each printed to 0.1 s
    assert number(row["MLflow's share (median)"], "%") == pytest.approx(100 * mlflow / tracked, abs=3)
    number(row["MLflow's CPU: tracked − untracked (median)"], " s")  # a figure, of either sign


def test_train_bench_refuses_zero_pairs(tmp_path: Path) -> None:
    done = bench("train.py", tmp_path, "--pairs", "0")
    assert done.returncode == 2
    assert "--pairs must be at least 1, got 0" in done.stderr


def sections(stdout: str) -> dict[str, list[dict[str, str]]]:
    """Each `### heading`'s Markdown table, keyed by the heading up to its first colon."""
    parts = stdout.split("\n### ")[1:]
    return {part.split("\n")[0].split(":")[0].split(" (")[0]: table(part) for part in parts}


def figure(cell: str) -> tuple[float, dict[str, float]]:
    """'1.234 ms (1.5× floor, 0.4× MLServer)' → (1.234, {'floor': 1.5, 'MLServer': 0.4})."""
    value, _, ratios = cell.partition(" (")
    pairs = (ratio.split("× ") for ratio in ratios.rstrip(")").split(", ") if ratio)
    return float(value.removesuffix(" ms").replace(",", "")), {to: float(r) for r, to in pairs}


def assert_ratios_to_floor(rows: list[dict[str, str]], floor: dict[str, str], columns: list[str]) -> None:
    for row in rows:
        for column in columns:
            value, ratios = figure(row[column])
            assert ratios["floor"] == pytest.approx(value / figure(floor[column])[0], rel=0.02), (row, column)


def test_serve_bench_measures_the_service(mnist_dir: str, tmp_path: Path) -> None:
    json_path, png = tmp_path / "serve.json", tmp_path / "serve.png"
    args = [
        "--recipe",
        "mlp",
        "--epochs",
        "1",
        "--seconds",
        "0.1",
        "--calls",
        "100",
        "--switches",
        "2",
        "--poll-seconds",
        "0.2",
    ]
    done = bench("serve.py", tmp_path, *args, "--json", str(json_path), "--png", str(png))
    assert done.returncode == 0, done.stderr[-3000:]
    found = sections(done.stdout)
    summary = {row["server"]: row for row in found["Summary"]}
    echo, ours, alone = (
        summary["floor: bare grpcio echo"],
        summary["mnist37 (`python -m service`)"],
        summary["model alone, in-process"],
    )
    assert {"floor: grpcio, request parsed, fixed answer", "floor: bare grpcio echo on grpc.aio"} <= set(summary)
    columns = [c for c in echo if c != "server"]
    assert_ratios_to_floor(list(summary.values())[:-1], echo, columns)
    assert_ratios_to_floor([alone], echo, columns[:3])
    p50, p99 = figure(ours["p50 single image"])[0], figure(ours["p99 single image"])[0]
    assert 0 < p50 <= p99

    sweeps = [
        ("Concurrency sweep", "clients", [1, 2, 4, 8, 16, 32, 64], "req/s", ("32", "req/s, 32 clients")),
        (
            "Batch sweep",
            "images per message",
            [2**k for k in range(11)],
            "images/s",
            ("1024", "images/s (1024 per message)"),
        ),
    ]
    for name, axis, xs, rate, (x, in_summary) in sweeps:
        rows = found[name]
        servers = 4  # the two echo floors, the fixed floor, the service
        assert [int(r[axis]) for r in rows] == [x for x in xs for _ in range(servers)]  # a row per server and point
        for at in (rows[i : i + servers] for i in range(0, len(rows), servers)):
            assert_ratios_to_floor(at, at[0], [rate, "p50", "p99"])
        for server in ("floor: bare grpcio echo", "mnist37 (`python -m service`)"):  # the summary's is the sweep's
            [point] = [r for r in rows if r[axis] == x and r["server"] == server]
            assert figure(summary[server][in_summary])[0] == figure(point[rate])[0]

    [switch] = found["Alias switch under load"]
    failed, calls = int(switch["failed"]), int(switch["calls"].replace(",", ""))
    assert 0 <= failed <= calls and int(switch["calls during switches"].replace(",", "")) > 0
    targets = {row["target"]: row for row in found["Targets"]}
    for check in targets.values():
        if check["result"] == "not measured":  # no MLServer in this test
            assert check["ratio"] == "—" and "MLServer" in check["target"]
            continue
        limit, ratio = float(check["limit"][2:]), float(check["ratio"])
        met = ratio <= limit if check["limit"].startswith("≤") else ratio >= limit
        assert check["result"] == ("pass" if met else "fail"), check
    first = targets["one image p50 ≤ the echo floor's + 1.2× the model alone's"]  # mlp has more than one layer
    bound = figure(echo["p50 single image"])[0] + 1.2 * figure(alone["p50 single image"])[0]
    assert float(first["ratio"]) == pytest.approx(p50 / bound, rel=0.02)
    throughput = targets["1024-image messages ≥ 85% of the model alone's images/s"]
    served, own = (figure(r["images/s (1024 per message)"])[0] for r in (ours, alone))
    assert float(throughput["ratio"]) == pytest.approx(served / own, rel=0.02)
    assert targets["alias switch under load: zero failed calls"]["ratio"] == str(failed)

    results = json.loads(json_path.read_text())
    assert results["recipe"] == "mlp" and set(results["servers"]) == {"echo", "echo-aio", "fixed", "mnist37"}
    assert f"{results['servers']['mnist37']['p50_ms']:.3f} ms" == ours["p50 single image"].split(" (")[0]
    assert [t["result"] for t in results["targets"]] == [row["result"] for row in targets.values()]
    assert png.read_bytes().startswith(b"\x89PNG")


def test_breakdown_accounts_for_the_whole_call(mnist_dir: str, tmp_path: Path) -> None:
    args = ("--recipe", "mlp", "--epochs", "1", "--seconds", "3", "--rate", "250", "--rounds", "1")
    done = bench("breakdown.py", tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    profile, rungs = tables(done.stdout)
    rows = {row["where"]: row for row in profile}
    call = number(rows.pop("the call (p50)")["ms per call"], "")
    assert call > 0
    stages = {where: number(row["ms per call"], "") for where, row in rows.items()}
    assert "the forward pass (torch, the exported program)" in stages  # samples reach the model
    assert sum(stages.values()) == pytest.approx(call, abs=0.005 * len(stages))  # each stage is rounded when printed
    # The ladder: every rung answered, from the echo floor up to the service itself; each step is
    # its rung's printed p50 less the previous rung's.
    assert rungs[0]["rung"].startswith("gRPC alone") and len(rungs) == 6
    assert rungs[-1]["rung"].endswith("python -m service")
    p50s = [number(row["p50"], " ms") for row in rungs]
    assert all(p > 0 for p in p50s)
    steps = [number(row["step up"], " ms") for row in rungs[1:]]
    assert steps == pytest.approx([b - a for a, b in itertools.pairwise(p50s)], abs=0.0021)


def test_versus_serves_each_revision_from_its_own_tree(mnist_dir: str, tmp_path: Path) -> None:
    args = ("HEAD", ".", "--recipe", "mlp", "--epochs", "1", "--rounds", "1", "--seconds", "0.2", "--calls", "50")
    done = bench("versus.py", tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    rounds, medians = tables(done.stdout)
    assert [(row["revision"], row["round"]) for row in rounds] == [("HEAD", "1"), (".", "1")]
    assert [row["revision"] for row in medians] == ["HEAD", "."]
    for row in medians:  # one round: the medians are that round's figures
        [measured] = [r for r in rounds if r["revision"] == row["revision"]]
        assert all(row[column] == measured[column] for column in row)
        p50, p99 = number(row["p50, one image"], " ms"), number(row["p99, one image"], " ms")
        assert 0 < p50 <= p99 and number(row["req/s, 32 clients"], "") > 0
        assert number(row["images/s, 16 clients, 1024 as contents"], "") > 0
        assert number(row["health p99 meanwhile"], " ms") > 0


def test_versus_refuses_zero_rounds(tmp_path: Path) -> None:
    done = bench("versus.py", tmp_path, "HEAD", "--rounds", "0")
    assert done.returncode == 2 and "--rounds: expected 1 or more, got 0" in done.stderr
