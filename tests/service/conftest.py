"""A real SQLite registry with real trained models, and a real server on a free port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import mlflow
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mlflow import MlflowClient

from service.config import ServiceConfig
from service.predictor import ServedModel
from service.server import Service
from tests.conftest import free_port, new_store, wait_until
from trainer.cli import run
from trainer.config import parse_config

MODEL = "mnist-3v7"
T = TypeVar("T")


class BackgroundService:
    """The Service on an event loop of its own thread, so that a test's blocking gRPC clients can run
    on the main thread (`python -m service` runs that loop on its main thread instead)."""

    def __init__(self, config: ServiceConfig) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-service-loop", daemon=True)
        self._thread.start()
        self._stopped = False
        try:
            self.service = self._on_loop(self._made(config))
        except BaseException:
            self._close()
            raise
        self.port, self.http_port, self.replica = self.service.port, self.service.http_port, self.service.replica
        self.follower, self.metrics, self.guard = self.service.follower, self.service.metrics, self.service.guard

    @staticmethod
    async def _made(config: ServiceConfig) -> Service:
        return Service(config)

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def start(self, follow: bool = True) -> None:
        self._on_loop(self.service.start(follow))

    def tasks(self) -> int:
        """How many tasks the service's loop holds: each open HTTP connection's handler is one."""

        async def count() -> int:
            return len(asyncio.all_tasks())

        return self._on_loop(count())

    def shutdown(self, grace: float, drain: float = 0.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._on_loop(self.service.stop(grace, drain))
        finally:
            self._close()

    @contextmanager
    def stopping(self, grace: float, drain: float) -> Iterator[None]:
        """Inside: the service's stop under way, as after a SIGTERM; on leaving, it has finished."""
        self._stopped = True
        stop = asyncio.run_coroutine_threadsafe(self.service.stop(grace, drain), self._loop)
        try:
            yield
        finally:
            try:
                stop.result(timeout=grace + 10)
            finally:
                self._close()

    def _close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


@dataclass(frozen=True)
class Registry:
    uri: str
    good: str  # version held by @champion at the start
    other_good: str  # a second working version, no alias
    broken: str  # loads, but answers (N, 2): the smoke test must refuse it


class TwoOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x[:, :2])  # (N, 2): the wrong shape


def register_broken(uri: str) -> str:
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_name="broken"):
        info = mlflow.pytorch.log_model(
            TwoOutputs(),
            name="model",
            input_example=np.zeros((2, 784), np.float32),
            serialization_format="pt2",
            pip_requirements=["torch"],
        )
    version = MlflowClient().create_model_version(MODEL, info.model_uri, tags={"recipe": "broken"})
    return str(version.version)


def set_alias(uri: str, version: str, alias: str = "champion") -> None:
    MlflowClient(uri, uri).set_registered_model_alias(MODEL, alias, version)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, mnist_dir: str) -> Registry:
    """Two real MLP versions (trained for 2 epochs) and one broken pt2 program."""
    uri = new_store(tmp_path_factory.mktemp("registry"))
    first = run(parse_config(["--quiet", "--recipe", "mlp", "--epochs", "2"]))
    second = run(parse_config(["--quiet", "--recipe", "mlp", "--epochs", "2", "--seed", "1", "--force-promote"]))
    assert first.version and second.version
    set_alias(uri, first.version)
    return Registry(uri=uri, good=first.version, other_good=second.version, broken=register_broken(uri))


def config_for(uri: str, **overrides: object) -> ServiceConfig:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "poll_seconds": 0.2,
        "metrics_port": 0,
        "http_port": 0,
    }
    return ServiceConfig(tracking_uri=uri, **(settings | overrides))  # type: ignore[arg-type]


def health_status(channel: grpc.Channel, service: str = "") -> str:
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


@contextmanager
def running(config: ServiceConfig) -> Iterator[tuple[BackgroundService, grpc.Channel]]:
    service = BackgroundService(config)
    service.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield service, channel
    finally:
        channel.close()
        service.shutdown(grace=1)


@contextmanager
def serving_fake(
    tmp_path: Path, predict: Callable[[np.ndarray], np.ndarray], **overrides: object
) -> Iterator[tuple[BackgroundService, grpc.Channel]]:
    """A real server whose model is `predict` as version 9, for isolating the call path from the registry."""
    service = BackgroundService(config_for(new_store(tmp_path), **overrides))
    model = ServedModel("mnist-3v7", "champion", "9", "", 1.0, "fake", datetime.now(UTC), predict)
    service.follower.current = lambda: model  # type: ignore[method-assign]
    service.start(follow=False)  # the fake stays
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield service, channel
    finally:
        channel.close()
        service.shutdown(0)


@pytest.fixture
def served(registry: Registry) -> Iterator[tuple[BackgroundService, grpc.Channel]]:
    """A server on @champion = the first good version, already SERVING."""
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri, max_batch=64)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        yield service, channel


@pytest.fixture
def served_http(registry: Registry) -> Iterator[BackgroundService]:
    """A server on @champion = the first good version, HTTP on a free port, already SERVING."""
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri, http_port=free_port())) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        yield service


@pytest.fixture(scope="session")
def test_images(mnist_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The 2038 test images as (N, 784) uint8 and their digits (3 or 7)."""
    from trainer.data import load_dataset

    test = load_dataset(mnist_dir, seed=0).test
    return test.images.numpy(), np.where(test.labels.numpy() == 1, 3, 7)
