"""Config schemas of every config group, and the validation that runs before anything is built.

Each group under ``configs/`` has a dataclass here (``collision`` -> :class:`CollisionConfig`, ...).
:func:`validate` turns a composed Hydra config into a typed :class:`RunConfig`, checking

* that every key of a group is known, and every value has the right type;
* ranges (``collision.coll_coef`` in [0, 1], ``mean_free_path > 0``, ``collision_heads >= 1``, ...);
* names (model, dataset, activation, optimizer, scheduler, collision, logger);
* combinations that cannot work (``collision=kitinet`` with a model that has no residual).

Errors are :class:`ConfigError` and name the key, the bad value and what is allowed, e.g.
``collision.coll_coef=1.5 is outside [0, 1]``. ``model`` and ``dataset`` are open: besides ``name``
they hold the keyword arguments of the registered builder, checked against its signature.

Top-level keys other than the known sections are passed through untouched, so a trainer can add
its own section without touching this module.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from experiments.core.errors import ConfigError
from experiments.core.registry import DATASETS, MODELS, Registry

__all__ = [
    "COLLISION_KEYS",
    "COLLISION_NAMES",
    "LOGGER_NAMES",
    "OPTIMIZER_NAMES",
    "PRECISIONS",
    "SCHEDULER_INTERVALS",
    "SCHEDULER_NAMES",
    "TRAINER_UNITS",
    "CollisionConfig",
    "LoggerConfig",
    "OptimizerConfig",
    "PathsConfig",
    "RunConfig",
    "SchedulerConfig",
    "SpecConfig",
    "TrainerConfig",
    "collision_options",
    "register_hydra",
    "supports_kitinet",
    "validate",
]

COLLISION_NAMES = ("none", "soft", "hard", "kitinet")
# The options of each collision mode; the others do not apply and are absent from its config.
COLLISION_KEYS: dict[str, tuple[str, ...]] = {
    "none": ("name",),
    "soft": ("name", "coll_coef", "modules", "exclude_self"),
    "hard": ("name", "coll_coef", "modules", "mean_free_path", "seed"),
    "kitinet": (
        "name",
        "coll_coef",
        "collision_heads",
        "dt",
        "position_update",
        "mean_free_path",
        "seed",
    ),
}
OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "lamb")
SCHEDULER_NAMES = ("none", "cosine", "linear", "multistep")
SCHEDULER_INTERVALS = ("epoch", "step")
LOGGER_NAMES = ("none", "wandb")
PRECISIONS = ("fp32", "bf16", "fp16")
TRAINER_UNITS = ("epoch", "step")


def _allowed(values: typing.Iterable[str]) -> str:
    return ", ".join(values)


# --------------------------------------------------------------------------- schemas


@dataclass
class CollisionConfig:
    """``collision``: KO (soft/hard, an optimizer gadget) or KITINet (a residual module), or none."""

    name: str = "none"
    """none | soft | hard (KO, on the layers in ``modules``) | kitinet (in the model's residuals)."""
    coll_coef: float = 0.0
    """Collision coefficient in [0, 1] (0: no collision)."""
    modules: list[str] = field(default_factory=lambda: ["head"])
    """KO: fnmatch patterns over module names ("head" = the classifier), see select_modules."""
    exclude_self: bool = False
    """KO soft: drop the i == j term (KO App. A Eq. 12)."""
    mean_free_path: float = 1.0
    """KO hard / KITINet: locality length scale, > 0 (the papers use 1)."""
    collision_heads: int = 1
    """KITINet: dimension of the collision space; must divide the feature size."""
    dt: float = 1.0
    """KITINet: time step of x' = x* + dt v'."""
    position_update: bool = True
    """KITINet: use the collision-averaged position x* (False: the Table 6 ablation)."""
    seed: int | None = None
    """Seed of the collision's own random generator; None means the run seed."""

    def check(self) -> None:
        """Raise ConfigError on a value outside its range."""
        if self.name not in COLLISION_NAMES:
            raise ConfigError(
                f"collision.name={self.name!r} is unknown; allowed: {_allowed(COLLISION_NAMES)}"
            )
        if not 0.0 <= self.coll_coef <= 1.0:
            raise ConfigError(f"collision.coll_coef={self.coll_coef} is outside [0, 1]")
        if not self.mean_free_path > 0:
            raise ConfigError(f"collision.mean_free_path={self.mean_free_path} must be > 0")
        if self.collision_heads < 1:
            raise ConfigError(
                f"collision.collision_heads={self.collision_heads} must be an integer >= 1"
            )
        if self.name in ("soft", "hard") and not self.modules:
            raise ConfigError(
                f"collision.modules is empty: collision={self.name} needs at least one module "
                "pattern (e.g. [head])"
            )


@dataclass
class OptimizerConfig:
    """``optimizer``: the base optimizer, created with timm's ``create_optimizer_v2``."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    """SGD only."""
    nesterov: bool = False
    """SGD only: timm's ``sgd`` is Nesterov; plain momentum SGD is timm's ``momentum``."""
    betas: list[float] | None = None
    """Adam-family (Adam, AdamW, LAMB); None keeps the optimizer's default."""
    eps: float | None = None
    no_decay_bias_norm: bool = False
    """Exempt biases and norm weights from weight decay (timm's filter_bias_and_bn)."""
    no_decay_embeddings: bool = False
    """Exempt the weights of embedding tables (nn.Embedding, and an output layer tied to one)
    from weight decay, as usual for language models."""

    def check(self) -> None:
        """Raise ConfigError on a value outside its range."""
        if self.name not in OPTIMIZER_NAMES:
            raise ConfigError(
                f"optimizer.name={self.name!r} is unknown; allowed: {_allowed(OPTIMIZER_NAMES)}"
            )
        if not self.lr > 0:
            raise ConfigError(f"optimizer.lr={self.lr} must be > 0")
        if self.weight_decay < 0:
            raise ConfigError(f"optimizer.weight_decay={self.weight_decay} must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optimizer.momentum={self.momentum} is outside [0, 1)")
        if self.betas is not None and (
            len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas)
        ):
            raise ConfigError(f"optimizer.betas={self.betas} must be two numbers in [0, 1)")
        if self.eps is not None and not self.eps > 0:
            raise ConfigError(f"optimizer.eps={self.eps} must be > 0")


