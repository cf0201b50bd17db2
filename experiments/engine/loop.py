"""The one training loop every trainer reuses: :func:`fit`.

``fit`` trains a model for some epochs with any optimizer (a plain torch one or a
:class:`kinetics.KineticOptimizer`), evaluates on a test iterable, and records per epoch::

    epoch, train_loss, test_loss, [test_<metric>...], lr, epoch_time, peak_memory_mb,
    rho.<layer>, max_cos.<layer>, collision_rate.<layer>   for each watched layer,
    collision_rate.<site>                                  for each other collision site

appending each record to ``<run_dir>/metrics.jsonl`` and to an external logger. A record with
``epoch=0`` describes the initial model (no training loss, no time). ``lr`` is the learning rate of
the epoch's first optimizer step (param group 0), also when the schedule changes it every step.

Collision rates come from a KO hard-collision optimizer (``collision_rates`` after each step) and
from KITINet modules (``last_collision_rate`` after each training forward), averaged over the
epoch's steps; a watched layer that is no collision site gets ``null``, and so does soft collision,
which has no acceptance step.

``peak_memory_mb`` is the epoch's peak: the CUDA allocator's on a GPU, the process's resident set
(RSS, Linux ``VmHWM`` reset every epoch) on CPU. ``precision="bf16"`` runs forward and loss under
``torch.autocast`` in bfloat16; ``"fp16"`` (CUDA) adds a ``GradScaler``, whose gradients are
unscaled before clipping and the collision.

Data are iterables of ``(inputs, targets)`` batches (a DataLoader, or
:class:`experiments.data.TensorBatches`); ``forward(model, inputs)`` and ``loss_fn(outputs,
targets)`` adapt other model interfaces.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from experiments.core.config import PRECISIONS
from experiments.core.io import atomic_torch_save
from experiments.engine.rundir import MetricsWriter, RunLogger

__all__ = [
    "CHECKPOINT_NAME",
    "PRECISIONS",
    "Callback",
    "CollisionMonitor",
    "FitResult",
    "PeakMemory",
    "capture_rng_state",
    "evaluate",
    "fit",
    "progress_enabled",
    "resolve_device",
    "restore_rng_state",
    "seed_everything",
]

CHECKPOINT_NAME = "checkpoints/last.pt"

log = logging.getLogger(__name__)

Record = dict[str, Any]
MetricFn = Callable[[Tensor, Tensor], Tensor]


class Callback(Protocol):
    """Hook into :func:`fit`; ``on_epoch_end`` may add keys to ``record`` before it is written."""

    def on_epoch_end(self, epoch: int, record: Record, model: nn.Module) -> None: ...


@dataclass
class FitResult:
    """What :func:`fit` returns: every epoch's record, the last one, and the wall time."""

    history: list[Record] = field(default_factory=list)
    final: Record = field(default_factory=dict)
    wall_time: float = 0.0


