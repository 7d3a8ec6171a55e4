"""`python -m trainer` as a user runs it, and the run it makes: what reaches MLflow and the registry,
errors, exit codes, the summary line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

import trainer.cli
from tests.conftest import REPO, DefaultRun
from trainer.cli import run
from trainer.config import TrainConfig, parse_config
from trainer.data import load_dataset


def _trainer(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--recipe", "resnet"], "invalid choice: 'resnet'"),
        (["--epochs", "0"], "expected a positive int, got 0"),
        (["--lr", "-0.1"], "expected a positive float, got -0.1"),
        (["--lr", "fast"], "expected a positive float, got 'fast'"),
    ],
)
def test_bad_flags_exit_2_with_one_error_line(args: list[str], needle: str, tmp_path: Path) -> None:
    result = _trainer(*args, cwd=tmp_path)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and needle in error_lines[0]


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    result = _trainer("--data-dir", str(tmp_path / "nowhere"), "--quiet", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "--data-dir" in result.stderr and "MNIST_DATA_DIR" in result.stderr


@pytest.mark.slow
def test_default_recipe_trains_registers_and_prints_a_summary(default_run: DefaultRun) -> None:
    """The default (CNN) recipe end to end in a fresh directory: the embedded SQLite default store."""
    assert default_run.returncode == 0, default_run.stderr[-2000:]
    summary = default_run.stdout.strip().splitlines()[-1]
    assert summary.startswith("run ") and "· cnn ·" in summary
    assert "mnist-3v7 version 1 · @champion moved: no version held @champion" in summary
    errors = int(summary.split("% (")[1].split(" errors")[0])
    # The same seed lands on a different model under another CPU's kernels or thread count. The guard
    # sits above the most errors any run of bench.train --spread made, with AVX-512 and without
    # (bench/README.md); it catches a recipe that stops learning, not one unlucky kernel.
    assert errors <= 4, summary
    assert "% of 3s/7s rejected" in summary and "% of other digits accepted" in summary
    assert (default_run.folder / "mlflow.db").exists()


def _trainer_on_a_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run `python -m trainer` with its stderr on a pseudo-terminal, as in a shell; return what it drew."""
    import fcntl
    import pty
    import struct
    import termios

    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=side
    )
    os.close(side)
    drawn = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal's other side closed: the process has exited
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main)
    return proc.wait(timeout=300), drawn.decode(errors="replace")


