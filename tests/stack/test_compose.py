"""docker-compose.yml run as local processes: the real `mlflow server` on this machine's PostgreSQL, then
the trainer's and the service's own commands with the environment the compose file gives them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import yaml

from tests.conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.slow
PG_DSN = "host=127.0.0.1 port=5432 dbname=postgres"


class Topology:
    """Maps the compose file's hosts, ports and volumes onto this machine."""

    def __init__(self, database: str, artifacts: Path) -> None:
        self.compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
        self.mlflow_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.replacements = [
            (f"@postgres:5432/{self.env('postgres')['POSTGRES_DB']}", f"@127.0.0.1:5432/{database}"),
            ("mlflow:5000", f"127.0.0.1:{self.mlflow_port}"),
            ("localhost:5000", f"localhost:{self.mlflow_port}"),
            ("127.0.0.1:5000", f"127.0.0.1:{self.mlflow_port}"),
            ("--port=5000", f"--port={self.mlflow_port}"),
            ("--host=0.0.0.0", "--host=127.0.0.1"),
            ("/mlartifacts", str(artifacts)),
            ("localhost:50051", f"localhost:{self.grpc_port}"),
        ]

    def map(self, text: str) -> str:
        for old, new in self.replacements:
            text = text.replace(old, new)
        return text

    def env(self, service: str) -> dict[str, str]:
        return {k: str(v) for k, v in (self.compose[service].get("environment") or {}).items()}

    def command(self, service: str, *extra: str) -> list[str]:
        spec = self.compose[service]
        argv = list(spec.get("entrypoint") or []) + list(spec.get("command") or []) + list(extra)
        argv = [self.map(a) for a in argv]
        if argv[0] == "python":
            argv[0] = sys.executable
        elif argv[0] == "mlflow":
            argv[:1] = [sys.executable, "-m", "mlflow"]
        return argv

    def environ(self, service: str, **overrides: str) -> dict[str, str]:
        mapped = {k: self.map(v) for k, v in self.env(service).items()}
        if "GRPC_PORT" in mapped:
            mapped |= {"GRPC_PORT": str(self.grpc_port), "METRICS_PORT": str(self.metrics_port)}
        return {**os.environ, **mapped, **overrides}

    def healthcheck(self, service: str) -> list[str]:
        return self.command_of(self.compose[service]["healthcheck"]["test"])

    def command_of(self, test: list[str]) -> list[str]:
        argv = [self.map(a) for a in test[1:]]  # drop "CMD"
        return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


@pytest.fixture
def database() -> Iterator[str]:
    name = f"mnist37_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'mlflow'")
        if cur.fetchone() is None:
            cur.execute("CREATE ROLE mlflow LOGIN PASSWORD 'mlflow'")
        cur.execute(f'CREATE DATABASE "{name}" OWNER mlflow')
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def _passes(argv: list[str], env: dict[str, str] | None = None) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=30, env=env).returncode == 0


def test_compose_topology_trains_serves_and_switches(mnist_dir: str, database: str, tmp_path: Path) -> None:
    top = Topology(database, tmp_path / "artifacts")
    workdir = tmp_path / "work"
    workdir.mkdir()
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("mlflow", "inference")}  # noqa: SIM115
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                top.command("mlflow"),
                env=top.environ("mlflow"),
                cwd=workdir,
                stdout=logs["mlflow"],
                stderr=subprocess.STDOUT,
            )
        )
        wait_until(
            lambda: procs[0].poll() is None and _passes(top.healthcheck("mlflow")), 120, "mlflow healthy", every=0.5
        )
        assert procs[0].poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]

        train = top.command("trainer", "--recipe", "mlp", "--epochs", "2")  # as `docker compose run trainer …`
        first = subprocess.run(
            train, env=top.environ("trainer"), cwd=workdir, capture_output=True, text=True, timeout=300
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert "version 1 · @champion moved" in first.stdout

        procs.append(
            subprocess.Popen(
                top.command("inference"),
                env=top.environ("inference", POLL_SECONDS="1"),
                cwd=workdir,
                stdout=logs["inference"],
                stderr=subprocess.STDOUT,
            )
        )
        health = top.healthcheck("inference")
        wait_until(lambda: _passes(health), 120, "inference healthy", every=0.5)

        client = [sys.executable, "-m", "service.client", "--target", f"127.0.0.1:{top.grpc_port}"]
        answer = subprocess.run([*client, "samples", "-n", "5"], capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0 and "version 1" in answer.stdout, answer.stderr

        second = subprocess.run(
            [*train, "--seed", "1", "--force-promote"],
            env=top.environ("trainer"),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 0 and "version 2 · @champion moved" in second.stdout, second.stderr[-3000:]

        def switched() -> bool:
            out = subprocess.run([*client, "info"], capture_output=True, text=True, timeout=30).stdout
            return "version 2" in out

        wait_until(switched, 60, "service on version 2", every=0.5)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{top.metrics_port}/metrics", timeout=5).read().decode()
        assert 'mnist37_served_model_version{alias="champion",model="mnist-3v7"} 2.0' in metrics
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs.values():
            log.close()


def test_compose_file_validates() -> None:
    """Debian's docker-compose checks the file without an engine, when it is installed."""
    tool = shlex.split(os.environ.get("COMPOSE_VALIDATOR", "docker-compose"))
    try:
        result = subprocess.run(
            [*tool, "-f", str(REPO / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    assert result.returncode == 0, result.stderr


def test_docker_waits_longer_than_the_service_drains() -> None:
    """`docker stop` must not SIGKILL the service before its grace period for in-flight calls ends."""
    from service.config import ServiceConfig

    inference = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["inference"]
    grace = float(inference["environment"].get("GRACE_SECONDS", ServiceConfig.grace_seconds))
    assert float(inference["stop_grace_period"].removesuffix("s")) > grace
