"""Shared fixtures: the real MNIST copy and real MLflow SQLite stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    """MNIST_DATA_DIR, else the offline copy beside the repository."""
    path = os.environ.get("MNIST_DATA_DIR") or str(REPO.parent / "shared" / "data")
    if not (Path(path) / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found at {path}: set MNIST_DATA_DIR to a folder holding MNIST/raw")
    os.environ["MNIST_DATA_DIR"] = path
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking and registry store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri
