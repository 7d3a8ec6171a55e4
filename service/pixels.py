"""Turning client pixels into model input, with errors that say what was expected and what came."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from google.protobuf.message import Message

from service.errors import InvalidInputError

PIXELS = 784
T = TypeVar("T")
LENGTH_DELIMITED = 2  # the protobuf wire type of a packed repeated field


def packed_floats(message: Message, field: str) -> np.ndarray:
    """A repeated float field, the only field set in `message`, as float32, read from the message's
    wire bytes in one copy. Reading the field itself makes a Python float of every value, which for
    a 1024-image request holds the interpreter for tens of milliseconds."""
    set_fields = [f.name for f, _ in message.ListFields()]
    if set_fields != [field]:
        raise ValueError(f"expected only {field} set, got {set_fields}")
    # Fields this schema does not know, from a newer client's, would be written after the values.
    message.DiscardUnknownFields()  # type: ignore[attr-defined]  # every message has it; the stubs lack it
    wire = message.SerializeToString()
    # One packed field: its tag, the payload's length as a varint, then the values, little-endian.
    tag = message.DESCRIPTOR.fields_by_name[field].number << 3 | LENGTH_DELIMITED
    if tag > 0x7F or wire[0] != tag:
        raise ValueError(f"expected {field} packed under the one-byte tag {tag}, got tag byte {wire[0]}")
    length, shift, at = 0, 0, 1
    while True:
        byte = wire[at]
        length |= (byte & 0x7F) << shift
        shift, at = shift + 7, at + 1
        if byte < 0x80:
            break
    if at + length != len(wire) or length % 4:
        raise ValueError(f"expected {len(wire) - at} bytes of packed float32 after the tag, got a length of {length}")
    return np.frombuffer(wire, dtype="<f4", offset=at)


def check_size(size: int, count: int, what: str, kind: str) -> None:
    """`size` values make `count` images of 784 pixels, or an error naming what came."""
    if size == 0:
        raise InvalidInputError(f"{what}: empty; expected {PIXELS} {kind} pixels per image")
    if size != count * PIXELS:
        expected = f"{PIXELS}" if count == 1 else f"{count}×{PIXELS} = {count * PIXELS}"
        raise InvalidInputError(f"{what}: expected {expected} {kind} pixels, got {size}")


def from_floats(values: np.ndarray, count: int, what: str) -> np.ndarray:
    """values: flat float32, `count`×784 of them, in [0, 1] → (count, 784) float32."""
    check_size(values.size, count, what, "float32")
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:  # false where NaN is, since min and max carry it: one pass for most calls
        return values.astype(np.float32, copy=False).reshape(-1, PIXELS)
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise InvalidInputError(
            f"{what}: pixel {bad % PIXELS} of image {bad // PIXELS} is {values[bad]}; expected a finite value in [0, 1]"
        )
    raise InvalidInputError(
        f"{what}: float32 pixels must lie in [0, 1], got values in [{low:.9g}, {high:.9g}] (send uint8 for 0..255)"
    )


def from_uint8(raw: bytes | np.ndarray, count: int, what: str) -> np.ndarray:
    """raw: `count`×784 bytes in [0, 255] → (count, 784) float32 in [0, 1]."""
    values = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes) else raw
    check_size(values.size, count, what, "uint8")
    return (values.astype(np.float32) / np.float32(255.0)).reshape(-1, PIXELS)


def check_batch_size(n: int, max_batch: int) -> None:
    if n > max_batch:
        raise InvalidInputError(f"batch of {n} images is over this server's maximum of {max_batch}")


# Requests of more images than this are decoded on a thread: checking a large request's pixels, or
# converting its typed integer contents, holds the interpreter for milliseconds, which on the loop
# would hold up every call and health check behind it.
DECODE_ON_LOOP_MAX_IMAGES = 64


async def decoded(images: int, decode: Callable[[], T]) -> T:
    """decode() for a request that declares `images` images: on the loop if few, on a thread if many."""
    if images <= DECODE_ON_LOOP_MAX_IMAGES:
        return decode()
    return await asyncio.to_thread(decode)
