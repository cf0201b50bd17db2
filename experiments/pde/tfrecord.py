"""TFRecord files of ``tf.train.Example`` records, read and written without TensorFlow.

Two layers, both little-endian:

* TFRecord framing (``tensorflow/core/lib/io/record_writer.cc``): ``uint64 length``,
  ``uint32 masked_crc32c(length bytes)``, ``data``, ``uint32 masked_crc32c(data)``;
  ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`` (mod 2^32). :func:`read_tfrecord` checks
  both CRCs (:class:`TFRecordError` on a mismatch or a truncated record). CRC-32C is a
  table-driven implementation; records above 64 KiB are split into lanes that numpy advances
  together and that are then combined with precomputed "append n zero bytes" tables (CRC is
  linear), because a plain Python loop (~12 MB/s) would spend seconds on a 50 MB record.
* The protobuf wire format of ``tf.train.Example`` (``tensorflow/core/example/feature.proto``):
  ``Example{Features features = 1}``, ``Features{map<string, Feature> feature = 1}``,
  ``Feature{oneof kind {BytesList bytes_list = 1; FloatList float_list = 2; Int64List
  int64_list = 3}}``, each list a ``repeated value = 1`` (float and int64 packed). We parse the
  wire format directly rather than through the ``protobuf`` package: that package is only a
  transitive dependency (of wandb) and ships no ``tf.train.Example`` classes, so using it would
  mean building the message descriptors by hand, which is more code than the ~80-line parser, and
  its messages would copy every large payload once more. (The tests cross-check this parser and
  encoder against ``protobuf`` with such hand-built descriptors.)

What the features mean is the caller's business (:mod:`experiments.pde.airfoil` for the
MeshGraphNets airfoil files).
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from experiments.core.io import atomic_write

__all__ = [
    "Feature",
    "ProtobufError",
    "TFRecordError",
    "crc32c",
    "encode_example",
    "masked_crc32c",
    "parse_example",
    "read_tfrecord",
    "write_tfrecord",
]


class TFRecordError(ValueError):
    """A TFRecord file is truncated or fails a CRC check (the message gives record and offset)."""


class ProtobufError(ValueError):
    """Bytes that are not a valid ``tf.train.Example`` in protobuf wire format."""


# --------------------------------------------------------------------------- CRC-32C

_CRC32C_POLY = 0x82F63B78  # Castagnoli polynomial 0x1EDC6F41, bit-reversed
_MASK_DELTA = 0xA282EAD8
_VECTOR_MIN_BYTES = 1 << 16
_MAX_LANES = 16384


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC32C_POLY), table >> 1)
    return table.astype(np.uint32)


_TABLE = _crc_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _update_python(state: int, data: bytes) -> int:
    """Advance the (pre-inverted) CRC register ``state`` over ``data``, one byte at a time."""
    table = _TABLE_LIST
    for byte in data:
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


@functools.lru_cache(maxsize=8)
def _zero_shift_tables(nbytes: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Tables of the linear map "advance the register over ``nbytes`` zero bytes", per byte of it.

    The register update is linear over GF(2) (``T[a ^ b] = T[a] ^ T[b]``), so the map is fixed by
    the images of the 32 unit registers, which numpy advances together.
    """
    images = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for _ in range(nbytes):
        images = _TABLE[images & 0xFF] ^ (images >> 8)
    unit = [int(v) for v in images]
    tables = []
    for part in range(4):
        table = [0] * 256
        for value in range(1, 256):
            low = (value & -value).bit_length() - 1  # lowest set bit
            table[value] = table[value & (value - 1)] ^ unit[8 * part + low]
        tables.append(table)
    return tables[0], tables[1], tables[2], tables[3]


