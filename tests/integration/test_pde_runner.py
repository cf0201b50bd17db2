"""PDE data in the runner (experiments/pde/data.py): the data set builders on tiny generated files
in the real on-disk format, and few-epoch runs of FNO / KITI-FNO through ``run()``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from fixtures_pde import write_airfoil_fixture
from helpers import kill_and_resume, read_metrics, run_inprocess

from experiments.core.errors import ConfigError
from experiments.core.io import sha256_file
from experiments.pde import generate as gen
from experiments.pde.data import MissingPDEDataError, burgers, generate_command, heat, navier_stokes
from experiments.pde.io import save_dataset

# Tiny FNOs (a few thousand parameters) and a few epochs: each run takes a second or two.
TINY_1D = ["model.width=8", "model.modes=4", "model.n_layers=2", "model.projection_hidden=8"]
TINY_2D = ["model.width=4", "model.modes=3", "model.n_layers=2", "model.projection_hidden=8"]
FAST = ["trainer.epochs=3", "trainer.batch_size=4", "trainer.log_every=1"]
# Collisions that surely fire: score = v_r exp(-x_r / mfp) / max v_r > 1 - 0.9.
EAGER = ["collision=kitinet", "collision.coll_coef=0.9", "collision.mean_free_path=1e6"]


@pytest.fixture(scope="module")
def burgers_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 Burgers samples solved at 64 points, saved at 32 and 16 points."""
    tensors, meta = gen.generate_burgers(12, fine=64, resolutions=(32, 16), dt=1e-2, seed=1)
    path = tmp_path_factory.mktemp("pde") / "burgers.pt"
    save_dataset(path, tensors, meta)
    return path


