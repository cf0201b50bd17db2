"""PDE data sets for the runner (KITINet §5.4, App. F; SPEC §3 Table 4): Burgers, Navier-Stokes, Heat.

Importing this module registers four builders in :data:`experiments.core.registry.DATASETS`:

* ``burgers``: ``u0 -> u(., 1)`` on a 1-D periodic grid. Inputs ``(n, r, 1)``, targets ``(n, r, 1)``.
* ``navier_stokes`` / ``heat``: the fields at ``t = 1..t_in`` -> ``t = t_in+1..t_in+t_out`` on a 2-D
  periodic grid. Inputs ``(n, r, r, t_in)``, targets ``(n, r, r, t_out)`` (channels last, as the FNO
  takes them). The paper trains at 32x32 and tests at 64x64 (``train_resolution`` /
  ``test_resolution``).
* ``airfoil``: MeshGraphNets' airfoil trajectories (:mod:`experiments.pde.airfoil`, downloaded by
  the user) for OFormer: :class:`MeshData` with ``(values, coords)`` inputs.

They read the files written by ``scripts/generate_pde.py`` (``.pt`` + ``.json`` sidecar,
:mod:`experiments.pde.io`); the first ``n_train`` samples are the training set and the last
``n_test`` the test set (disjoint when the file has ``n_train + n_test`` samples or more). Nothing
is generated here: generating Navier-Stokes data takes hours on a CPU (~14 s per sample, see
:mod:`experiments.pde.generate`), which should not start as a side effect of a training run. A
missing file fails at once with the exact command that writes it.

The builders return :class:`PDEData`, which speaks the runner's data protocol (like
:class:`experiments.vision.data.VisionData`): ``loaders()``, ``train_loss`` (relative L2, the FNO
papers' loss), ``eval_loss`` (the same), ``metric_fns`` (``mse``, Table 4's metric; ``rel_l2``;
``rmse``), plus ``model_kwargs`` / ``check_model``, which fill and check the operator's channels
and its KITINet systems at the training resolution before any training.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from experiments.core.errors import ConfigError, MissingDataError
from experiments.core.loaders import TensorBatches
from experiments.core.metrics import mse, relative_l2, rmse
from experiments.core.registry import DATASETS, MODELS
from experiments.core.task import TaskDefaults
from experiments.pde.io import load_dataset, sidecar_path
from experiments.pde.models import DEFAULT_MAX_PARTICLES, check_resolution

__all__ = [
    "GENERATE_SCRIPT",
    "MeshData",
    "MissingPDEDataError",
    "PDEData",
    "airfoil",
    "burgers",
    "generate_command",
    "heat",
    "navier_stokes",
]

GENERATE_SCRIPT = "scripts/generate_pde.py"
# Data set name in the registry -> (equation argument of the script, equation in the metadata).
_EQUATIONS = {
    "burgers": ("burgers", "burgers"),
    "navier_stokes": ("ns", "navier_stokes"),
    "heat": ("heat", "heat"),
}
# Record times the generator writes by default for NS / Heat (t = 1..20).
_DEFAULT_T_FINAL = 20

MetricFn = Callable[[Tensor, Tensor], Tensor]


class MissingPDEDataError(MissingDataError):
    """A PDE data file is absent or too small; the message gives the command that writes it."""


def _relative_l2(outputs: Tensor, targets: Tensor) -> Tensor:
    return relative_l2(outputs, targets)


@dataclass
class PDEData(TaskDefaults):
    """An operator-learning data set in memory, channels last.

    ``x_*``: inputs ``(n, *spatial, c_in)``; ``y_*``: targets ``(n, *spatial, c_out)``. The test
    grid may be finer than the training grid (resolution generalisation).

    ``eval_batch_size`` None evaluates the test set as one batch, so ``test_rmse`` is the exact
    root of the test MSE (with smaller batches the loop averages per-batch RMSEs).
    ``max_particles``: refuse KITINet systems with more particles ``N = D / collision_heads``
    than this at the training resolution (their ``N x N`` pair matrices); None: no limit.
    ``files``: the generated data file the tensors were read from (not its JSON sidecar, which
    also records the generation's wall time).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    metadata: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int | None = None
    max_particles: int | None = DEFAULT_MAX_PARTICLES
    train_loss: Callable[[Tensor, Tensor], Tensor] = _relative_l2
    eval_loss: Callable[[Tensor, Tensor], Tensor] = _relative_l2
    files: list[Path] = field(default_factory=list)

    @property
    def dim(self) -> int:
        """Number of spatial dimensions (1 for Burgers, 2 for NS / Heat)."""
        return self.x_train.dim() - 2

    @property
    def train_shape(self) -> tuple[int, ...]:
        """Spatial grid of the training set, e.g. ``(1024,)`` or ``(32, 32)``."""
        return tuple(self.x_train.shape[1:-1])

    @property
    def test_shape(self) -> tuple[int, ...]:
        """Spatial grid of the test set."""
        return tuple(self.x_test.shape[1:-1])

    @property
    def metric_fns(self) -> dict[str, MetricFn]:
        """``mse`` (Table 4), ``rel_l2`` and ``rmse`` (Table 4's Airfoil metric), logged as
        ``test_<name>``."""
        return {"mse": mse, "rel_l2": _relative_l2, "rmse": rmse}

    def loaders(
        self,
        batch_size: int | None,
        *,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        shuffle: bool = True,
    ) -> tuple[TensorBatches, TensorBatches]:
        """``(train batches, test batches)`` over the in-memory tensors.

        The train batches are reshuffled every epoch from ``seed`` (their generator state is
        checkpointed, so a resumed run sees the same orders); ``batch_size`` None is full batch.
        ``num_workers`` / ``pin_memory`` are accepted for the runner's protocol and ignored: the
        data are already tensors in memory.
        """
        del num_workers, pin_memory
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"trainer.batch_size={batch_size} must be >= 1 (or null)")
        train = TensorBatches(self.x_train, self.y_train, batch_size, shuffle=shuffle, seed=seed)
        test = TensorBatches(self.x_test, self.y_test, self.eval_batch_size, shuffle=False)
        return train, test

    def model_kwargs(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` completed with the data's channels: ``in_channels``, and ``t_out`` (a
        rollout model) or ``out_channels``. Values the model config sets are kept (and checked by
        :meth:`check_model`).

        Raises:
            ConfigError: the model takes no ``in_channels`` (it is no neural operator).
        """
        params = MODELS.parameters(model_name)
        if "in_channels" not in params:
            raise ConfigError(
                f"model={model_name} cannot take PDE data (dataset={self.name}); use fno{self.dim}d"
            )
        out = dict(kwargs)
        out.setdefault("in_channels", int(self.x_train.shape[-1]))
        key = "t_out" if "t_out" in params else "out_channels"
        out.setdefault(key, int(self.y_train.shape[-1]))
        return out

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Fail before training if ``model`` cannot map these inputs to these targets.

        Checks the spatial dimension and the channels, and that every KITINet system at the
        training resolution divides into ``collision_heads`` rows of at most ``max_particles``
        particles (:func:`experiments.pde.models.check_resolution`; in eval KITINet is the plain
        addition, so the test resolution needs no check).
        """
        model_dim = getattr(model, "dim", None)
        if model_dim != self.dim or not hasattr(model, "kitinet_systems"):
            raise ConfigError(
                f"model={model_name} cannot take {self.dim}-D grid data (dataset={self.name}); "
                f"use fno{self.dim}d"
            )
        c_in, c_out = int(self.x_train.shape[-1]), int(self.y_train.shape[-1])
        if model.in_channels != c_in:
            raise ConfigError(
                f"model.in_channels={model.in_channels} but dataset={self.name} has {c_in} input "
                "channels; leave model.in_channels unset (the data fill it)"
            )
        produced = model.t_out if model.t_out is not None else model.out_channels
        if produced != c_out:
            key = "t_out" if model.t_out is not None else "out_channels"
            raise ConfigError(
                f"model.{key}={produced} but dataset={self.name} has {c_out} target channels; "
                f"leave model.{key} unset (the data fill it)"
            )
        try:
            check_resolution(model, self.train_shape, max_particles=self.max_particles)
        except ConfigError as err:
            raise ConfigError(
                f"collision.collision_heads does not fit dataset={self.name} at its training "
                f"resolution {self.train_shape} (dataset.max_particles={self.max_particles}): {err}"
            ) from err


# --------------------------------------------------------------------------- loading


def generate_command(
    dataset: str, path: str | Path, n_samples: int, resolutions: list[int], t_final: int | None
) -> str:
    """The ``scripts/generate_pde.py`` command that writes the file a builder asks for."""
    equation = _EQUATIONS[dataset][0]
    args = ["python", GENERATE_SCRIPT, equation, "--n", str(n_samples)]
    args += ["--resolutions", *(str(r) for r in resolutions)]
    if t_final is not None and t_final != _DEFAULT_T_FINAL:
        args += ["--t-final", str(t_final)]
    args += ["--out", str(path)]
    return shlex.join(args)


def _load(
    dataset: str,
    path: str,
    *,
    n_train: int,
    n_test: int,
    resolutions: list[int],
    t_final: int | None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load and check the file: equation, sample count, resolutions (and record times)."""
    for key, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"dataset.{key}={value!r} must be an integer >= 1")
    wanted = sorted(set(resolutions), reverse=True)
    command = generate_command(dataset, path, n_train + n_test, wanted, t_final)
    if not sidecar_path(path).is_file() or not Path(path).is_file():
        raise MissingPDEDataError(
            f"dataset={dataset}: {path} (+ {sidecar_path(path).name}) not found. Generate it with\n"
            f"  {command}\n(times: see {GENERATE_SCRIPT}; or set dataset.path to an existing file)"
        )
    tensors, meta = load_dataset(path)
    equation = _EQUATIONS[dataset][1]
    problems = []
    if meta.get("equation") != equation:
        problems.append(f"it holds equation {meta.get('equation')!r}, not {equation!r}")
    n_samples = int(meta.get("n_samples", 0))
    if n_samples < n_train + n_test:
        problems.append(
            f"it has {n_samples} samples, fewer than n_train + n_test = {n_train + n_test}"
        )
    absent = [r for r in wanted if f"u_{r}" not in tensors]
    if absent:
        have = sorted(int(k[2:]) for k in tensors if k.startswith("u_"))
        problems.append(f"it lacks resolution(s) {absent} (has {have})")
    if t_final is not None and not absent:
        steps = min(int(tensors[f"u_{r}"].shape[-1]) for r in wanted)
        if steps < t_final:
            problems.append(f"it records {steps} time steps, fewer than t_in + t_out = {t_final}")
    if problems:
        raise MissingPDEDataError(
            f"dataset={dataset}: {path} does not fit the config: {'; '.join(problems)}. "
            f"Regenerate it with\n  {command}\n(or change dataset.n_train / n_test / resolutions)"
        )
    return tensors, meta


def _split(samples: Tensor, n_train: int, n_test: int) -> tuple[Tensor, Tensor]:
    """First ``n_train`` samples, last ``n_test`` samples (contiguous float32 copies)."""
    return samples[:n_train].float().contiguous(), samples[-n_test:].float().contiguous()


def _check_window(t_in: int, t_out: int) -> None:
    for key, value in (("t_in", t_in), ("t_out", t_out)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"dataset.{key}={value!r} must be an integer >= 1")


@DATASETS.register
def burgers(
    path: str = "data/pde/burgers.pt",
    n_train: int = 1000,
    n_test: int = 100,
    train_resolution: int = 1024,
    test_resolution: int = 1024,
    eval_batch_size: int | None = None,
    max_particles: int | None = DEFAULT_MAX_PARTICLES,
) -> PDEData:
    """Burgers' equation (KITINet App. F.1): ``u0 -> u(., 1)``, nu = 0.1, periodic (0, 1).

    Defaults: the FNO authors' public setting (SPEC §3): 1000 train / 100 test at 1024 points.
    """
    tensors, meta = _load(
        "burgers",
        path,
        n_train=n_train,
        n_test=n_test,
        resolutions=[train_resolution, test_resolution],
        t_final=None,
    )
    x_train, _ = _split(tensors[f"a_{train_resolution}"], n_train, n_test)
    y_train, _ = _split(tensors[f"u_{train_resolution}"], n_train, n_test)
    _, x_test = _split(tensors[f"a_{test_resolution}"], n_train, n_test)
    _, y_test = _split(tensors[f"u_{test_resolution}"], n_train, n_test)
    return PDEData(
        name="burgers",
        x_train=x_train.unsqueeze(-1),
        y_train=y_train.unsqueeze(-1),
        x_test=x_test.unsqueeze(-1),
        y_test=y_test.unsqueeze(-1),
        metadata=meta,
        eval_batch_size=eval_batch_size,
        max_particles=max_particles,
        files=[Path(path)],
    )


def _time_series(
    path: str | None = None,
    n_train: int = 1000,
    n_test: int = 200,
    train_resolution: int = 32,
    test_resolution: int = 64,
    t_in: int = 10,
    t_out: int = 10,
    eval_batch_size: int | None = None,
    max_particles: int | None = DEFAULT_MAX_PARTICLES,
    *,
    dataset: str,
) -> PDEData:
    """NS / Heat: steps ``1..t_in`` (stored at ``u[..., 0:t_in]``) -> the next ``t_out`` steps.

    Registered once per entry of :data:`_TIME_SERIES` as ``functools.partial(_time_series,
    dataset=...)``; ``path`` None reads ``data/pde/<dataset>.pt``. The paper trains at 32x32 and
    tests at 64x64; 1000 / 200 samples and ``t_out = 10`` are the FNO authors' public NS split
    and our reading of "up to time 10 -> up to T > 10" (the paper gives neither n nor T).
    """
    if path is None:
        path = f"data/pde/{dataset}.pt"
    _check_window(t_in, t_out)
    tensors, meta = _load(
        dataset,
        path,
        n_train=n_train,
        n_test=n_test,
        resolutions=[train_resolution, test_resolution],
        t_final=t_in + t_out,
    )
    train, _ = _split(tensors[f"u_{train_resolution}"], n_train, n_test)
    _, test = _split(tensors[f"u_{test_resolution}"], n_train, n_test)
    window = slice(t_in, t_in + t_out)
    return PDEData(
        name=dataset,
        x_train=train[..., :t_in].contiguous(),
        y_train=train[..., window].contiguous(),
        x_test=test[..., :t_in].contiguous(),
        y_test=test[..., window].contiguous(),
        metadata=meta,
        eval_batch_size=eval_batch_size,
        max_particles=max_particles,
        files=[Path(path)],
    )


# The 2-D time series ``u(t = 1..t_in) -> u(t_in+1..t_in+t_out)``, one builder each; same layout,
# resolutions and split (the paper describes both alike).
_TIME_SERIES = (
    "navier_stokes",  # vorticity, KITINet App. F.2
    "heat",  # heat equation, KITINet App. F.3
)
for _name in _TIME_SERIES:
    DATASETS.register(functools.partial(_time_series, dataset=_name), name=_name)
del _name

navier_stokes = DATASETS.get("navier_stokes")
heat = DATASETS.get("heat")


# --------------------------------------------------------------------------- Airfoil (OFormer)


@dataclass
class MeshData(TaskDefaults):
    """Operator learning on one irregular mesh (Airfoil, KITINet App. F.4) for OFormer.

    Inputs are ``(values, coords)`` pairs: ``values`` ``(n, nodes, c_in)`` at ``coords``
    ``(n, nodes, coord_dim)``; targets ``(n, nodes, c_out)``. Training minimises the MSE of the
    standardised values; the test metrics are that ``mse`` and ``rel_l2`` plus ``rmse``, the
    paper's Airfoil number: the RMSE of the momentum (density x velocity) in physical units inside
    OFormer's region of interest around the airfoil, averaged over test batches of
    ``eval_batch_size`` (16, as OFormer reports it).
    """

    name: str
    x_train: tuple[Tensor, Tensor]
    y_train: Tensor
    x_test: tuple[Tensor, Tensor]
    y_test: Tensor
    metric_fns: dict[str, MetricFn]
    metadata: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int | None = 16
    train_loss: Callable[[Tensor, Tensor], Tensor] = mse
    eval_loss: Callable[[Tensor, Tensor], Tensor] = mse

    def loaders(
        self,
        batch_size: int | None,
        *,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        shuffle: bool = True,
    ) -> tuple[TensorBatches, TensorBatches]:
        """``(train batches, test batches)`` of ``((values, coords), targets)``; as
        :meth:`PDEData.loaders`."""
        del num_workers, pin_memory
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"trainer.batch_size={batch_size} must be >= 1 (or null)")
        train = TensorBatches(self.x_train, self.y_train, batch_size, shuffle=shuffle, seed=seed)
        test = TensorBatches(self.x_test, self.y_test, self.eval_batch_size, shuffle=False)
        return train, test

    def model_kwargs(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` completed with ``in_channels``, ``out_channels`` and ``coord_dim``."""
        params = MODELS.parameters(model_name)
        if "coord_dim" not in params:
            raise ConfigError(
                f"model={model_name} cannot take mesh data (dataset={self.name}); use oformer"
            )
        out = dict(kwargs)
        out.setdefault("in_channels", int(self.x_train[0].shape[-1]))
        out.setdefault("out_channels", int(self.y_train.shape[-1]))
        out.setdefault("coord_dim", int(self.x_train[1].shape[-1]))
        return out

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Fail before training if the model's channels do not match the data's."""
        expected = {
            "in_channels": int(self.x_train[0].shape[-1]),
            "out_channels": int(self.y_train.shape[-1]),
            "coord_dim": int(self.x_train[1].shape[-1]),
        }
        for key, value in expected.items():
            if getattr(model, key, None) != value:
                raise ConfigError(
                    f"model.{key}={getattr(model, key, None)} but dataset={self.name} has "
                    f"{value}; leave model.{key} unset (the data fill it)"
                )


def _airfoil_rmse(stats: Mapping[str, Any], mask: Tensor) -> MetricFn:
    from experiments.pde.airfoil import denormalize, momentum_rmse

    def rmse_metric(outputs: Tensor, targets: Tensor) -> Tensor:
        m = mask.to(outputs.device).expand(outputs.shape[:-1])
        return momentum_rmse(denormalize(outputs, stats), denormalize(targets, stats), m)

    return rmse_metric


@DATASETS.register
def airfoil(
    root: str = "data/airfoil",
    t_in: int = 4,
    t_out: int = 22,
    stride: int = 24,
    train_limit: int | None = None,
    test_limit: int | None = None,
    test_split: str = "test",
    eval_batch_size: int | None = 16,
    verify: bool = True,
) -> MeshData:
    """MeshGraphNets' airfoil data (KITINet App. F.4, :mod:`experiments.pde.airfoil`) for OFormer.

    ``t_in`` frames every ``stride`` solver steps in (t <= 0.576 s with the defaults), the next
    ``t_out`` out (t <= 4.8 s); values standardised with the train split's statistics, coordinates
    scaled to [0, 1]. ``*_limit``: read only the first trajectories (CPU-scale runs).
    """
    from experiments.pde.airfoil import load_airfoil, roi_mask

    if test_split not in ("valid", "test"):
        raise ConfigError(f"dataset.test_split={test_split!r} is unknown; allowed: valid, test")
    window = {"t_in": t_in, "t_out": t_out, "stride": stride, "verify": verify}
    train, train_meta = load_airfoil(root, "train", limit=train_limit, **window)
    stats = train_meta["stats"]
    test, test_meta = load_airfoil(root, test_split, limit=test_limit, stats=stats, **window)
    # One mesh for every trajectory (load_airfoil checks the sizes): the region of interest of
    # the first test trajectory holds for all.
    mask = roi_mask(test["mesh_pos"][0])
    metrics: dict[str, MetricFn] = {
        "mse": mse,
        "rel_l2": _relative_l2,
        "rmse": _airfoil_rmse(stats, mask),
    }
    return MeshData(
        name="airfoil",
        x_train=(train["inputs"], train["coords"]),
        y_train=train["targets"],
        x_test=(test["inputs"], test["coords"]),
        y_test=test["targets"],
        metric_fns=metrics,
        metadata={"train": train_meta, "test": test_meta},
        eval_batch_size=eval_batch_size,
    )
