"""`make run`'s launcher as a person uses it: an empty store trains and serves, the UI answers, a client
gets answers, Ctrl-C stops everything; a second start serves the registered model without training."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.slow


class Launcher:
    """`python -m service.launcher` in its own process group, so Ctrl-C reaches it as a terminal sends it;
    started with SIGINT ignored, as a background job of a non-interactive shell (CI's, say) starts it,
    so that Ctrl-C works only because the launcher itself takes it."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.launcher", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.output)

    def ctrl_c(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            printed = "".join(self.output)[-3000:]
            raise AssertionError(f"still running 60 s after Ctrl-C; it printed:\n{printed}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_trains_when_empty_serves_and_stops_on_ctrl_c(mnist_dir: str, tmp_path: Path) -> None:
    grpc_port, ui_port, http_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "GRPC_PORT": str(grpc_port),
        "HTTP_PORT": str(http_port),
        "MLFLOW_UI_PORT": str(ui_port),
        "METRICS_PORT": "0",
        "PYTHONPATH": str(REPO),
    }
    client = [sys.executable, "-m", "service.client", "--target", f"127.0.0.1:{grpc_port}"]
    stack = Launcher(tmp_path, env, "--recipe", "mlp")
    try:
        wait_until(lambda: stack.printed("gRPC service on 127.0.0.1:"), 180, "trained and started", every=0.5)
        assert stack.printed("holds no model yet: training mlp")
        health = [*client, "health"]
        wait_until(lambda: subprocess.run(health, env=env, capture_output=True).returncode == 0, 60, "SERVING", 0.5)
        answers = subprocess.run([*client, "samples", "-n", "5"], env=env, capture_output=True, text=True, timeout=60)
        assert answers.returncode == 0 and "version 1" in answers.stdout, answers.stdout + answers.stderr
        assert stack.printed(f"draw a digit on http://localhost:{http_port}/")
        assert "mnist37-model" in (_get(f"http://127.0.0.1:{http_port}/") or "")  # the page it names
        wait_until(lambda: _get(f"http://127.0.0.1:{ui_port}/health") == "OK", 60, "MLflow UI", every=0.5)
        model = json.loads(
            _get(f"http://127.0.0.1:{ui_port}/api/2.0/mlflow/registered-models/get?name=mnist-3v7") or "{}"
        )
        assert [a["alias"] for a in model["registered_model"]["aliases"]] == ["champion"]
        assert stack.ctrl_c() == 0
        assert not _listening(grpc_port) and not _listening(ui_port) and not _listening(http_port)

        again = Launcher(tmp_path, env)
        try:
            wait_until(lambda: again.printed("gRPC service on 127.0.0.1:"), 60, "restarted", every=0.5)
            assert again.printed("mnist-3v7@champion is version 1: serving it")
            assert not again.printed("training")
            assert again.ctrl_c() == 0
        finally:
            again.kill()
    finally:
        stack.kill()