@dataclass
class SchedulerConfig:
    """``scheduler``: learning-rate schedule from timm's factory (:mod:`experiments.engine.schedulers`).

    Updated once per epoch or after every optimizer update (``interval``), with an optional linear
    warm-up from ``warmup_lr`` to the optimizer's lr over the first ``warmup_epochs``.
    """

    name: str = "none"
    """none (constant lr, after the warm-up if any) | cosine | linear (decay to eta_min at the
    end of the run, as transformers' linear schedule) | multistep."""
    interval: str = "epoch"
    """epoch | step: update the lr after every epoch or after every optimizer update."""
    milestones: list[int] = field(default_factory=list)
    """multistep: epochs after which the lr is multiplied by ``gamma``."""
    gamma: float = 0.1
    t_max: int | None = None
    """cosine: length of the decay in epochs (after it the lr stays at ``eta_min``); None: to the
    end of the run."""
    eta_min: float = 0.0
    """cosine, linear: final learning rate (timm's ``min_lr``)."""
    warmup_epochs: int = 0
    """Epochs of linear warm-up (0: none)."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up, added to ``warmup_epochs`` (needs interval=step)."""
    warmup_fraction: float = 0.0
    """Linear warm-up over this fraction of the run's optimizer updates, added to
    ``warmup_steps`` (needs interval=step; transformers' ``warmup_ratio``)."""
    warmup_lr: float = 0.0
    """Learning rate at the start of the warm-up (timm's train.py default is 1e-5)."""
    warmup_prefix: bool = False
    """timm's ``warmup_prefix``: false lays the warm-up over the start of the cosine / milestone
    schedule; true starts that schedule after the warm-up (the cosine then spans the remaining
    epochs, and milestones count from the end of the warm-up)."""

    def check(self) -> None:
        """Raise ConfigError on a value outside its range."""
        if self.name not in SCHEDULER_NAMES:
            raise ConfigError(
                f"scheduler.name={self.name!r} is unknown; allowed: {_allowed(SCHEDULER_NAMES)}"
            )
        if self.interval not in SCHEDULER_INTERVALS:
            raise ConfigError(
                f"scheduler.interval={self.interval!r} is unknown; allowed: "
                f"{_allowed(SCHEDULER_INTERVALS)}"
            )
        if self.name == "multistep" and not self.milestones:
            raise ConfigError("scheduler.milestones is empty: scheduler=multistep needs epochs")
        if any(m < 1 for m in self.milestones) or self.milestones != sorted(self.milestones):
            raise ConfigError(
                f"scheduler.milestones={self.milestones} must be increasing epochs >= 1"
            )
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"scheduler.gamma={self.gamma} is outside (0, 1]")
        if self.t_max is not None and self.t_max < 1:
            raise ConfigError(f"scheduler.t_max={self.t_max} must be >= 1")
        if self.eta_min < 0:
            raise ConfigError(f"scheduler.eta_min={self.eta_min} must be >= 0")
        if self.warmup_epochs < 0:
            raise ConfigError(
                f"scheduler.warmup_epochs={self.warmup_epochs} must be >= 0 (0: no warm-up)"
            )
        if self.warmup_steps < 0:
            raise ConfigError(
                f"scheduler.warmup_steps={self.warmup_steps} must be >= 0 (0: no warm-up)"
            )
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"scheduler.warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        if self.warmup_fraction and self.interval != "step":
            raise ConfigError(
                f"scheduler.warmup_fraction={self.warmup_fraction} needs scheduler.interval=step"
            )
        if self.warmup_steps and self.interval != "step":
            raise ConfigError(
                f"scheduler.warmup_steps={self.warmup_steps} needs scheduler.interval=step "
                f"(got {self.interval}); or give the warm-up in warmup_epochs"
            )
        if self.warmup_lr < 0:
            raise ConfigError(f"scheduler.warmup_lr={self.warmup_lr} must be >= 0")


