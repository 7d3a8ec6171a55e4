"""`python -m service` as a process: SIGTERM drains in-flight calls and exits 0; an unreachable registry at
start-up is waited for; bad settings fail fast."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from tests.conftest import free_port, wait_until
from tests.service.conftest import Registry, health_status, set_alias

pytestmark = pytest.mark.slow


def test_sigterm_drains_in_flight_calls_and_exits_zero(registry: Registry) -> None:
    set_alias(registry.uri, registry.good)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.uri,
        "GRPC_PORT": str(port),
        "METRICS_PORT": "0",
        "HTTP_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--poll-seconds", "1", "--grace-seconds", "10", "--drain-seconds", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        wait_until(lambda: _status(channel) == "SERVING", 60)
        stub = pb_grpc.ClassifierStub(channel)
        sent = threading.Event()
        answers: list[pb.ClassifyResponse] = []

        def slow_requests():  # a stream still sending when SIGTERM arrives and after the port closes
            for i in range(10):
                yield pb.ClassifyRequest(image=pb.Image(uint8=bytes(784)), request_id=str(i))
                sent.set()
                time.sleep(0.5)

        stream = threading.Thread(target=lambda: answers.extend(stub.ClassifyStream(slow_requests(), timeout=30)))
        stream.start()
        sent.wait(10)
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: health_status(channel) == "NOT_SERVING", 3)  # seen within the drain window
        stream.join(30)
        assert [a.request_id for a in answers] == [str(i) for i in range(10)]  # the in-flight call finished
        assert proc.wait(timeout=30) == 0
        with pytest.raises(grpc.RpcError):
            stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=2)
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stdout.read() if proc.stdout else ""
    assert "received SIGTERM" in log and "stopped" in log


def test_the_process_exits_promptly_once_stopped(registry: Registry) -> None:
    """Orchestrators wait for the exit, not the log line: teardown must not eat into their grace period.
    On the way, the metrics endpoint answers, and closes a connection that holds it without asking."""
    set_alias(registry.uri, registry.good)
    port, metrics = free_port(), free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.uri,
        "GRPC_PORT": str(port),
        "METRICS_PORT": str(metrics),
        "HTTP_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--drain-seconds", "0", "--grace-seconds", "1", "--http-idle-seconds", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in proc.stdout or []))
    reader.start()
    try:
        wait_until(lambda: any("serving version" in line for _, line in lines), 60, "serving")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as reply:
            assert b"mnist37_served_model_version" in reply.read()
        with socket.create_connection(("127.0.0.1", metrics), timeout=10) as slow:
            slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            start = time.monotonic()
            assert slow.recv(65536) == b"" and time.monotonic() - start < 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        exited = time.monotonic()
        reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = next(t for t, line in lines if line.rstrip().endswith("stopped"))
    assert exited - stopped < 1.5, f"exit came {exited - stopped:.2f}s after 'stopped'"


def test_an_unreachable_registry_at_start_up_is_waited_for(registry: Registry, tmp_path: Path) -> None:
    set_alias(registry.uri, registry.good)
    grpc_port, registry_port = free_port(), free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{registry_port}",  # nothing listens there yet
        "GRPC_PORT": str(grpc_port),
        "METRICS_PORT": "0",
        "HTTP_PORT": "0",
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "service", "--poll-seconds", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(service.stdout or []), daemon=True).start()
    mlflow_server: subprocess.Popen[bytes] | None = None
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        wait_until(lambda: _status(channel) == "NOT_SERVING", 60)  # up, and says it cannot serve yet
        stub = pb_grpc.ClassifierStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "mnist-3v7@champion" in err.value.details()
        wait_until(lambda: any("retrying in 4.0s" in line for line in log), 30)
        delays = [float(line.split("retrying in ")[1].split("s")[0]) for line in log if "retrying in" in line]
        assert delays[:3] == [1.0, 2.0, 4.0]  # backs off, up to the poll period

        server = ["mlflow", "server", "--backend-store-uri", registry.uri, "--host", "127.0.0.1"]
        mlflow_server = subprocess.Popen(  # the registry comes up later, as in a stack started in any order
            [sys.executable, "-m", *server, "--port", str(registry_port)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _status(channel) == "SERVING", 120)
        answer = stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=5)
        assert answer.prediction.model_version == registry.good
        assert service.poll() is None
    finally:
        channel.close()
        for proc in (service, mlflow_server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def _status(channel: grpc.Channel) -> str | None:
    try:
        return health_status(channel)
    except grpc.RpcError:
        return None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "http"], "--port: expected int, got 'http'"),
        (["--poll-seconds", "0"], "--poll-seconds: expected a positive number, got 0.0"),
        (["--max-streams", "0"], "--max-streams: expected a positive number, got 0"),
        (["--tls-cert", "server.pem"], "--tls-key/GRPC_TLS_KEY: TLS needs both a certificate and its key"),
        (["--token-file", "/no/such/token"], "--token-file: no such file: /no/such/token"),
        (["--tracking-uri", "sqlite:///no/such/mlflow.db"], "--tracking-uri/MLFLOW_TRACKING_URI: no SQLite store at"),
        (["--tracking-uri", "sqlite:/mlflow.db"], "expected sqlite:///relative.db or sqlite:////absolute.db"),
    ],
)
def test_bad_settings_fail_fast_naming_the_setting(args: list[str], needle: str) -> None:
    result = subprocess.run([sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and needle in result.stderr


def test_environment_names_the_setting_too() -> None:
    env = {**os.environ, "GRPC_PORT": "-5"}
    result = subprocess.run([sys.executable, "-m", "service"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2 and "GRPC_PORT" in result.stderr
