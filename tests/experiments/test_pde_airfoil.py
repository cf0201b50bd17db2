"""Tests of the MeshGraphNets airfoil reader (experiments/pde/airfoil.py).

The fixtures (tests/fixtures_pde.py) are written in the real on-disk format (meta.json + TFRecord
framing with masked CRC-32C + tf.train.Example protobufs); the format itself is tested in
tests/test_pde_tfrecord.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_pde import write_airfoil_fixture

from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from experiments.pde import airfoil as af
from experiments.pde.tfrecord import parse_example, read_tfrecord, write_tfrecord
from kinetics import KITINetConfig

# ------------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("airfoil")
    written = write_airfoil_fixture(root, n_trajectories=3, n_nodes=40, n_steps=16, seed=3)
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
    records = list(read_tfrecord(root / "valid.tfrecord"))
    assert len(records) == 3
    features = parse_example(records[1])
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
    write_airfoil_fixture(root, n_trajectories=1, n_nodes=16, n_steps=6, splits=["train"])
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
    write_airfoil_fixture(other, n_trajectories=1, n_nodes=16, n_steps=6, splits=["train"])
    first = next(read_tfrecord(other / "train.tfrecord"))
    small = tmp_path / "small"
    write_airfoil_fixture(small, n_trajectories=1, n_nodes=12, n_steps=6, splits=["train"])
    second = next(read_tfrecord(small / "train.tfrecord"))
    write_tfrecord(other / "train.tfrecord", [first, second])
    with pytest.raises(ValueError, match=r"different \(nodes, cells\) counts"):
        af.load_airfoil(other, "train", t_in=1, t_out=1, stride=1)


def test_missing_field_and_bad_dtype(tmp_path: Path) -> None:
    root = tmp_path / "f"
    write_airfoil_fixture(root, n_trajectories=1, n_nodes=16, n_steps=4, splits=["train"])
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
