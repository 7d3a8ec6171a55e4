"""The call guard over a real server: stream limits, malformed bytes, cancellations, spent deadlines,
tokens, and a model failing at serving time. The model is a stand-in, to isolate the call path."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from service.calls import CallGuard
from service.client.cli import main
from service.generated.inference import grpc_predict_v2_pb2 as v2
from service.generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from service.metrics import ServiceMetrics
from tests.conftest import wait_until
from tests.service.conftest import BackgroundService, health_status, serving_fake

ZERO = pb.ClassifyRequest(image=pb.Image(uint8=bytes(784)))


def half(images: np.ndarray) -> np.ndarray:
    return np.full(len(images), 0.5, np.float32)


def _count(service: BackgroundService, method: str, code: str) -> float:
    value = service.metrics.registry.get_sample_value("mnist37_grpc_requests_total", {"method": method, "code": code})
    return value or 0.0


def _idle(release: threading.Event) -> Iterator[pb.ClassifyRequest]:
    """A stream that opens and then sends nothing until released."""
    release.wait(60)
    yield from ()


def _timed(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start


def test_500_open_streams_leave_health_and_unary_calls_answering(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half, max_streams=8) as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        before = [_timed(lambda: health_status(channel)) for _ in range(20)]
        release = threading.Event()
        streams = [stub.ClassifyStream(_idle(release), timeout=60) for _ in range(500)]
        try:
            wait_until(lambda: sum(s.done() for s in streams) >= 492, 60, "all but 8 streams refused")
            refused = [s for s in streams if s.done()]
            assert {s.code() for s in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert any("8 streams are open, this server's limit (--max-streams)" in s.details() for s in refused)
            during = [_timed(lambda: health_status(channel)) for _ in range(20)]
            answers = [stub.Classify(ZERO, timeout=2).prediction.digit for _ in range(20)]
        finally:
            release.set()
        assert answers == [3] * 20
        assert statistics.median(during) < max(10 * statistics.median(before), 0.05)
        wait_until(lambda: all(s.done() for s in streams), 30, "held streams end once their clients close them")
        assert sum(s.code() == grpc.StatusCode.OK for s in streams) == 8
        assert _count(service, "ClassifyStream", "RESOURCE_EXHAUSTED") >= 492


def test_a_stream_that_sends_nothing_is_ended_and_frees_its_slot(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half, max_streams=2, stream_idle_seconds=1.0) as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        release = threading.Event()
        try:
            idle = [stub.ClassifyStream(_idle(release), timeout=30) for _ in range(2)]
            wait_until(lambda: service.guard.open_streams == 2, 10, "both slots held")
            start = time.monotonic()
            wait_until(lambda: all(s.done() for s in idle), 10, "idle streams ended")
            assert 0.5 < time.monotonic() - start < 5
            assert {s.code() for s in idle} == {grpc.StatusCode.DEADLINE_EXCEEDED}
            assert "no message on this stream for 1s (--stream-idle-seconds)" in idle[0].details()

            # A stream that keeps sending, more slowly than the whole limit but faster than it each time,
            # is answered throughout; the freed slots take it.
            def paced() -> Iterator[pb.ClassifyRequest]:
                for _ in range(3):
                    time.sleep(0.6)
                    yield ZERO

            assert [r.prediction.digit for r in stub.ClassifyStream(paced(), timeout=30)] == [3, 3, 3]
        finally:
            release.set()
        assert _count(service, "ClassifyStream", "DEADLINE_EXCEEDED") == 2
        assert service.guard.open_streams == 0


def test_malformed_bytes_are_invalid_argument_counted_and_the_next_call_is_served(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half) as (service, channel):
        for method, message in [
            ("/mnist37.v1.Classifier/Classify", "mnist37.v1.ClassifyRequest"),
            ("/inference.GRPCInferenceService/ModelInfer", "inference.ModelInferRequest"),
        ]:
            raw = channel.unary_unary(method, request_serializer=None, response_deserializer=None)  # bytes as they are
            with pytest.raises(grpc.RpcError) as err:
                raw(b"\xff\xff\xff\xff", timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"the request is not a valid {message} message" in err.value.details()
            assert _count(service, method.rsplit("/", 1)[1], "INVALID_ARGUMENT") == 1
        stream = channel.stream_stream("/mnist37.v1.Classifier/ClassifyStream", None, None)
        with pytest.raises(grpc.RpcError) as err:
            list(stream(iter([ZERO.SerializeToString(), b"\xff\xff"]), timeout=5))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "message 1:" in err.value.details()
        stub = pb_grpc.ClassifierStub(channel)
        assert stub.Classify(ZERO, timeout=5).prediction.digit == 3


def test_unknown_methods_and_oversize_stream_messages_are_counted_not_ok(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half, max_message_bytes=100_000) as (service, channel):
        for path in ["/mnist37.v1.Classifier/Nope", "/no.such.Service/Call"]:
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(path, None, None)(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert _count(service, "unknown", "UNIMPLEMENTED") == 2
        stream = channel.stream_stream("/mnist37.v1.Classifier/ClassifyStream", None, None)
        with pytest.raises(grpc.RpcError) as err:
            list(stream(iter([ZERO.SerializeToString(), bytes(200_000), ZERO.SerializeToString()]), timeout=5))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # gRPC ends such a stream below the handler, which sees its requests end and then its
        # cancellation: the call is counted once, as cancelled, and never as answered.
        wait_until(lambda: _count(service, "ClassifyStream", "CANCELLED") == 1, 10, "the stream counted")
        assert _count(service, "ClassifyStream", "OK") == 0
        assert pb_grpc.ClassifierStub(channel).Classify(ZERO, timeout=5).prediction.digit == 3


def test_a_cancelled_stream_is_counted_as_cancelled(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half) as (service, channel):
        release = threading.Event()

        def one_then_wait() -> Iterator[pb.ClassifyRequest]:
            yield ZERO
            release.wait(30)

        call = pb_grpc.ClassifierStub(channel).ClassifyStream(one_then_wait(), timeout=30)
        assert next(call).prediction.digit == 3
        call.cancel()
        release.set()
        wait_until(lambda: _count(service, "ClassifyStream", "CANCELLED") == 1, 10, "CANCELLED counted")
        assert _count(service, "ClassifyStream", "UNKNOWN") == 0


def test_health_watch_is_answered_while_every_stream_slot_is_taken(tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with serving_fake(tmp_path, half, max_streams=2) as (service, channel):
        release = threading.Event()
        stub = pb_grpc.ClassifierStub(channel)
        streams = [stub.ClassifyStream(_idle(release), timeout=30) for _ in range(2)]
        try:
            wait_until(lambda: service.guard.open_streams == 2, 10, "both stream slots taken")
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING  # the stand-in never serves
            watch.cancel()
            with pytest.raises(grpc.RpcError) as err:
                next(stub.ClassifyStream(iter([ZERO]), timeout=5))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # a third ClassifyStream is not
        finally:
            release.set()
            for s in streams:
                s.cancel()


def test_a_stream_whose_deadline_ends_it_is_counted_as_such(tmp_path: Path) -> None:
    with serving_fake(tmp_path, half) as (service, channel):
        release = threading.Event()
        call = pb_grpc.ClassifierStub(channel).ClassifyStream(_idle(release), timeout=0.5)
        with pytest.raises(grpc.RpcError) as err:
            next(call)
        release.set()
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: _count(service, "ClassifyStream", "DEADLINE_EXCEEDED") == 1, 10, "DEADLINE_EXCEEDED counted")
        assert _count(service, "ClassifyStream", "OK") == 0


def test_work_whose_deadline_passed_while_queued_is_not_started(tmp_path: Path) -> None:
    forwards: list[int] = []

    def slow(images: np.ndarray) -> np.ndarray:
        forwards.append(len(images))
        time.sleep(0.5)
        return half(images)

    with serving_fake(tmp_path, slow) as (_, channel):
        stub = pb_grpc.ClassifierStub(channel)
        busy = [stub.Classify.future(ZERO, timeout=10) for _ in range(2)]  # the slow forwards outlast the late call
        time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as err:
            stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784)), request_id="late"), timeout=0.2)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert [f.result().prediction.digit for f in busy] == [3, 3]
        time.sleep(0.3)  # the late call would have run by now
        assert sum(forwards) == 2  # the two calls in time were forwarded; the late one never was


def test_a_model_failing_at_serving_time_is_internal_naming_the_version(tmp_path: Path) -> None:
    def broken(images: np.ndarray) -> np.ndarray:
        raise RuntimeError("shape guard failed\nTraceback (most recent call last): ...")

    with serving_fake(tmp_path, broken) as (service, channel):
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.ClassifierStub(channel).Classify(ZERO, timeout=5)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert err.value.details() == "version 9 of mnist-3v7 failed on 1 images: shape guard failed"
        request = v2.ModelInferRequest(
            model_name="mnist-3v7",
            inputs=[v2.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=[1, 784])],
            raw_input_contents=[bytes(784)],
        )
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=v2.ModelInferRequest.SerializeToString,
            response_deserializer=v2.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            infer(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INTERNAL and "version 9" in err.value.details()
        assert _count(service, "Classify", "INTERNAL") == 1 and _count(service, "Classify", "UNKNOWN") == 0


def test_a_token_is_required_by_every_call_but_health(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with serving_fake(tmp_path, half, token_file=str(token_file)) as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        wrong = ("Bearer wrong", "s3cret-token", "Basic s3cret-token", "Bearer s3cret-token2", "Bearers3cret-token")
        for metadata in ([], *([("authorization", value)] for value in wrong)):
            with pytest.raises(grpc.RpcError) as err:
                stub.Classify(ZERO, timeout=5, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer <token>" in err.value.details()
        answer = stub.Classify(ZERO, timeout=5, metadata=[("authorization", "Bearer s3cret-token")])
        assert answer.prediction.model_version == "9"
        for scheme in ("bearer", "BEARER"):  # a scheme's name is case-insensitive
            assert stub.Classify(ZERO, timeout=5, metadata=[("authorization", f"{scheme} s3cret-token")])
        assert health_status(channel) in ("SERVING", "NOT_SERVING")  # answered without a token
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)  # and v2's own health checks, as over HTTP
        assert v2_stub.ServerLive(v2.ServerLiveRequest(), timeout=5).live
        assert v2_stub.ServerReady(v2.ServerReadyRequest(), timeout=5).ready
        assert _count(service, "Classify", "UNAUTHENTICATED") == 1 + len(wrong)
        target = ["--target", f"127.0.0.1:{service.port}"]
        assert main([*target, "info"]) == 1  # the CLI client without the token
        assert main([*target, "--token-file", str(token_file), "info"]) == 0


def test_calls_past_the_in_flight_limit_are_turned_away_but_health_never_is(tmp_path: Path) -> None:
    def slow(images: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return half(images)

    with serving_fake(tmp_path, slow, max_in_flight=4) as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        calls = [stub.Classify.future(ZERO, timeout=30) for _ in range(12)]
        time.sleep(0.1)
        statuses = [health_status(channel) for _ in range(5)]  # answered although the server is full
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        ready = [v2_stub.ServerReady(v2.ServerReadyRequest(), timeout=5).ready for _ in range(5)]
        codes = [c.code() for c in calls]
        refused = [c for c in calls if c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert stub.Classify(ZERO, timeout=5).prediction.digit == 3  # once drained, calls are admitted again
    assert statuses == ["NOT_SERVING"] * 5  # the stand-in model never turned health to SERVING
    assert ready == [True] * 5
    assert codes.count(grpc.StatusCode.OK) >= 4 and len(refused) >= 4
    assert "4 calls are running or queued, this server's limit (--max-in-flight)" in refused[0].details()
    assert _count(service, "Classify", "RESOURCE_EXHAUSTED") == len(refused)


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_the_guard_wraps_each_method_once() -> None:
    guard = CallGuard(ServiceMetrics("m", "a"), max_in_flight=1, max_streams=1)
    handlers = {m: grpc.unary_unary_rpc_method_handler(lambda request, context: request) for m in ("A", "B")}

    async def found(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        return handlers[details.method.rpartition("/")[2]]

    def intercept(method: str) -> object:
        return asyncio.run(guard.intercept_service(found, _Details(f"/s.S/{method}")))

    first = intercept("A")
    assert intercept("A") is first and intercept("B") is not first
    handlers["A"] = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    assert intercept("A") is not first  # a handler registered anew is wrapped anew
