"""The HTTP side over real connections: the Open Inference Protocol's REST routes through the unmodified
tritonclient.http, every mistake as a JSON error, the limits, token, TLS and CORS shared with gRPC,
and one forward path for both protocols."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.http as triton_http

from service.generated.inference import grpc_predict_v2_pb2 as v2_pb
from service.generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from service.http_protocol import CODINGS
from tests.conftest import REPO, free_port, new_store, wait_until
from tests.service.certificates import make_certificates
from tests.service.conftest import BackgroundService, Registry, config_for, running, serving_fake

MODEL = "mnist-3v7"
Reply = tuple[int, dict[str, str], bytes]


def call(port: int, method: str, path: str, body: bytes | None = None, **headers: str) -> Reply:
    """One HTTP request as curl would send it; the status, headers and body, whatever the status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method=method,
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def infer_body(images: np.ndarray, datatype: str = "UINT8", **extra: object) -> bytes:
    tensor = {"name": "image", "shape": list(images.shape), "datatype": datatype, "data": images.tolist()}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def test_tritonclient_http_binary_and_json_answer_as_grpc_does(
    served_http: BackgroundService, registry: Registry, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    images, digits = test_images[0][:60], test_images[1][:60]
    client = triton_http.InferenceServerClient(f"127.0.0.1:{served_http.http_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, registry.good) and not client.is_model_ready(MODEL, registry.other_good)
    meta = client.get_model_metadata(MODEL)
    assert meta["versions"] == [registry.good]
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 784]}]
    assert [o["name"] for o in meta["outputs"]] == ["digit", "p_three"]
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]

    answers = {}
    for datatype, array in (("FP32", images.astype(np.float32) / 255), ("UINT8", images)):
        for binary in (True, False):
            tensor = triton_http.InferInput("image", list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            outputs = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in ("digit", "p_three")]
            result = client.infer(MODEL, [tensor], outputs=outputs, request_id=f"{datatype}-{binary}")
            response = result.get_response()
            assert response["model_version"] == registry.good and response["id"] == f"{datatype}-{binary}"
            assert ("data" not in response["outputs"][0]) is binary  # binary outputs travel after the JSON
            answers[datatype, binary] = result.as_numpy("digit"), result.as_numpy("p_three")
    first_digits, first_p = answers["FP32", True]
    assert np.mean(first_digits == digits) > 0.9
    for got_digits, got_p in answers.values():
        np.testing.assert_array_equal(got_digits, first_digits)
        np.testing.assert_allclose(got_p, first_p, atol=1e-6)

    # gRPC, on the same server, answers the same images the same.
    with grpc.insecure_channel(f"127.0.0.1:{served_http.port}") as channel:
        stub = pb_grpc.ClassifierStub(channel)
        batch = stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[pb.Image(uint8=row.tobytes()) for row in images]))
    np.testing.assert_allclose([p.p_three for p in batch.predictions], first_p, atol=1e-6)
    with pytest.raises(triton_http.InferenceServerException, match="unknown model 'nope'"):
        client.infer("nope", [tensor])


def test_json_data_may_be_nested_or_flat_and_parameters_are_accepted(served_http: BackgroundService) -> None:
    image = np.zeros((2, 784), np.uint8)
    for data in (image.tolist(), image.reshape(-1).tolist()):
        body = json.dumps(
            {
                "id": "x",
                "parameters": {"note": 1},
                "inputs": [{"name": "image", "shape": [2, 784], "datatype": "UINT8", "data": data, "parameters": {}}],
                "outputs": [{"name": "digit"}],
            }
        ).encode()
        status, _, reply = call(served_http.http_port, "POST", f"/v2/models/{MODEL}/infer", body)
        answer = json.loads(reply)
        assert status == 200 and answer["id"] == "x" and [o["name"] for o in answer["outputs"]] == ["digit"]
        assert answer["outputs"][0]["shape"] == [2] and answer["outputs"][0]["datatype"] == "INT32"


def _half(images: np.ndarray) -> np.ndarray:
    return np.full(len(images), 0.5, np.float32)


