"""Pixel decoding: every client mistake gets a message that says what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInputError
from service.generated.inference import grpc_predict_v2_pb2 as v2
from service.generated.mnist37.v1 import classifier_pb2 as api
from service.pixels import check_batch_size, from_floats, from_uint8, packed_floats


def test_uint8_scales_to_unit_range() -> None:
    raw = bytes(range(256)) * 3 + bytes(784 - 768)
    out = from_uint8(raw, count=1, what="image")
    assert out.shape == (1, 784) and out.dtype == np.float32
    assert out[0, 255] == pytest.approx(1.0) and out[0, 0] == 0.0


@pytest.mark.parametrize(
    ("values", "count", "needle"),
    [
        (np.zeros(783, np.float32), 1, "expected 784 float32 pixels, got 783"),
        (np.zeros(0, np.float32), 1, "empty"),
        (np.full(784, np.nan, np.float32), 1, "is nan; expected a finite value"),
        (np.full(784, np.inf, np.float32), 1, "is inf"),
        (np.full(784, 255.0, np.float32), 1, "must lie in [0, 1], got values in [255, 255]"),
        (np.zeros(784 * 3, np.float32), 2, "expected 2×784 = 1568 float32 pixels, got 2352"),
    ],
)
def test_float_mistakes(values: np.ndarray, count: int, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as err:
        from_floats(values, count=count, what="image")
    assert needle in str(err.value)


def test_batch_limit() -> None:
    check_batch_size(8, 8)
    with pytest.raises(InvalidInputError, match="batch of 9 images is over this server's maximum of 8"):
        check_batch_size(9, 8)


@pytest.mark.parametrize("count", [1, 31, 32, 784, 1024 * 784])  # lengths of one to four varint bytes
def test_packed_floats_reads_the_field_exactly(count: int) -> None:
    values = np.random.default_rng(count).random(count, dtype=np.float32)
    parsed = v2.InferTensorContents.FromString(v2.InferTensorContents(fp32_contents=values).SerializeToString())
    assert np.array_equal(packed_floats(parsed, "fp32_contents"), values)
    image = api.Image(floats=values)
    assert np.array_equal(packed_floats(image, "floats"), np.asarray(image.floats, np.float32))


def test_packed_floats_reads_past_fields_this_schema_does_not_know() -> None:
    values = np.random.default_rng(0).random(784, dtype=np.float32)
    image = api.Image()
    image.ParseFromString(api.Image(floats=values.tolist()).SerializeToString() + b"\x78\x01")  # field 15 = 1
    assert np.array_equal(packed_floats(image, "floats"), values)


def test_packed_floats_refuses_a_message_with_other_fields() -> None:
    with pytest.raises(ValueError, match=r"expected only floats set, got \['floats', 'uint8'\]"):
        packed_floats(api.Image(floats=[0.5] * 784, uint8=bytes(784)), "floats")
    with pytest.raises(ValueError, match=r"got \[\]"):
        packed_floats(api.Image(), "floats")
