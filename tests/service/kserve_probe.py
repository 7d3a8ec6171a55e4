"""Run in its own process: kserve registers the `inference` proto package too, so it cannot share a process
with the server's own stubs. Prints one JSON object with what KServe's unmodified REST client saw."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from typing import Any

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import (
    InferenceResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    Parameters,
    ServerMetadataResponse,
)
from pydantic import TypeAdapter, ValidationError

OUTPUTS = ("digit", "p_three")


def request(model: str, array: np.ndarray, datatype: str, binary: bool, request_id: str) -> Any:
    tensor = InferInput("image", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    outputs = [RequestedOutput(name, {"binary_data": binary}) for name in OUTPUTS]
    return InferRequest(model, [tensor], request_id=request_id, request_outputs=outputs)


async def schemas(base: str, model: str) -> dict[str, object]:
    """The REST client has no metadata calls: read them with httpx (its HTTP library) and parse them
    with KServe's own data models of the protocol, which raise on a missing or mistyped field."""
    async with httpx.AsyncClient(base_url=base) as http:
        server = ServerMetadataResponse.model_validate((await http.get("/v2")).json())
        body = (await http.get(f"/v2/models/{model}")).json()
        ready = ModelReadyResponse.model_validate((await http.get(f"/v2/models/{model}/ready")).json())
    try:  # ModelMetadataResponse ignores a `parameters` member; KServe's type for one is Parameters
        TypeAdapter(Parameters).validate_python(body.get("parameters", {}))
        parameters_error = None
    except ValidationError as err:
        parameters_error = str(err)
    return {
        "server": server.model_dump(),
        "metadata": ModelMetadataResponse.model_validate(body).model_dump(),
        "metadata_parameters": body.get("parameters"),
        "metadata_parameters_error": parameters_error,
        "model_ready_body": ready.model_dump(),
    }


async def answers(client: Any, base: str, model: str, images: np.ndarray) -> dict[str, object]:
    report: dict[str, object] = {}
    for datatype, array in (("FP32", images.astype(np.float32) / 255.0), ("UINT8", images)):
        for binary in (False, True):
            key = f"{datatype}-{'binary' if binary else 'json'}"
            headers: dict[str, str] = {}
            result = await client.infer(
                base, request(model, array, datatype, binary, key), model_name=model, response_headers=headers
            )
            report[key] = {
                "content_type": headers.get("content-type"),
                "header_length": headers.get("inference-header-content-length"),
                "id": result.id,
                "model_name": result.model_name,
                **{name: result.get_output_by_name(name).as_numpy().tolist() for name in OUTPUTS},
            }
        # InferResponse.from_bytes drops model_version; is_graph_endpoint posts to the URL as given and
        # returns the body as a dict, which KServe's InferenceResponse model then checks.
        raw = await client.infer(
            f"{base}/v2/models/{model}/infer",
            request(model, array, datatype, False, f"{datatype}-raw"),
            is_graph_endpoint=True,
        )
        report[f"{datatype}-raw"] = InferenceResponse.model_validate(raw).model_dump()
    return report


async def errors(client: Any, base: str, model: str) -> dict[str, object]:
    cases: list[tuple[str, str, np.ndarray, str]] = [
        ("unknown_model", "no-such-model", np.zeros((1, 784), np.float32), "FP32"),
        ("wrong_datatype", model, np.zeros((1, 784), np.int64), "INT64"),
        ("wrong_shape", model, np.zeros((1, 783), np.float32), "FP32"),
    ]
    seen: dict[str, object] = {}
    for case, name, array, datatype in cases:
        try:
            await client.infer(base, request(name, array, datatype, True, case), model_name=name)
            seen[case] = "no error"
        except httpx.HTTPStatusError as err:
            answer = err.response
            seen[case] = {
                "status": answer.status_code,
                "content_type": answer.headers.get("content-type"),
                "message": str(err),  # what a KServe user sees
                "body": answer.json(),
            }
    return seen


async def main(base: str, model: str, images: np.ndarray) -> dict[str, object]:
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as client:
        return {
            "live": await client.is_server_live(base),
            "ready": await client.is_server_ready(base),
            "model_ready": await client.is_model_ready(base, model),
            "unknown_model_ready": await client.is_model_ready(base, "no-such-model"),
            **await schemas(base, model),
            **await answers(client, base, model, images),
            "errors": await errors(client, base, model),
        }


if __name__ == "__main__":
    pixels = np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)  # (N, 784) uint8
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], pixels))))