@pytest.fixture(scope="module")
def heat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 heat samples solved exactly at 32², saved at 32² and 16², t = 1..4."""
    tensors, meta = gen.generate_heat(10, fine=32, resolutions=(32, 16), t_final=4, seed=2)
    path = tmp_path_factory.mktemp("pde") / "heat.pt"
    save_dataset(path, tensors, meta)
    return path


def _burgers(path: Path) -> list[str]:
    return [
        "model=fno1d",
        "dataset=burgers",
        f"dataset.path={path}",
        "dataset.n_train=8",
        "dataset.n_test=4",
        "dataset.train_resolution=32",
        "dataset.test_resolution=32",
    ]


def _heat(path: Path) -> list[str]:
    return [
        "model=fno2d",
        "dataset=heat",
        f"dataset.path={path}",
        "dataset.n_train=6",
        "dataset.n_test=4",
        "dataset.train_resolution=16",
        "dataset.test_resolution=32",
        "dataset.t_in=2",
        "dataset.t_out=2",
    ]


# --------------------------------------------------------------------------- builders


def test_burgers_builder_splits_and_resolutions(burgers_file: Path) -> None:
    from experiments.pde.io import load_dataset

    raw, _ = load_dataset(burgers_file)
    data = burgers(
        path=str(burgers_file), n_train=7, n_test=3, train_resolution=32, test_resolution=16
    )
    assert data.x_train.shape == (7, 32, 1) and data.y_train.shape == (7, 32, 1)
    assert data.x_test.shape == (3, 16, 1) and data.y_test.shape == (3, 16, 1)
    # First n_train samples train, last n_test test, each at its own resolution.
    assert torch.equal(data.x_train[..., 0], raw["a_32"][:7])
    assert torch.equal(data.y_test[..., 0], raw["u_16"][-3:])
    assert data.dim == 1 and data.train_shape == (32,) and data.test_shape == (16,)
    train, test = data.loaders(3, seed=0)
    assert [x.shape[0] for x, _ in train] == [3, 3, 1]
    assert [x.shape[0] for x, _ in test] == [3]  # eval_batch_size None: one batch
    assert set(data.metric_fns) == {"mse", "rel_l2", "rmse"}
    # the generated file's bytes, named by file so another data dir records the same
    assert data.data_digests() == {burgers_file.name: sha256_file(burgers_file)}


def test_time_series_builder_windows(heat_file: Path) -> None:
    from experiments.pde.io import load_dataset

    raw, _ = load_dataset(heat_file)
    data = heat(
        path=str(heat_file), n_train=6, n_test=4, train_resolution=16, test_resolution=32,
        t_in=3, t_out=1,
    )  # fmt: skip
    assert data.x_train.shape == (6, 16, 16, 3) and data.y_train.shape == (6, 16, 16, 1)
    assert data.x_test.shape == (4, 32, 32, 3) and data.y_test.shape == (4, 32, 32, 1)
    assert torch.equal(data.x_train, raw["u_16"][:6, ..., :3])  # t = 1, 2, 3
    assert torch.equal(data.y_test, raw["u_32"][-4:, ..., 3:4])  # t = 4
    with pytest.raises(ConfigError, match=r"dataset.t_in=0 must be an integer >= 1"):
        heat(path=str(heat_file), t_in=0)


def test_missing_or_unfit_files_name_the_generating_command(
    tmp_path: Path, burgers_file: Path, heat_file: Path
) -> None:
    missing = tmp_path / "nope" / "ns.pt"
    with pytest.raises(MissingPDEDataError) as err:
        navier_stokes(path=str(missing))
    command = f"python scripts/generate_pde.py ns --n 1200 --resolutions 64 32 --out {missing}"
    assert command in str(err.value)
    assert generate_command("heat", "x.pt", 5, [8], 12).endswith("--t-final 12 --out x.pt")

    with pytest.raises(MissingPDEDataError, match="12 samples, fewer than n_train"):
        burgers(path=str(burgers_file), n_train=10, n_test=5, train_resolution=32)
    with pytest.raises(
        MissingPDEDataError, match=r"lacks resolution\(s\) \[64\] \(has \[16, 32\]\)"
    ):
        burgers(
            path=str(burgers_file), n_train=8, n_test=4, train_resolution=64, test_resolution=32
        )
    with pytest.raises(MissingPDEDataError, match="holds equation 'burgers', not 'heat'"):
        heat(path=str(burgers_file), n_train=8, n_test=4)
    with pytest.raises(MissingPDEDataError, match="records 4 time steps, fewer than"):
        heat(path=str(heat_file), n_train=6, n_test=4, train_resolution=16, test_resolution=32)


# --------------------------------------------------------------------------- runs


def test_fno1d_vanilla_run_logs_pde_metrics(tmp_path: Path, burgers_file: Path) -> None:
    run_inprocess(tmp_path / "run", *_burgers(burgers_file), "collision=none", *TINY_1D, *FAST)
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    last = records[-1]
    # One test batch: RMSE is the exact root of the test MSE; the test loss is relative L2.
    assert math.isclose(last["test_rmse"], math.sqrt(last["test_mse"]), rel_tol=1e-6)
    assert last["test_loss"] == last["test_rel_l2"]
    assert last["train_loss"] < records[1]["train_loss"]  # it learns
    # Every Fourier layer is watched (model config): rho per spectral conv and 1x1 skip.
    assert {f"rho.layers.{i}.{part}" for i in (0, 1) for part in ("spectral", "skip")} <= set(last)
    assert not any(k.startswith("collision_rate.layers.0.residual") for k in last)


def test_kiti_fno1d_run_logs_collision_rates_per_layer(tmp_path: Path, burgers_file: Path) -> None:
    run_inprocess(
        tmp_path / "run", *_burgers(burgers_file), *EAGER, "collision.collision_heads=8",
        *TINY_1D, *FAST,
    )  # fmt: skip
    records = read_metrics(tmp_path / "run")
    rates = {k: v for k, v in records[-1].items() if k.startswith("collision_rate.layers.")}
    residual = {k: v for k, v in rates.items() if k.endswith(".residual")}
    assert sorted(residual) == [f"collision_rate.layers.{i}.residual" for i in (0, 1)]
    assert all(0 < v <= 1 for v in residual.values()), residual
    assert records[0]["collision_rate.layers.0.residual"] is None  # no training step yet


def test_fno2d_trains_at_16_and_tests_at_32(tmp_path: Path, heat_file: Path) -> None:
    """The data fill in_channels = t_in and t_out; KITINet's systems are checked at 16²."""
    run_inprocess(
        tmp_path / "run", *_heat(heat_file), *EAGER, "collision.collision_heads=4",
        *TINY_2D, *FAST,
    )  # fmt: skip
    import yaml

    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["dataset"]["test_resolution"] == 32
    last = read_metrics(tmp_path / "run")[-1]
    assert math.isfinite(last["test_mse"]) and last["test_mse"] > 0
    assert 0 < last["collision_rate.layers.1.residual"] <= 1


