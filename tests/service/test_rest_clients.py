"""Two more unmodified clients of the REST side: tritonclient's asyncio HTTP client, and KServe's REST client."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http.aio as triton_aio

from tests.conftest import free_port, wait_until
from tests.service.conftest import BackgroundService, Registry, config_for, health_status, running, set_alias

MODEL = "mnist-3v7"
PROBE = Path(__file__).with_name("kserve_probe.py")
VARIANTS = [(datatype, binary) for datatype in ("FP32", "UINT8") for binary in (True, False)]


async def _infer(
    client: triton_aio.InferenceServerClient, images: np.ndarray, datatype: str, binary: bool, **kw: Any
) -> Any:
    array = images.astype(np.float32) / 255 if datatype == "FP32" else images
    tensor = triton_aio.InferInput("image", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    outputs = [triton_aio.InferRequestedOutput(name, binary_data=binary) for name in ("digit", "p_three")]
    return await client.infer(MODEL, [tensor], outputs=outputs, request_id=f"{datatype}-{binary}", **kw)


async def _triton_aio_session(
    port: int, registry: Registry, images: np.ndarray
) -> tuple[dict[Any, Any], dict[Any, Any], Any]:
    async with triton_aio.InferenceServerClient(f"127.0.0.1:{port}") as client:
        assert await client.is_server_live() and await client.is_server_ready()
        assert await client.is_model_ready(MODEL) and await client.is_model_ready(MODEL, registry.good)
        assert not await client.is_model_ready(MODEL, registry.other_good)
        assert (await client.get_server_metadata())["extensions"] == ["binary_tensor_data"]
        meta = await client.get_model_metadata(MODEL)
        assert meta["versions"] == [registry.good]
        assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 784]}]
        # The four variants at once, over the client's one connection pool.
        results = await asyncio.gather(*(_infer(client, images, d, b) for d, b in VARIANTS))
        # Then one at a time: calls that arrive together share forwards, and a forward over another
        # batch may differ in the last bit (the CPU's kernels block a batch by its size), so the
        # encodings are compared to the bit only on forwards of the same images alone.
        alone = {variant: await _infer(client, images, *variant) for variant in VARIANTS}
        # aiohttp inflates a gzip request body before the handler reads it.
        gzipped = await _infer(client, images, "UINT8", True, request_compression_algorithm="gzip")
        tensor = triton_aio.InferInput("image", [1, 784], "UINT8").set_data_from_numpy(images[:1])
        with pytest.raises(triton_aio.InferenceServerException, match="unknown model 'nope'") as err:
            await client.infer("nope", [tensor])
        assert err.value.status() == "404"
    return dict(zip(VARIANTS, results, strict=True)), alone, gzipped


def test_tritonclient_http_aio_binary_and_json_fp32_and_uint8(
    served_http: BackgroundService, registry: Registry, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    # tritonclient.http never imports tritonclient.grpc, whose `inference` protos would clash with ours.
    assert not [name for name in sys.modules if name.startswith("tritonclient.grpc")]
    images, digits = test_images[0][:60], test_images[1][:60]
    results, alone, gzipped = asyncio.run(_triton_aio_session(served_http.http_port, registry, images))

    for (datatype, binary), result in results.items():
        response = result.get_response()
        assert response["model_version"] == registry.good and response["id"] == f"{datatype}-{binary}"
        assert ("data" not in response["outputs"][0]) is binary  # binary outputs travel after the JSON
    first = results["FP32", True]
    assert np.mean(first.as_numpy("digit") == digits) > 0.9
    for datatype in ("FP32", "UINT8"):  # JSON and binary: the same numbers, to the bit
        for name in ("digit", "p_three"):
            np.testing.assert_array_equal(alone[datatype, True].as_numpy(name), alone[datatype, False].as_numpy(name))
    for result in [*results.values(), *alone.values(), gzipped]:  # FP32 x/255 and UINT8 x are the same pixels
        np.testing.assert_array_equal(result.as_numpy("digit"), first.as_numpy("digit"))
        np.testing.assert_allclose(result.as_numpy("p_three"), first.as_numpy("p_three"), atol=1e-6)


@pytest.fixture(scope="module")
def kserve_report(registry: Registry, test_images: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """What tests/service/kserve_probe.py saw of a server on the first good version, run once for the module."""
    if importlib.util.find_spec("kserve") is None:
        pytest.skip("kserve is not installed (it is in the dev extras: pip install -e '.[dev]')")
    set_alias(registry.uri, registry.good)
    buffer = io.BytesIO()
    np.save(buffer, test_images[0][:60])
    with running(config_for(registry.uri, http_port=free_port())) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        result = subprocess.run(
            [sys.executable, str(PROBE), f"http://127.0.0.1:{service.http_port}", MODEL],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=180,
        )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_kserve_rest_client_works_unchanged(
    kserve_report: dict[str, Any], registry: Registry, test_images: tuple[np.ndarray, np.ndarray]
) -> None:
    report, digits = kserve_report, test_images[1][:60]
    assert report["live"] and report["ready"] and report["model_ready"] and not report["unknown_model_ready"]
    # The bodies parse as KServe's own data models of the protocol.
    assert report["server"]["name"] == "mnist37" and report["server"]["extensions"] == ["binary_tensor_data"]
    meta = report["metadata"]
    assert meta["name"] == MODEL and meta["versions"] == [registry.good]
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 784]}]
    assert [o["name"] for o in meta["outputs"]] == ["digit", "p_three"]
    assert report["model_ready_body"] == {"name": MODEL, "ready": True}

    for datatype in ("FP32", "UINT8"):
        binary, plain = report[f"{datatype}-binary"], report[f"{datatype}-json"]
        assert binary["content_type"] == "application/octet-stream" and int(binary["header_length"]) > 0
        assert plain["content_type"] == "application/json" and plain["header_length"] is None
        for key, answer in ((f"{datatype}-binary", binary), (f"{datatype}-json", plain)):
            assert answer["id"] == key and answer["model_name"] == MODEL
        assert binary["digit"] == plain["digit"] and binary["p_three"] == plain["p_three"]
        raw = report[f"{datatype}-raw"]  # the body as sent, checked against KServe's InferenceResponse
        assert raw["model_version"] == registry.good and raw["id"] == f"{datatype}-raw"
        assert [o["name"] for o in raw["outputs"]] == ["digit", "p_three"]
        assert raw["outputs"][0]["data"] == plain["digit"]
    assert np.mean(np.array(report["FP32-binary"]["digit"]) == digits) > 0.9
    assert report["FP32-binary"]["digit"] == report["UINT8-binary"]["digit"]
    np.testing.assert_allclose(report["FP32-binary"]["p_three"], report["UINT8-binary"]["p_three"], atol=1e-6)

    errors = report["errors"]
    assert errors["unknown_model"]["status"] == 404
    assert "unknown model 'no-such-model'" in errors["unknown_model"]["body"]["error"]
    assert errors["wrong_datatype"]["status"] == 400 and "'INT64'" in errors["wrong_datatype"]["body"]["error"]
    assert errors["wrong_shape"]["status"] == 400 and "[1, 783]" in errors["wrong_shape"]["body"]["error"]


def test_kserve_users_see_the_servers_error_message(kserve_report: dict[str, Any]) -> None:
    assert "unknown model 'no-such-model'" in kserve_report["errors"]["unknown_model"]["message"]


def test_model_metadata_parameters_have_the_protocols_types(kserve_report: dict[str, Any]) -> None:
    assert kserve_report["metadata_parameters_error"] is None, kserve_report["metadata_parameters"]
