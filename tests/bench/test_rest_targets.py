"""bench.rest's goals and the targets table, checked in an interpreter of their own: bench.rest and
bench.report import tritonclient, whose protos share their package with service.generated's, which
the rest of the suite imports, and one process cannot hold both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CASES = Path(__file__).with_name("rest_target_cases.py")


def test_rest_goals_hold_each_figure_against_the_right_mlserver_figure_and_show_their_ratios() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
