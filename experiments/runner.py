"""``run(cfg)``: one Hydra job from a composed config to a finished run directory.

Order matters, so that a configuration that cannot work fails before anything is written:

1. :func:`experiments.core.config.validate` (names, ranges, impossible combinations);
2. :func:`prepare`: seeding, the data set (a :class:`~experiments.core.task.Task`), the model
   (arguments completed and checked by the task), the watched and KO layers (patterns must
   match), the optimizer, the loaders, one eval forward of a test sample (every KITINet's size,
   the model's cost) and the lr schedule;
3. ``config.yaml``, the logger, then :func:`experiments.engine.loop.fit`;
4. ``weights_final.pt``, ``heatmap_<layer>.png`` and finally ``summary.json`` (with the run's
   identity: commit, command, the environment's versions, threads and kernels, and the sha256 of
   the data files read).

The runner asks the task, never the data's type: a new domain needs no change here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import experiments.domains  # noqa: F401  (every domain registers its models and data sets)
from experiments.core.config import RunConfig, collision_options, validate
from experiments.core.errors import ConfigError
from experiments.core.io import (
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    git_commit,
)
from experiments.core.registry import DATASETS, MODELS
from experiments.core.task import Task
from experiments.engine.callbacks import (
    Callback,
    CollisionEffect,
    CollisionRates,
    Condensation,
    PeakMemory,
    Throughput,
)
from experiments.engine.checkpoint import CHECKPOINT_NAME, load_checkpoint
from experiments.engine.distributed import (
    DistInfo,
    cleanup_distributed,
    gather_full_state,
    init_distributed,
    is_sharded,
    replicas_identical,
    shard_model,
)
from experiments.engine.loop import fit, steps_per_epoch
from experiments.engine.optim import build_optimizer
from experiments.engine.probe import check_kitinet_sizes, model_cost, sample_inputs
from experiments.engine.rundir import NullLogger, RunLogger, WandbLogger
from experiments.engine.runtime import environment, resolve_device, seed_everything
from experiments.engine.schedulers import build_scheduler
from kinetics import KITINetConfig, neuron_view
from kinetics.kitinet import seed_kitinet

__all__ = [
    "build_callbacks",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "resolved_config",
    "run",
    "select_watch",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- builders


def kitinet_config(rc: RunConfig) -> KITINetConfig | None:
    """The run's KITINet settings (None unless ``collision=kitinet``)."""
    c = rc.collision
    if c.name != "kitinet":
        return None
    return KITINetConfig(
        collision_heads=c.collision_heads,
        coll_coef=c.coll_coef,
        dt=c.dt,
        position_update=c.position_update,
        mean_free_path=c.mean_free_path,
        seed=rc.collision_seed,
    )


def build_model(rc: RunConfig, device: torch.device, task: Task | None = None) -> nn.Module:
    """The configured model on ``device``, its arguments completed and checked by ``task``.

    KITINet modules get the run's collision seed and one random stream each (in module order);
    their directions depend on (seed, stream, call, rank, system, pair) only, so the same seed
    gives the same directions whatever else draws random numbers, and under DDP each rank,
    seeing other samples, draws from its own streams (like dropout).
    """
    kwargs = dict(rc.model.kwargs)
    if task is not None:
        kwargs = task.model_kwargs(rc.model.name, kwargs)
    kitinet = kitinet_config(rc)
    if kitinet is not None:
        kwargs["kitinet"] = kitinet
    model = MODELS.create(rc.model.name, **kwargs).to(device)
    seed_kitinet(model, rc.collision_seed)
    if task is not None:
        task.check_model(model, rc.model.name)
    return model


def _matrix_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
    }


