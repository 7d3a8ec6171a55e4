"""The Open Inference Protocol: the unmodified tritonclient package, plus the raw messages it never sends."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.generated.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.service.conftest import BackgroundService, Registry

Served = tuple[BackgroundService, grpc.Channel]
PROBE = Path(__file__).with_name("triton_probe.py")


def _probe(port: int, images: np.ndarray) -> dict:  # type: ignore[type-arg]
    buffer = io.BytesIO()
    np.save(buffer, images)
    result = subprocess.run(
        [sys.executable, str(PROBE), f"127.0.0.1:{port}", "mnist-3v7"],
        input=buffer.getvalue(),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_tritonclient_works_unchanged(served: Served, registry: Registry, test_images: tuple) -> None:
    service, _ = served
    images, digits = test_images
    report = _probe(service.port, images[:60])
    assert report["live"] and report["ready"] and report["model_ready"]
    assert report["server"]["name"] == "mnist37"
    meta = report["metadata"]
    assert meta["name"] == "mnist-3v7" and meta["versions"] == [registry.good]
    # One input, listed once with one datatype (UINT8 is accepted too), so that a client building its
    # request from the metadata alone sends one tensor named `image`, and gets an answer.
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": ["-1", "784"]}]
    assert [o["name"] for o in meta["outputs"]] == ["digit", "p_three"]
    built = report["from_metadata"]
    assert set(built) == {"digit", "p_three"}, built
    assert built["digit"] in ([3], [7]) and 0.0 <= built["p_three"][0] <= 1.0
    for datatype in ("FP32", "UINT8"):
        answer = report[datatype]
        assert answer["model_version"] == registry.good and answer["id"] == "probe"
        assert np.mean(np.array(answer["digit"]) == digits[:60]) > 0.9
    assert report["FP32"]["digit"] == report["UINT8"]["digit"]
    np.testing.assert_allclose(report["FP32"]["p_three"], report["UINT8"]["p_three"], atol=1e-6)
    errors = report["errors"]
    assert errors["unknown_model"].startswith("StatusCode.NOT_FOUND") and "no-such-model" in errors["unknown_model"]
    assert errors["wrong_shape"].startswith("StatusCode.INVALID_ARGUMENT") and "[1, 783]" in errors["wrong_shape"]
    assert errors["wrong_datatype"].startswith("StatusCode.INVALID_ARGUMENT") and "INT64" in errors["wrong_datatype"]

    # Every field we declare has the number, type and label of the published protocol's (the probe
    # reads theirs in its own process: both packages register the `inference` proto package).
    ours = {}
    for name, desc in pb.DESCRIPTOR.message_types_by_name.items():
        ours[name] = {f.name: [f.number, f.type, f.label] for f in desc.fields}
        for nested in desc.nested_types:
            ours[f"{name}.{nested.name}"] = {f.name: [f.number, f.type, f.label] for f in nested.fields}
    theirs = report["descriptors"]
    for message, message_fields in ours.items():
        assert message in theirs, message
        for field, spec in message_fields.items():
            assert theirs[message].get(field) == spec, f"{message}.{field}"


def _request(datatype: str = "FP32", shape: tuple[int, ...] = (1, 784), **kw: object) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name=kw.pop("input_name", "image"), datatype=datatype, shape=shape)  # type: ignore[arg-type]
    if "contents" in kw:
        tensor.contents.CopyFrom(kw.pop("contents"))  # type: ignore[arg-type]
    return pb.ModelInferRequest(model_name=kw.pop("model", "mnist-3v7"), inputs=[tensor], **kw)  # type: ignore[arg-type]


def test_contents_and_raw_give_the_same_answer(served: Served, test_images: tuple) -> None:
    _, channel = served
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    images = test_images[0][:3]
    floats = (images / 255.0).astype(np.float32)
    variants = [
        _request("FP32", (3, 784), contents=pb.InferTensorContents(fp32_contents=floats.ravel().tolist())),
        _request("FP32", (3, 784), raw_input_contents=[floats.tobytes()]),
        _request("UINT8", (3, 784), contents=pb.InferTensorContents(uint_contents=images.ravel().tolist())),
        _request("UINT8", (3, 784), raw_input_contents=[images.tobytes()]),
    ]
    answers = []
    for request in variants:
        response = stub.ModelInfer(request)
        names = [o.name for o in response.outputs]
        digit = np.frombuffer(response.raw_output_contents[names.index("digit")], "<i4")
        answers.append(digit.tolist())
    assert all(a == answers[0] for a in answers)
    only_p = stub.ModelInfer(
        _request("UINT8", (3, 784), raw_input_contents=[images.tobytes()], outputs=[{"name": "p_three"}])
    )
    assert [o.name for o in only_p.outputs] == ["p_three"] and len(only_p.raw_output_contents) == 1


BAD_V2 = [
    (
        "unknown model",
        _request(model="mnist-9v1", raw_input_contents=[bytes(3136)]),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'mnist-9v1'",
    ),
    (
        "unknown version",
        _request(model_version="999", raw_input_contents=[bytes(3136)]),
        grpc.StatusCode.NOT_FOUND,
        "version '999'",
    ),
    (
        # Quoted back cut short: gRPC sends a message in a trailer, and past its limit the client would
        # see RESOURCE_EXHAUSTED in place of the status.
        "a version too long to quote",
        _request(model_version="9" * 20_000, raw_input_contents=[bytes(3136)]),
        grpc.StatusCode.NOT_FOUND,
        "999… (19",
    ),
    (
        "a datatype too long to quote",
        _request("\U0001f600" * 5_000, raw_input_contents=[bytes(3136)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "more characters)",
    ),
    (
        "unknown version, whatever the inputs",
        _request("FP64", model_version="999", raw_input_contents=[bytes(7)]),
        grpc.StatusCode.NOT_FOUND,
        "version '999'",
    ),
    (
        "wrong datatype",
        _request("FP64", raw_input_contents=[bytes(6272)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FP32 or UINT8, got 'FP64'",
    ),
    (
        "wrong shape",
        _request(shape=(28, 28), raw_input_contents=[bytes(3136)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got [28, 28]",
    ),
    (
        "flat shape",
        _request(shape=(784,), raw_input_contents=[bytes(3136)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "[N, 784]",
    ),
    ("zero batch", _request(shape=(0, 784), raw_input_contents=[b""]), grpc.StatusCode.INVALID_ARGUMENT, "N ≥ 1"),
    (
        "both contents",
        _request(raw_input_contents=[bytes(3136)], contents=pb.InferTensorContents(fp32_contents=[0.0] * 784)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got both",
    ),
    ("neither", _request(), grpc.StatusCode.INVALID_ARGUMENT, "got neither"),
    (
        "raw too short",
        _request(raw_input_contents=[bytes(3135)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 3136 raw bytes, got 3135",
    ),
    (
        "uint8 raw too long",
        _request("UINT8", raw_input_contents=[bytes(785)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 784 raw bytes, got 785",
    ),
    (
        "contents count",
        _request(contents=pb.InferTensorContents(fp32_contents=[0.0] * 700)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got 700",
    ),
    (
        "contents field of another datatype",
        _request(contents=pb.InferTensorContents(int_contents=[0] * 784)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FP32 data goes in contents.fp32_contents alone, got ['int_contents']",
    ),
    (
        "two contents fields",
        _request(contents=pb.InferTensorContents(fp32_contents=[0.0] * 784, fp64_contents=[0.0] * 784)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got ['fp32_contents', 'fp64_contents']",
    ),
    (
        "uint8 over 255",
        _request("UINT8", contents=pb.InferTensorContents(uint_contents=[256] * 784)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got 256",
    ),
    (
        "NaN raw",
        _request(raw_input_contents=[np.full(784, np.nan, np.float32).tobytes()]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is nan",
    ),
    (
        "floats as 0..255",
        _request(raw_input_contents=[np.full(784, 200, np.float32).tobytes()]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "[0, 1]",
    ),
    (
        "batch over maximum",
        _request("UINT8", (65, 784), raw_input_contents=[bytes(65 * 784)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "maximum of 64",
    ),
    (
        "input name",
        _request(input_name="pixels", raw_input_contents=[bytes(3136)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "named 'image'",
    ),
    (
        "unknown output",
        _request(raw_input_contents=[bytes(3136)], outputs=[{"name": "logits"}]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'logits'",
    ),
    (
        "output twice",
        _request(raw_input_contents=[bytes(3136)], outputs=[{"name": "digit"}, {"name": "digit"}]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got ['digit'] more than once",
    ),
    (
        "two raw entries",
        _request(raw_input_contents=[bytes(3136), bytes(4)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got 2",
    ),
]


@pytest.mark.parametrize(("case", "request_", "code", "needle"), BAD_V2, ids=[c[0] for c in BAD_V2])
def test_bad_v2_requests(
    served: Served, case: str, request_: pb.ModelInferRequest, code: grpc.StatusCode, needle: str
) -> None:
    _, channel = served
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request_, timeout=5)
    assert err.value.code() == code
    assert needle in err.value.details()
    assert stub.ModelInfer(_request("UINT8", raw_input_contents=[bytes(784)]), timeout=5).model_version


def test_readiness_and_metadata_rpcs(served: Served, registry: Registry) -> None:
    _, channel = served
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="mnist-3v7", version=registry.good)).ready
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "mnist37"
