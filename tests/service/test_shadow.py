"""The challenger in shadow: real registered versions answer the same calls as the champion, after it,
into the metrics only; what the shadow does never reaches an answer."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest
from mlflow import MlflowClient
from prometheus_client import start_http_server

from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from service.live import OUTCOMES
from service.loading import load_predictor
from service.predictor import SEVEN, THREE, ServedModel
from tests.conftest import DefaultRun, free_port, new_store, wait_until
from tests.service.conftest import (
    MODEL,
    BackgroundService,
    Registry,
    config_for,
    health_status,
    running,
    set_alias,
)

pytestmark = pytest.mark.slow
CHALLENGER = "challenger"


def _digits(uri: str, version: str, images: np.ndarray) -> np.ndarray:
    """What a version answers, computed here from its own files, not through the service."""
    client = MlflowClient(uri, uri)
    predict, _ = load_predictor(client.get_model_version_download_uri(MODEL, version), uri)
    return np.where(np.asarray(predict(images.astype(np.float32) / 255)) >= 0.5, THREE, SEVEN)


def _batches(stub: pb_grpc.ClassifierStub, images: np.ndarray, size: int) -> list[pb.Prediction]:
    answers: list[pb.Prediction] = []
    for start in range(0, len(images), size):
        request = pb.ClassifyBatchRequest(images=[pb.Image(uint8=im.tobytes()) for im in images[start : start + size]])
        answers.extend(stub.ClassifyBatch(request, timeout=10).predictions)
    return answers


def _compared(service: BackgroundService, champion: str, shadow: str) -> dict[str, float]:
    registry = service.metrics.registry
    labels = {"champion": champion, "shadow": shadow, "replica": service.replica}
    return {
        outcome: registry.get_sample_value("mnist37_shadow_comparisons_total", {**labels, "outcome": outcome}) or 0.0
        for outcome in OUTCOMES
    }


def test_a_challenger_is_measured_at_exactly_the_disagreement_its_answers_give(
    registry: Registry, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    """Two real versions that disagree on a few test digits: the shadow counts exactly those, and
    every answer is the champion's."""
    images = test_images[0]
    champion, challenger = (
        _digits(registry.uri, registry.good, images),
        _digits(registry.uri, registry.other_good, images),
    )
    disagreeing = int(np.sum(champion != challenger))
    assert disagreeing > 0, "the two versions must disagree somewhere for this to measure anything"
    set_alias(registry.uri, registry.good)
    set_alias(registry.uri, registry.other_good, CHALLENGER)
    # A queue that holds every image sent: the shadow catches up once the calls stop, and drops none.
    with running(config_for(registry.uri, shadow_alias=CHALLENGER, shadow_queue_images=4096)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        stub = pb_grpc.ClassifierStub(channel)
        info = lambda: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)  # noqa: E731
        wait_until(lambda: info().shadow.version == registry.other_good, 20, "the shadow's version loaded")
        answers = _batches(stub, images, 100)
        assert {a.model_version for a in answers} == {registry.good}
        assert np.array_equal([a.digit for a in answers], champion)
        wait_until(lambda: info().shadow.compared == len(images), 20, "the shadow to answer every image")
        shadow = info().shadow
        assert shadow.alias == CHALLENGER and shadow.dropped == 0
        assert shadow.agreement == pytest.approx(1 - disagreeing / len(images))
        counts = _compared(service, registry.good, registry.other_good)
        assert counts == {
            **dict.fromkeys(OUTCOMES, 0.0),
            "same_digit": len(images) - disagreeing,
            "other_digit": disagreeing,
        }
        # Each version's own answers, counted by digit.
        for role, version, digits in (
            ("champion", registry.good, champion),
            ("shadow", registry.other_good, challenger),
        ):
            for digit in (THREE, SEVEN):
                labels = {"role": role, "version": version, "answer": str(digit), "replica": service.replica}
                assert service.metrics.registry.get_sample_value("mnist37_answers_total", labels) == np.sum(
                    digits == digit
                )


