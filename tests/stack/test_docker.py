"""docker-compose.yml on a real Docker engine, as a team brings it up: the image built, the stack healthy,
a client served through 127.0.0.1, two replicas behind Envoy both answering, one of them stopped under load,
the registry behind MLflow's password, a model switch under load, a database outage, a stop within the
grace period, a restart without training, and nothing left behind."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from tests.conftest import Workers, wait_until
from tests.stack.docker_stack import IMAGE_VARIABLES, Stack, base_images, engine_problem

pytestmark = pytest.mark.slow
IMAGE = "mnist37-stack-test:latest"  # not the users' mnist37:latest
PROMETHEUS = "http://127.0.0.1:9092"
UI = "http://127.0.0.1:5000"
MODEL = "mnist-3v7"


class Phases:
    """Wall time per phase, printed at the end whatever happens; a failing phase prints the containers' logs,
    which pytest shows with the failure."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.seconds: dict[str, float] = {}
        self.notes: list[str] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        except BaseException:
            print(f"=== failed during: {name}; the containers' logs:\n{self.stack.logs()}")
            raise
        finally:
            self.seconds[name] = time.monotonic() - start

    def report(self) -> str:
        lines = [f"  {name:<44} {secs:6.1f} s" for name, secs in self.seconds.items()]
        return "\n".join(lines + [f"  {note}" for note in self.notes])


class Mlflow:
    """The MLflow server's REST API on the host, with or without the admin's password."""

    def __init__(self, password: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()

    def status(self, path: str, authenticated: bool = True) -> int:
        request = urllib.request.Request(UI + path, headers={"Authorization": self.auth} if authenticated else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code

    def get(self, path: str) -> Any:
        request = urllib.request.Request(UI + path, headers={"Authorization": self.auth})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def post(self, path: str, body: dict[str, str]) -> Any:
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        request = urllib.request.Request(UI + path, json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def answers(self) -> bool:
        with contextlib.suppress(OSError):
            return self.status("/api/2.0/mlflow/experiments/search?max_results=1") == 200
        return False


class Load(Workers):
    """One client calling Classify back to back over one channel to Envoy on 127.0.0.1:50051; counts
    answers per version and per (version, replica), the replica named by the answer's trailing metadata."""

    def __init__(self, image: bytes) -> None:
        super().__init__(join_seconds=30)
        self.request = pb.ClassifyRequest(image=pb.Image(uint8=image))
        self.versions: Counter[str] = Counter()
        self.served: Counter[tuple[str, str]] = Counter()
        self.failures: list[str] = []

    def work(self) -> None:
        with grpc.insecure_channel("127.0.0.1:50051") as channel:
            stub = pb_grpc.ClassifierStub(channel)
            while not self.stopping.is_set() and len(self.failures) < 100:
                try:
                    reply, call = stub.Classify.with_call(self.request, timeout=10)
                    version = reply.prediction.model_version
                    self.versions[version] += 1
                    replica = dict(call.trailing_metadata() or ()).get("mnist37-replica", "(unnamed)")
                    self.served[version, str(replica)] += 1
                except grpc.RpcError as err:
                    self.failures.append(f"{err.code().name}: {err.details()}")
                time.sleep(0.02)


def _first_test_image(mnist_dir: str) -> bytes:
    raw = Path(mnist_dir) / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    return raw.read_bytes()[16 : 16 + 784]


def _replicas_answering(calls: int = 40) -> Counter[str]:
    """GetModelInfo over one channel to Envoy: how many calls each replica answered."""
    with grpc.insecure_channel("127.0.0.1:50051") as channel:
        stub = pb_grpc.ClassifierStub(channel)
        return Counter(stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).replica for _ in range(calls))


def _wait_for_replicas(names: list[str], timeout: float = 60) -> None:
    """Until each named replica has answered through Envoy, which sends it calls once its DNS answer and
    a health check have named it."""
    seen: Counter[str] = Counter()

    def each_answered() -> bool:
        with contextlib.suppress(grpc.RpcError):  # UNAVAILABLE while Envoy knows no replica SERVING
            seen.update(_replicas_answering(calls=10))
        return set(seen) >= set(names)

    try:
        wait_until(each_answered, timeout, f"answers from each of {names}", every=0.5)
    except AssertionError as err:
        raise AssertionError(f"{err}; answers so far: {dict(seen)}") from None


def _hostnames(compose: Stack) -> list[str]:
    """Each inference replica's host name, the name it gives in its answers; in replica order."""
    ids = [c["ID"] for c in compose.replicas("inference")]
    found = subprocess.run(["docker", "inspect", "-f", "{{.Config.Hostname}}", *ids], capture_output=True, text=True)
    return found.stdout.split()


def _prometheus(path: str) -> Any:
    """Prometheus's HTTP API on the host: the `data` of its answer."""
    with urllib.request.urlopen(PROMETHEUS + path, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]


def _query(expression: str) -> list[Any]:
    return list(_prometheus(f"/api/v1/query?query={urllib.parse.quote(expression)}")["result"])


def _shadows(calls: int = 20) -> set[tuple[str, str]]:
    """(replica, shadow version) of each replica answering GetModelInfo through Envoy."""
    with grpc.insecure_channel("127.0.0.1:50051") as channel:
        stub = pb_grpc.ClassifierStub(channel)
        infos = [stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10) for _ in range(calls)]
    return {(info.replica, info.shadow.version) for info in infos}


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "service.client", "--target", "127.0.0.1:50051", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def stack(mnist_dir: str, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Stack, Mlflow, Phases]]:
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the stack on a Docker engine: {problem} (.ci/run installs one)")
        pytest.skip(f"{problem}; see .ci/run for how CI installs and starts one")
    password = secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "MNIST_DATA_DIR": mnist_dir,
        "MNIST37_IMAGE": IMAGE,
        "MNIST37_DB_PASSWORD": secrets.token_urlsafe(16),
        "MNIST37_MLFLOW_PASSWORD": password,
        "MNIST37_SHADOW_ALIAS": "challenger",
    }
    start = time.monotonic()
    env |= base_images()
    stack = Stack(f"mnist37-test-{uuid.uuid4().hex[:8]}", env)
    phases = Phases(stack)
    phases.seconds["base images"] = time.monotonic() - start
    try:
        yield stack, Mlflow(password), phases
    finally:
        with phases("down -v"):
            stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=180, check=False)
        leftovers = stack.leftovers()
        with capsys.disabled():
            size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", IMAGE], capture_output=True)
            images = " ".join(f"{name}={env[name]}" for name in IMAGE_VARIABLES)
            print(f"\n{stack.project}: {images}")
            print(f"  image {IMAGE}: {int(size.stdout or 0) / 1e9:.2f} GB\n{phases.report()}")
        assert not leftovers, f"`down -v` left {leftovers}"


