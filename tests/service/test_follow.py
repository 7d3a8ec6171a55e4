"""Following the registry: start with nothing, swap versions under load, refuse broken ones, keep serving."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from tests.conftest import Workers, free_port, new_store, wait_until
from tests.service.conftest import Registry, config_for, health_status, running, set_alias

pytestmark = pytest.mark.slow
ZERO = pb.ClassifyRequest(image=pb.Image(uint8=bytes(784)))


def test_starts_without_a_model_then_serves_once_one_is_registered(mnist_dir: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    from trainer.cli import run
    from trainer.config import parse_config

    uri = new_store(tmp_path)
    with running(config_for(uri)) as (_, channel):
        stub = pb_grpc.ClassifierStub(channel)
        assert health_status(channel) == "NOT_SERVING"
        assert health_status(channel, "mnist37.v1.Classifier") == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as err:
            stub.Classify(ZERO, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "mnist-3v7@champion" in err.value.details()  # says what is missing
        mlflow.set_tracking_uri(uri)
        result = run(parse_config(["--quiet", "--recipe", "mlp", "--epochs", "1"]))
        assert MlflowClient().get_registered_model("mnist-3v7").aliases == {"champion": 1}
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        assert stub.Classify(ZERO, timeout=5).prediction.model_version == result.version


def test_a_password_in_the_tracking_uri_reaches_no_client_and_no_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the registry's errors, at once
    uri = f"http://admin:hunter2pass@127.0.0.1:{free_port()}/"  # nothing listens there
    with caplog.at_level(logging.INFO), running(config_for(uri, poll_seconds=0.2)) as (_, channel):
        stub = pb_grpc.ClassifierStub(channel)
        for _ in range(2):  # while still looking, then once the registry's error is known
            with pytest.raises(grpc.RpcError) as err:
                stub.Classify(ZERO, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "admin:***@127.0.0.1" in err.value.details() and "hunter2pass" not in err.value.details()
            time.sleep(1)
    assert "hunter2pass" not in caplog.text


def test_alias_move_under_load_has_zero_failed_calls(registry: Registry) -> None:
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri)) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        stub = pb_grpc.ClassifierStub(channel)
        stop = threading.Event()
        seen: list[str] = []
        failures: list[str] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    seen.append(stub.Classify(ZERO, timeout=5).prediction.model_version)
                except grpc.RpcError as err:
                    failures.append(f"{err.code()}: {err.details()}")

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(seen) > 50, 20)
        set_alias(registry.uri, registry.other_good)
        wait_until(lambda: seen[-1] == registry.other_good and seen.count(registry.other_good) > 50, 20)
        stop.set()
        for t in threads:
            t.join()
        assert failures == []
        assert seen[0] == registry.good and seen[-1] == registry.other_good
        first_new = seen.index(registry.other_good)
        # Once the swap is seen, the old version answers only calls that were already in flight.
        assert seen[first_new:].count(registry.good) <= len(threads)


def test_broken_version_is_refused_and_the_old_one_keeps_serving(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri)) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        set_alias(registry.uri, registry.broken)
        wait_until(lambda: any(f"refused version {registry.broken}" in r.getMessage() for r in caplog.records), 20)
        stub = pb_grpc.ClassifierStub(channel)
        assert stub.Classify(ZERO, timeout=5).prediction.model_version == registry.good
        assert health_status(channel) == "SERVING"
        assert "expected output shape (1,)" in next(
            r.getMessage() for r in caplog.records if "refused" in r.getMessage()
        )
        set_alias(registry.uri, registry.other_good)  # a good version after a broken one is still taken
        wait_until(lambda: stub.Classify(ZERO, timeout=5).prediction.model_version == registry.other_good, 20)


def test_registry_outage_after_start_does_not_stop_serving(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        calls = []

        def unreachable(*args: object) -> None:
            calls.append(args)
            raise ConnectionError("registry unreachable")

        monkeypatch.setattr(service.follower._client, "get_model_version_by_alias", unreachable)
        wait_until(lambda: len(calls) >= 3, 20)
        stub = pb_grpc.ClassifierStub(channel)
        assert stub.Classify(ZERO, timeout=5).prediction.model_version == registry.good
        assert health_status(channel) == "SERVING"


def test_accuracy_through_the_service_equals_the_trainers(registry: Registry, test_images: tuple) -> None:
    from mlflow import MlflowClient

    set_alias(registry.uri, registry.good)
    images, digits = test_images
    with running(config_for(registry.uri)) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        stub = pb_grpc.ClassifierStub(channel)
        answered = []
        for start in range(0, len(images), 1000):
            batch = [pb.Image(uint8=im.tobytes()) for im in images[start : start + 1000]]
            answered += [p.digit for p in stub.ClassifyBatch(pb.ClassifyBatchRequest(images=batch)).predictions]
    accuracy = float(np.mean(np.array(answered) == digits))
    assert len(answered) == 2038
    tag = MlflowClient(registry.uri, registry.uri).get_model_version("mnist-3v7", registry.good).tags["test_accuracy"]
    assert accuracy == pytest.approx(float(tag), abs=1e-6)


class SteadyClients(Workers):
    """Four clients calling Classify in a loop; every answer's version and every failure is kept."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(count=4)
        self._stub = pb_grpc.ClassifierStub(channel)
        self.seen: list[str] = []
        self.failures: list[str] = []

    def work(self) -> None:
        while not self.stopping.is_set():
            try:
                self.seen.append(self._stub.Classify(ZERO, timeout=5).prediction.model_version)
            except grpc.RpcError as err:
                self.failures.append(f"{err.code()}: {err.details()}")


