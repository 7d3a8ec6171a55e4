"""Open Inference Protocol (v2) over REST: JSON and binary tensors to pixels, predictions to a response body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.errors import InvalidInputError
from service.pixels import PIXELS, check_batch_size, from_floats, from_uint8
from service.predictor import Predictions
from service.v2_tensors import INPUT, output_arrays

# The binary tensor data extension: the JSON header's length, in a header of either message; the
# tensors' bytes follow it in the body, in the order of the tensors that name a binary_data_size.
HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPES = {"FP32": np.float32, "UINT8": np.uint8}
ITEM_BYTES = {"FP32": 4, "UINT8": 1}


@dataclass(frozen=True)
class InferRequest:
    """What an infer request asks for, its pixels decoded."""

    id: str | None
    images: np.ndarray  # (N, 784) float32 in [0, 1]
    outputs: list[str]  # names asked for; empty for all
    binary: dict[str, bool]  # per output asked for by name: send its data as binary
    binary_default: bool  # parameters.binary_data_output: outputs not named go binary


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    return _object(holder.get("parameters", {}), f"{what}.parameters")


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and the binary data after it."""
    if header_length is None:
        header, binary = body, b""
    else:
        # Digits only, as Content-Length: int() would also take "+12", "1_2" and spaces around it.
        if not (header_length.isascii() and header_length.isdigit()):
            raise InvalidInputError(f"{HEADER_LENGTH}: expected a byte count, got {header_length!r}")
        length = int(header_length)
        if not 0 < length <= len(body):
            raise InvalidInputError(f"{HEADER_LENGTH}: expected 1..{len(body)} (the body's length), got {length}")
        header, binary = body[:length], body[length:]
    try:
        # orjson, not the standard library: parsing the body was the JSON path's largest cost (bench/README.md).
        parsed = orjson.loads(header)
    except orjson.JSONDecodeError as err:
        raise InvalidInputError(f"the request is not valid JSON: {_not_utf8(header) or err}") from None
    return _object(parsed, "the request"), binary


def _not_utf8(text: bytes) -> str | None:
    """Where `text` stops being UTF-8, or None: orjson says "surrogates not allowed" of any byte that is
    not UTF-8, and points at the start of the document."""
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"expected UTF-8, got byte 0x{text[err.start]:02x} at offset {err.start}"
    return None


def _flag(parameters: dict[str, Any], name: str, what: str) -> bool | None:
    value = parameters.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInputError(f"{what}.{name}: expected true or false, got {value!r}")
    return value


def _shape(tensor: dict[str, Any], max_batch: int) -> int:
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1] != PIXELS
        or shape[0] < 1
    ):
        raise InvalidInputError(f"input {INPUT!r}: expected shape [N, {PIXELS}] with N ≥ 1, got {shape!r}")
    check_batch_size(shape[0], max_batch)
    return int(shape[0])


def _from_json(data: object, datatype: str, n: int, what: str) -> np.ndarray:
    """JSON data, flat or nested row-major, → (n, 784) float32."""
    try:
        values: np.ndarray | None = np.asarray(data)  # no dtype: numpy would turn strings and booleans into numbers
    except (TypeError, ValueError):  # rows of different lengths
        values = None
    if values is None or values.dtype.kind not in "iuf":
        raise InvalidInputError(f"{what}: expected {datatype} numbers, flat or nested by rows, in data")
    values = values.astype(np.float64, copy=False).reshape(-1)
    if values.size != n * PIXELS:
        raise InvalidInputError(f"{what}: [{n}, {PIXELS}] needs {n * PIXELS} values in data, got {values.size}")
    if datatype == "FP32":
        with np.errstate(over="ignore"):  # a value beyond float32's range becomes ±inf, refused below
            floats = values.astype(np.float32)
        try:
            return from_floats(floats, count=n, what=what)
        except InvalidInputError:
            # JSON has no infinity: one here is a number too large for FP32, which the error names as sent.
            overflowed = np.flatnonzero(np.isinf(floats))
            if not overflowed.size:
                raise
            bad = int(overflowed[0])
            raise InvalidInputError(
                f"{what}: pixel {bad % PIXELS} of image {bad // PIXELS} is {values[bad]:g}, beyond FP32's range; "
                "expected a value in [0, 1]"
            ) from None
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        raise InvalidInputError(f"{what}: UINT8 data must be whole numbers in [0, 255]")
    low, high = values.min(), values.max()
    if low < 0 or high > 255:
        raise InvalidInputError(f"{what}: UINT8 values must lie in [0, 255], got values in [{low:g}, {high:g}]")
    return from_uint8(values.astype(np.uint8), count=n, what=what)