BAD_INFER = [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"[1, 2]", "application/json", 400, "expected a JSON object, got list"),
    (infer_body(np.zeros((1, 783), np.uint8)), "application/json", 400, "expected shape [N, 784]"),
    (
        infer_body(np.zeros((1, 784), np.uint8), "INT64"),
        "application/json",
        400,
        "expected datatype FP32 or UINT8, got 'INT64'",
    ),
    (
        json.dumps(
            {"inputs": [{"name": "image", "shape": [1, 784], "datatype": ["FP32"], "data": [0] * 784}]}
        ).encode(),
        "application/json",
        400,
        "expected datatype FP32 or UINT8, got ['FP32']",
    ),
    (infer_body(np.full((1, 784), 300)), "application/json", 400, "UINT8 values must lie in [0, 255]"),
    (infer_body(np.full((1, 784), 2.0), "FP32"), "application/json", 400, "must lie in [0, 1]"),
    (
        json.dumps(
            {"inputs": [{"name": "image", "shape": [1, 784], "datatype": "UINT8", "data": ["a"] * 784}]}
        ).encode(),
        "application/json",
        400,
        "expected UINT8 numbers",
    ),
    (
        # Strings and booleans that numpy would read as numbers are not numbers in JSON.
        json.dumps(
            {"inputs": [{"name": "image", "shape": [1, 784], "datatype": "FP32", "data": ["0"] * 784}]}
        ).encode(),
        "application/json",
        400,
        "expected FP32 numbers",
    ),
    (
        json.dumps(
            {"inputs": [{"name": "image", "shape": [1, 784], "datatype": "UINT8", "data": [True] * 784}]}
        ).encode(),
        "application/json",
        400,
        "expected UINT8 numbers",
    ),
    (
        json.dumps(
            {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}]}
        ).encode(),
        "application/json",
        400,
        "expected one input named 'image'",
    ),
    (
        json.dumps({"inputs": [{"name": "image", "shape": [2, 784], "datatype": "UINT8", "data": [0] * 784}]}).encode(),
        "application/json",
        400,
        "needs 1568 values in data, got 784",
    ),
    (infer_body(np.zeros((1, 784), np.uint8), outputs=[{"name": "known"}]), "application/json", 400, "cannot abstain"),
    (
        infer_body(np.zeros((1, 784), np.uint8), outputs=[{"name": "digit", "parameters": {"binary_data": "yes"}}]),
        "application/json",
        400,
        "outputs[0].parameters.binary_data: expected true or false, got 'yes'",
    ),
    (
        infer_body(np.zeros((1, 784), np.uint8), parameters={"binary_data_output": 1}),
        "application/json",
        400,
        "parameters.binary_data_output: expected true or false, got 1",
    ),
    (
        # What the client sent is quoted back cut short, not a megabyte of it.
        json.dumps({"inputs": [{"name": "x" * 1_000_000, "shape": [1, 784], "datatype": "UINT8"}]}).encode(),
        "application/json",
        400,
        "xxx… (999540 more characters)",
    ),
    (infer_body(np.zeros((1, 784), np.uint8)), "text/plain", 415, "expected Content-Type application/json"),
    # orjson calls any byte that is not UTF-8 a surrogate, at the document's start.
    (b'{"id": "caf\xe9"}', "application/json", 400, "expected UTF-8, got byte 0xe9 at offset 11"),
    (
        # A number beyond float32's range, named as sent rather than as the infinity it would become.
        infer_body(np.array([[0.5] * 783 + [1e39]]), "FP32"),
        "application/json",
        400,
        "pixel 783 of image 0 is 1e+39, beyond FP32's range",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "status", "needle"), BAD_INFER)
def test_mistakes_get_a_json_error_naming_what_was_expected(
    tmp_path: Path, body: bytes, content_type: str, status: int, needle: str
) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        got, headers, reply = call(
            service.http_port, "POST", f"/v2/models/{MODEL}/infer", body, Content_Type=content_type
        )
        assert got == status and headers["Content-Type"].startswith("application/json")
        assert needle in json.loads(reply)["error"] and b"Traceback" not in reply
        # The next request is served.
        assert (
            call(service.http_port, "POST", f"/v2/models/{MODEL}/infer", infer_body(np.zeros((1, 784), np.uint8)))[0]
            == 200
        )


def test_binary_tensors_are_checked_against_their_stated_size(tmp_path: Path) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        header = json.dumps(
            {
                "inputs": [
                    {"name": "image", "shape": [1, 784], "datatype": "FP32", "parameters": {"binary_data_size": 3136}}
                ]
            }
        ).encode()
        path = f"/v2/models/{MODEL}/infer"

        def binary(header: bytes) -> Reply:  # the header, one image's FP32 pixels, and the header's length
            pixels = np.zeros(784, "<f4").tobytes()
            return call(
                service.http_port, "POST", path, header + pixels, Inference_Header_Content_Length=str(len(header))
            )

        assert binary(header)[0] == 200
        short = call(
            service.http_port, "POST", path, header + b"\0" * 100, Inference_Header_Content_Length=str(len(header))
        )
        assert short[0] == 400 and "needs 3136 binary bytes" in json.loads(short[2])["error"]
        wrong = call(service.http_port, "POST", path, header, Inference_Header_Content_Length="99999")
        assert wrong[0] == 400 and "Inference-Header-Content-Length" in json.loads(wrong[2])["error"]
        wrong = binary(header.replace(b'"binary_data_size": 3136', b'"binary_data_size": 3136.0'))
        assert wrong[0] == 400
        assert "binary_data_size: expected a byte count, got 3136.0" in json.loads(wrong[2])["error"]
        body, n = header + np.zeros(784, "<f4").tobytes(), str(len(header))
        for spelled in (f"+{n}", "_".join(n), f"{n}.0"):  # a byte count is digits, as Content-Length's is
            wrong = call(service.http_port, "POST", path, body, Inference_Header_Content_Length=spelled)
            assert wrong[0] == 400 and f"expected a byte count, got {spelled!r}" in json.loads(wrong[2])["error"]