def test_hostile_versions_are_refused_under_load_and_after_a_restart(registry: Registry, tmp_path: Path) -> None:
    from service.generated.mnist37.v1 import classifier_pb2 as api
    from tests.service.hostile import HOSTILE, PAYLOAD_THREAD, register_hostile

    marker = tmp_path / "payload-ran"
    hostile = {kind: register_hostile(registry.uri, registry.good, kind, tmp_path, marker) for kind in sorted(HOSTILE)}
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        with SteadyClients(channel) as clients:
            stub = pb_grpc.ClassifierStub(channel)
            for kind, version in hostile.items():
                set_alias(registry.uri, version)
                wait_until(lambda: stub.GetModelInfo(api.GetModelInfoRequest()).refused_version == version, 20)  # noqa: B023
                info = stub.GetModelInfo(api.GetModelInfoRequest())
                assert info.version == registry.good and HOSTILE[kind][1] in info.refused_reason, (kind, info)
                gauge = service.metrics.registry.get_sample_value(
                    "mnist37_refused_model_version",
                    {
                        "model": "mnist-3v7",
                        "alias": "champion",
                        "replica": service.replica,
                        "reason": info.refused_reason,
                    },
                )
                assert gauge == float(version)
            wait_until(lambda: len(clients.seen) > 100, 20)
    assert clients.failures == [] and set(clients.seen) == {registry.good}
    assert not marker.exists() and PAYLOAD_THREAD not in {t.name for t in threading.enumerate()}

    # A restart while the alias points at a hostile version: nothing served, nothing run, and it says why.
    with running(config_for(registry.uri)) as (_, channel):
        stub = pb_grpc.ClassifierStub(channel)
        wait_until(lambda: "was refused" in _unavailable(stub), 20)
        assert HOSTILE[kind][1] in _unavailable(stub) and health_status(channel) == "NOT_SERVING"
    assert not marker.exists() and PAYLOAD_THREAD not in {t.name for t in threading.enumerate()}


def _unavailable(stub: pb_grpc.ClassifierStub) -> str:
    try:
        stub.Classify(ZERO, timeout=5)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        return str(err.details())
    return ""


def _count(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


def _artifacts_of(uri: str, version: str) -> Path:
    from mlflow import MlflowClient

    return Path(MlflowClient(uri, uri).get_model_version_download_uri("mnist-3v7", version).removeprefix("file://"))


def test_a_version_whose_files_are_unreachable_for_a_while_is_served_once_they_return(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from service.generated.mnist37.v1 import classifier_pb2 as api

    artifacts = _artifacts_of(registry.uri, registry.other_good)
    hidden = tmp_path / "hidden"
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri, poll_seconds=1.0)) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        with SteadyClients(channel) as clients:
            artifacts.rename(hidden)  # the artifact store is unreachable for a while
            try:
                set_alias(registry.uri, registry.other_good)
                wait_until(
                    lambda: sum("no files found" in r.getMessage() for r in caplog.records) >= 2, 20
                )  # tried twice
                wait_until(lambda: len(clients.seen) > 50, 20)
                stub = pb_grpc.ClassifierStub(channel)
                assert stub.GetModelInfo(api.GetModelInfoRequest()).refused_version == ""  # not refused for good
            finally:
                hidden.rename(artifacts)
            wait_until(lambda: clients.seen[-1] == registry.other_good, 20)
    assert clients.failures == []

    # The same at start-up: NOT_SERVING while the files are missing, SERVING once they are back.
    artifacts.rename(hidden)
    try:
        with running(config_for(registry.uri, poll_seconds=1.0)) as (_, channel):
            stub = pb_grpc.ClassifierStub(channel)
            wait_until(lambda: "could not be loaded" in _unavailable(stub), 20)
            hidden.rename(artifacts)
            wait_until(lambda: health_status(channel) == "SERVING", 20)
            assert stub.Classify(ZERO, timeout=5).prediction.model_version == registry.other_good
    finally:
        if hidden.exists():
            hidden.rename(artifacts)


def test_a_program_that_cannot_take_the_largest_batch_is_refused(registry: Registry, tmp_path: Path) -> None:
    import torch

    from tests.service.hostile import model_files, register_folder

    class Sum(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(x.sum(dim=1) - 392)

    batch = torch.export.Dim("batch", min=1, max=3)  # exported for at most 3 images
    program = torch.export.export(Sum(), (torch.zeros(2, 784),), dynamic_shapes={"x": {0: batch}})
    folder = model_files(registry.uri, registry.good, tmp_path / "small")
    torch.export.save(program, folder / "data" / "model.pt2")
    version = register_folder(registry.uri, folder, "at-most-3")
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri, max_batch=64)) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        with SteadyClients(channel) as clients:
            set_alias(registry.uri, version)
            stub = pb_grpc.ClassifierStub(channel)
            from service.generated.mnist37.v1 import classifier_pb2 as api

            wait_until(lambda: stub.GetModelInfo(api.GetModelInfoRequest()).refused_version == version, 20)
            assert "failed on a batch of 64 images" in stub.GetModelInfo(api.GetModelInfoRequest()).refused_reason
            wait_until(lambda: len(clients.seen) > 50, 20)
    assert clients.failures == [] and set(clients.seen) == {registry.good}
