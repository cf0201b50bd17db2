"""Tests of the TFRecord / tf.train.Example reader and writer (experiments/pde/tfrecord.py).

The format is checked against independent sources: the published CRC-32C test vectors,
hand-assembled record bytes, and (when importable) the ``protobuf`` package with tf.train.Example
descriptors built here from feature.proto.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from experiments.pde import tfrecord as tfr

# ------------------------------------------------------------------------------- CRC-32C


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),  # the CRC catalogue's check value
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4 test vectors
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_crc32c_matches_published_vectors(data: bytes, expected: int) -> None:
    assert tfr.crc32c(data) == expected


@pytest.mark.parametrize("lanes", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("size", [0, 1, 6, 100, 1001])
def test_crc32c_lane_split_equals_byte_loop(lanes: int, size: int) -> None:
    data = np.random.default_rng(size + lanes).integers(0, 256, size, dtype=np.uint8)
    state = 0x12345678
    assert tfr._update_lanes(state, data, lanes) == tfr._update_python(state, data.tobytes())


def test_crc32c_large_buffer_and_extension() -> None:
    data = np.random.default_rng(0).integers(0, 256, 300_001, dtype=np.uint8).tobytes()
    reference = tfr._update_python(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert tfr.crc32c(data) == reference  # the vectorised path (> 64 KiB)
    assert tfr.crc32c(data[1000:], tfr.crc32c(data[:1000])) == reference


def test_masked_crc_is_tensorflows_rotation_plus_delta() -> None:
    crc = tfr.crc32c(b"foo")
    masked = tfr.masked_crc32c(b"foo")
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    assert ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF == crc
    assert masked != crc


# ------------------------------------------------------------------------------- TFRecord


def test_tfrecord_layout_and_round_trip(tmp_path: Path) -> None:
    records = [b"", b"abc", bytes(range(256)) * 300]
    path = tmp_path / "x.tfrecord"
    assert tfr.write_tfrecord(path, records) == 3
    raw = path.read_bytes()
    # Hand-parse the first two records: uint64 length, masked crc(length), data, masked crc(data).
    assert raw[:8] == struct.pack("<Q", 0)
    assert raw[8:12] == struct.pack("<I", tfr.masked_crc32c(raw[:8]))
    assert raw[12:16] == struct.pack("<I", tfr.masked_crc32c(b""))
    second = raw[16:]
    assert second[:8] == struct.pack("<Q", 3) and second[12:15] == b"abc"
    assert second[15:19] == struct.pack("<I", tfr.masked_crc32c(b"abc"))
    assert len(raw) == sum(16 + len(r) for r in records)
    assert list(tfr.read_tfrecord(path)) == records


@pytest.mark.parametrize(
    ("where", "message"),
    [(3, "length field"), (9, "length field"), (40, "data CRC"), (-2, "data CRC")],
    ids=["length", "length-crc", "data", "data-crc"],
)
def test_tfrecord_corruption_is_detected(tmp_path: Path, where: int, message: str) -> None:
    path = tmp_path / "x.tfrecord"
    tfr.write_tfrecord(path, [bytes(range(100))])
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(tfr.TFRecordError, match=message):
        list(tfr.read_tfrecord(path))


def test_tfrecord_truncation_and_unverified_read(tmp_path: Path) -> None:
    path = tmp_path / "x.tfrecord"
    tfr.write_tfrecord(path, [b"first", bytes(range(50))])
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(tfr.TFRecordError, match=r"record 1 .* truncated"):
        list(tfr.read_tfrecord(path))
    corrupt = bytearray(raw)
    corrupt[13] ^= 0xFF  # inside the data of record 0 (bytes 12..16)
    path.write_bytes(bytes(corrupt))
    with pytest.raises(tfr.TFRecordError, match="record 0"):
        list(tfr.read_tfrecord(path))
    assert next(tfr.read_tfrecord(path, verify=False)) != b"first"


# ------------------------------------------------------------------------------- protobuf


def test_example_round_trip_of_all_three_list_kinds() -> None:
    features = {
        "raw": tfr.Feature("bytes_list", [b"\x00\x01", b"", "é".encode()]),
        "floats": tfr.Feature("float_list", np.array([1.5, -0.0, 3e38, np.inf], np.float32)),
        "ints": tfr.Feature("int64_list", np.array([0, 1, -1, 2**63 - 1, -(2**63), 300])),
        "empty": tfr.Feature("int64_list", np.zeros(0, np.int64)),
    }
    parsed = tfr.parse_example(tfr.encode_example(features))
    assert set(parsed) == set(features)
    assert parsed["raw"] == features["raw"]
    assert parsed["floats"].kind == "float_list"
    np.testing.assert_array_equal(parsed["floats"].value, features["floats"].value)
    assert parsed["ints"].value.dtype == np.int64
    np.testing.assert_array_equal(parsed["ints"].value, features["ints"].value)
    assert parsed["empty"].kind == "int64_list" and parsed["empty"].value.size == 0


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = tfr._encode_varint(number << 3 | wire)
    if wire == 2:
        return key + tfr._encode_varint(len(payload)) + payload
    return key + payload


def _entry(name: str, feature: bytes) -> bytes:
    return _field(1, 2, _field(1, 2, name.encode()) + _field(2, 2, feature))


def test_parse_hand_assembled_unpacked_and_merged_fields() -> None:
    """Unpacked repeated scalars, repeated sub-messages (merged), unknown fields, last map key."""
    floats = _field(1, 5, struct.pack("<f", 2.5)) + _field(1, 5, struct.pack("<f", -1.0))
    ints = _field(1, 0, tfr._encode_varint(7)) + _field(1, 0, tfr._encode_varint(2**64 - 5))
    unknown = _field(9, 0, tfr._encode_varint(123)) + _field(10, 1, bytes(8))
    example = _field(
        1,
        2,
        _entry("f", _field(2, 2, floats))
        + _entry("i", _field(3, 2, ints) + unknown)
        + _entry("b", _field(1, 2, _field(1, 2, b"x")) + _field(1, 2, _field(1, 2, b"y")))
        + _entry("dup", _field(1, 2, _field(1, 2, b"old")))
        + _entry("dup", _field(3, 2, _field(1, 2, tfr._encode_varint(4)))),
    ) + _field(5, 2, b"ignored")
    parsed = tfr.parse_example(example)
    np.testing.assert_array_equal(parsed["f"].value, [2.5, -1.0])
    np.testing.assert_array_equal(parsed["i"].value, [7, -5])
    assert parsed["b"] == tfr.Feature("bytes_list", [b"x", b"y"])
    assert parsed["dup"].kind == "int64_list" and parsed["dup"].value.tolist() == [4]


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05\x0a\x03", b"\x0a\x01\xff", b"\x0b", b"\x0a\x02\x08\x01\x0a"],
    ids=["past-end", "truncated-varint", "group", "trailing-key"],
)
def test_parse_rejects_malformed_bytes(data: bytes) -> None:
    with pytest.raises(tfr.ProtobufError):
        tfr.parse_example(data)


def _tf_example_class():
    """tf.train.Example built with the protobuf package from feature.proto / example.proto."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    descriptor_pool = pytest.importorskip("google.protobuf.descriptor_pool")
    message_factory = pytest.importorskip("google.protobuf.message_factory")
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="kinetics_test/example.proto", package="kinetics_test", syntax="proto3"
    )

    def message(
        name: str, *fields: tuple[str, int, int, int, str]
    ) -> descriptor_pb2.DescriptorProto:
        msg = proto.message_type.add(name=name)
        for field_name, number, type_, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=type_, label=label)
            if type_name:
                field.type_name = type_name
        return msg

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", ("value", 1, F.TYPE_BYTES, rep, ""))
    message("FloatList", ("value", 1, F.TYPE_FLOAT, rep, ""))
    message("Int64List", ("value", 1, F.TYPE_INT64, rep, ""))
    feature = message(
        "Feature",
        ("bytes_list", 1, F.TYPE_MESSAGE, opt, ".kinetics_test.BytesList"),
        ("float_list", 2, F.TYPE_MESSAGE, opt, ".kinetics_test.FloatList"),
        ("int64_list", 3, F.TYPE_MESSAGE, opt, ".kinetics_test.Int64List"),
    )
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = message(
        "Features", ("feature", 1, F.TYPE_MESSAGE, rep, ".kinetics_test.Features.FeatureEntry")
    )
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(
        name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=".kinetics_test.Feature"
    )
    message("Example", ("features", 1, F.TYPE_MESSAGE, opt, ".kinetics_test.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kinetics_test.Example"))


def test_parser_and_encoder_agree_with_the_protobuf_package() -> None:
    example_class = _tf_example_class()
    reference = example_class()
    feature = reference.features.feature
    feature["velocity"].bytes_list.value.append(np.arange(6, dtype="<f4").tobytes())
    feature["weights"].float_list.value.extend([0.25, -8.0])
    feature["ids"].int64_list.value.extend([3, -9, 2**40])
    ours = tfr.parse_example(reference.SerializeToString())
    assert ours["velocity"] == tfr.Feature("bytes_list", [np.arange(6, dtype="<f4").tobytes()])
    np.testing.assert_array_equal(ours["weights"].value, [0.25, -8.0])
    np.testing.assert_array_equal(ours["ids"].value, [3, -9, 2**40])

    decoded = example_class.FromString(tfr.encode_example(ours))
    assert decoded == reference