# --------------------------------------------------------------------------- environment


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` use deterministic algorithms.

    On CPU the same seed then gives bit-identical runs. On CUDA, ops without a deterministic
    implementation only warn (``warn_only``) instead of failing.
    """
    random.seed(seed)
    # The legacy global RNG is what third-party code calling np.random.* uses; seed it too.
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)
    if deterministic:
        # Must be set before cuBLAS initialises for deterministic CUDA matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as plain containers and tensors, so a
    checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _module_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Private random generators of modules (e.g. KITINet's ``generator``), by module name."""
    return {
        name: module.generator
        for name, module in model.named_modules()
        if isinstance(getattr(module, "generator", None), torch.Generator)
    }


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else is passed to torch."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={spec!r} but CUDA is not available; use cpu or auto")
    return device


def progress_enabled(setting: bool | str) -> bool:
    """Progress bars: explicit ``True``/``False``, or ``"auto"``: on only in an interactive
    terminal and never under CI (``$CI`` set)."""
    if setting == "auto":
        return not os.environ.get("CI") and sys.stderr.isatty()
    return bool(setting)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _inputs(obj: Any, device: torch.device, channels_last: bool) -> Any:
    obj = _to_device(obj, device)
    if channels_last and isinstance(obj, Tensor) and obj.dim() == 4:
        return obj.contiguous(memory_format=torch.channels_last)
    return obj


def _float32(outputs: Any) -> Any:
    """Autocast outputs (bf16 / fp16 logits) as float32, so losses and metrics are float32."""
    if isinstance(outputs, Tensor) and outputs.is_floating_point():
        return outputs.float()
    return outputs


def _batch_size(targets: Any) -> int:
    if isinstance(targets, Tensor) and targets.dim() > 0:
        return int(targets.shape[0])
    return 1


def _default_forward(model: nn.Module, inputs: Any) -> Tensor:
    return model(inputs)


class PeakMemory:
    """Peak memory of one interval (an epoch), in MB.

    On CUDA the allocator's ``max_memory_allocated`` (tensors only, as the papers' tables most
    likely report). On CPU the process's peak resident set size: Linux lets a process reset its
    ``VmHWM`` by writing 5 to ``/proc/self/clear_refs``; where that is impossible the lifetime
    peak (``ru_maxrss``) is reported, which never decreases.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        """Start a new interval."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def peak_mb(self) -> float:
        """The peak since the last :meth:`reset`."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
        return kb / (2**20 if sys.platform == "darwin" else 1024)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- collision rates


class CollisionMonitor:
    """Average collision rates over an epoch's steps, per collision site (layer or KITINet module).

    Sites: the layers of a KO hard-collision optimizer (its ``collision_rates`` keys) and every
    module of ``model`` with a ``last_collision_rate`` attribute (KITINet).
    """

    def __init__(self, model: nn.Module, optimizer: Any) -> None:
        self.kitinet = {
            name: m for name, m in model.named_modules() if hasattr(m, "last_collision_rate")
        }
        hard = getattr(optimizer, "mode", None) == "hard"
        self.optimizer = optimizer if hard and hasattr(optimizer, "collision_rates") else None
        self.sites: list[str] = list(self.kitinet)
        if self.optimizer is not None:
            self.sites += [n for n in getattr(self.optimizer, "layers", {}) if n not in self.sites]
        self._values: dict[str, list[Tensor | float]] = {}

    def after_step(self) -> None:
        """Read the rates of the step just taken (and forget KITINet's, so none counts twice)."""
        for name, module in self.kitinet.items():
            rate = module.last_collision_rate
            if rate is not None:
                self._values.setdefault(name, []).append(rate)
                module.last_collision_rate = None
        if self.optimizer is not None:
            # tensors when the optimizer offers them: no host sync per step on a GPU
            rates = getattr(self.optimizer, "collision_rate_tensors", None)
            if rates is None:
                rates = self.optimizer.collision_rates
            for name, rate in rates.items():
                self._values.setdefault(name, []).append(rate)

    def pop_epoch(self) -> dict[str, float | None]:
        """Mean rate per site since the last call (None for a site that reported nothing)."""
        means: dict[str, float | None] = {}
        for name in self.sites:
            values = self._values.get(name)
            if values:
                means[name] = float(
                    torch.stack([torch.as_tensor(v).float() for v in values]).mean()
                )
            else:
                means[name] = None
        self._values = {}
        return means


def _rate_for(layer: str, rates: Mapping[str, float | None]) -> float | None:
    """The rate of a watched layer: its own, or the mean over collision sites inside it."""
    if layer in rates:
        return rates[layer]
    inner = [r for site, r in rates.items() if site.startswith(layer + ".") and r is not None]
    return float(np.mean(inner)) if inner else None


def _layer_metrics(watch: Mapping[str, nn.Module], rates: Mapping[str, float | None]) -> Record:
    from kinetics.metrics import max_offdiag_abs_cos, rho

    record: Record = {}
    for name, module in watch.items():
        weight = module.weight
        record[f"rho.{name}"] = rho(weight)
        record[f"max_cos.{name}"] = max_offdiag_abs_cos(weight)
        record[f"collision_rate.{name}"] = _rate_for(name, rates)
    for site, rate in rates.items():
        key = f"collision_rate.{site}"
        if key not in record:
            record[key] = rate
    return record


# --------------------------------------------------------------------------- loop


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: Callable[[Any, Any], Tensor],
    device: torch.device,
    *,
    forward: Callable[[nn.Module, Any], Any] = _default_forward,
    metric_fns: Mapping[str, MetricFn] | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> Record:
    """Mean loss (``test_loss``) and metrics (``test_<name>``) over ``batches``, in eval mode.

    Means are weighted by batch size, so the last, smaller batch counts correctly. Losses and
    metrics are computed in float32 even under autocast.
    """
    was_training = model.training
    model.eval()
    metric_fns = metric_fns or {}
    total, count = torch.zeros((), dtype=torch.float64), 0
    sums = {name: torch.zeros((), dtype=torch.float64) for name in metric_fns}
    for batch in batches:
        inputs, targets = _inputs(batch[0], device, channels_last), _to_device(batch[1], device)
        with _autocast(device, precision):
            outputs = forward(model, inputs)
        outputs = _float32(outputs)
        n = _batch_size(targets)
        total += loss_fn(outputs, targets).detach().double().cpu() * n
        for name, fn in metric_fns.items():
            sums[name] += fn(outputs, targets).detach().double().cpu() * n
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("the test iterable yielded no batch")
    record: Record = {"test_loss": float(total / count)}
    record.update({f"test_{name}": float(s / count) for name, s in sums.items()})
    return record


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: Iterable[Any],
    test_data: Iterable[Any],
    loss_fn: Callable[[Any, Any], Tensor],
    *,
    eval_loss_fn: Callable[[Any, Any], Tensor] | None = None,
    epochs: int,
    scheduler: Any | None = None,
    scheduler_interval: str = "epoch",
    device: torch.device | str = "cpu",
    watch: Mapping[str, nn.Module] | None = None,
    forward: Callable[[nn.Module, Any], Any] = _default_forward,
    metric_fns: Mapping[str, MetricFn] | None = None,
    grad_clip: float | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    eval_every: int = 1,
    log_every: int = 10,
    progress: bool = False,
    run_dir: Path | None = None,
    logger: RunLogger | None = None,
    callbacks: Sequence[Callback] = (),
    log_initial: bool = True,
    checkpoint_every: int = 0,
    resume: bool = False,
    stateful: Mapping[str, Any] | None = None,
    main_process: bool = True,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs and record metrics per epoch (see the module doc).

    Args:
        model: the network, already on ``device``.
        optimizer: a torch optimizer or a ``KineticOptimizer`` (its collision happens in
            ``step()``, i.e. after backward and gradient clipping, SPEC §1.4).
        train_data, test_data: iterables of ``(inputs, targets)`` batches, re-iterated each epoch.
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar mean loss.
        eval_loss_fn: the test loss (default ``loss_fn``); e.g. plain cross-entropy when training
            uses label smoothing or Mixup's soft targets.
        epochs: number of epochs.
        scheduler: an lr scheduler with ``step()``, stepped per epoch or per step
            (``scheduler_interval`` = ``"epoch"`` | ``"step"``).
        device: where batches are moved.
        watch: ``{name: layer}`` whose rho / max|cos| / collision rate are recorded.
        forward: ``forward(model, inputs)`` -> outputs (default ``model(inputs)``).
        metric_fns: extra test metrics ``fn(outputs, targets)`` -> scalar, logged as
            ``test_<name>``.
        grad_clip: clip the global gradient norm before the optimizer step.
        precision: ``"fp32"``, ``"bf16"`` (autocast; no scaler needed) or ``"fp16"`` (autocast and
            a ``torch.amp.GradScaler``; CUDA only). Parameters and optimizer state stay float32.
        channels_last: feed 4-D inputs in channels-last memory format (convert the model too).
        eval_every: test every this many epochs (and at the last); other epochs log null.
        log_every: a log line every this many epochs (and at the last).
        progress: show tqdm progress bars.
        run_dir: when given, records are appended to ``run_dir / "metrics.jsonl"``.
        logger: external logger receiving each record.
        callbacks: ``on_epoch_end(epoch, record, model)`` hooks, called before the record is
            written, so they may add metrics.
        log_initial: also record the initial model as ``epoch=0``.
        checkpoint_every: write ``run_dir / CHECKPOINT_NAME`` atomically every this many epochs
            (and at the last); 0 never. It holds plain dicts and tensors only: model, optimizer
            (a KineticOptimizer's generator included), scheduler, grad scaler, the external
            logger's run id (W&B), every RNG state (global ones
            and modules' own ``generator``, e.g. KITINet's), the ``stateful`` objects' states
            and the records so far.
        resume: continue from that checkpoint if it exists (else start fresh). A run killed after
            epoch k and resumed ends with exactly the metrics of an uninterrupted run on CPU.
        stateful: more ``{name: obj}`` with ``state_dict``/``load_state_dict`` to checkpoint,
            e.g. the training batches' shuffling generator.
        main_process: under DDP only the main rank writes metrics and checkpoints; every rank
            reads the checkpoint on resume.

    Returns:
        A :class:`FitResult`.
    """
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval={scheduler_interval!r} is not 'epoch' or 'step'")
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is unknown; allowed: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA device (got {device}); use bf16 or fp32")
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    memory = PeakMemory(device)
    eval_loss_fn = eval_loss_fn or loss_fn
    watch = dict(watch or {})
    stateful = dict(stateful or {})
    if (checkpoint_every or resume) and run_dir is None:
        raise ValueError("checkpoints need a run_dir")
    checkpoint_path = Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None
    monitor = CollisionMonitor(model, optimizer)
    result = FitResult()
    first_epoch = 1
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        for name, obj in stateful.items():
            obj.load_state_dict(checkpoint["stateful"][name])
        for name, generator in _module_generators(model).items():
            generator.set_state(checkpoint["module_generators"][name])
        restore_rng_state(checkpoint["rng"])
        result.history = list(checkpoint["history"])
        first_epoch = int(checkpoint["epoch"]) + 1
        log_initial = False
        log.info("resumed from %s after epoch %d", checkpoint_path, first_epoch - 1)
    elif resume:
        log.info("resume requested but %s does not exist: starting fresh", checkpoint_path)
    writer = (
        MetricsWriter(run_dir / "metrics.jsonl", initial=result.history)
        if run_dir is not None and main_process
        else None
    )
    start = time.perf_counter()

    def save_checkpoint(epoch: int) -> None:
        atomic_torch_save(
            checkpoint_path,
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "logger_run_id": logger.run_id if logger is not None else None,
                "stateful": {name: obj.state_dict() for name, obj in stateful.items()},
                "rng": capture_rng_state(),
                "module_generators": {
                    name: g.get_state() for name, g in _module_generators(model).items()
                },
                "history": result.history,
            },
        )

    def emit(epoch: int, record: Record) -> None:
        for callback in callbacks:
            callback.on_epoch_end(epoch, record, model)
        result.history.append(record)
        if writer is not None:
            writer.write(record)
        if logger is not None:
            logger.log_metrics(record, step=epoch)

    def lr() -> float:
        return float(optimizer.param_groups[0]["lr"])

    def evaluate_now() -> Record:
        return evaluate(
            model,
            test_data,
            eval_loss_fn,
            device,
            forward=forward,
            metric_fns=metric_fns,
            precision=precision,
            channels_last=channels_last,
        )

    if log_initial:
        record: Record = {"epoch": 0, "train_loss": None}
        record.update(evaluate_now())
        record.update({"lr": lr(), "epoch_time": None, "peak_memory_mb": None})
        record.update(_layer_metrics(watch, dict.fromkeys(monitor.sites)))
        emit(0, record)

    redirect = logging_redirect_tqdm() if progress else contextlib.nullcontext()
    with redirect:
        bar = tqdm(
            range(first_epoch, epochs + 1),
            desc="epochs",
            initial=first_epoch - 1,
            total=epochs,
            disable=not progress,
            dynamic_ncols=True,
        )
        for epoch in bar:
            memory.reset()
            tic = time.perf_counter()
            epoch_lr = lr()
            train_loss = _train_epoch(
                model,
                optimizer,
                train_data,
                loss_fn,
                device=device,
                forward=forward,
                grad_clip=grad_clip,
                precision=precision,
                scaler=scaler,
                channels_last=channels_last,
                monitor=monitor,
                step_scheduler=scheduler if scheduler_interval == "step" else None,
                progress=progress,
                desc=f"epoch {epoch}",
            )
            if scheduler is not None and scheduler_interval == "epoch":
                scheduler.step()

            record = {"epoch": epoch, "train_loss": train_loss}
            if epoch % eval_every == 0 or epoch == epochs:
                record.update(evaluate_now())
            else:
                record["test_loss"] = None
                record.update({f"test_{name}": None for name in metric_fns or {}})
            record["lr"] = epoch_lr
            record["epoch_time"] = time.perf_counter() - tic
            record["peak_memory_mb"] = memory.peak_mb()
            record.update(_layer_metrics(watch, monitor.pop_epoch()))
            emit(epoch, record)

            last = epoch % checkpoint_every == 0 or epoch == epochs if checkpoint_every else False
            if last and main_process:
                save_checkpoint(epoch)
            bar.set_postfix(train=f"{train_loss:.4g}", test=_fmt(record["test_loss"]))
            if epoch % log_every == 0 or epoch == epochs:
                log.info(
                    "epoch %d/%d  train_loss %.6g  test_loss %s  lr %.3g  (%.2fs)",
                    epoch,
                    epochs,
                    train_loss,
                    _fmt(record["test_loss"]),
                    epoch_lr,
                    record["epoch_time"],
                )

    result.final = result.history[-1] if result.history else {}
    result.wall_time = time.perf_counter() - start
    return result


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: Iterable[Any],
    loss_fn: Callable[[Any, Any], Tensor],
    *,
    device: torch.device,
    forward: Callable[[nn.Module, Any], Any],
    grad_clip: float | None,
    precision: str,
    scaler: torch.amp.GradScaler | None,
    channels_last: bool,
    monitor: CollisionMonitor,
    step_scheduler: Any | None,
    progress: bool,
    desc: str,
) -> float:
    """One pass over ``train_data``; returns the mean training loss (weighted by batch size)."""
    model.train()
    # Per-step losses stay on the device (no sync per step); summed once per epoch.
    losses: list[Tensor] = []
    count = 0
    steps = _maybe_len(train_data)
    batches = tqdm(
        train_data,
        total=steps,
        desc=desc,
        leave=False,
        disable=not progress or steps in (None, 1),
        dynamic_ncols=True,
    )
    for batch in batches:
        inputs, targets = _inputs(batch[0], device, channels_last), _to_device(batch[1], device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            outputs = forward(model, inputs)
        loss = loss_fn(_float32(outputs), targets)
        if scaler is None:
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()  # a KineticOptimizer collides here, after clipping (SPEC §1.4)
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # the collision and the clipping see true gradients
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)  # skips step and collision when a gradient is inf/nan
            scaler.update()
        monitor.after_step()
        if step_scheduler is not None:
            step_scheduler.step()
        n = _batch_size(targets)
        losses.append(loss.detach() * n)
        count += n
    if count == 0:
        raise ValueError("the training iterable yielded no batch")
    return float(torch.stack(losses).cpu().double().sum() / count)


def _maybe_len(data: Iterable[Any]) -> int | None:
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.6g}" if math.isfinite(value) else str(value)