@pytest.mark.timeout(3000)
def test_stack_builds_serves_switches_and_restarts(stack: tuple[Stack, Mlflow, Phases], mnist_dir: str) -> None:
    compose, mlflow, phase = stack
    with phase("build"):
        compose.compose("build", timeout=1800)

    with phase("up: trained and serving"):
        compose.compose("up", "--detach", timeout=600)
        assert compose.wait_exited("trainer", timeout=900) == 0, compose.compose("logs", "trainer").stdout
        compose.wait_healthy(["postgres", "mlflow", "inference"], timeout=300)
    trainer_log = compose.compose("logs", "--no-color", "trainer").stdout
    assert "version 1 · @champion moved" in trainer_log, trainer_log

    with phase("two replicas behind Envoy"):
        replicas = _hostnames(compose)
        assert len(replicas) == 2, replicas
        _wait_for_replicas(replicas)
        shares = _replicas_answering(calls=100)
        assert min(shares[name] for name in replicas) >= 25, f"100 calls over one channel split {shares}"
        phase.notes.append(f"100 calls over one channel: {sorted(shares.values())} per replica")
    for noise in ("Bad git executable", "View run", "http://mlflow"):
        assert noise not in trainer_log, f"the trainer's log says {noise!r}:\n{trainer_log}"

    with phase("client and MLflow REST"):
        answer = _client("samples", "-n", "5")
        assert answer.returncode == 0 and "version 1" in answer.stdout, answer.stdout + answer.stderr
        infer = {"inputs": [{"name": "image", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}]}
        request = urllib.request.Request(f"http://127.0.0.1:8080/v2/models/{MODEL}/infer", json.dumps(infer).encode())
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.loads(reply.read())["model_version"] == "1"  # the REST side, published on the host
        with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=10) as page:
            assert b"mnist37-model" in page.read()
        registered = f"/api/2.0/mlflow/registered-models/get?name={MODEL}"
        assert mlflow.status(registered, authenticated=False) == 401
        aliases = mlflow.get(registered)["registered_model"]["aliases"]
        assert aliases == [{"alias": "champion", "version": "1"}], aliases
        run_id = mlflow.get(f"/api/2.0/mlflow/model-versions/get?name={MODEL}&version=1")["model_version"]["run_id"]
        metrics = {
            m["key"]: m["value"]
            for m in mlflow.get(f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]["data"]["metrics"]
        }
        assert metrics["test_accuracy"] > 0.98, metrics
        figures = mlflow.get(f"/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=figures")["files"]
        assert {Path(f["path"]).name for f in figures} >= {"loss_curves.png", "confusion_matrix.png"}, figures
        png = mlflow.get(f"/get-artifact?path=figures/loss_curves.png&run_uuid={run_id}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        encoding = compose.compose(
            "exec", "-T", "postgres", "psql", "-U", "mlflow", "-d", "mlflow", "-Atc", "SHOW server_encoding"
        )
        assert encoding.stdout.strip() == "UTF8"

    with phase("non-root containers"):
        for container in compose.containers():
            if container["State"] == "running":
                top = subprocess.run(
                    ["docker", "top", container["ID"], "-eo", "pid,uid,args"], capture_output=True, text=True
                )
                uids = {line.split()[1] for line in top.stdout.splitlines()[1:]}
                assert uids and "0" not in uids, f"{container['Service']} runs processes as root:\n{top.stdout}"
            user = subprocess.run(
                ["docker", "inspect", "-f", "{{.Config.User}}", container["ID"]], capture_output=True, text=True
            )
            assert user.stdout.strip() not in ("", "0", "root"), f"{container['Service']} has no non-root user"

    with phase("stop one replica under load"), Load(_first_test_image(mnist_dir)) as load:
        first = compose.container("inference")
        wait_until(lambda: load.versions["1"] >= 20 or load.failures, 30, "first answers under load", every=0.2)
        # What `docker compose stop` does to each container: SIGTERM, and SIGKILL after the grace period.
        stopped = subprocess.run(["docker", "stop", "--time", "15", first["ID"]], capture_output=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        after_stop = Counter(load.served)
        wait_until(lambda: load.versions.total() >= after_stop.total() + 50 or load.failures, 30, "answers after")
        only = Counter(load.served)
    assert not load.failures, f"{len(load.failures)} failed calls while a replica stopped: {load.failures[:5]}"
    answered_after = {replica for _, replica in only - after_stop}
    assert answered_after == {replicas[1]}, f"after the stop of {replicas[0]}, answers came from {answered_after}"
    phase.notes.append(f"one replica stopped under load: {load.versions.total()} calls, 0 failed")
    with phase("the stopped replica back"):
        assert compose.exit_code(first) == 0
        compose.compose("start", "inference", timeout=60)
        compose.wait_healthy(["inference"], timeout=180)
        _wait_for_replicas(replicas)

    with phase("switch under load (run --rm trainer mlp)"), Load(_first_test_image(mnist_dir)) as load:
        wait_until(lambda: load.versions["1"] > 0 or load.failures, 30, "first answers under load", every=0.2)
        trained = compose.compose("run", "--rm", "trainer", "--recipe", "mlp", "--force-promote", timeout=600)
        assert "version 2 · @champion moved" in trained.stdout, trained.stdout + trained.stderr
        moved = time.monotonic()
        both_on_2 = lambda: all(load.served["2", name] >= 10 for name in replicas) or bool(load.failures)  # noqa: E731
        wait_until(both_on_2, 120, "answers from version 2 by both replicas", every=0.5)
        agreed = time.monotonic() - moved
    assert not load.failures, f"{len(load.failures)} failed calls during the switch: {load.failures[:5]}"
    assert all(load.served["2", name] >= 10 for name in replicas), load.served
    phase.notes.append(
        f"alias switch under load: {load.versions.total()} calls, 0 failed; both replicas on version 2 "
        f"{agreed:.1f} s after the trainer returned"
    )

    with phase("challenger in shadow, seen by Prometheus"):
        mlflow.post("/api/2.0/mlflow/registered-models/alias", {"name": MODEL, "alias": "challenger", "version": "1"})
        on_both = {(name, "1") for name in replicas}
        wait_until(lambda: _shadows() >= on_both, 60, "both replicas with version 1 in shadow", every=1)
        for _ in range(2):  # over Envoy, the two calls reach one replica or both
            answer = _client("samples", "-n", "200")
            assert answer.returncode == 0 and "version 2" in answer.stdout and "version 1" not in answer.stdout
        info = _client("info")
        assert "shadow: @challenger version 1" in info.stdout, info.stdout
        # Prometheus finds both replicas by DNS and scrapes them on its own interval (deploy/prometheus/).
        up = lambda: [t for t in _prometheus("/api/v1/targets")["activeTargets"] if t["health"] == "up"]  # noqa: E731
        wait_until(lambda: len(up()) == 2, 90, "Prometheus scraping both replicas", every=2)
        compared = 'sum(mnist37_shadow_comparisons_total{champion="2",shadow="1"})'
        wait_until(
            lambda: _query(compared) and float(_query(compared)[0]["value"][1]) >= 400, 60, "400 compared", every=2
        )
        agreement = (
            f'sum(mnist37_shadow_comparisons_total{{champion="2",shadow="1",outcome=~"same_digit|both_neither"}})'
            f" / {compared}"
        )
        share = float(_query(agreement)[0]["value"][1])
        assert 0.9 <= share <= 1, share  # an MLP beside the CNN: they agree on most digits
        rules = {r["name"] for g in _prometheus("/api/v1/rules")["groups"] for r in g["rules"]}
        assert {"Mnist37NoModelServed", "Mnist37NeitherShareHigh", "Mnist37ShadowDisagrees"} <= rules, rules
        phase.notes.append(f"shadow version 1 beside champion 2 in Prometheus: agreement {100 * share:.2f}%")

    with phase("database down: trainer fails fast, mlflow waits"):
        compose.compose("stop", "postgres", timeout=60)
        start = time.monotonic()
        failed = compose.compose(
            "run", "--rm", "--no-deps", "trainer", "--recipe", "mlp", "--epochs", "1", timeout=300, check=False
        )
        took = time.monotonic() - start
        assert failed.returncode != 0, f"the trainer succeeded with the database down:\n{failed.stdout}"
        error = (failed.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        assert took < 90, f"the trainer took {took:.0f} s to report the registry error: {error}"
        phase.notes.append(
            f"trainer with the database down: exit {failed.returncode} after {took:.1f} s: {error[:160]}"
        )
        assert _client("info").returncode == 0, "the service stopped serving while the registry was down"
        compose.compose("restart", "mlflow", timeout=60)  # starting while the database is down
        time.sleep(5)
        compose.compose("start", "postgres", timeout=60)
        compose.wait_healthy(["postgres", "mlflow"], timeout=180)
        assert mlflow.answers()

    with phase("stop inference within its grace period"):
        start = time.monotonic()
        compose.compose("stop", "inference", timeout=60)
        took = time.monotonic() - start
        for exited in compose.replicas("inference"):
            assert compose.exit_code(exited) == 0, exited
        assert took < 15, f"stopping took {took:.1f} s, the grace period is 15 s"

    with phase("down (volumes kept), up: no training"):
        compose.compose("down", "--timeout", "20", timeout=180)
        compose.compose("up", "--detach", timeout=600)
        assert compose.wait_exited("trainer", timeout=300) == 0
        compose.wait_healthy(["postgres", "mlflow", "inference"], timeout=300)
        trainer_log = compose.compose("logs", "--no-color", "trainer").stdout
        assert "nothing to train" in trainer_log, trainer_log
        wait_until(lambda: _client("health").returncode == 0, 60, "Envoy sending calls to a replica again")
        answer = _client("samples", "-n", "3")
        assert answer.returncode == 0 and "version 2" in answer.stdout, answer.stdout + answer.stderr

    service_log = compose.compose("logs", "--no-color", "inference").stdout
    for noise in ("Downloading artifacts", "Bad git executable", "%|"):
        assert noise not in service_log, f"the service's log says {noise!r}:\n{service_log[-3000:]}"
