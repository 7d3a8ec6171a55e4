"""The benchmarks as a person reruns them: each script runs to its end and prints a Markdown table
whose figures parse and hang together, so a script that no longer runs fails here rather than when
the README's tables are next measured. What the figures are is the scripts' business, not a test's."""

from __future__ import annotations

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


def test_serve_bench_measures_the_service(mnist_dir: str, tmp_path: Path) -> None:
    done = bench("serve.py", tmp_path, "--recipe", "mlp", "--seconds", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = table(done.stdout)
    assert row["server"] == "mnist37 (`python -m service`)"
    p50, p99 = number(row["p50 single image"], " ms"), number(row["p99 single image"], " ms")
    assert 0 < p50 <= p99
    assert number(row["images/s (1024 per message)"], "") > 0
    assert number(row["req/s, 32 clients"], "") > 0