def _update_lanes(state: int, data: np.ndarray, lanes: int) -> int:
    """Advance ``state`` over ``data`` (uint8) split into ``lanes`` equal chunks plus a tail.

    Each chunk's register starting from 0 is computed for all chunks at once; since advancing
    from ``s`` over a chunk ``B`` gives ``zeros_shift(s) ^ advance(0, B)``, the chunks are then
    chained with the zero-shift tables, and the tail goes through the byte loop.
    """
    width = data.size // lanes
    if width == 0:
        return _update_python(state, data.tobytes())
    columns = np.ascontiguousarray(data[: lanes * width].reshape(lanes, width).T)
    regs = np.zeros(lanes, dtype=np.uint32)
    index, shifted = np.empty_like(regs), np.empty_like(regs)
    for row in columns:  # in place: this loop is the whole cost (~0.35 s per 50 MB)
        np.bitwise_xor(regs, row, out=index)
        np.bitwise_and(index, 0xFF, out=index)
        np.right_shift(regs, 8, out=shifted)
        np.take(_TABLE, index, out=regs)
        regs ^= shifted
    t0, t1, t2, t3 = _zero_shift_tables(width)
    for reg in regs.tolist():
        state = (
            t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24]
        ) ^ reg
    return _update_python(state, data[lanes * width :].tobytes())


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``; ``value`` is the CRC of preceding data to extend.

    ``crc32c(b"123456789") == 0xE3069283`` (the standard check value).
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    state = value ^ 0xFFFFFFFF
    if buffer.size < _VECTOR_MIN_BYTES:
        state = _update_python(state, buffer.tobytes())
    else:
        state = _update_lanes(state, buffer, min(_MAX_LANES, buffer.size // 256))
    return state ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """The masked CRC-32C stored in TFRecord files: rotate right by 15 bits, add 0xa282ead8."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------- TFRecord framing


def _read_exact(handle: BinaryIO, size: int, path: Path, index: int, offset: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise TFRecordError(
            f"{path}: record {index} (at byte {offset}) is truncated: wanted {size} more bytes, "
            f"the file has {len(data)}"
        )
    return data


def read_tfrecord(path: str | os.PathLike[str], *, verify: bool = True) -> Iterator[bytes]:
    """Yield the records of the TFRecord file ``path`` (uncompressed), checking both CRCs.

    Raises:
        TFRecordError: a truncated record, or (``verify=True``) a length or data CRC mismatch.
    """
    path = Path(path)
    with path.open("rb") as handle:
        index = 0
        while True:
            offset = handle.tell()
            header = handle.read(12)
            if not header:
                return
            if len(header) < 12:
                raise TFRecordError(
                    f"{path}: record {index} (at byte {offset}) has a truncated 12-byte header"
                )
            length, length_crc = struct.unpack("<QI", header)
            if verify and masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(
                    f"{path}: record {index} (at byte {offset}) fails the CRC of its length field "
                    "(corrupt or not a TFRecord file)"
                )
            data = _read_exact(handle, length, path, index, offset)
            (data_crc,) = struct.unpack("<I", _read_exact(handle, 4, path, index, offset))
            if verify and masked_crc32c(data) != data_crc:
                raise TFRecordError(
                    f"{path}: record {index} (at byte {offset}, {length} bytes) fails its data CRC "
                    "(corrupt file)"
                )
            yield data
            index += 1


def write_tfrecord(path: str | os.PathLike[str], records: Iterable[bytes]) -> int:
    """Write ``records`` as an uncompressed TFRecord file (atomically); return their number."""
    count = 0

    def write(handle: BinaryIO) -> None:
        nonlocal count
        for record in records:
            length = struct.pack("<Q", len(record))
            handle.write(length)
            handle.write(struct.pack("<I", masked_crc32c(length)))
            handle.write(record)
            handle.write(struct.pack("<I", masked_crc32c(record)))
            count += 1

    atomic_write(Path(path), write)
    return count


# --------------------------------------------------------------------------- tf.train.Example


class Feature(NamedTuple):
    """One ``tf.train.Feature``: ``kind`` is ``"bytes_list"``, ``"float_list"``, ``"int64_list"``
    (or None when unset); ``value`` a list of bytes, a float32 or an int64 numpy array."""

    kind: str | None
    value: list[bytes] | np.ndarray


_KINDS = {1: "bytes_list", 2: "float_list", 3: "int64_list"}
_KIND_NUMBERS = {name: number for number, name in _KINDS.items()}


def _varint(buffer: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buffer):
            raise ProtobufError("truncated varint")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def _fields(buffer: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a message: an int for varints, else a memoryview."""
    pos, end = 0, len(buffer)
    while pos < end:
        key, pos = _varint(buffer, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value, pos = _varint(buffer, pos)
        elif wire in (1, 2, 5):
            if wire == 2:
                size, pos = _varint(buffer, pos)
            else:
                size = 8 if wire == 1 else 4
            if pos + size > end:
                raise ProtobufError(f"field {number} runs past the end of its message")
            value, pos = buffer[pos : pos + size], pos + size
        else:
            raise ProtobufError(f"wire type {wire} (groups) does not occur in tf.train.Example")
        yield number, wire, value


def _expect(wire: int, wanted: int, what: str) -> None:
    if wire != wanted:
        raise ProtobufError(f"{what} has wire type {wire}, expected {wanted}")


def _parse_list(kind: str, buffer: memoryview) -> list[bytes] | np.ndarray:
    """The values of a BytesList / FloatList / Int64List (packed or not)."""
    if kind == "bytes_list":
        values: list[bytes] = []
        for number, wire, value in _fields(buffer):
            if number == 1:
                _expect(wire, 2, "BytesList.value")
                values.append(bytes(value))
        return values
    chunks: list[np.ndarray] = []
    for number, wire, value in _fields(buffer):
        if number != 1:
            continue
        if kind == "float_list":
            if wire not in (2, 5):
                raise ProtobufError(f"FloatList.value has wire type {wire}, expected 2 or 5")
            if len(value) % 4:
                raise ProtobufError("packed FloatList length is not a multiple of 4")
            chunks.append(np.frombuffer(value, dtype="<f4"))
        elif wire == 0:
            chunks.append(np.array([value], dtype=np.uint64))
        else:
            _expect(wire, 2, "Int64List.value")
            packed, pos = [], 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                packed.append(item)
            chunks.append(np.array(packed, dtype=np.uint64))
    if kind == "float_list":
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    # Varints carry the two's complement of negative int64s in 64 bits.
    return np.concatenate(chunks).view(np.int64) if chunks else np.zeros(0, np.int64)


def _parse_feature(buffer: memoryview) -> Feature:
    feature = Feature(None, [])
    for number, wire, value in _fields(buffer):
        if number not in _KINDS:
            continue
        _expect(wire, 2, f"Feature.{_KINDS[number]}")
        kind, values = _KINDS[number], _parse_list(_KINDS[number], value)
        if feature.kind == kind:  # a repeated embedded message merges: lists concatenate
            if kind == "bytes_list":
                values = [*feature.value, *values]
            else:
                values = np.concatenate([feature.value, values])
        feature = Feature(kind, values)  # a different oneof member replaces the previous one
    return feature


def parse_example(data: bytes | memoryview) -> dict[str, Feature]:
    """Parse a serialized ``tf.train.Example`` into ``{feature name: Feature}``.

    Follows protobuf semantics: unknown fields are skipped, a repeated map key keeps its last
    value, a oneof keeps its last member. Raises :class:`ProtobufError` on malformed bytes.
    """
    features: dict[str, Feature] = {}
    for number, wire, value in _fields(memoryview(data)):
        if number != 1:
            continue
        _expect(wire, 2, "Example.features")
        for entry_number, entry_wire, entry in _fields(value):
            if entry_number != 1:
                continue
            _expect(entry_wire, 2, "Features.feature")
            key, feature = "", Feature(None, [])
            for field, field_wire, field_value in _fields(entry):
                if field == 1:
                    _expect(field_wire, 2, "Features.feature key")
                    key = bytes(field_value).decode("utf-8")
                elif field == 2:
                    _expect(field_wire, 2, "Features.feature value")
                    feature = _parse_feature(field_value)
            features[key] = feature
    return features


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _encode_feature(feature: Feature) -> bytes:
    if feature.kind is None:
        return b""
    if feature.kind == "bytes_list":
        body = b"".join(_delimited(1, bytes(item)) for item in feature.value)
    elif feature.kind == "float_list":
        values = np.asarray(feature.value, dtype="<f4")
        body = _delimited(1, values.tobytes()) if values.size else b""
    elif feature.kind == "int64_list":
        values = np.asarray(feature.value, dtype=np.int64).view(np.uint64)
        packed = b"".join(_encode_varint(int(v)) for v in values)
        body = _delimited(1, packed) if values.size else b""
    else:
        raise ValueError(f"Feature kind {feature.kind!r} is not one of {sorted(_KIND_NUMBERS)}")
    return _delimited(_KIND_NUMBERS[feature.kind], body)


def encode_example(features: Mapping[str, Feature]) -> bytes:
    """Serialize ``{name: Feature}`` as a ``tf.train.Example`` (packed float / int64 lists)."""
    entries = [
        _delimited(1, _delimited(1, name.encode("utf-8")) + _delimited(2, _encode_feature(f)))
        for name, f in features.items()
    ]
    return _delimited(1, b"".join(entries))
