"""Shared fixtures: the real MNIST copy, real MLflow SQLite stores, and the default recipe trained once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest

from trainer.config import DEFAULT_DATA_DIR

REPO = Path(__file__).resolve().parent.parent


def mnist_folder(environ: Mapping[str, str]) -> tuple[Path, bool]:
    """Where the tests read MNIST, and whether they may download it there: MNIST_DATA_DIR as it is,
    else ./data in the checkout, the folder `make run` reads (and downloads into) too."""
    given = environ.get("MNIST_DATA_DIR")
    return (Path(given), False) if given else (REPO / DEFAULT_DATA_DIR, True)


@pytest.fixture(scope="session")
def mnist_dir() -> Iterator[str]:
    """The folder holding MNIST/raw, fetched first when it is the default one and empty; set as
    MNIST_DATA_DIR for the session's processes and restored when the session ends."""
    path, download = mnist_folder(os.environ)
    if download and not (path / "MNIST" / "raw").is_dir():
        from trainer.data import load_dataset

        load_dataset(path, 0, download=True)  # the trainer's own download, as `make run` does it
    if not (path / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found at {path}: set MNIST_DATA_DIR to a folder holding MNIST/raw")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNIST_DATA_DIR", str(path))
        yield str(path)


def new_store(folder: Path) -> str:
    """A fresh SQLite tracking and registry store whose artifacts stay in `folder` (MLflow's default
    artifact root is ./mlruns in the working directory, which would fill the checkout)."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    MlflowClient(uri).create_experiment("mnist37", artifact_location=str(folder / "artifacts"))
    return uri


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking and registry store for one test."""
    uri = new_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float, what: str = "condition", every: float = 0.05) -> None:
    """Poll `check` until it is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"{what} not met within {timeout}s")


class Workers:
    """`count` threads running `work()` while a `with` block lasts: started as it opens; as it closes,
    `stopping` is set and each is joined (within `join_seconds` when given)."""

    def __init__(self, count: int = 1, join_seconds: float | None = None) -> None:
        self.stopping = threading.Event()
        self._threads = [threading.Thread(target=self.work, daemon=True) for _ in range(count)]
        self._join_seconds = join_seconds

    def work(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(self._join_seconds)


@dataclass(frozen=True)
class DefaultRun:
    """`python -m trainer --quiet` as a new user runs it: a fresh folder, the embedded SQLite store."""

    folder: Path
    uri: str
    stdout: str
    stderr: str
    returncode: int


@pytest.fixture(scope="session")
def default_run(mnist_dir: str, tmp_path_factory: pytest.TempPathFactory) -> DefaultRun:
    """The default recipe trained once for the whole session (it is the slowest thing the tests train)."""
    folder = tmp_path_factory.mktemp("default-run")
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--quiet"], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    return DefaultRun(folder, f"sqlite:///{folder / 'mlflow.db'}", result.stdout, result.stderr, result.returncode)
