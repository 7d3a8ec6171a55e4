"""Open Inference Protocol (v2) tensors over gRPC: the `image` input to pixels; the outputs both protocols share."""

from __future__ import annotations

import numpy as np

from service.errors import InvalidInputError
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.pixels import PIXELS, check_batch_size, from_floats, from_uint8, packed_floats
from service.predictor import Predictions, ServedModel

INPUT = "image"
CONTENTS_FIELDS = {"FP32": "fp32_contents", "UINT8": "uint_contents"}  # the protocol's field per datatype
OUTPUTS = {"digit": "INT32", "p_three": "FP32"}
ABSTAIN_OUTPUTS = {"known": "BOOL", "ood_score": "FP32"}  # only from versions that can abstain


def _batch_size(tensor: pb.ModelInferRequest.InferInputTensor, max_batch: int) -> int:
    """The batch size N of a [N, 784] input."""
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != PIXELS or shape[0] < 1:
        raise InvalidInputError(f"input {INPUT!r}: expected shape [N, {PIXELS}] with N ≥ 1, got {shape}")
    check_batch_size(shape[0], max_batch)
    return shape[0]


def _check_count(values: int, n: int, what: str, field: str) -> None:
    if values != n * PIXELS:
        raise InvalidInputError(f"{what}: [{n}, {PIXELS}] needs {n * PIXELS} values in contents.{field}, got {values}")


def _check_contents_field(contents: pb.InferTensorContents, datatype: str, what: str) -> None:
    """Typed contents are read from the one field of the input's datatype; any other set is a mistake."""
    field = CONTENTS_FIELDS.get(datatype)
    got = [f.name for f, _ in contents.ListFields()]
    if field is not None and got != [field]:
        raise InvalidInputError(f"{what}: {datatype} data goes in contents.{field} alone, got {got}")


def request_images(request: pb.ModelInferRequest, max_batch: int) -> np.ndarray:
    """The request's `image` input as (N, 784) float32 in [0, 1]."""
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT:
        names = [t.name for t in request.inputs]
        raise InvalidInputError(f"expected one input named {INPUT!r}, got {names}")
    tensor = request.inputs[0]
    n = _batch_size(tensor, max_batch)
    raw = list(request.raw_input_contents)
    contents = tensor.contents
    has_contents = bool(contents.ListFields())  # any typed contents field with values
    if bool(raw) == has_contents:
        got = "both" if raw else "neither"
        raise InvalidInputError(f"input {INPUT!r}: expected its data in contents or raw_input_contents, got {got}")
    if raw and len(raw) != 1:
        raise InvalidInputError(f"expected 1 raw_input_contents entry (one per input), got {len(raw)}")
    what = f"input {INPUT!r}"
    if has_contents:
        _check_contents_field(contents, tensor.datatype, what)
    if tensor.datatype == "FP32":
        if raw:
            if len(raw[0]) != n * PIXELS * 4:
                raise InvalidInputError(
                    f"{what}: FP32 [{n}, {PIXELS}] needs {n * PIXELS * 4} raw bytes, got {len(raw[0])}"
                )
            values = np.frombuffer(raw[0], dtype="<f4")
        else:
            _check_count(len(contents.fp32_contents), n, what, "fp32_contents")  # before converting them
            values = packed_floats(contents, "fp32_contents")
        return from_floats(values, count=n, what=what)
    if tensor.datatype == "UINT8":
        if raw:
            if len(raw[0]) != n * PIXELS:
                raise InvalidInputError(
                    f"{what}: UINT8 [{n}, {PIXELS}] needs {n * PIXELS} raw bytes, got {len(raw[0])}"
                )
            return from_uint8(raw[0], count=n, what=what)
        _check_count(len(contents.uint_contents), n, what, "uint_contents")
        ints = np.asarray(contents.uint_contents, dtype=np.uint32)
        if ints.size and ints.max() > 255:
            raise InvalidInputError(f"{what}: UINT8 values must lie in [0, 255], got {int(ints.max())}")
        return from_uint8(ints.astype(np.uint8), count=n, what=what)
    raise InvalidInputError(f"{what}: expected datatype FP32 or UINT8, got {tensor.datatype!r}")


def outputs_of(model: ServedModel) -> dict[str, str]:
    """Output name → datatype of the served version."""
    return OUTPUTS if model.ood_threshold is None else OUTPUTS | ABSTAIN_OUTPUTS


def requested_outputs(asked: list[str], model: ServedModel) -> list[str]:
    """The outputs a request asks for (all of the version's when none), each known and asked once."""
    available = outputs_of(model)
    names = asked or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        cannot = " (it cannot abstain)" if set(unknown) <= set(ABSTAIN_OUTPUTS) else ""
        raise InvalidInputError(f"unknown outputs {unknown}; version {model.version} has {list(available)}{cannot}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInputError(f"expected each output requested at most once, got {repeated} more than once")
    return names


def output_arrays(predictions: Predictions) -> dict[str, np.ndarray]:
    """Each output as little-endian bytes-ready arrays; BOOL is one byte per value."""
    arrays = {"digit": predictions.digits.astype("<i4"), "p_three": predictions.p_three.astype("<f4")}
    if predictions.known is not None and predictions.ood_score is not None:
        arrays |= {"known": predictions.known.astype(np.bool_), "ood_score": predictions.ood_score.astype("<f4")}
    return arrays