def test_killed_kiti_run_resumes_to_the_uninterrupted_metrics(
    tmp_path: Path, burgers_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch order (TensorBatches' generator) and KITINet's directions resume exactly."""
    common = [*_burgers(burgers_file), *EAGER, "collision.collision_heads=8", *TINY_1D, *FAST]
    common.append("trainer.checkpoint_every=1")
    _, resumed, whole = kill_and_resume(tmp_path, monkeypatch, common, kill_at=2)
    assert resumed == whole


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=mlp"], "model=mlp cannot take PDE data (dataset=burgers); use fno1d"),
        (["model=fno2d"], "model=fno2d cannot take 1-D grid data (dataset=burgers); use fno1d"),
        (["+model.in_channels=2"], "model.in_channels=2 but dataset=burgers has 1 input channels"),
        (
            ["collision=kitinet", "collision.collision_heads=3"],
            "collision_heads=3 does not divide the feature size D=256 of layers.0.residual",
        ),
        (
            ["collision=kitinet", "collision.collision_heads=1", "dataset.max_particles=64"],
            "N=256 particles per system in layers.0.residual (D=256), more than max_particles=64",
        ),
    ],
)
def test_models_that_cannot_fit_the_data_fail_before_training(
    tmp_path: Path, burgers_file: Path, overrides: list[str], message: str
) -> None:
    base = [o for o in _burgers(burgers_file) if not o.startswith("model=")]
    if not any(o.startswith("model=") for o in overrides):
        base = ["model=fno1d", *base, *TINY_1D]
    with pytest.raises(ConfigError) as err:
        run_inprocess(tmp_path / "run", *base, *overrides)
    assert message in str(err.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# --------------------------------------------------------------------------- Airfoil / OFormer

TINY_OFORMER = ["model.dim=16", "model.num_heads=2", "model.encoder_layers=2", "model.mlp_ratio=1"]


@pytest.fixture(scope="module")
def airfoil_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("airfoil")
    write_airfoil_fixture(root, n_trajectories=6, n_nodes=40, n_steps=12, seed=1)
    return root


def _airfoil(root: Path) -> list[str]:
    # 12 solver steps: 2 frames in, 3 out, every 2 steps
    window = ["dataset.t_in=2", "dataset.t_out=3", "dataset.stride=2", "dataset.eval_batch_size=4"]
    return ["model=oformer", f"dataset.root={root}", *window]


def test_oformer_on_the_airfoil_files_logs_the_papers_rmse(tmp_path: Path, airfoil_root: Path):
    """The Table 4 Airfoil row's path: real-format TFRecords -> OFormer (vanilla and KITI)."""
    from experiments.pde.airfoil import denormalize, momentum_rmse
    from experiments.pde.data import airfoil

    common = [*_airfoil(airfoil_root), *TINY_OFORMER, *FAST, "optimizer=adamw"]
    run_inprocess(tmp_path / "vanilla", *common, "collision=none")
    last = read_metrics(tmp_path / "vanilla")[-1]
    assert last["train_loss"] < read_metrics(tmp_path / "vanilla")[1]["train_loss"]
    # test_rmse is the momentum RMSE in physical units (not the root of the standardised MSE)
    data = airfoil(root=str(airfoil_root), t_in=2, t_out=3, stride=2)
    stats, y = data.metadata["train"]["stats"], data.y_test
    zero_rmse = momentum_rmse(denormalize(y * 0, stats), denormalize(y, stats))  # predict the mean
    assert 0 < last["test_rmse"] and math.isfinite(last["test_rmse"])
    assert not math.isclose(last["test_rmse"], math.sqrt(last["test_mse"]), rel_tol=1e-3)
    assert last["test_rmse"] < 10 * float(zero_rmse)

    run_inprocess(tmp_path / "kiti", *common, *EAGER, "collision.collision_heads=4")
    kiti = read_metrics(tmp_path / "kiti")[-1]
    rates = {k: v for k, v in kiti.items() if k.startswith("collision_rate.") and v is not None}
    assert rates and max(rates.values()) > 0  # token systems collided in some residual


def test_airfoil_needs_a_mesh_model(tmp_path: Path, airfoil_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"model=fno1d cannot take mesh data.*use oformer"):
        run_inprocess(tmp_path, *_airfoil(airfoil_root), "model=fno1d", "dataset=airfoil")
