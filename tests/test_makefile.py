"""The Makefile: every phony target exists, says what it does in `make help`, and `make check` runs the CI's checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, mnist_folder
from trainer.config import parse_config

MAKEFILE = (REPO / "Makefile").read_text()


def _make(*args: str) -> str:
    """What `make ARGS` prints in the checkout, as from a shell (not from inside another make)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", *args], cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def _phony() -> list[str]:
    found = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.MULTILINE)
    assert found, "no .PHONY line"
    return found[1].split()


@pytest.mark.parametrize("target", _phony())
def test_each_phony_target_has_a_rule_and_a_help_line(target: str) -> None:
    assert re.search(rf"^{re.escape(target)}:", MAKEFILE, re.MULTILINE), f"{target}: listed in .PHONY, no rule"
    assert re.search(rf"^## {re.escape(target)}: \S", MAKEFILE, re.MULTILINE), f"{target}: no '## {target}:' line"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_check_runs_format_lint_types_and_the_whole_suite() -> None:
    planned = _make("-n", "check")
    for command in ("ruff format --check .", "ruff check .", "mypy trainer service bench tests", "pytest -q"):
        assert command in planned, planned
    assert "-m 'not slow'" not in planned


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_help_lists_every_phony_target() -> None:
    listed = _make("help")
    assert {line.split(":")[0] for line in listed.splitlines()} == set(_phony())


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_test_reads_mnist_where_make_run_does() -> None:
    """No folder outside the checkout: without MNIST_DATA_DIR the tests use (and download into) ./data,
    the trainer's own default, which `make run` uses from the checkout."""
    planned = _make("-n", "test")
    assert "MNIST_DATA_DIR" not in planned and "shared" not in planned, planned
    assert mnist_folder({}) == (REPO / parse_config([], environ={}).data_dir, True)
    assert parse_config([], environ={}).download
    assert mnist_folder({"MNIST_DATA_DIR": "/srv/mnist"}) == (Path("/srv/mnist"), False)
