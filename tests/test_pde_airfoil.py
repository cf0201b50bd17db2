"""Tests of the MeshGraphNets airfoil reader (experiments/pde/airfoil.py).

The fixtures are written in the real on-disk format (meta.json + TFRecord framing with masked
CRC-32C + tf.train.Example protobufs); the format itself is checked against independent sources:
the published CRC-32C test vectors, hand-assembled record bytes, and (when importable) the
``protobuf`` package with tf.train.Example descriptors built here from feature.proto.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from experiments.pde import airfoil as af
from kinetics import KITINetConfig

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
    assert af.crc32c(data) == expected


@pytest.mark.parametrize("lanes", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("size", [0, 1, 6, 100, 1001])
def test_crc32c_lane_split_equals_byte_loop(lanes: int, size: int) -> None:
    data = np.random.default_rng(size + lanes).integers(0, 256, size, dtype=np.uint8)
    state = 0x12345678
    assert af._update_lanes(state, data, lanes) == af._update_python(state, data.tobytes())


def test_crc32c_large_buffer_and_extension() -> None:
    data = np.random.default_rng(0).integers(0, 256, 300_001, dtype=np.uint8).tobytes()
    reference = af._update_python(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert af.crc32c(data) == reference  # the vectorised path (> 64 KiB)
    assert af.crc32c(data[1000:], af.crc32c(data[:1000])) == reference


def test_masked_crc_is_tensorflows_rotation_plus_delta() -> None:
    crc = af.crc32c(b"foo")
    masked = af.masked_crc32c(b"foo")
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    assert ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF == crc
    assert masked != crc


# ------------------------------------------------------------------------------- TFRecord


def test_tfrecord_layout_and_round_trip(tmp_path: Path) -> None:
    records = [b"", b"abc", bytes(range(256)) * 300]
    path = tmp_path / "x.tfrecord"
    assert af.write_tfrecord(path, records) == 3
    raw = path.read_bytes()
    # Hand-parse the first two records: uint64 length, masked crc(length), data, masked crc(data).
    assert raw[:8] == struct.pack("<Q", 0)
    assert raw[8:12] == struct.pack("<I", af.masked_crc32c(raw[:8]))
    assert raw[12:16] == struct.pack("<I", af.masked_crc32c(b""))
    second = raw[16:]
    assert second[:8] == struct.pack("<Q", 3) and second[12:15] == b"abc"
    assert second[15:19] == struct.pack("<I", af.masked_crc32c(b"abc"))
    assert len(raw) == sum(16 + len(r) for r in records)
    assert list(af.read_tfrecord(path)) == records


@pytest.mark.parametrize(
    ("where", "message"),
    [(3, "length field"), (9, "length field"), (40, "data CRC"), (-2, "data CRC")],
    ids=["length", "length-crc", "data", "data-crc"],
)
def test_tfrecord_corruption_is_detected(tmp_path: Path, where: int, message: str) -> None:
    path = tmp_path / "x.tfrecord"
    af.write_tfrecord(path, [bytes(range(100))])
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(af.TFRecordError, match=message):
        list(af.read_tfrecord(path))


def test_tfrecord_truncation_and_unverified_read(tmp_path: Path) -> None:
    path = tmp_path / "x.tfrecord"
    af.write_tfrecord(path, [b"first", bytes(range(50))])
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(af.TFRecordError, match=r"record 1 .* truncated"):
        list(af.read_tfrecord(path))
    corrupt = bytearray(raw)
    corrupt[13] ^= 0xFF  # inside the data of record 0 (bytes 12..16)
    path.write_bytes(bytes(corrupt))
    with pytest.raises(af.TFRecordError, match="record 0"):
        list(af.read_tfrecord(path))
    assert next(af.read_tfrecord(path, verify=False)) != b"first"


# ------------------------------------------------------------------------------- protobuf


def test_example_round_trip_of_all_three_list_kinds() -> None:
    features = {
        "raw": af.Feature("bytes_list", [b"\x00\x01", b"", "é".encode()]),
        "floats": af.Feature("float_list", np.array([1.5, -0.0, 3e38, np.inf], np.float32)),
        "ints": af.Feature("int64_list", np.array([0, 1, -1, 2**63 - 1, -(2**63), 300])),
        "empty": af.Feature("int64_list", np.zeros(0, np.int64)),
    }
    parsed = af.parse_example(af.encode_example(features))
    assert set(parsed) == set(features)
    assert parsed["raw"] == features["raw"]
    assert parsed["floats"].kind == "float_list"
    np.testing.assert_array_equal(parsed["floats"].value, features["floats"].value)
    assert parsed["ints"].value.dtype == np.int64
    np.testing.assert_array_equal(parsed["ints"].value, features["ints"].value)
    assert parsed["empty"].kind == "int64_list" and parsed["empty"].value.size == 0


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = af._encode_varint(number << 3 | wire)
    if wire == 2:
        return key + af._encode_varint(len(payload)) + payload
    return key + payload


def _entry(name: str, feature: bytes) -> bytes:
    return _field(1, 2, _field(1, 2, name.encode()) + _field(2, 2, feature))


def test_parse_hand_assembled_unpacked_and_merged_fields() -> None:
    """Unpacked repeated scalars, repeated sub-messages (merged), unknown fields, last map key."""
    floats = _field(1, 5, struct.pack("<f", 2.5)) + _field(1, 5, struct.pack("<f", -1.0))
    ints = _field(1, 0, af._encode_varint(7)) + _field(1, 0, af._encode_varint(2**64 - 5))
    unknown = _field(9, 0, af._encode_varint(123)) + _field(10, 1, bytes(8))
    example = _field(
        1,
        2,
        _entry("f", _field(2, 2, floats))
        + _entry("i", _field(3, 2, ints) + unknown)
        + _entry("b", _field(1, 2, _field(1, 2, b"x")) + _field(1, 2, _field(1, 2, b"y")))
        + _entry("dup", _field(1, 2, _field(1, 2, b"old")))
        + _entry("dup", _field(3, 2, _field(1, 2, af._encode_varint(4)))),
    ) + _field(5, 2, b"ignored")
    parsed = af.parse_example(example)
    np.testing.assert_array_equal(parsed["f"].value, [2.5, -1.0])
    np.testing.assert_array_equal(parsed["i"].value, [7, -5])
    assert parsed["b"] == af.Feature("bytes_list", [b"x", b"y"])
    assert parsed["dup"].kind == "int64_list" and parsed["dup"].value.tolist() == [4]


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05\x0a\x03", b"\x0a\x01\xff", b"\x0b", b"\x0a\x02\x08\x01\x0a"],
    ids=["past-end", "truncated-varint", "group", "trailing-key"],
)
def test_parse_rejects_malformed_bytes(data: bytes) -> None:
    with pytest.raises(af.ProtobufError):
        af.parse_example(data)


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
    ours = af.parse_example(reference.SerializeToString())
    assert ours["velocity"] == af.Feature("bytes_list", [np.arange(6, dtype="<f4").tobytes()])
    np.testing.assert_array_equal(ours["weights"].value, [0.25, -8.0])
    np.testing.assert_array_equal(ours["ids"].value, [3, -9, 2**40])

    decoded = example_class.FromString(af.encode_example(ours))
    assert decoded == reference


# ------------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("airfoil")
    written = af.write_airfoil_fixture(root, n_trajectories=3, n_nodes=40, n_steps=16, seed=3)
    return root, written


def _frames(trajectory: dict[str, np.ndarray], steps: list[int]) -> np.ndarray:
    """(frames, nodes, 4) float64 from the arrays the fixture wrote."""
    return np.concatenate(
        [trajectory[k][steps].astype(np.float64) for k in ("velocity", "density", "pressure")],
        axis=-1,
    )


def test_fixture_files_follow_the_meshgraphnets_layout(fixture: tuple[Path, dict]) -> None:
    root, written = fixture
    assert sorted(os.listdir(root)) == [
        "meta.json",
        "test.tfrecord",
        "train.tfrecord",
        "valid.tfrecord",
    ]
    meta = json.loads((root / "meta.json").read_text())
    assert meta["trajectory_length"] == 16 and meta["simulator"] == "su2"
    assert meta["features"]["velocity"] == {
        "type": "dynamic",
        "shape": [16, -1, 2],
        "dtype": "float32",
    }
    assert meta["features"]["cells"] == {"type": "static", "shape": [1, -1, 3], "dtype": "int32"}
    records = list(af.read_tfrecord(root / "valid.tfrecord"))
    assert len(records) == 3
    features = af.parse_example(records[1])
    assert set(features) == set(meta["field_names"])
    assert all(f.kind == "bytes_list" and len(f.value) == 1 for f in features.values())
    arrays = af.decode_trajectory(features, meta)
    for name, array in written["valid"][1].items():
        np.testing.assert_array_equal(arrays[name], array)
    assert arrays["velocity"].shape == (16, 40, 2) and arrays["mesh_pos"].shape == (1, 40, 2)
    assert set(np.unique(arrays["node_type"])) == {0, 2, 4}


def test_round_trip_values_and_train_statistics(fixture: tuple[Path, dict]) -> None:
    root, written = fixture
    tensors, meta = af.load_airfoil(root, "train", t_in=2, t_out=3, stride=3)
    steps = [0, 3, 6, 9, 12]
    assert meta["input_steps"] == steps[:2] and meta["output_steps"] == steps[2:]
    raw = np.stack([_frames(t, steps) for t in written["train"]])  # (3, 5, 40, 4)
    mean = raw.reshape(-1, 4).mean(axis=0)
    std = raw.reshape(-1, 4).std(axis=0)
    np.testing.assert_allclose(meta["stats"]["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(meta["stats"]["std"], std, rtol=1e-9)
    normed = (raw - mean) / std
    expected_in = normed[:, :2].transpose(0, 2, 1, 3).reshape(3, 40, 8)
    expected_out = normed[:, 2:].transpose(0, 2, 1, 3).reshape(3, 40, 12)
    assert tensors["inputs"].dtype == torch.float32 and tensors["inputs"].shape == (3, 40, 8)
    np.testing.assert_allclose(tensors["inputs"].numpy(), expected_in, atol=2e-6)
    np.testing.assert_allclose(tensors["targets"].numpy(), expected_out, atol=2e-6)
    # Physical values come back through denormalize, to float32 precision.
    physical = af.denormalize(tensors["targets"].double(), meta["stats"]).numpy()
    np.testing.assert_allclose(
        physical, raw[:, 2:].transpose(0, 2, 1, 3).reshape(3, 40, 12), rtol=1e-6
    )

    mesh_pos = written["train"][0]["mesh_pos"][0]
    np.testing.assert_array_equal(tensors["mesh_pos"][1].numpy(), mesh_pos)
    coords = tensors["coords"][0]
    assert torch.allclose(coords.amin(0), torch.zeros(2)) and torch.allclose(
        coords.amax(0), torch.ones(2)
    )
    np.testing.assert_array_equal(
        tensors["node_type"][2].numpy(), written["train"][2]["node_type"][0, :, 0]
    )
    np.testing.assert_array_equal(tensors["cells"][0].numpy(), written["train"][0]["cells"][0])
    assert meta["in_channels"] == 8 and meta["out_channels"] == 12
    json.dumps(meta)  # plain JSON, e.g. for a run's sidecar


def test_other_splits_use_train_statistics(fixture: tuple[Path, dict]) -> None:
    root, written = fixture
    _, train_meta = af.load_airfoil(root, "train", t_in=1, t_out=2, stride=5, limit=2)
    test_tensors, test_meta = af.load_airfoil(root, "test", t_in=1, t_out=2, stride=5, limit=2)
    assert test_meta["stats"] == train_meta["stats"]  # streamed from the first 2 train records
    assert train_meta["stats"]["num_trajectories"] == 2
    given, _ = af.load_airfoil(
        root, "test", t_in=1, t_out=2, stride=5, limit=2, stats=train_meta["stats"]
    )
    assert torch.equal(given["inputs"], test_tensors["inputs"])
    raw = _frames(written["test"][0], [0])[0]
    mean, std = np.array(train_meta["stats"]["mean"]), np.array(train_meta["stats"]["std"])
    np.testing.assert_allclose(test_tensors["inputs"][0].numpy(), (raw - mean) / std, atol=2e-6)


def test_time_window_slicing(fixture: tuple[Path, dict]) -> None:
    root, written = fixture
    tensors, meta = af.load_airfoil(root, "valid", t_in=3, t_out=2, stride=3, start=1, limit=1)
    assert meta["input_steps"] == [1, 4, 7] and meta["output_steps"] == [10, 13]
    assert meta["input_times"] == pytest.approx([0.008, 0.032, 0.056])
    assert meta["output_times"] == pytest.approx([0.08, 0.104])
    physical = af.denormalize(tensors["inputs"].double(), meta["stats"])[0].unflatten(-1, (3, 4))
    trajectory = written["valid"][0]
    for frame, step in enumerate([1, 4, 7]):
        np.testing.assert_allclose(physical[:, frame, :2], trajectory["velocity"][step], rtol=1e-6)
        np.testing.assert_allclose(
            physical[:, frame, 3], trajectory["pressure"][step, :, 0], rtol=1e-6
        )
    with pytest.raises(ConfigError, match="need step 16"):
        af.load_airfoil(root, "valid", t_in=3, t_out=3, stride=3, start=1)
    with pytest.raises(ConfigError, match="stride=0"):
        af.load_airfoil(root, "valid", stride=0)


def test_default_window_is_oformers_and_kitinets() -> None:
    """4 frames in at t = 0 .. 0.576 s, 22 out up to t = 4.8 s, on the real 601 x 0.008 s grid."""
    steps = af._window({"trajectory_length": 601}, 4, 22, 24, 0)
    assert steps[:4].tolist() == [0, 24, 48, 72] and steps[-1] == 600
    assert steps[3] * 0.008 == pytest.approx(0.576) and steps[-1] * 0.008 == pytest.approx(4.8)


def test_oformer_forward_on_loaded_data(fixture: tuple[Path, dict]) -> None:
    root, _ = fixture
    tensors, meta = af.load_airfoil(root, "train", t_in=2, t_out=3, stride=3)
    torch.manual_seed(0)
    kwargs = dict(dim=16, num_heads=2, encoder_layers=1, decoder_layers=1)
    for kitinet in (None, KITINetConfig(collision_heads=4, coll_coef=0.5)):
        model = MODELS.create(
            "oformer",
            in_channels=meta["in_channels"],
            out_channels=meta["out_channels"],
            kitinet=kitinet,
            **kwargs,
        )
        pred = model(tensors["inputs"], tensors["coords"])
        assert pred.shape == tensors["targets"].shape
        loss = (pred - tensors["targets"]).square().mean()
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_momentum_rmse_and_roi(fixture: tuple[Path, dict]) -> None:
    root, _ = fixture
    tensors, meta = af.load_airfoil(root, "train", t_in=1, t_out=2, stride=2)
    target = af.denormalize(tensors["targets"], meta["stats"])
    mask = af.roi_mask(tensors["mesh_pos"])
    assert mask.shape == (3, 40) and 0 < int(mask.sum()) < mask.numel()
    assert float(af.momentum_rmse(target, target, mask)) == 0.0
    shifted = target.clone().unflatten(-1, (2, 4))
    shifted[..., 0] += 2.0  # v_x + 2 m/s: momentum error 2 * density
    error = af.momentum_rmse(shifted.flatten(-2), target, mask)
    density = target.unflatten(-1, (2, 4))[..., 2][mask]
    assert float(error) == pytest.approx(
        float((2 * density).square().mean().div(2).sqrt()), rel=1e-5
    )


# ------------------------------------------------------------------------------- errors


def test_missing_files_say_where_the_data_come_from(
    tmp_path: Path, fixture: tuple[Path, dict]
) -> None:
    with pytest.raises(FileNotFoundError, match=r"download_dataset\.sh airfoil") as info:
        af.load_airfoil(tmp_path / "nowhere", "train")
    assert af.DOWNLOAD_URL in str(info.value)
    root, _ = fixture
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "meta.json").write_bytes((root / "meta.json").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"test\.tfrecord"):
        af.load_airfoil(partial, "test", t_in=1, t_out=1, stride=1)


def test_wrong_split_name(fixture: tuple[Path, dict]) -> None:
    with pytest.raises(ConfigError, match="split='val' is not one of train, valid, test"):
        af.load_airfoil(fixture[0], "val", t_in=1, t_out=1, stride=1)


def test_shape_mismatches_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    af.write_airfoil_fixture(root, n_trajectories=1, n_nodes=16, n_steps=6, splits=["train"])
    meta = json.loads((root / "meta.json").read_text())
    meta["features"]["velocity"]["shape"] = [6, -1, 3]  # 6 * 16 * 2 values do not fit
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'velocity' holds 192 float32 values"):
        af.load_airfoil(root, "train", t_in=1, t_out=1, stride=1)
    meta["features"]["velocity"]["shape"] = [4, -1, 2]  # fewer steps than written: n = 24
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'velocity' has 24 nodes, mesh_pos has 16"):
        af.load_airfoil(root, "train", t_in=1, t_out=1, stride=1)

    other = tmp_path / "mixed"
    af.write_airfoil_fixture(other, n_trajectories=1, n_nodes=16, n_steps=6, splits=["train"])
    first = next(af.read_tfrecord(other / "train.tfrecord"))
    small = tmp_path / "small"
    af.write_airfoil_fixture(small, n_trajectories=1, n_nodes=12, n_steps=6, splits=["train"])
    second = next(af.read_tfrecord(small / "train.tfrecord"))
    af.write_tfrecord(other / "train.tfrecord", [first, second])
    with pytest.raises(ValueError, match=r"different \(nodes, cells\) counts"):
        af.load_airfoil(other, "train", t_in=1, t_out=1, stride=1)


def test_missing_field_and_bad_dtype(tmp_path: Path) -> None:
    root = tmp_path / "f"
    af.write_airfoil_fixture(root, n_trajectories=1, n_nodes=16, n_steps=4, splits=["train"])
    meta = json.loads((root / "meta.json").read_text())
    meta["features"]["density"]["dtype"] = "string"
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'density' has dtype 'string'"):
        af.read_meta(root)
    meta["features"]["density"]["dtype"] = "<dtype: 'float32'>"  # tolerated legacy spelling
    del meta["features"]["pressure"]
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"lacks the airfoil fields \['pressure'\]"):
        af.load_airfoil(root, "train", t_in=1, t_out=1, stride=1)