def select_watch(model: nn.Module, patterns: list[str], model_name: str) -> dict[str, nn.Module]:
    """Layers named by ``trainer.watch`` (exact names or fnmatch patterns), in model order."""
    layers = _matrix_layers(model)
    selected: dict[str, nn.Module] = {}
    for pattern in patterns:
        hits = [name for name in layers if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise ConfigError(
                f"trainer.watch={pattern!r} matches no layer with a weight matrix in "
                f"model={model_name}; layers: {', '.join(layers)}"
            )
        selected.update({name: layers[name] for name in hits})
    return {name: layers[name] for name in layers if name in selected}


# --------------------------------------------------------------------------- bookkeeping


def resolved_config(cfg: DictConfig, rc: RunConfig) -> dict[str, Any]:
    """The resolved config with every typed section completed by its schema defaults."""
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    for name in ("optimizer", "scheduler", "trainer", "logger", "paths"):
        out[name] = dataclasses.asdict(getattr(rc, name))
    out["collision"] = collision_options(rc.collision)
    out["model"] = {"name": rc.model.name, **rc.model.kwargs}
    out["dataset"] = {"name": rc.dataset.name, **rc.dataset.kwargs}
    return out


def _hydra_job() -> tuple[str | None, list[str]]:
    """(override dirname, task overrides) of the current Hydra job, or (None, [])."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, []
    hc = HydraConfig.get()
    return hc.job.override_dirname or None, list(hc.overrides.task)


# Keys whose value may change when a run is resumed: its length, how it is watched and where it
# runs. Any other difference means another run: resume refuses it.
RESUMABLE_CHANGES = (
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.progress",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "trainer.device",
    "trainer.num_threads",
    "trainer.num_workers",
    "logger.*",
    "paths.*",
    "resume",
    "overwrite",
)
RUN_FILES = ("metrics.jsonl", "summary.json", CHECKPOINT_NAME)
EXPORT_DIR = "export"  # the trained model in its ecosystem's format (Task.export), if any


def check_run_dir(rc: RunConfig, run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to mix two runs in one directory.

    A fresh run into a directory that holds a run is refused unless ``overwrite=true`` (which
    deletes the old run's files: a stale checkpoint must not be resumed later). ``resume=auto``
    is refused when the composed config differs from the one the run was started with, except
    for :data:`RESUMABLE_CHANGES`.
    """
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if rc.resume and existing and not (run_dir / CHECKPOINT_NAME).exists():
        raise ConfigError(
            f"resume=auto: {run_dir} holds a run ({', '.join(existing)}) but no checkpoint "
            "(trainer.checkpoint_every=0), so nothing can be resumed; replace it with "
            "overwrite=true, or choose another hydra.run.dir"
        )
    if rc.resume:
        saved = run_dir / "config.yaml"
        if existing and saved.exists():
            old = OmegaConf.to_container(OmegaConf.load(saved))
            changed = [k for k in _differences(old, config) if not _resumable(k)]
            if changed:
                raise ConfigError(
                    f"resume=auto: the config differs from the one {run_dir} was started with, "
                    f"at {', '.join(changed)}; a resumed run may only change "
                    f"{', '.join(RESUMABLE_CHANGES)} (start a new run in another directory, or "
                    "overwrite=true)"
                )
        return
    if existing and not rc.overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run ({', '.join(existing)}): continue it with "
            "resume=auto, replace it with overwrite=true, or choose another hydra.run.dir"
        )
    for name in existing:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / EXPORT_DIR, ignore_errors=True)  # the old run's model, if any


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _resumable(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE_CHANGES)


def _checkpointed_run_id(run_dir: Path) -> str | None:
    """The external logger's run id saved in the run's checkpoint (for ``resume=auto``)."""
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path, mmap=True)  # mmap: reads only this entry, not the tensors
    run_id = checkpoint.get("logger_run_id")
    return str(run_id) if run_id else None


def _make_logger(
    rc: RunConfig, config: dict[str, Any], run_dir: Path, job_name: str | None
) -> RunLogger:
    if rc.logger.name != "wandb":
        return NullLogger()
    run_id = _checkpointed_run_id(run_dir) if rc.resume else None
    fallback = f"{rc.experiment_name}-{rc.model.name}-{rc.collision.name}-seed{rc.seed}"
    return WandbLogger(
        project=rc.logger.project,
        name=rc.logger.run_name or job_name or fallback,
        group=rc.logger.group or rc.experiment_name,
        tags=rc.logger.tags,
        config=config,
        run_dir=run_dir,
        run_id=run_id,
    )


def _save_heatmap(path: Path, weight: torch.Tensor, title: str) -> None:
    from kinetics.metrics import plot_cosine_heatmap

    fig = plot_cosine_heatmap(weight.detach().cpu(), title=title)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), "wb")


# --------------------------------------------------------------------------- entry point


@dataclass
class Prepared:
    """Everything a run trains with, built and checked before anything is written."""

    dist: DistInfo
    device: torch.device
    task: Task
    model: nn.Module
    forward_module: nn.Module
    watch: dict[str, nn.Module]
    optimizer: Any
    scheduler: Any
    train_data: Any
    test_data: Any
    cost: dict[str, Any]