def _from_binary(data: bytes, datatype: str, n: int, what: str) -> np.ndarray:
    if datatype == "FP32":
        return from_floats(np.frombuffer(data, dtype="<f4"), count=n, what=what)
    return from_uint8(data, count=n, what=what)


def infer_request(body: dict[str, Any], binary: bytes, max_batch: int) -> InferRequest:
    """Check an infer request's JSON and decode its pixels."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        got = [t.get("name") for t in inputs if isinstance(t, dict)] if isinstance(inputs, list) else inputs
        raise InvalidInputError(f"expected inputs: one tensor named {INPUT!r}, got {got!r}")
    tensor = _object(inputs[0], "inputs[0]")
    if tensor.get("name") != INPUT:
        raise InvalidInputError(f"expected one input named {INPUT!r}, got {tensor.get('name')!r}")
    what = f"input {INPUT!r}"
    n = _shape(tensor, max_batch)
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in JSON_TYPES:
        raise InvalidInputError(f"{what}: expected datatype FP32 or UINT8, got {datatype!r}")
    size = _parameters(tensor, "inputs[0]").get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise InvalidInputError(f"inputs[0].parameters.binary_data_size: expected a byte count, got {size!r}")
    if size is not None:
        expected = n * PIXELS * ITEM_BYTES[datatype]
        if "data" in tensor:
            raise InvalidInputError(f"{what}: expected its data in data or as binary_data_size, got both")
        if size != len(binary) or size != expected:
            raise InvalidInputError(
                f"{what}: {datatype} [{n}, {PIXELS}] needs {expected} binary bytes; "
                f"binary_data_size says {size!r} and {len(binary)} follow the JSON"
            )
        images = _from_binary(binary, datatype, n, what)
    else:
        if "data" not in tensor:
            raise InvalidInputError(f"{what}: expected its data in data or as binary_data_size, got neither")
        if binary:
            raise InvalidInputError(
                f"expected no bytes after the JSON when no input has a binary_data_size, got {len(binary)}"
            )
        images = _from_json(tensor["data"], datatype, n, what)
    outputs, binary_by_name = _outputs(body.get("outputs", []))
    binary_default = _flag(_parameters(body, "the request"), "binary_data_output", "parameters") or False
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"id: expected a string, got {type(request_id).__name__}")
    return InferRequest(request_id, images, outputs, binary_by_name, binary_default)


def _outputs(asked: object) -> tuple[list[str], dict[str, bool]]:
    if not isinstance(asked, list):
        raise InvalidInputError(f"outputs: expected a list, got {type(asked).__name__}")
    names: list[str] = []
    binary: dict[str, bool] = {}
    for i, entry in enumerate(asked):
        output = _object(entry, f"outputs[{i}]")
        name = output.get("name")
        if not isinstance(name, str):
            raise InvalidInputError(f"outputs[{i}].name: expected a string, got {name!r}")
        names.append(name)
        flag = _flag(_parameters(output, f"outputs[{i}]"), "binary_data", f"outputs[{i}].parameters")
        if flag is not None:
            binary[name] = flag
    return names, binary


def infer_response(
    request: InferRequest,
    names: list[str],
    datatypes: dict[str, str],
    model_name: str,
    predictions: Predictions,
    replica: str = "",
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    arrays = output_arrays(predictions)
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name in names:
        entry: dict[str, Any] = {"name": name, "datatype": datatypes[name], "shape": [len(predictions.digits)]}
        if request.binary.get(name, request.binary_default):
            chunk = arrays[name].tobytes()
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = arrays[name].tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": predictions.version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    if replica:
        response["parameters"] = {"replica": replica}
    header = orjson.dumps(response)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
