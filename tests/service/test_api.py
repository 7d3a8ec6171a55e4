"""mnist37.v1 over a real channel: every RPC, the bad-input table, reflection, health and metrics."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from tests.service.conftest import BackgroundService, Registry, health_status

Served = tuple[BackgroundService, grpc.Channel]


def test_classify_batch_stream_and_model_info(served: Served, registry: Registry, test_images: tuple) -> None:
    _, channel = served
    images, digits = test_images
    stub = pb_grpc.ClassifierStub(channel)
    one = stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=images[0].tobytes()), request_id="x"))
    assert one.request_id == "x" and one.prediction.digit == digits[0]
    assert one.prediction.model_version == registry.good
    as_floats = stub.Classify(pb.ClassifyRequest(image=pb.Image(floats=(images[0] / 255.0).tolist())))
    assert as_floats.prediction.p_three == pytest.approx(one.prediction.p_three, abs=1e-6)

    batch = stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[pb.Image(uint8=im.tobytes()) for im in images[:50]]))
    assert batch.model_version == registry.good and len(batch.predictions) == 50
    assert np.mean([p.digit for p in batch.predictions] == digits[:50]) > 0.9
    assert all(p.digit in (3, 7) and 0 <= p.p_three <= 1 for p in batch.predictions)

    requests = (
        pb.ClassifyRequest(image=pb.Image(uint8=im.tobytes()), request_id=str(i)) for i, im in enumerate(images[:20])
    )
    answers = list(stub.ClassifyStream(requests))
    assert [a.request_id for a in answers] == [str(i) for i in range(20)]
    assert [a.prediction.digit for a in answers] == [p.digit for p in batch.predictions[:20]]

    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert (info.name, info.alias, info.version, info.recipe) == ("mnist-3v7", "champion", registry.good, "mlp")
    assert 0.9 < info.test_accuracy <= 1 and len(info.run_id) == 32 and info.loaded_at.seconds > 0


def _image(**fields: object) -> pb.Image:
    return pb.Image(**fields)  # type: ignore[arg-type]


BAD_SINGLE = [
    ("wrong pixel count", _image(uint8=bytes(783)), "expected 784 uint8 pixels, got 783"),
    ("too many floats", _image(floats=[0.0] * 785), "expected 784 float32 pixels, got 785"),
    ("empty image", _image(), "set exactly one of floats"),
    ("both encodings", _image(uint8=bytes(784), floats=[0.0] * 784), "got both"),
    ("NaN", _image(floats=[float("nan")] * 784), "is nan"),
    ("+inf", _image(floats=[0.0] * 783 + [float("inf")]), "pixel 783 of image 0 is inf"),
    ("-inf", _image(floats=[float("-inf")] + [0.0] * 783), "is -inf"),
    ("float over 1", _image(floats=[0.5] * 783 + [255.0]), "must lie in [0, 1], got values in [0.5, 255]"),
    ("negative float", _image(floats=[-0.1] + [0.0] * 783), "must lie in [0, 1]"),
]


@pytest.mark.parametrize(("case", "image", "needle"), BAD_SINGLE, ids=[c[0] for c in BAD_SINGLE])
def test_bad_input_is_invalid_argument_and_the_next_call_works(
    served: Served, case: str, image: pb.Image, needle: str
) -> None:
    _, channel = served
    stub = pb_grpc.ClassifierStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Classify(pb.ClassifyRequest(image=image), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        list(
            stub.ClassifyStream(
                iter([pb.ClassifyRequest(image=_image(uint8=bytes(784))), pb.ClassifyRequest(image=image)])
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "message 1" in err.value.details()
    assert stub.Classify(pb.ClassifyRequest(image=_image(uint8=bytes(784))), timeout=5).prediction.digit in (3, 7)
    assert health_status(channel) == "SERVING"


def test_batch_limits_and_oversized_messages(served: Served) -> None:
    _, channel = served
    stub = pb_grpc.ClassifierStub(channel)
    for images, code, needle in [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
        (
            [_image(uint8=bytes(784))] * 65,
            grpc.StatusCode.INVALID_ARGUMENT,
            "65 images is over this server's maximum of 64",
        ),
        ([_image(uint8=bytes(784)), _image(uint8=bytes(10))], grpc.StatusCode.INVALID_ARGUMENT, "images[1]"),
        ([_image(uint8=bytes(9 * 1024 * 1024))], grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.ClassifyBatch(pb.ClassifyBatchRequest(images=images), timeout=10)
        assert err.value.code() == code, err.value.details()
        assert needle in err.value.details()
    assert len(stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[_image(uint8=bytes(784))] * 64)).predictions) == 64


def test_reflection_lists_every_service(served: Served) -> None:
    _, channel = served
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(stub.ServerReflectionInfo(iter([request])))
    names = {s.name for s in response.list_services_response.service}
    assert names >= {"mnist37.v1.Classifier", "inference.GRPCInferenceService", "grpc.health.v1.Health"}
    expected = {
        "mnist37.v1.Classifier": {"Classify", "ClassifyBatch", "ClassifyStream", "GetModelInfo"},
        "inference.GRPCInferenceService": {"ModelInfer", "ModelMetadata", "ServerLive", "ServerReady"},
    }
    for service_name, wanted in expected.items():
        describe = reflection_pb2.ServerReflectionRequest(file_containing_symbol=service_name)
        files = next(stub.ServerReflectionInfo(iter([describe]))).file_descriptor_response.file_descriptor_proto
        methods = {
            m.name
            for f in map(descriptor_pb2.FileDescriptorProto.FromString, files)
            for s in f.service
            if f"{f.package}.{s.name}" == service_name
            for m in s.method
        }
        assert wanted <= methods, service_name


def test_metrics_count_methods_and_codes(served: Served) -> None:
    service, channel = served
    stub = pb_grpc.ClassifierStub(channel)
    stub.Classify(pb.ClassifyRequest(image=_image(uint8=bytes(784))))
    with pytest.raises(grpc.RpcError):
        stub.Classify(pb.ClassifyRequest(image=_image(uint8=bytes(3))))
    registry = service.metrics.registry
    ok = registry.get_sample_value("mnist37_grpc_requests_total", {"method": "Classify", "code": "OK"})
    bad = registry.get_sample_value("mnist37_grpc_requests_total", {"method": "Classify", "code": "INVALID_ARGUMENT"})
    assert ok and ok >= 1 and bad and bad >= 1
    assert registry.get_sample_value("mnist37_grpc_latency_seconds_count", {"method": "Classify"}) >= 2
    version = registry.get_sample_value(
        "mnist37_served_model_version", {"model": "mnist-3v7", "alias": "champion", "replica": service.replica}
    )
    assert version == float(service.follower.current().version)  # type: ignore[union-attr]