def test_routes_methods_sizes_and_a_missing_model(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    with running(config_for(store, http_port=free_port(), max_message_bytes=100_000)) as (service, _):
        port = service.http_port
        status, _, reply = call(port, "POST", f"/v2/models/{MODEL}/infer", infer_body(np.zeros((1, 784), np.uint8)))
        assert status == 503 and "no model loaded yet" in json.loads(reply)["error"]  # NOT_SERVING's HTTP face
        assert call(port, "GET", "/v2/health/ready")[0] == 503 and call(port, "GET", "/v2/health/live")[0] == 200
        assert call(port, "GET", "/v2/models/other")[0] == 404
        status, _, reply = call(port, "GET", "/nowhere")
        assert status == 404 and "no such route: GET /nowhere" in json.loads(reply)["error"]
        status, headers, reply = call(port, "PUT", "/v2/health/live", b"{}")
        assert status == 405 and "GET" in headers["Allow"] and "PUT is not allowed" in json.loads(reply)["error"]
        status, _, reply = call(port, "POST", f"/v2/models/{MODEL}/infer", b"0" * 200_000)
        assert status == 413 and "100000" in json.loads(reply)["error"]


def test_a_version_in_the_path_must_be_the_served_one(tmp_path: Path) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        body = infer_body(np.zeros((1, 784), np.uint8))
        assert call(service.http_port, "POST", f"/v2/models/{MODEL}/versions/9/infer", body)[0] == 200
        status, _, reply = call(service.http_port, "POST", f"/v2/models/{MODEL}/versions/8/infer", body)
        assert status == 404 and "version '8'" in json.loads(reply)["error"]
        for wrong in (b'{"inputs": []}', b"not json"):  # named as the wrong version, whatever the body
            status, _, reply = call(service.http_port, "POST", f"/v2/models/{MODEL}/versions/8/infer", wrong)
            assert status == 404 and "version '8'" in json.loads(reply)["error"]


def test_a_model_or_version_not_served_is_a_404_before_its_body_arrives(tmp_path: Path) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port(), http_read_seconds=30.0) as (service, _):
        for path in ("/v2/models/other/infer", f"/v2/models/{MODEL}/versions/8/infer"):
            with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Content-Length: 100\r\n\r\n".encode()  # and no body: a read would wait out the read limit
                )
                assert sock.recv(65536).startswith(b"HTTP/1.1 404"), path
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200


def test_the_token_guards_every_route_but_health_and_the_page(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with serving_fake(tmp_path, _half, http_port=free_port(), token_file=str(token)) as (service, _):
        port, body = service.http_port, infer_body(np.zeros((1, 784), np.uint8))
        status, headers, reply = call(port, "POST", f"/v2/models/{MODEL}/infer", body)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and "Bearer" in json.loads(reply)["error"]
        assert call(port, "GET", f"/v2/models/{MODEL}", Authorization="Bearer wrong")[0] == 401
        assert call(port, "POST", f"/v2/models/{MODEL}/infer", body, Authorization="Bearer s3cret")[0] == 200
        assert call(port, "POST", f"/v2/models/{MODEL}/infer", body, Authorization="bearer s3cret")[0] == 200
        assert call(port, "GET", "/v2/health/ready")[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # bytes that are not UTF-8
            sock.sendall(
                f"GET /v2/models/{MODEL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".encode(
                    "latin-1"
                )
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 401")


def test_a_body_it_cannot_decode_is_a_400_and_a_coding_it_does_not_know_a_415_or_501(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    compressed = gzip.compress(infer_body(np.zeros((1, 784), np.uint8)))
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        path = f"/v2/models/{MODEL}/infer"
        assert call(service.http_port, "POST", path, compressed, Content_Encoding="gzip")[0] == 200
        for encoding in ("gzip", "deflate", "br"):
            with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f'Content-Encoding: {encoding}\r\nContent-Length: 13\r\n\r\n{{"inputs":[]}}'.encode()
                )
                head, _, body = sock.recv(4096).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), head
            assert json.loads(body)["error"].startswith(
                "the request body could not be read as its Content-Encoding says"
            )
        assert call(service.http_port, "POST", path, compressed, Content_Encoding="gzip")[0] == 200
        # aiohttp decodes one coding of those it knows, and passes anything else on as it came.
        unknown = ["snappy", "x-gzip", "gzip, br", "identity, gzip"] + ([] if "zstd" in CODINGS else ["zstd"])
        for coding in unknown:
            status, _, reply = call(service.http_port, "POST", path, compressed, Content_Encoding=coding)
            assert status == 415, coding
            assert (
                json.loads(reply)["error"]
                == f"expected no Content-Encoding or one of {', '.join(CODINGS)}, got {coding!r}"
            )
        # A transfer coding other than chunked: aiohttp would read `gzip, chunked` as chunked alone.
        for expect in ("", "Expect: 100-continue\r\n"):  # and no 100 Continue for a body it will not read
            with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Transfer-Encoding: gzip, chunked\r\n{expect}\r\n{len(compressed):x}\r\n".encode()
                    + compressed
                    + b"\r\n0\r\n\r\n"
                )
                head, _, body = sock.recv(4096).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 501 "), head
            assert json.loads(body)["error"] == (
                "expected Transfer-Encoding chunked alone, got gzip too (a compressed body says so in Content-Encoding)"
            )
        plain = infer_body(np.zeros((1, 784), np.uint8))
        assert call(service.http_port, "POST", path, plain, Content_Encoding="identity")[0] == 200
        assert call(service.http_port, "GET", "/v2/health/ready", Content_Encoding="snappy")[0] == 200  # no body
        counted = service.metrics.registry.get_sample_value
        assert sum(
            counted("mnist37_http_requests_total", {"route": r, "status": "415"}) or 0
            for r in ("/v2/models/{model}/infer", "unmatched")
        ) == len(unknown)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a client's mistake logged as a failure"


def test_a_draining_server_still_answers_but_is_no_longer_ready(tmp_path: Path) -> None:
    # What a balancer reads to take the replica out (Envoy checks /v2/health/ready over HTTP), the same
    # on every protocol, while calls already on their way are answered.
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, channel):
        port, body = service.http_port, infer_body(np.zeros((1, 784), np.uint8))
        v2 = v2_grpc.GRPCInferenceServiceStub(channel)
        ready = call(port, "GET", "/v2/health/ready")
        assert (ready[0], json.loads(ready[2])) == (200, {"ready": True})
        assert v2.ServerReady(v2_pb.ServerReadyRequest(), timeout=5).ready
        with service.stopping(grace=10, drain=2):
            wait_until(lambda: call(port, "GET", "/v2/health/ready")[0] == 503, 1, "HTTP not ready")
            assert json.loads(call(port, "GET", "/v2/health/ready")[2]) == {"ready": False}
            assert not v2.ServerReady(v2_pb.ServerReadyRequest(), timeout=5).ready
            assert call(port, "POST", f"/v2/models/{MODEL}/infer", body)[0] == 200
            assert call(port, "GET", "/v2/health/live")[0] == 200