@pytest.mark.slow
def test_a_progress_bar_on_a_terminal_unless_quiet(mnist_dir: str, tmp_path: Path) -> None:
    short = ("--recipe", "mlp", "--epochs", "3", "--limit", "600", "--no-register")
    code, drawn = _trainer_on_a_terminal(*short, cwd=tmp_path)
    assert code == 0, drawn[-2000:]
    assert "3/3" in drawn and "train_loss=" in drawn and "val_loss=" in drawn and "val_acc=" in drawn
    code, drawn = _trainer_on_a_terminal(*short, "--quiet", cwd=tmp_path)
    assert code == 0, drawn[-2000:]
    assert "train_loss=" not in drawn
    # Off a terminal (the other tests capture stderr through a pipe) there is no bar either.
    piped = _trainer(*short, cwd=tmp_path, env_extra={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
    assert piped.returncode == 0 and "train_loss=" not in piped.stderr


def _config(*flags: str) -> TrainConfig:
    return parse_config(["--quiet", *flags])


@pytest.mark.slow
def test_mlp_run_logs_everything_and_registers(
    mnist_dir: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(_config("--recipe", "mlp"))
    client = MlflowClient()
    r = client.get_run(result.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.params["recipe"] == "mlp" and r.data.params["epochs"] == "8" and r.data.params["seed"] == "0"
    assert r.data.params["optimizer"] == "adamw"
    for key in ("val_loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(result.run_id, key)] == list(range(9)), key
    assert [m.step for m in client.get_metric_history(result.run_id, "train_loss")] == list(range(1, 9))
    assert result.metrics["test_accuracy"] >= 0.99
    assert r.data.metrics["test_errors"] == round((1 - r.data.metrics["test_accuracy"]) * 2038)
    assert r.data.metrics["val_accuracy"] == result.metrics["val_accuracy"]  # the last epoch's point
    assert {k for k in r.data.metrics if k.startswith("robust_accuracy_")} == {
        f"robust_accuracy_{name}"
        for name in (
            *("shift_3x2", "zoom_out", "zoom_in", "thick", "thin"),
            *("rotate_left_15", "rotate_right_15", "elastic", "mouse"),
        )
    }
    figures = {a.path for a in client.list_artifacts(result.run_id, "figures")}
    assert figures == {f"figures/{n}.png" for n in ("loss_curves", "weights", "confusion_matrix", "misclassified")}
    contexts = {d.dataset.name: {t.value for t in d.tags} for d in r.inputs.dataset_inputs}
    assert contexts == {
        "mnist-3v7-training": {"training"},
        "mnist-3v7-validation": {"validation"},
        "mnist-3v7-test": {"test"},
    }
    # The logged model carries the trained network's metrics, not the untrained one's at step 0.
    (output,) = r.outputs.model_outputs
    model_metrics = {m.key: m.value for m in client.get_logged_model(output.model_id).metrics}
    assert model_metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    assert model_metrics["val_accuracy"] == pytest.approx(result.metrics["val_accuracy"])
    assert model_metrics["val_accuracy"] > 0.95

    version = client.get_model_version("mnist-3v7", "1")
    assert version.tags["recipe"] == "mlp" and float(version.tags["test_accuracy"]) == pytest.approx(
        result.metrics["test_accuracy"], abs=1e-5
    )
    assert "test accuracy" in version.description
    assert client.get_registered_model("mnist-3v7").aliases == {"champion": 1}

    # The model is a pt2 program that loads with pickle deserialization disallowed.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model("models:/mnist-3v7@champion")
    inputs = model.metadata.get_input_schema().inputs
    assert str(inputs[0].type) == "float32" and tuple(inputs[0].shape) == (-1, 784)
    test = load_dataset(mnist_dir, 0).test
    p = np.asarray(model.predict(test.floats().numpy()))
    assert float(((p >= 0.5) == test.labels.numpy().astype(bool)).mean()) == pytest.approx(
        result.metrics["test_accuracy"], abs=1e-9
    )

    # A worse model is registered but does not take the alias; --force-promote moves it.
    worse = run(_config("--recipe", "mlp", "--epochs", "1", "--limit", "200"))
    assert worse.version == "2" and worse.promotion is not None and not worse.promotion.moved
    assert "<" in worse.promotion.reason
    assert client.get_registered_model("mnist-3v7").aliases == {"champion": 1}
    forced = run(_config("--recipe", "mlp", "--epochs", "1", "--limit", "200", "--force-promote"))
    assert forced.promotion is not None and forced.promotion.moved
    assert client.get_registered_model("mnist-3v7").aliases == {"champion": 3}


@pytest.mark.slow
def test_same_seed_same_metrics(mnist_dir: str, tracking_uri: str) -> None:
    a = run(_config("--recipe", "mlp", "--epochs", "2", "--no-register"))
    b = run(_config("--recipe", "mlp", "--epochs", "2", "--no-register"))
    c = run(_config("--recipe", "mlp", "--epochs", "2", "--no-register", "--seed", "1"))
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics
    assert a.version is None


@pytest.mark.slow
@pytest.mark.parametrize(("error", "status"), [(RuntimeError("disk full"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_crash_marks_the_run_and_moves_no_alias(
    mnist_dir: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, error: BaseException, status: str
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(trainer.cli, "train", crash)
    with pytest.raises(type(error)):
        run(_config("--recipe", "mlp"))
    runs = mlflow.search_runs(experiment_names=["mnist37"], output_format="list")
    assert [r.info.status for r in runs] == [status]
    assert MlflowClient().search_registered_models() == []
