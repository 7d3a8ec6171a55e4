"""The benchmarks as a person reruns them, `python -m bench.X`: each script runs to its end and prints
figures that parse and hang together, so a script that no longer runs fails here rather than when
the README's tables are next measured. What the figures are is the scripts' business, not a test's."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def bench(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench.<module>` in `cwd`, with the checkout on PYTHONPATH as running it from there would put it."""
    return subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=cwd,  # anything a script leaves behind lands in the test's folder, not the checkout
        env={**os.environ, "PYTHONPATH": str(REPO)},
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


def number(cell: str, unit: str) -> float:
    assert cell.endswith(unit), f"expected a figure in {unit!r}, got {cell!r}"
    return float(cell.removesuffix(unit).replace(",", ""))


def test_train_bench_prints_a_row_per_recipe(mnist_dir: str, tmp_path: Path) -> None:
    done = bench("train", tmp_path, "--recipes", "mlp", "--seeds", "0", "--pairs", "1")
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
    done = bench("train", tmp_path, "--pairs", "0")
    assert done.returncode == 2
    assert "--pairs must be at least 1, got 0" in done.stderr


def test_device_check_prints_a_line_per_seed(mnist_dir: str, tmp_path: Path) -> None:
    done = bench("device_check", tmp_path, "--device", "cpu", "--recipe", "mlp", "--seeds", "0,1", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.findall(
        r"^mlp seed (\d) on cpu: test accuracy ([\d.]+)% \((\d+) errors\), ([\d.]+)s$", done.stdout, re.M
    )
    assert [seed for seed, *_ in found] == ["0", "1"], done.stdout
    for _, accuracy, errors, _ in found:
        assert float(accuracy) == pytest.approx(100 * (1 - int(errors) / 2038), abs=0.005)
        assert float(accuracy) > 90  # trained, not a coin


def sections(stdout: str) -> dict[str, list[dict[str, str]]]:
    """Each `### heading`'s Markdown table, keyed by the heading up to its first colon."""
    parts = stdout.split("\n### ")[1:]
    return {part.split("\n")[0].split(":")[0].split(" (")[0]: table(part) for part in parts}


def figure(cell: str) -> tuple[float, dict[str, float]]:
    """'1.234 ms (1.5× floor, 0.4× MLServer)' → (1.234, {'floor': 1.5, 'MLServer': 0.4})."""
    value, _, ratios = cell.partition(" (")
    pairs = (ratio.split("× ") for ratio in ratios.rstrip(")").split(", ") if ratio)
    return float(value.removesuffix(" ms").replace(",", "")), {to: float(r) for r, to in pairs}


def figure_text(cell: str) -> str:
    """'1.234 ms (1.5× floor)' → '1.234 ms'."""
    return cell.partition(" (")[0]


def assert_ratios_to_floor(rows: list[dict[str, str]], floor: dict[str, str], columns: list[str]) -> None:
    for row in rows:
        for column in columns:
            value, ratios = figure(row[column])
            assert ratios["floor"] == pytest.approx(value / figure(floor[column])[0], rel=0.02), (row, column)


NAME = "mnist37 (`python -m service`)"


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
    done = bench("serve", tmp_path, *args, "--json", str(json_path), "--png", str(png))
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

    rest = found["REST"]  # tritonclient.http against the REST floor and the service's HTTP side, both encodings
    rest_floor = "floor: aiohttp, request parsed, fixed answer"
    by_server = {(row["server"], row["tensors"]): row for row in rest}
    assert list(by_server) == [(server, mode) for server in (rest_floor, NAME) for mode in ("binary", "json")]
    for row in rest:
        assert 0 < figure(row["p50 single image"])[0] <= figure(row["p99 single image"])[0]
        assert figure(row["req/s, 32 clients"])[0] > 0 and figure(row["images/s (1024 per message)"])[0] > 0
    for mode in ("binary", "json"):
        assert_ratios_to_floor(
            [by_server[NAME, mode]], by_server[rest_floor, mode], [c for c in rest[0] if c not in ("server", "tensors")]
        )

    single = {row["shadow"]: figure(row["p50 single image"])[0] for row in found["Shadow"]}
    assert set(single) == {"off", "on"} and min(single.values()) > 0
    turns = found["Shadow under load"]  # the service without a shadow and with one, in short alternating turns
    assert [row["shadow"] for row in turns] == ["off", "on", "on", "off"] * 3
    shadow_p50 = targets["shadow on: one image p50 ≤ 1.1× off"]
    assert float(shadow_p50["ratio"]) == pytest.approx(single["on"] / single["off"], rel=0.02)
    rates = {mode: [figure(r["req/s, 32 clients"])[0] for r in turns if r["shadow"] == mode] for mode in ("off", "on")}
    shadow_rps = targets["shadow on: 32 clients ≥ 0.9× off's req/s"]
    assert float(shadow_rps["ratio"]) == pytest.approx(
        statistics.median(rates["on"]) / statistics.median(rates["off"]), rel=0.02
    )
    compared = re.search(r"The shadow compared ([\d,]+) images", done.stdout)
    assert compared and int(compared.group(1).replace(",", "")) > 0, "the shadow compared nothing"

    results = json.loads(json_path.read_text())
    assert len(results["shadow"]["turns"]) == 12 and results["shadow"]["compared"] > 0
    assert set(results["rest"]["mnist37"]) == {"binary", "json"}
    assert f"{results['rest']['mnist37']['json']['p50_ms']:.3f} ms" == figure_text(
        by_server[NAME, "json"]["p50 single image"]
    )
    assert results["recipe"] == "mlp" and set(results["servers"]) == {"echo", "echo-aio", "fixed", "mnist37"}
    assert f"{results['servers']['mnist37']['p50_ms']:.3f} ms" == ours["p50 single image"].split(" (")[0]
    assert [t["result"] for t in results["targets"]] == [row["result"] for row in targets.values()]
    assert png.read_bytes().startswith(b"\x89PNG")


def test_balancer_bench_measures_envoy_beside_the_direct_path(mnist_dir: str, tmp_path: Path) -> None:
    json_path = tmp_path / "balancer.json"
    args = ["--recipe", "mlp", "--epochs", "1", "--rounds", "2", "--calls", "50", "--seconds", "0.3"]
    done = bench("balancer", tmp_path, *args, "--json", str(json_path))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["path"]: row for row in table(done.stdout)}
    assert set(rows) == {"direct", "through Envoy"}
    direct, envoy = rows["direct"], rows["through Envoy"]
    for row in rows.values():
        assert 0 < number(row["one image p50"], " ms") <= number(row["one image p99"], " ms")
        assert number(row["32 clients requests/s"], "") > 0
    results = json.loads(json_path.read_text())
    assert [len(results["rounds"][path]) for path in ("direct", "envoy")] == [2, 2]
    medians = {path: statistics.median(r["p50_ms"] for r in results["rounds"][path]) for path in ("direct", "envoy")}
    assert number(direct["one image p50"], " ms") == pytest.approx(medians["direct"], abs=0.006)
    assert number(envoy["one image p50"], " ms") == pytest.approx(medians["envoy"], abs=0.006)
    ratio = re.search(r"one image p50 ×([\d.]+) ", done.stdout)
    assert ratio, done.stdout
    assert float(ratio.group(1)) == pytest.approx(medians["envoy"] / medians["direct"], abs=0.006)


def test_train_bench_spread_prints_a_row_per_run_and_each_targets_spread(mnist_dir: str, tmp_path: Path) -> None:
    flags = ("--seeds", "0", "--threads", "1", "--kernels", "default", "--epochs", "1")
    done = bench("train", tmp_path, "--spread", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    runs, _, over = done.stdout.partition("\nOver the 1 runs:")
    [row] = table(runs)
    assert (row["seed"], row["threads"], row["kernel"]) == ("0", "1", "default")
    errors = int(row["errors"])
    figures = {line["figure"]: line for line in table(over)}
    assert {"errors", "test_accepted_accuracy", "robust_rejected_mouse", "made_rejected_share", "wall"} <= set(figures)
    assert figures["errors"]["min"] == figures["errors"]["max"] == str(errors)  # one run: its own figures
    assert figures["wall"]["median"] == row["`python -m trainer`"]
    assert {line["met"] for line in figures.values()} <= {"yes", "no"}


def test_variants_bench_prints_a_row_per_variant(mnist_dir: str, tmp_path: Path) -> None:
    done = bench("variants", tmp_path, "--variants", "default,previous", "--seeds", "0", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table(done.stdout)
    assert [row["variant"] for row in rows] == ["default", "previous"]
    for row in rows:
        assert 0 <= int(row["errors"]) <= 2038 and 0 <= int(row["drawn non-digits taken"]) <= 20
        for column in (
            "3s/7s rejected",
            "mouse-drawn",
            "other digits accepted",
            "made rejected",
            "elastic, 99% of made rejected",
        ):
            assert 0 <= number(row[column], "%") <= 100, column
        assert number(row["training"], " s") > 0
    listed = bench("variants", tmp_path, "--list")
    assert listed.returncode == 0 and listed.stdout.startswith("previous: ")
    unknown = bench("variants", tmp_path, "--variants", "resnet")
    assert unknown.returncode == 2 and "unknown variants ['resnet']" in unknown.stderr
