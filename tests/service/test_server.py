"""The server's wiring: one model read per call, TLS and client certificates, a taken port, v1 reflection,
loopback by default."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest

from service.config import ServiceConfig
from service.generated.inference import grpc_predict_v2_pb2 as v2
from service.generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from service.predictor import ServedModel
from tests.conftest import free_port, new_store, wait_until
from tests.service.certificates import make_certificates
from tests.service.conftest import BackgroundService, config_for, health_status, running, serving_fake

ZERO = pb.ClassifyRequest(image=pb.Image(uint8=bytes(784)))


def half(images: np.ndarray) -> np.ndarray:
    return np.full(len(images), 0.5, np.float32)


def test_each_call_answers_from_the_version_it_checked_while_the_alias_moves(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half) as (service, channel):
        versions = [ServedModel("mnist-3v7", "champion", v, "", 1.0, "fake", datetime.now(UTC), half) for v in "12"]
        moving = itertools.cycle(versions)  # the alias moves between any two reads of the served model
        service.follower.current = lambda: next(moving)  # type: ignore[method-assign]
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        tensor = v2.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=[1, 784])
        answered, not_found = [], 0
        for _ in range(20):
            request = v2.ModelInferRequest(
                model_name="mnist-3v7", model_version="1", inputs=[tensor], raw_input_contents=[bytes(784)]
            )
            try:
                answered.append(stub.ModelInfer(request, timeout=5).model_version)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.NOT_FOUND
                not_found += 1
            try:
                metadata = stub.ModelMetadata(v2.ModelMetadataRequest(name="mnist-3v7", version="1"), timeout=5)
                answered.append(metadata.versions[0])
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.NOT_FOUND
                not_found += 1
        assert set(answered) == {"1"} and not_found > 0  # asked for 1: answered by 1, or told it is not served


def test_tls_and_client_certificates(tmp_path: Path) -> None:
    from service.client.cli import main

    certs = make_certificates(tmp_path)
    tls = {"tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key)}
    server_config = config_for(new_store(tmp_path), **tls)
    service = BackgroundService(server_config)
    service.start(follow=False)
    target = f"localhost:{service.port}"
    try:
        with grpc.insecure_channel(target) as plain, pytest.raises(grpc.RpcError) as err:
            pb_grpc.ClassifierStub(plain).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # no TLS, no connection
        credentials = grpc.ssl_channel_credentials(certs.ca.read_bytes())
        with grpc.secure_channel(target, credentials) as secure, pytest.raises(grpc.RpcError) as err:
            pb_grpc.ClassifierStub(secure).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert "no model loaded yet" in err.value.details()  # reached the service over TLS
        assert main(["--target", target, "--tls-ca", str(certs.ca), "health"]) == 1  # NOT_SERVING, over TLS
    finally:
        service.shutdown(0)

    mutual = BackgroundService(config_for(new_store(tmp_path / "m"), tls_client_ca=str(certs.ca), **tls))
    mutual.start(follow=False)
    target = f"localhost:{mutual.port}"
    try:
        anonymous = grpc.ssl_channel_credentials(certs.ca.read_bytes())
        with grpc.secure_channel(target, anonymous) as channel, pytest.raises(grpc.RpcError) as err:
            pb_grpc.ClassifierStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake wants a client certificate
        client = ["--tls-ca", str(certs.ca), "--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]
        assert main(["--target", target, *client, "health"]) == 1  # reached, and NOT_SERVING
    finally:
        mutual.shutdown(0)


def test_a_second_server_on_a_taken_port_fails_naming_the_port(tmp_path: Path) -> None:
    uri = new_store(tmp_path)
    first = BackgroundService(config_for(uri))
    first.start(follow=False)
    try:
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "METRICS_PORT": "0", "HTTP_PORT": "0"}
        result = subprocess.run(
            [sys.executable, "-m", "service", "--port", str(first.port)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode == 1
        assert f"cannot bind gRPC to 127.0.0.1:{first.port}" in result.stderr
    finally:
        first.shutdown(0)


def test_reflection_answers_v1_and_v1alpha(tmp_path: Path) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    with serving_fake(tmp_path, half) as (_, channel):
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            response = next(iter(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)))
            names = {s.name for s in response.list_services_response.service}
            assert {"mnist37.v1.Classifier", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_loopback_by_default() -> None:
    assert (ServiceConfig.host, ServiceConfig.metrics_host) == ("127.0.0.1", "127.0.0.1")


def test_every_answer_and_the_metrics_name_the_replica(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half, replica_name="pod-a", http_port=free_port()) as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert info.replica == "pod-a"
        _, call = stub.Classify.with_call(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=5)
        assert ("mnist37-replica", "pod-a") in call.trailing_metadata()
        with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/v2/health/live", timeout=5) as reply:
            assert reply.headers["Mnist37-Replica"] == "pod-a"
        labels = {"model": "mnist-3v7", "alias": "champion", "replica": "pod-a"}
        assert service.metrics.registry.get_sample_value("mnist37_served_model_version", labels) is not None
    with serving_fake(tmp_path / "b", half) as (service, channel):  # by default, the host's name
        assert (
            pb_grpc.ClassifierStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5).replica
            == socket.gethostname()
        )


def test_calls_running_and_queued_are_a_gauge_to_scale_on(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(images: np.ndarray) -> np.ndarray:
        release.wait(10)
        return half(images)

    with serving_fake(tmp_path, slow, replica_name="pod-a") as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        gauge = lambda: service.metrics.registry.get_sample_value("mnist37_in_flight_calls", {"replica": "pod-a"})  # noqa: E731
        assert gauge() == 0
        pending = [
            stub.Classify.future(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=20) for _ in range(3)
        ]
        wait_until(lambda: gauge() == 3, 10, "three calls counted")
        release.set()
        for call in pending:
            call.result()
        wait_until(lambda: gauge() == 0, 10, "all answered")


def test_clients_are_asked_to_reconnect_after_the_maximum_connection_age(tmp_path: Path) -> None:
    """Behind an L4 path, a channel that never reconnects never reaches a replica started after it."""
    ages = {"max_connection_age_seconds": 0.5, "max_connection_age_grace_seconds": 0.5}
    with serving_fake(tmp_path, half, **ages) as (service, _):
        states: list[grpc.ChannelConnectivity] = []
        with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            channel.subscribe(states.append)
            stub = pb_grpc.ClassifierStub(channel)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # calls go on across the reconnects, none fails
                assert stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=5).prediction.digit
                time.sleep(0.05)
        ready = [i for i, state in enumerate(states) if state == grpc.ChannelConnectivity.READY]
        assert len(ready) >= 2, states  # connected, told to go away, connected again


def test_liveness_holds_while_readiness_waits_for_a_model(tmp_path: Path) -> None:
    with running(config_for(new_store(tmp_path), http_port=free_port())) as (service, channel):
        assert health_status(channel) == "NOT_SERVING"  # readiness: no model yet
        with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/v2/health/live", timeout=5) as reply:
            assert reply.status == 200  # liveness: the process works; restarting it would not help