def prepare(rc: RunConfig) -> Prepared:
    """Seed, then build the data, the model (checked against the data), the optimizer, the
    loaders and the schedule. Every configuration error is raised here, before the run dir is
    touched."""
    if rc.trainer.num_threads is not None:
        torch.set_num_threads(rc.trainer.num_threads)
    seed_everything(rc.seed, deterministic=rc.trainer.deterministic)
    dist, device_spec = init_distributed(rc.trainer.device)
    device = resolve_device(device_spec)
    if rc.trainer.precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"trainer.precision=fp16 needs a CUDA device, but trainer.device={rc.trainer.device} "
            f"resolved to {device}; use bf16 or fp32"
        )
    task: Task = DATASETS.create(rc.dataset.name, **rc.dataset.kwargs)
    model = build_model(rc, device, task)
    if rc.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    watch = select_watch(model, rc.trainer.watch, rc.model.name)
    optimizer, base = build_optimizer(rc, model)
    train_data, test_data = task.loaders(
        rc.trainer.batch_size,
        seed=rc.seed,
        num_workers=rc.trainer.num_workers,
        pin_memory=device.type == "cuda",
        shuffle=rc.trainer.shuffle,
    )
    sample = sample_inputs(test_data, device)
    check_kitinet_sizes(model, sample)
    cost = {**model_cost(model, sample), **task.model_stats(rc.model.name, rc.model.kwargs)}
    if rc.trainer.max_units is not None:
        per_step = rc.trainer.batch_size or 1
        per_step *= rc.trainer.grad_accum_steps * dist.world_size * cost.get("units_per_sample", 1)
        # from here on the budget is in steps, as the loop and the schedules count
        rc.trainer.max_steps = -(-rc.trainer.max_units // per_step)
        rc.trainer.max_units = None
        cost["max_steps_from_units"] = rc.trainer.max_steps
    if rc.trainer.fsdp:
        _check_fsdp(rc, dist)
        shard_model(model)  # in place: the loop trains the sharded model itself
        optimizer, base = build_optimizer(rc, model)  # over the sharded parameters
    # After the loaders: a per-update schedule needs their length (batches per process).
    steps = steps_per_epoch(train_data, rc.trainer.grad_accum_steps)
    scheduler = build_scheduler(rc, base, steps_per_epoch=steps)
    forward_module = model
    if dist.enabled and not rc.trainer.fsdp:
        # The loop trains the plain module (names, checkpoints and metrics stay those of the
        # model); forward passes go through the DDP wrapper, which all-reduces the gradients.
        ids = [device] if device.type == "cuda" else None
        forward_module = DistributedDataParallel(model, device_ids=ids)
    if rc.trainer.compile:
        # Compiles lazily at the first forward; KITINet and KO's collisions are custom ops, so
        # they stay inside the graph (no break).
        forward_module = torch.compile(forward_module)
    return Prepared(
        dist,
        device,
        task,
        model,
        forward_module,
        watch,
        optimizer,
        scheduler,
        train_data,
        test_data,
        cost,
    )


def _check_fsdp(rc: RunConfig, dist: DistInfo) -> None:
    if not dist.enabled:
        raise ConfigError(
            "trainer.fsdp=true shards the model over the ranks of a torchrun (or SLURM) job; "
            "start it with torchrun --nproc_per_node N, or set trainer.fsdp=false"
        )
    if rc.collision.name in ("soft", "hard"):
        raise ConfigError(
            f"collision={rc.collision.name} with trainer.fsdp=true is not supported: a KO "
            "collision couples all neurons of a layer, which FSDP splits over the ranks; use DDP "
            "(trainer.fsdp=false)"
        )
    if rc.trainer.watch:
        raise ConfigError(
            f"trainer.watch={rc.trainer.watch} with trainer.fsdp=true is not supported (the "
            "watched weights are sharded); set trainer.watch=[]"
        )


def train_flops_per_unit(cost: dict[str, Any]) -> float | None:
    """Training FLOPs of one unit (token, row, point): three times the forward FLOPs of one sample
    (backward costs about twice the forward) over the units in a sample (the task's
    ``units_per_sample``, default 1); None without a FLOP count."""
    forward = cost.get("mflops_train", cost.get("mflops"))
    if not forward:
        return None
    return 3 * forward * 1e6 / cost.get("units_per_sample", 1)


def build_callbacks(
    model: nn.Module,
    optimizer: Any,
    watch: dict[str, nn.Module],
    device: torch.device,
    cost: dict[str, Any],
    peak_flops: float | None,
) -> list[Callback]:
    """The callbacks a run's loop gets, in the order they run: collision rates and effects,
    condensation of the ``watch`` layers, peak memory, and throughput (with FLOP/s from ``cost``,
    the model's :func:`~experiments.engine.probe.model_cost` and task stats)."""
    return [
        CollisionRates(model, optimizer),
        CollisionEffect(optimizer),
        Condensation(watch),
        PeakMemory(device),
        Throughput(train_flops_per_unit(cost), peak_flops),
    ]


def run(cfg: DictConfig) -> float:
    """Validate ``cfg``, train, write the run directory; return the final test loss."""
    start = time.perf_counter()
    rc = validate(cfg)
    if rc.paths.output_dir is None:
        raise ConfigError(
            "paths.output_dir is not set: run through run.py (Hydra sets it) or pass "
            "paths.output_dir=<dir>"
        )
    run_dir = Path(rc.paths.output_dir)
    config = resolved_config(cfg, rc)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun's other ranks follow rank 0
        check_run_dir(rc, run_dir, config)
    p = prepare(rc)
    run_dir.mkdir(parents=True, exist_ok=True)
    if p.dist.main:
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
    job_name, overrides = _hydra_job()
    log.info(
        "run %s: model=%s collision=%s optimizer=%s seed=%d -> %s",
        rc.experiment_name,
        rc.model.name,
        rc.collision.name,
        rc.optimizer.name,
        rc.seed,
        run_dir,
    )
    # What the numbers depend on besides code, config and seed; the data are hashed as they
    # were read, before training.
    identity = (
        {"environment": environment(p.device), "data_sha256": p.task.data_digests()}
        if p.dist.main
        else {}
    )
    logger = _make_logger(rc, config, run_dir, job_name) if p.dist.main else None
    callbacks = build_callbacks(
        p.model, p.optimizer, p.watch, p.device, p.cost, rc.trainer.peak_flops
    )
    try:
        result = fit(
            p.model,
            p.optimizer,
            p.task,
            p.train_data,
            p.test_data,
            rc.trainer,
            device=p.device,
            scheduler=p.scheduler,
            scheduler_interval=rc.scheduler.interval,
            callbacks=callbacks,
            run_dir=run_dir,
            logger=logger,
            resume=rc.resume,
            main_process=p.dist.main,
            forward_module=p.forward_module,
        )
        identical = replicas_identical(p.model)
        if not identical:
            raise RuntimeError("DDP replicas ended with different parameters")
        # FSDP: every rank takes part in gathering the shards the export writes
        full_state = gather_full_state(p.model, None)[0] if is_sharded(p.model) else None
        if p.dist.main:
            summary = {
                **result.final,
                **p.cost,
                "seed": rc.seed,
                "experiment_name": rc.experiment_name,
                "git_commit": git_commit(),
                **identity,
                "command": shlex.join([Path(sys.executable).name, *sys.argv]),
                "overrides": overrides,
                "world_size": p.dist.world_size,
                "replicas_identical": identical,
                "wall_time": time.perf_counter() - start,
            }
            _write_outputs(rc, p, run_dir, summary, logger, full_state)
    except BaseException:
        if logger is not None:
            logger.finish(exit_code=1)
        raise
    if logger is not None:
        logger.finish()
    cleanup_distributed(p.dist)
    final = result.final.get("test_loss")
    log.info("done in %.1fs: test_loss %s", time.perf_counter() - start, final)
    return float("nan") if final is None else float(final)


def _write_outputs(
    rc: RunConfig,
    p: Prepared,
    run_dir: Path,
    summary: dict[str, Any],
    logger: RunLogger,
    full_state: dict[str, Any] | None = None,
) -> None:
    """The watched layers' final weights and heat maps, then ``summary.json`` (last: its presence
    means the run finished)."""
    weights = {n: neuron_view(m, m.weight).detach().cpu().clone() for n, m in p.watch.items()}
    atomic_torch_save(run_dir / "weights_final.pt", weights)
    activation = rc.model.kwargs.get("activation", "")
    for name, weight in weights.items():
        path = run_dir / f"heatmap_{name}.png"
        _save_heatmap(path, weight, f"{name}: {activation} {rc.collision.name}".strip())
        logger.log_image(f"heatmap/{name}", path)
    if p.task.export(p.model, run_dir / EXPORT_DIR, full_state):
        summary["export"] = EXPORT_DIR
    logger.log_summary(summary)
    atomic_write_json(run_dir / "summary.json", summary)