def test_the_in_flight_limit_is_shared_with_grpc(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(images: np.ndarray) -> np.ndarray:
        release.wait(10)
        return _half(images)

    with serving_fake(tmp_path, slow, http_port=free_port(), max_in_flight=1) as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        pending = stub.Classify.future(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=20)
        wait_until(lambda: service.guard.in_flight == 1, 10, "the gRPC call holds the one slot")
        status, headers, reply = call(
            service.http_port, "POST", f"/v2/models/{MODEL}/infer", infer_body(np.zeros((1, 784), np.uint8))
        )
        assert status == 429 and "--max-in-flight" in json.loads(reply)["error"] and headers["Retry-After"] == "1"
        release.set()
        assert pending.result().prediction.digit in (3, 7)
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200


def test_http_and_grpc_calls_that_arrive_together_share_a_forward(tmp_path: Path) -> None:
    batches: list[int] = []
    gate = threading.Event()

    def model(images: np.ndarray) -> np.ndarray:
        batches.append(len(images))
        if len(batches) == 1:
            gate.wait(10)  # the first forward runs until both calls below have queued
        return _half(images)

    with serving_fake(tmp_path, model, http_port=free_port()) as (service, channel):
        stub = pb_grpc.ClassifierStub(channel)
        first = stub.Classify.future(pb.ClassifyRequest(image=pb.Image(uint8=bytes(784))), timeout=20)
        wait_until(lambda: batches == [1], 10, "the first forward started")
        via_grpc = stub.ClassifyBatch.future(
            pb.ClassifyBatchRequest(images=[pb.Image(uint8=bytes(784))] * 2), timeout=20
        )
        replies: list[Reply] = []
        via_http = threading.Thread(
            target=lambda: replies.append(
                call(service.http_port, "POST", f"/v2/models/{MODEL}/infer", infer_body(np.zeros((3, 784), np.uint8)))
            )
        )
        via_http.start()
        wait_until(lambda: service.guard.in_flight == 3, 10, "both calls queued behind the first forward")
        gate.set()
        first.result(), via_grpc.result()
        via_http.join(10)
        assert replies[0][0] == 200 and json.loads(replies[0][2])["model_version"] == "9"
    assert batches == [1, 5]  # the gRPC call's 2 images and the HTTP call's 3 in one forward


def test_metrics_count_http_requests_by_route_and_status(tmp_path: Path) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        port = service.http_port
        call(port, "POST", f"/v2/models/{MODEL}/infer", infer_body(np.zeros((1, 784), np.uint8)))
        call(port, "POST", f"/v2/models/{MODEL}/infer", b"{")
        call(port, "GET", "/no/such/path")
        sample = service.metrics.registry.get_sample_value
        route = "/v2/models/{model}/infer"
        assert sample("mnist37_http_requests_total", {"route": route, "status": "200"}) == 1
        assert sample("mnist37_http_requests_total", {"route": route, "status": "400"}) == 1
        assert sample("mnist37_http_requests_total", {"route": "unmatched", "status": "404"}) == 1
        assert sample("mnist37_http_latency_seconds_count", {"route": route}) == 2


def test_cors_is_off_by_default_and_names_only_the_listed_origins(tmp_path: Path) -> None:
    origin = "http://draw.example"
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        _, headers, _ = call(service.http_port, "GET", f"/v2/models/{MODEL}", Origin=origin)
        assert "Access-Control-Allow-Origin" not in headers
        assert call(service.http_port, "OPTIONS", f"/v2/models/{MODEL}/infer", Origin=origin)[0] == 405
    with serving_fake(tmp_path / "cors", _half, http_port=free_port(), cors_origins=f"{origin}, http://other") as (
        service,
        _,
    ):
        status, headers, _ = call(
            service.http_port,
            "OPTIONS",
            f"/v2/models/{MODEL}/infer",
            Origin=origin,
            Access_Control_Request_Method="POST",
        )
        assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
        assert "Authorization" in headers["Access-Control-Allow-Headers"]
        _, headers, _ = call(service.http_port, "GET", f"/v2/models/{MODEL}", Origin=origin)
        assert headers["Access-Control-Allow-Origin"] == origin
        _, headers, _ = call(service.http_port, "GET", f"/v2/models/{MODEL}", Origin="http://evil.example")
        assert "Access-Control-Allow-Origin" not in headers


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    settings = {"http_port": free_port(), "http_read_seconds": 30.0}
    with serving_fake(tmp_path, _half, max_message_bytes=10_000, **settings) as (service, _):
        with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
            sock.sendall(
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 20000\r\n\r\n{".encode()  # and the rest never, or slower than the read's limit
            )
            reply = sock.recv(4096)  # within the socket's timeout, well before the body's read limit
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413")
        assert json.loads(body)["error"] == "a body of 20000 bytes is over the limit of 10000"
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200


def test_a_refused_body_is_not_waited_for_once_its_client_has_gone(tmp_path: Path) -> None:
    settings = {"http_port": free_port(), "http_read_seconds": 30.0}
    with serving_fake(tmp_path, _half, max_message_bytes=10_000, **settings) as (service, _):
        before = service.tasks()
        with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
            sock.sendall(
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 20000\r\n\r\n{".encode()
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")
            # The connection's handler reads what is left of the body, for up to the read's time limit,
            assert service.tasks() > before
        # and stops as soon as the client has gone: nothing more can arrive.
        wait_until(lambda: service.tasks() == before, 5, "the connection's handler to end")


def _expecting(
    port: int,
    body: bytes,
    expectation: str,
    declared: int | None = None,
    token: str = "",
    request_line: str = f"POST /v2/models/{MODEL}/infer",
    content_type: str = "application/json",
) -> bytes:
    """Headers with an Expect, then what the server sends before any body: the interim 100 or its answer."""
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"{request_line} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{authorization}"
        f"Content-Length: {declared or len(body)}\r\nExpect: {expectation}\r\n\r\n".encode()
    )
    first = sock.recv(65536)
    if first == b"HTTP/1.1 100 Continue\r\n\r\n":
        sock.sendall(body)
        first += sock.recv(65536)
    sock.close()
    return first


def test_expect_100_continue_is_answered_only_for_a_body_that_would_be_read(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    settings = {"http_port": free_port(), "http_read_seconds": 30.0, "token_file": str(token)}
    with serving_fake(tmp_path, _half, max_message_bytes=10_000, **settings) as (service, _):
        port, body = service.http_port, infer_body(np.zeros((1, 784), np.uint8))
        answer = _expecting(port, body, "100-Continue", token="s3cret")
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        # No 100 for a body that would be refused: the refusal comes at once, before the client sends it.
        for declared, token_sent, status, message in (
            (20_000, "s3cret", b"413", "a body of 20000 bytes is over the limit of 10000"),
            (None, "", b"401", "missing or wrong token"),
            (None, "s3cret", b"417", "expected no Expect header or 'Expect: 100-continue', got 'fast-please'"),
        ):
            expectation = "fast-please" if status == b"417" else "100-continue"
            head, _, reply = _expecting(port, body, expectation, declared, token_sent).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 " + status), head
            assert b"\r\ncontent-type: application/json\r\n" in head.lower() + b"\r\n"
            assert json.loads(reply)["error"].startswith(message)
        # Expect is a list: empty values are no expectation, and every line counts.
        assert (
            call(port, "POST", f"/v2/models/{MODEL}/infer", body, Expect=" , ", Authorization="Bearer s3cret")[0] == 200
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nExpect: fast-please\r\n\r\n".encode()
                + body
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 417")
        # Nor for a request that no route takes: its 404 or 405 comes at once, and an unknown
        # expectation's 417, as JSON errors counted like every other.
        for request_line, expectation, status, message in (
            ("POST /nowhere", "100-continue", b"404", "no such route: POST /nowhere"),
            (f"POST /v2/models/{MODEL}/infer/", "100-continue", b"404", "no such route"),
            ("POST /v2/health/live", "100-continue", b"405", "POST is not allowed on /v2/health/live; allowed: GET"),
            ("POST /nowhere", "fast-please", b"417", "expected no Expect header"),
        ):
            head, _, reply = _expecting(port, body, expectation, 20_000, "s3cret", request_line).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 " + status), head
            assert b"\r\ncontent-type: application/json\r\n" in head.lower() + b"\r\n"
            assert json.loads(reply)["error"].startswith(message)
        # Nor for a model or version not served, or a body of a type infer cannot read: the 404 or 415
        # comes before the body.
        for request_line, content_type, status, message in (
            ("POST /v2/models/other/infer", "application/json", b"404", "unknown model 'other'"),
            (f"POST /v2/models/{MODEL}/versions/8/infer", "application/json", b"404", "version '8' of 'mnist-3v7'"),
            (f"POST /v2/models/{MODEL}/infer", "text/plain", b"415", "expected Content-Type application/json"),
        ):
            answer = _expecting(port, body, "100-continue", None, "s3cret", request_line, content_type)
            head, _, reply = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 " + status), head
            assert json.loads(reply)["error"].startswith(message)
        route = "/v2/models/{model}/infer"
        sample = service.metrics.registry.get_sample_value
        for counted, times in (("200", 2), ("413", 1), ("401", 1), ("417", 2)):
            assert sample("mnist37_http_requests_total", {"route": route, "status": counted}) == times, counted
        for counted, times in (("404", 2), ("405", 1), ("417", 1)):
            assert sample("mnist37_http_requests_total", {"route": "unmatched", "status": counted}) == times, counted
        assert call(port, "GET", "/v2/health/ready")[0] == 200


def test_a_client_that_resets_after_expecting_100_continue_is_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", service.http_port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            sock.sendall(
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            sock.close()
        time.sleep(0.5)
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(("service", "aiohttp"))]
    assert not logged, [r.getMessage() for r in logged]


def test_a_client_gone_before_its_body_is_counted_not_logged_as_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
            sock.sendall(
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 5000\r\n\r\n{".encode()
            )
            time.sleep(0.3)  # the server is reading the body when the client goes
        gone = {"route": "/v2/models/{model}/infer", "status": "499"}
        deadline = time.monotonic() + 10
        while service.metrics.registry.get_sample_value("mnist37_http_requests_total", gone) != 1:
            assert time.monotonic() < deadline, "the request was never counted as its client's close"
            time.sleep(0.05)
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(("service", "aiohttp"))]
    assert not logged, [r.getMessage() for r in logged]


def test_idle_and_slow_clients_are_timed_out_counted_once_and_cannot_hold_health(tmp_path: Path) -> None:
    settings = {"http_port": free_port(), "http_idle_seconds": 1.0, "http_read_seconds": 1.0}
    with serving_fake(tmp_path, _half, max_message_bytes=10_000, **settings) as (service, _):
        port = service.http_port
        idle = socket.create_connection(("127.0.0.1", port))
        slow_headers = socket.create_connection(("127.0.0.1", port))
        slow_headers.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        slow_body = socket.create_connection(("127.0.0.1", port))
        slow_body.sendall(
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 5000\r\n\r\n{".encode()
        )
        too_big = socket.create_connection(("127.0.0.1", port))  # refused whole, then idle
        too_big.sendall(
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 20000\r\n\r\n".encode()
            + b" " * 12_000
        )
        start = time.monotonic()
        assert call(port, "GET", "/v2/health/ready")[0] == 200  # answered while they hang on
        for sock in (idle, slow_headers, slow_body, too_big):
            sock.settimeout(10)
        assert too_big.recv(4096).startswith(b"HTTP/1.1 413")
        too_big.sendall(b" " * 8_000)  # the rest of its body, after the answer
        reply = slow_body.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 1s" in reply
        assert idle.recv(1) == b"" and slow_headers.recv(1) == b"" and too_big.recv(1) == b""  # closed by the server
        assert slow_body.recv(1) == b""  # closed once what was left of its body had --http-read-seconds to come
        assert time.monotonic() - start < 5
        time.sleep(0.2)  # the counters move as the server sees the closes
        timeouts = {
            reason: service.metrics.registry.get_sample_value("mnist37_http_timeouts_total", {"reason": reason})
            for reason in ("body", "idle", "headers", "answer")
        }
        for sock in (idle, slow_headers, slow_body, too_big):
            sock.close()
        # Once each: the 408's connection is not idle too, the rest of a refused body is no half-sent request,
        # and the health call's connection was closed by its client, which is no timeout.
        assert timeouts == {"body": 1, "idle": 2, "headers": 1, "answer": 0}


def test_a_kept_alive_connection_lives_while_it_asks_or_waits_for_an_answer(tmp_path: Path) -> None:
    """Idle is measured from the last answer, and a request being answered is never idle, however long."""
    release = threading.Event()

    def slow(images: np.ndarray) -> np.ndarray:
        release.wait(10)
        return _half(images)

    settings = {"http_port": free_port(), "http_idle_seconds": 1.0, "http_read_seconds": 1.0}
    with serving_fake(tmp_path, slow, **settings) as (service, _):
        body = infer_body(np.zeros((1, 784), np.uint8))
        request = (
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        kept = socket.create_connection(("127.0.0.1", service.http_port))
        kept.settimeout(10)
        threading.Timer(2.5, release.set).start()  # the first answer takes 2.5 idle limits
        start = time.monotonic()
        kept.sendall(request)
        assert kept.recv(65536).startswith(b"HTTP/1.1 200") and time.monotonic() - start > 2
        for _ in range(3):  # asked again within the limit each time: kept open
            time.sleep(0.6)
            kept.sendall(request)
            assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        assert kept.recv(1) == b""  # then idle: closed, a second or a little more after the last answer
        assert 0.9 < time.monotonic() - answered < 2
        kept.close()
        assert service.metrics.registry.get_sample_value("mnist37_http_timeouts_total", {"reason": "idle"}) == 1


def test_a_client_that_shuts_its_sending_side_gets_its_answer_then_the_close(tmp_path: Path) -> None:
    """A half-close (`nc -N`, `shutdown(SHUT_WR)`) after a request: answered, then closed at once, not
    left to the idle limit; before a request, or in the middle of a body, closed at once."""
    release = threading.Event()

    def slow(images: np.ndarray) -> np.ndarray:
        release.wait(10)
        return _half(images)

    def half_closed(port: int, request: bytes, wait: float = 0.0) -> tuple[bytes, float]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            time.sleep(wait)
            sock.shutdown(socket.SHUT_WR)
            start, answer = time.monotonic(), b""
            while chunk := sock.recv(65536):  # until the server closes
                answer += chunk
            return answer, time.monotonic() - start

    settings = {"http_port": free_port(), "http_idle_seconds": 30.0, "http_read_seconds": 30.0}
    with serving_fake(tmp_path, slow, **settings) as (service, _):
        port = service.http_port
        health = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
        body = infer_body(np.zeros((1, 784), np.uint8))
        head = (
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        release.set()
        answer, waited = half_closed(port, health)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"ready": true}') and waited < 5
        for _ in range(5):  # pipelined: every one answered, then the close, whenever the end comes between them
            answer, waited = half_closed(port, health * 3)
            assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3 and waited < 5
        answer, waited = half_closed(port, health + health[:10])  # the second can never be whole
        assert answer.count(b"HTTP/1.1 200 OK\r\n") == 1 and waited < 5
        release.clear()
        threading.Timer(1.0, release.set).start()  # the client shuts its side while its forward runs
        answer, waited = half_closed(port, head + body, wait=0.3)
        assert answer.startswith(b"HTTP/1.1 200") and json.loads(answer.partition(b"\r\n\r\n")[2])["outputs"]
        assert waited < 5
        release.clear()
        threading.Timer(1.0, release.set).start()  # the end comes while the first of three is answered
        answer, waited = half_closed(port, head + body + health * 2, wait=0.3)
        assert answer.count(b" 200 OK\r\n") == 3 and answer.endswith(b'{"ready": true}') and waited < 5
        assert half_closed(port, b"")[0] == b""  # nothing asked: closed at once
        for wait in (0.0, 0.3):  # the end may come before the request has begun, or while its body is read
            answer, waited = half_closed(port, head + body[:10], wait=wait)  # a body that can never be whole
            assert answer == b"" and waited < 1
        over = head.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 1000000000")
        answer, waited = half_closed(port, over)  # refused without its body: the refusal is still sent
        assert answer.startswith(b"HTTP/1.1 413") and waited < 5
        gone = {"route": "/v2/models/{model}/infer", "status": "499"}
        wait_until(
            lambda: service.metrics.registry.get_sample_value("mnist37_http_requests_total", gone) == 2, 5, "two 499s"
        )
        assert call(port, "GET", "/v2/health/ready")[0] == 200
        for reason in ("idle", "headers"):  # the client's close, not the server's limit
            assert service.metrics.registry.get_sample_value("mnist37_http_timeouts_total", {"reason": reason}) == 0


def test_https_with_the_grpc_sides_certificate(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    tls = {"tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key)}
    with serving_fake(tmp_path, _half, http_port=free_port(), **tls) as (service, _):
        context = ssl.create_default_context(cafile=str(certs.ca))
        url = f"https://localhost:{service.http_port}/v2/models/{MODEL}/infer"
        request = urllib.request.Request(url, data=infer_body(np.zeros((1, 784), np.uint8)), method="POST")
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert json.loads(response.read())["model_version"] == "9"
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the TLS port gets no answer
            urllib.request.urlopen(f"http://localhost:{service.http_port}/v2/health/live", timeout=5)


def test_a_client_that_does_not_read_its_answers_cannot_hold_its_connection(tmp_path: Path) -> None:
    settings = {"http_port": free_port(), "http_read_seconds": 1.0}
    with serving_fake(tmp_path, _half, **settings) as (service, _):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", service.http_port))
        with sock:
            sock.sendall(b"GET /page/page.js HTTP/1.1\r\nHost: x\r\n\r\n" * 400)  # megabytes of answers, never read
            count = service.metrics.registry.get_sample_value
            wait_until(lambda: count("mnist37_http_timeouts_total", {"reason": "answer"}) == 1, 10, "the stall ended")
            sock.settimeout(10)  # the connection has ended: what was sent reads to its end, or a reset
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(65536):
                    pass
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200
        assert count("mnist37_http_timeouts_total", {"reason": "idle"}) == 0


def test_idle_and_slow_tls_clients_are_counted_as_plain_ones_are(tmp_path: Path) -> None:
    # The client's close_notify in answer to the server's close is TLS's ending, not the client's doing.
    certs = make_certificates(tmp_path)
    tls = {"tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key), "http_idle_seconds": 1.0}
    with serving_fake(tmp_path, _half, http_port=free_port(), **tls) as (service, _):
        context = ssl.create_default_context(cafile=str(certs.ca))
        idle, slow_headers, answered = (
            context.wrap_socket(socket.create_connection(("127.0.0.1", service.http_port)), server_hostname="localhost")
            for _ in range(3)
        )
        slow_headers.sendall(b"GET /v2/health/live HTTP/1.1\r\nHo")
        answered.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answered.recv(4096).startswith(b"HTTP/1.1 200")  # then idle
        for sock in (idle, slow_headers, answered):
            sock.settimeout(10)
            assert sock.recv(1) == b""  # closed by the server
            sock.close()
        count = service.metrics.registry.get_sample_value
        wait_until(lambda: count("mnist37_http_timeouts_total", {"reason": "idle"}) == 2, 5, "two idle closes")
        assert count("mnist37_http_timeouts_total", {"reason": "headers"}) == 1
        with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as no_handshake:
            start = time.monotonic()
            assert no_handshake.recv(1) == b""  # closed by the server, within the idle limit
            assert time.monotonic() - start < 5


def test_http_port_zero_turns_http_off_and_a_taken_port_fails_at_start(tmp_path: Path) -> None:
    with serving_fake(tmp_path, _half) as (service, _):
        assert service.http_port == 0
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot bind HTTP to 127.0.0.1:{port}"):
            BackgroundService(config_for(new_store(tmp_path / "taken"), http_port=port))


def readme_curl_commands() -> list[str]:
    """The curl commands of the README, continuation lines joined."""
    text = (REPO / "README.md").read_text().replace("\\\n", "")
    return [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]


def test_the_readmes_curl_commands_work_as_written(tmp_path: Path) -> None:
    commands = readme_curl_commands()
    assert len(commands) >= 3 and any("/infer" in c for c in commands), commands
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        for command in commands:
            here = command.replace("localhost:8080", f"127.0.0.1:{service.http_port}")
            done = subprocess.run(
                ["bash", "-c", f"{here} --fail-with-body"], capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            answer = json.loads(done.stdout)
            if "/infer" in command:
                assert answer["model_version"] == "9" and answer["outputs"][0]["data"] == [3]


def test_malformed_http_gets_a_json_400_counted_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving_fake(tmp_path, _half, http_port=free_port()) as (service, _):
        for malformed, why in (
            (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", "Got more than 8190 bytes"),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "Invalid header token"),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "Received HTTPS traffic on an HTTP port"),
        ):
            with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
                sock.sendall(malformed)
                answer = b""
                while chunk := sock.recv(65536):  # until the server closes the connection
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
            assert b"\r\ncontent-type: application/json\r\n" in head.lower() + b"\r\n"
            assert json.loads(body)["error"].startswith(f"could not parse the request as HTTP/1.1: {why}")
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200
        counted = {"route": "unmatched", "status": "400"}
        assert service.metrics.registry.get_sample_value("mnist37_http_requests_total", counted) == 3
    # TLS sent to the HTTP port is common on an open port and logged by aiohttp at DEBUG only.
    logged = [r for r in caplog.records if r.name == "aiohttp.server" and r.levelno >= logging.INFO]
    assert len(logged) == 2 and all(r.levelname == "WARNING" and r.exc_info is None for r in logged)
    assert "malformed HTTP request, answered 400" in logged[0].getMessage()


def test_a_body_whose_chunks_break_partway_gets_its_400_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The request has begun (its headers and a first chunk arrived alone) when the broken chunk comes:
    # a read that waited for the rest would hold the call for the body's time limit and end in a 408.
    with serving_fake(tmp_path, _half, http_port=free_port(), http_read_seconds=30) as (service, _):
        with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
            sock.sendall(
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                'Transfer-Encoding: chunked\r\n\r\n9\r\n{"inputs"\r\n'.encode()
            )
            wait_until(lambda: service.guard.in_flight == 1, 10, "the request is being answered")
            sent = time.monotonic()
            sock.sendall(b"not-a-size\r\n")
            answer = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
        assert time.monotonic() - sent < 5, "the broken body was waited out"
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), head
        assert json.loads(body)["error"] == "could not parse the request as HTTP/1.1: Invalid character in chunk size"
        assert call(service.http_port, "GET", "/v2/health/ready")[0] == 200
        counted = {"route": "/v2/models/{model}/infer", "status": "400"}
        assert service.metrics.registry.get_sample_value("mnist37_http_requests_total", counted) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a client's mistake logged as a failure"
