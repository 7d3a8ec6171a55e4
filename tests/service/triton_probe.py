"""Run in its own process: tritonclient registers the `inference` proto package too, so it cannot share
a process with the server's own stubs. Prints one JSON object with what the unmodified client saw."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException, triton_to_np_dtype


def descriptors() -> dict[str, dict[str, list[object]]]:
    out: dict[str, dict[str, list[object]]] = {}
    for name, desc in service_pb2.DESCRIPTOR.message_types_by_name.items():
        out[name] = {f.name: [f.number, f.type, f.label] for f in desc.fields}
        for nested in desc.nested_types:
            out[f"{name}.{nested.name}"] = {f.name: [f.number, f.type, f.label] for f in nested.fields}
    return out


def from_metadata(client: triton.InferenceServerClient, model: str) -> dict[str, object]:
    """What a generic client gets when it builds its request from the model's metadata alone: one
    tensor per listed input, its -1 dimensions as 1, zeros of the listed datatype, every listed output."""
    metadata = client.get_model_metadata(model)
    inputs = []
    for listed in metadata.inputs:
        shape = [1 if d == -1 else d for d in listed.shape]
        tensor = triton.InferInput(listed.name, shape, listed.datatype)
        tensor.set_data_from_numpy(np.zeros(shape, triton_to_np_dtype(listed.datatype)))
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(listed.name) for listed in metadata.outputs]
    try:
        result = client.infer(model, inputs, outputs=outputs)
    except InferenceServerException as err:
        return {"error": f"{err.status()} {err.message()}"}
    return {o.name: result.as_numpy(o.name).tolist() for o in result.get_response().outputs}


def main(target: str, model: str) -> None:
    client = triton.InferenceServerClient(url=target)
    images = np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)  # (N, 784) uint8
    report: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server": client.get_server_metadata(as_json=True),
        "metadata": client.get_model_metadata(model, as_json=True),
        "from_metadata": from_metadata(client, model),
    }
    for datatype, array in (("FP32", images.astype(np.float32) / 255.0), ("UINT8", images)):
        tensor = triton.InferInput("image", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        outputs = [triton.InferRequestedOutput("digit"), triton.InferRequestedOutput("p_three")]
        result = client.infer(model, [tensor], outputs=outputs, request_id="probe")
        report[datatype] = {
            "digit": result.as_numpy("digit").tolist(),
            "p_three": result.as_numpy("p_three").tolist(),
            "model_version": result.get_response().model_version,
            "id": result.get_response().id,
        }
        everything = client.infer(model, [tensor])  # no outputs named: every output the version has
        names = [o.name for o in everything.get_response().outputs]
        report[f"{datatype}_all"] = {name: everything.as_numpy(name).tolist() for name in names}
    tensor = triton.InferInput("image", [1, 784], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 784), np.float32))
    errors = {}
    for case, name, inputs in [
        ("unknown_model", "no-such-model", [tensor]),
        (
            "wrong_shape",
            model,
            [triton.InferInput("image", [1, 783], "FP32").set_data_from_numpy(np.zeros((1, 783), np.float32))],
        ),
        (
            "wrong_datatype",
            model,
            [triton.InferInput("image", [1, 784], "INT64").set_data_from_numpy(np.zeros((1, 784), np.int64))],
        ),
    ]:
        try:
            client.infer(name, inputs)
            errors[case] = "no error"
        except InferenceServerException as err:
            errors[case] = f"{err.status()} {err.message()}"
    report["errors"] = errors
    report["descriptors"] = descriptors()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