def test_a_refused_or_failing_shadow_leaves_every_answer_untouched(
    registry: Registry, test_images: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    images = test_images[0][:300]
    expected = _digits(registry.uri, registry.good, images)
    set_alias(registry.uri, registry.good)
    set_alias(registry.uri, registry.broken, CHALLENGER)  # its smoke test refuses it
    with running(config_for(registry.uri, shadow_alias=CHALLENGER)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        labels = {"model": MODEL, "alias": CHALLENGER, "replica": service.replica}
        refused = lambda: service.metrics.registry.get_sample_value(  # noqa: E731
            "mnist37_refused_model_version",
            {**labels, "reason": service.service.shadow_follower.refusal().reason},  # type: ignore[union-attr]
        )
        wait_until(lambda: service.service.shadow_follower.refusal() is not None and refused(), 20, "the refusal")  # type: ignore[union-attr]
        stub = pb_grpc.ClassifierStub(channel)
        answers = _batches(stub, images, 50)
        assert np.array_equal([a.digit for a in answers], expected)
        assert {a.model_version for a in answers} == {registry.good}
        shadow = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5).shadow
        assert (shadow.alias, shadow.version, shadow.compared) == (CHALLENGER, "", 0)

    # A shadow that loads but fails on every forward: counted as dropped, never seen by a caller.
    def failing(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("the shadow broke")

    client = MlflowClient(registry.uri, registry.uri)
    predict, _ = load_predictor(client.get_model_version_download_uri(MODEL, registry.good), registry.uri)
    service = BackgroundService(config_for(new_store(tmp_path), shadow_alias=CHALLENGER))
    champion = ServedModel(MODEL, "champion", "1", "", 1.0, "mlp", datetime.now(UTC), predict)
    broken = ServedModel(MODEL, CHALLENGER, "2", "", 1.0, "broken", datetime.now(UTC), failing)
    service.follower.current = lambda: champion  # type: ignore[method-assign]
    service.service.shadow_follower.current = lambda: broken  # type: ignore[method-assign,union-attr]
    service.start(follow=False)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = pb_grpc.ClassifierStub(channel)
            answers = _batches(stub, images, 50)
            assert np.array_equal([a.digit for a in answers], expected)
            wait_until(lambda: stub.GetModelInfo(pb.GetModelInfoRequest()).shadow.dropped == len(images), 10)
            failed = {"reason": "failed", "replica": service.replica}
            assert service.metrics.registry.get_sample_value("mnist37_shadow_dropped_images_total", failed) == len(
                images
            )
    finally:
        service.shutdown(0)


def test_under_load_with_the_shadow_on_no_call_fails_and_none_is_answered_by_the_challenger(
    registry: Registry, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    """Eight clients for two seconds; a queue of a few images, so that the shadow drops work too."""
    images = test_images[0][:64]
    set_alias(registry.uri, registry.good)
    set_alias(registry.uri, registry.other_good, CHALLENGER)
    config = config_for(registry.uri, shadow_alias=CHALLENGER, shadow_queue_images=4)
    with running(config) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        stub = pb_grpc.ClassifierStub(channel)
        wait_until(lambda: stub.GetModelInfo(pb.GetModelInfoRequest()).shadow.version == registry.other_good, 20)
        versions: set[str] = set()
        failures: list[str] = []
        calls = [0] * 8  # each client's own count
        stop = time.monotonic() + 2

        def client(k: int) -> None:
            while time.monotonic() < stop:
                image = images[(k * 7 + calls[k]) % len(images)]
                try:
                    answer = stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=image.tobytes())), timeout=5)
                    versions.add(answer.prediction.model_version)
                    calls[k] += 1
                except grpc.RpcError as err:
                    failures.append(str(err.code()))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == [] and versions == {registry.good} and sum(calls) > 100
        time.sleep(0.5)  # the shadow's last work
        shadow = stub.GetModelInfo(pb.GetModelInfoRequest()).shadow
        assert shadow.compared > 0 and shadow.compared + shadow.dropped == sum(calls)


def test_non_digits_raise_the_live_neither_share_above_the_expected_one(
    default_run: DefaultRun, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    """The default recipe's own version: its expected share comes from its run; genuine digits keep
    the live share near it, and noise sends it far above."""
    assert default_run.returncode == 0, default_run.stderr[-2000:]
    client = MlflowClient(default_run.uri, default_run.uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    expected = client.get_run(str(version.run_id)).data.metrics["test_rejected_share"]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (200, 784), dtype=np.uint8)
    with running(config_for(default_run.uri)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 30)
        stub = pb_grpc.ClassifierStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.expected_neither_share == pytest.approx(expected, rel=1e-6)
        registry = service.metrics.registry
        labels = {"role": "champion", "version": str(version.version), "replica": service.replica}

        def share() -> float:
            counts = {
                a: registry.get_sample_value("mnist37_answers_total", {**labels, "answer": a}) or 0.0
                for a in ("3", "7", "neither")
            }
            return counts["neither"] / sum(counts.values())

        digits = _batches(stub, test_images[0][:400], 100)
        wait_until(lambda: registry.get_sample_value("mnist37_p_three_count", labels) == 400, 5)
        assert share() == sum(not a.known for a in digits) / 400 and share() < 3 * max(expected, 0.01)
        assert registry.get_sample_value("mnist37_expected_neither_share", labels) == pytest.approx(expected)
        answers = _batches(stub, noise, 100)
        wait_until(lambda: registry.get_sample_value("mnist37_p_three_count", labels) == 600, 5)
        assert sum(not a.known for a in answers) >= 190  # noise is neither 3 nor 7
        assert share() > 10 * expected


def test_watch_prints_each_versions_window_and_draws_it(
    registry: Registry, test_images: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """`python -m service.client watch` against a real server's metrics endpoint, under traffic."""
    set_alias(registry.uri, registry.good)
    set_alias(registry.uri, registry.other_good, CHALLENGER)
    metrics = free_port()
    with running(config_for(registry.uri, shadow_alias=CHALLENGER)) as (service, channel):
        # What `python -m service` starts beside the Service: the endpoint on the same registry.
        endpoint, _ = start_http_server(metrics, addr="127.0.0.1", registry=service.metrics.registry)
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        stub = pb_grpc.ClassifierStub(channel)
        wait_until(lambda: stub.GetModelInfo(pb.GetModelInfoRequest()).shadow.version == registry.other_good, 20)
        png = tmp_path / "watch.png"
        argv = [sys.executable, "-m", "service.client", "watch", "--metrics", f"http://127.0.0.1:{metrics}/metrics"]
        watcher = subprocess.Popen(
            [*argv, "--every", "0.5", "--seconds", "3", "--png", str(png)], stdout=subprocess.PIPE, text=True
        )
        stop = time.monotonic() + 3.5
        while time.monotonic() < stop:
            _batches(stub, test_images[0][:32], 32)
        out, _ = watcher.communicate(timeout=30)
        endpoint.shutdown()
    assert watcher.returncode == 0, out
    assert f"champion v{registry.good}:" in out and f"shadow v{registry.other_good}:" in out, out
    assert "shadow agrees on" in out and "images/s" in out, out
    assert png.read_bytes().startswith(b"\x89PNG") and f"wrote {png}" in out