@dataclass
class TrainerConfig:
    """``trainer``: the shared training loop (:func:`experiments.engine.loop.fit`)."""

    epochs: int = 100
    """Budget in epochs (unless ``max_steps`` is set)."""
    max_steps: int | None = None
    """Budget in optimizer steps; when set it replaces ``epochs`` (the run may end mid-epoch)."""
    grad_accum_steps: int = 1
    """Batches whose gradients one optimizer step accumulates (the global batch is
    ``batch_size x grad_accum_steps x world size``)."""
    unit: str = "epoch"
    """epoch | step: what ``log_every``, ``eval_every`` and ``checkpoint_every`` count. With epoch
    a record is written every epoch; with step every ``log_every`` steps and at each evaluation."""
    batch_size: int | None = None
    """None: full batch."""
    shuffle: bool = True
    """Reshuffle the training set every epoch (mini-batch only)."""
    device: str = "cpu"
    """cpu | auto (cuda if available) | cuda | cuda:N."""
    num_threads: int | None = None
    """torch intra-op CPU threads; None keeps torch's default."""
    progress: Any = "auto"
    """tqdm progress bars: true | false | auto (off when $CI is set or stderr is not a tty)."""
    log_every: int = 10
    """Log a line every this many units (and at the last); with unit=step also a record."""
    eval_every: int = 1
    """Evaluate on the test set every this many units (and always at the last)."""
    watch: list[str] = field(default_factory=list)
    """Layers (module names or fnmatch patterns) whose rho / max|cos| / heat map are recorded."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value before the (collision +) optimizer step."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms: the same seed gives the same metrics."""
    checkpoint_every: int = 0
    """Write ``checkpoints/last.pt`` in the run dir every this many units and at the end (0:
    never)."""
    num_workers: int = 0
    """DataLoader worker processes for image data (0: load in the main process)."""
    precision: str = "fp32"
    """fp32 | bf16 (autocast, for GPUs with bfloat16) | fp16 (autocast + GradScaler, CUDA only)."""
    channels_last: bool = False
    """Channels-last memory format for the model and 4-D inputs (faster convolutions on GPUs)."""
    fsdp: bool = False
    """Shard the model with FSDP2 (``fully_shard`` per block, under torchrun) instead of DDP
    replicas, for models that do not fit one GPU. Not with KO (a collision couples all neurons of a
    layer, which FSDP splits over the ranks) nor with ``watch``."""
    compile: bool = False
    """torch.compile the model's forward (and backward) for training and evaluation; on GPUs
    usually faster after the first steps' compilation, on CPUs often slower."""
    max_units: int | None = None
    """A budget in training units instead of steps (tokens for language models: ``max_steps`` is
    then ``ceil(max_units / (batch_size * grad_accum_steps * world size * tokens per sample))``);
    set at most one of max_steps and max_units."""
    peak_flops: float | None = None
    """Peak FLOP/s of one device (e.g. 989e12 for an H100's dense bf16) for the ``mfu`` record;
    without it only the achieved ``flops_per_s`` is recorded."""

    def check(self) -> None:
        """Raise ConfigError on a value outside its range."""
        if self.epochs < 1:
            raise ConfigError(f"trainer.epochs={self.epochs} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"trainer.max_steps={self.max_steps} must be >= 1 (or null)")
        if self.grad_accum_steps < 1:
            raise ConfigError(f"trainer.grad_accum_steps={self.grad_accum_steps} must be >= 1")
        if self.max_units is not None and self.max_units < 1:
            raise ConfigError(f"trainer.max_units={self.max_units} must be >= 1 (or null)")
        if self.max_units is not None and self.max_steps is not None:
            raise ConfigError(
                f"trainer.max_steps={self.max_steps} and trainer.max_units={self.max_units}: "
                "set only one budget"
            )
        if self.peak_flops is not None and not self.peak_flops > 0:
            raise ConfigError(f"trainer.peak_flops={self.peak_flops} must be > 0 (or null)")
        if self.unit not in TRAINER_UNITS:
            raise ConfigError(
                f"trainer.unit={self.unit!r} is unknown; allowed: {_allowed(TRAINER_UNITS)}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"trainer.batch_size={self.batch_size} must be >= 1 (or null)")
        if not (self.device in ("cpu", "auto", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(
                f"trainer.device={self.device!r} is unknown; allowed: cpu, auto, cuda, cuda:N, mps"
            )
        if self.progress not in (True, False, "auto"):
            raise ConfigError(
                f"trainer.progress={self.progress!r} is unknown; allowed: true, false, auto"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"trainer.num_threads={self.num_threads} must be >= 1 (or null)")
        if self.log_every < 1:
            raise ConfigError(f"trainer.log_every={self.log_every} must be >= 1")
        if self.eval_every < 1:
            raise ConfigError(f"trainer.eval_every={self.eval_every} must be >= 1")
        if self.num_workers < 0:
            raise ConfigError(f"trainer.num_workers={self.num_workers} must be >= 0")
        if self.checkpoint_every < 0:
            raise ConfigError(
                f"trainer.checkpoint_every={self.checkpoint_every} must be >= 0 (0: no checkpoints)"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"trainer.grad_clip={self.grad_clip} must be > 0 (or null)")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"trainer.precision={self.precision!r} is unknown; allowed: {_allowed(PRECISIONS)}"
            )
        if self.precision == "fp16" and self.device == "cpu":
            raise ConfigError(
                "trainer.precision=fp16 needs a CUDA device (trainer.device=cpu); use bf16 or fp32"
            )


@dataclass
class LoggerConfig:
    """``logger``: where metrics go besides the run directory (which is always written)."""

    name: str = "none"
    project: str = "kinetics"
    run_name: str | None = None
    """None: derived from the job's overrides."""
    group: str | None = None
    """None: the experiment name."""
    tags: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Raise ConfigError on a value outside its range."""
        if self.name not in LOGGER_NAMES:
            raise ConfigError(
                f"logger.name={self.name!r} is unknown; allowed: {_allowed(LOGGER_NAMES)}"
            )


@dataclass
class PathsConfig:
    """``paths``: where a run writes (Hydra's job directory) and where data sets live."""

    output_dir: str | None = None
    """None when not running under Hydra and not overridden; the runner then refuses to run."""
    data_dir: str = "data"

    def check(self) -> None:
        """Nothing to range-check; kept for symmetry."""


@dataclass
class SpecConfig:
    """``model`` / ``dataset``: a registered builder's name plus its keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """The whole validated configuration of one run."""

    seed: int
    experiment_name: str
    model: SpecConfig
    dataset: SpecConfig
    collision: CollisionConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    paths: PathsConfig
    resume: bool = False
    """``resume=auto``: continue from ``checkpoints/last.pt`` of the run dir if it exists."""
    overwrite: bool = False
    """Start afresh in a run dir that already holds a run (its metrics, summary and checkpoint
    are deleted first); without it such a run dir is refused."""

    @property
    def collision_seed(self) -> int:
        """Seed of the collision's generator: ``collision.seed``, or the run seed."""
        return self.seed if self.collision.seed is None else self.collision.seed


# --------------------------------------------------------------------------- Hydra

# Each of these groups has a ``schema`` option built from its dataclass's defaults; the group's
# YAML files start from it (``defaults: [schema, _self_]``) and hold only what differs, so every
# default is written once, here, and every key exists for command-line overrides.
SCHEMA_GROUPS: dict[str, type] = {}


def _experiment_name() -> str:
    """``${kinetics.experiment_name:}``: the chosen experiment file's path as a name
    (``experiment=ko/fig2`` -> ``ko_fig2``); without one, the chosen model, data set and collision
    (``mlp_sin5d_soft``); outside a Hydra job ``default``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "default"
    choices = HydraConfig.get().runtime.choices
    if choices.get("experiment"):
        return str(choices["experiment"]).replace("/", "_")
    parts = [choices.get(group) for group in ("model", "dataset", "collision")]
    return "_".join(str(p).replace("/", "_") for p in parts if p) or "default"


def register_hydra() -> None:
    """Register the ``schema`` option of each group and the ``kinetics.experiment_name``
    resolver (idempotent). Called on import of this module, so that composing works wherever
    the config schemas are known."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, schema in SCHEMA_GROUPS.items():
        store.store(group=group, name="schema", node=dataclasses.asdict(schema()))
    if not OmegaConf.has_resolver("kinetics.experiment_name"):
        OmegaConf.register_new_resolver("kinetics.experiment_name", _experiment_name)


# --------------------------------------------------------------------------- type checking


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}={value!r} must be a list, got {type(value).__name__}")
        (item_type,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}={value!r} must be a mapping")
        return dict(value)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{key}={value!r} must be of type {_type_name(tp)}")


def _build(section: str, schema: type, values: Mapping[str, Any]) -> Any:
    """An instance of the dataclass ``schema`` from ``values``, unknown keys and types rejected."""
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"{section}.{unknown[0]} is not a known option of '{section}'; known: {_allowed(names)}"
        )
    kwargs = {k: _coerce(f"{section}.{k}", v, hints[k]) for k, v in values.items()}
    obj = schema(**kwargs)
    obj.check()
    return obj


def _section(cfg: DictConfig, name: str) -> dict[str, Any]:
    node = cfg.get(name)
    if node is None:
        raise ConfigError(f"the config has no '{name}' section (is the defaults list complete?)")
    if not isinstance(node, DictConfig):
        raise ConfigError(f"'{name}' must be a mapping, got {node!r}")
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    return values


def _paths(cfg: DictConfig) -> PathsConfig:
    """Paths, resolved where possible: ``${hydra:...}`` only resolves inside a Hydra job."""
    node = cfg.get("paths")
    values: dict[str, Any] = {}
    if isinstance(node, DictConfig):
        for key in node:
            try:
                values[str(key)] = node[key]
            except InterpolationResolutionError:
                values[str(key)] = None
    return _build("paths", PathsConfig, values)


# --------------------------------------------------------------------------- registries


def _check_builder_kwargs(
    section: str,
    name: str,
    kwargs: Mapping[str, Any],
    registry: Registry[Any],
    reserved: tuple[str, ...],
) -> None:
    """Every key of ``kwargs`` must be a parameter of the builder (minus ``reserved`` ones)."""
    params = registry.parameters(name)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [p for p in params if p not in reserved]
    for key in kwargs:
        if key in reserved:
            raise ConfigError(f"{section}.{key} is set by the runner and cannot be configured")
        if key not in params and not takes_any:
            raise ConfigError(
                f"{section}.{key} is not an argument of {section} '{name}'; "
                f"allowed: {_allowed(allowed)}"
            )


# Keys of the model / dataset sections that are defaults for other sections (read by config.yaml's
# interpolations) or for other programs (an LM data set's `prepare` recipe, read by
# scripts/prepare_lm_data.py), not builder arguments.
MODEL_DEFAULT_KEYS = ("collide", "watch", "tokenizer", "lr")
DATASET_DEFAULT_KEYS = ("num_threads", "batch_size", "epochs", "unit", "eval_every", "prepare")


def _pop_defaults(section: str, values: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = values.pop(key, None)
        if key in ("collide", "watch") and value is not None:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{section}.{key}={value!r} must be a list of module names")


def _spec(
    section: str, registry: Registry[Any], values: dict[str, Any], reserved: tuple[str, ...]
) -> SpecConfig:
    name = values.pop("name", None)
    if name not in registry:
        raise ConfigError(
            f"{section}.name={name!r} is unknown; registered {section}s: {_allowed(registry.names())}"
        )
    _check_builder_kwargs(section, name, values, registry, reserved)
    return SpecConfig(name=name, kwargs=values)


def _model_spec(values: dict[str, Any]) -> SpecConfig:
    _pop_defaults("model", values, MODEL_DEFAULT_KEYS)
    if "activation" in values:
        from experiments.core.blocks import check_activation  # torch: only when validating

        check_activation(values["activation"])
    return _spec("model", MODELS, values, ("kitinet",))


def _dataset_spec(values: dict[str, Any]) -> SpecConfig:
    _pop_defaults("dataset", values, DATASET_DEFAULT_KEYS)
    return _spec("dataset", DATASETS, values, ())


def supports_kitinet(model_name: str) -> bool:
    """Whether the registered model has residual additions KITINet can replace."""
    return "kitinet" in MODELS.parameters(model_name)


# --------------------------------------------------------------------------- entry point


def validate(cfg: DictConfig) -> RunConfig:
    """Check a composed config and return it typed; raise :class:`ConfigError` on any problem.

    Builds nothing (no model, data or optimizer): only the registries' signatures are consulted.
    Checks that need the built model (KO module patterns, ``collision_heads`` dividing the
    feature size, watched layers) happen in the runner right after the model is built.
    """
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer >= 0")
    experiment_name = cfg.get("experiment_name") or _experiment_name()
    if not isinstance(experiment_name, str):
        raise ConfigError(f"experiment_name={experiment_name!r} must be a non-empty string")

    resume = cfg.get("resume", False)
    if resume not in (False, "auto"):
        raise ConfigError(f"resume={resume!r} is unknown; allowed: false, auto")
    overwrite = cfg.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite={overwrite!r} is unknown; allowed: false, true")
    if overwrite and resume:
        raise ConfigError("overwrite=true and resume=auto contradict each other; choose one")

    run = RunConfig(
        seed=seed,
        experiment_name=experiment_name,
        model=_model_spec(_section(cfg, "model")),
        dataset=_dataset_spec(_section(cfg, "dataset")),
        collision=_collision(_section(cfg, "collision")),
        optimizer=_build("optimizer", OptimizerConfig, _section(cfg, "optimizer")),
        scheduler=_build("scheduler", SchedulerConfig, _section(cfg, "scheduler")),
        trainer=_build("trainer", TrainerConfig, _section(cfg, "trainer")),
        logger=_build("logger", LoggerConfig, _section(cfg, "logger")),
        paths=_paths(cfg),
        resume=resume == "auto",
        overwrite=overwrite,
    )
    _check_combinations(run)
    return run


def _collision(values: dict[str, Any]) -> CollisionConfig:
    """The collision section with only the options of its mode.

    An option of another mode given on the command line is refused; one set in a config file is
    dropped (an experiment that sweeps collision=none,soft,hard,kitinet sets the kitinet options
    once for the kitinet runs).
    """
    name = values.get("name")
    if name not in COLLISION_KEYS:
        raise ConfigError(
            f"collision.name={name!r} is unknown; allowed: {_allowed(COLLISION_NAMES)}"
        )
    allowed = COLLISION_KEYS[name]
    given = _command_line_keys("collision")
    for key in sorted(set(values) - set(allowed)):
        if key not in {f.name for f in dataclasses.fields(CollisionConfig)}:
            raise ConfigError(
                f"collision.{key} is not a known option of 'collision'; options of "
                f"collision={name}: {_allowed(allowed)}"
            )
        if key in given:
            raise ConfigError(
                f"collision.{key} does not apply to collision={name}; its options: "
                f"{_allowed(allowed)}"
            )
        del values[key]
    return _build("collision", CollisionConfig, values)


def _command_line_keys(section: str) -> set[str]:
    """Keys of ``section`` that this Hydra job's command line sets (``a.b=1``, ``+a.b=1``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    keys = set()
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith(section + "."):
            keys.add(key.split(".")[1])
    return keys


def collision_options(collision: CollisionConfig) -> dict[str, Any]:
    """The options of the collision's mode (what a run's config.yaml shows)."""
    values = dataclasses.asdict(collision)
    return {key: values[key] for key in COLLISION_KEYS[collision.name]}


def _check_combinations(run: RunConfig) -> None:
    """Model / collision / trainer combinations that cannot work."""
    if run.collision.name == "kitinet" and not supports_kitinet(run.model.name):
        with_residual = [m for m in MODELS.names() if supports_kitinet(m)]
        raise ConfigError(
            f"collision=kitinet needs a model with residual connections, but model={run.model.name} "
            f"has none; use one of: {_allowed(with_residual)} (or collision=none/soft/hard)"
        )
    _check_schedule(run.scheduler, run.trainer, run.optimizer.lr)


def _check_schedule(s: SchedulerConfig, trainer: TrainerConfig, lr: float) -> None:
    """Scheduler settings that do not fit the run's length or learning rate."""
    epochs = trainer.epochs
    if trainer.max_steps is not None and s.name != "none" and s.interval != "step":
        raise ConfigError(
            f"trainer.max_steps={trainer.max_steps} (a budget in steps) needs "
            f"scheduler.interval=step for scheduler={s.name}"
        )
    if trainer.max_steps is not None and s.warmup_steps >= trainer.max_steps:
        raise ConfigError(
            f"scheduler.warmup_steps={s.warmup_steps} must be < trainer.max_steps="
            f"{trainer.max_steps}: the warm-up would never reach the learning rate"
        )
    if s.warmup_epochs and trainer.max_steps is None and s.warmup_epochs >= epochs:
        raise ConfigError(
            f"scheduler.warmup_epochs={s.warmup_epochs} must be < trainer.epochs={epochs}: the "
            "warm-up would never reach the learning rate"
        )
    if (s.warmup_epochs or s.warmup_steps) and s.warmup_lr > lr:
        raise ConfigError(
            f"scheduler.warmup_lr={s.warmup_lr} is above optimizer.lr={lr}: a warm-up rises from "
            "warmup_lr to the learning rate; use warmup_lr <= lr (e.g. 0)"
        )


SCHEMA_GROUPS.update(
    {
        "optimizer": OptimizerConfig,
        "scheduler": SchedulerConfig,
        "trainer": TrainerConfig,
        "logger": LoggerConfig,
    }
)
register_hydra()
