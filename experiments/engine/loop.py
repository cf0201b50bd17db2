"""The one training loop every pipeline shares: :func:`fit` counts optimizer steps.

A run's budget is ``trainer.epochs`` or ``trainer.max_steps`` optimizer steps; each step
accumulates the gradients of ``trainer.grad_accum_steps`` batches (the last step of an epoch may
take fewer). Records are made per ``trainer.unit``: with ``epoch``, one record per epoch (the
test set every ``eval_every`` epochs); with ``step``, one every ``log_every`` steps and at every
evaluation (every ``eval_every`` steps). Each record holds::

    epoch, step, train_loss, test_loss, test_<metric>..., lr, epoch_time | interval_time,
    and what the callbacks add (collision rates, rho / max|cos|, peak memory, throughput)

and goes to ``<run_dir>/metrics.jsonl`` and the external logger. The record with ``epoch=0,
step=0`` describes the initial model. ``lr`` is the learning rate of the interval's first step.
Losses and metrics are means over units (rows, tokens, points: :meth:`Task.units`), so a last,
smaller batch counts for what it holds.

Batches come from the task's loaders: tuples ``(inputs, targets)`` or mappings (``labels`` is the
target); outputs are tensors or objects with ``.logits`` / ``.loss``. A KineticOptimizer collides
in ``step()``, after unscaling and clipping (SPEC §1.4). Checkpoints (``checkpoint_every``, in the
same unit, and at the end) hold everything a killed run needs to continue bit-identically on the
CPU, also in the middle of an epoch (:mod:`experiments.engine.checkpoint`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from experiments.core.config import TrainerConfig
from experiments.core.task import Task, call_model, split_batch
from experiments.engine.callbacks import Callback, LoopState, Record
from experiments.engine.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    restore_random_state,
    save_checkpoint,
)
from experiments.engine.distributed import gather_full_state, is_sharded, load_full_state
from experiments.engine.rundir import MetricsWriter, RunLogger
from experiments.engine.runtime import autocast, float32, progress_enabled, to_device

__all__ = ["CHECKPOINT_NAME", "FitResult", "evaluate", "fit", "steps_per_epoch"]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What :func:`fit` returns: every record, the last one, and the wall time."""

    history: list[Record] = field(default_factory=list)
    final: Record = field(default_factory=dict)
    wall_time: float = 0.0


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Any],
    task: Task,
    device: torch.device,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> Record:
    """``test_loss`` and ``test_<metric>`` over ``batches`` in eval mode, weighted by units.

    Losses and metrics are computed in float32 even under autocast. A metric with a
    ``finalize`` method (e.g. :class:`~experiments.core.metrics.MacroF1`) may return a tensor per
    batch; its unit-weighted mean over the batches is passed to ``finalize`` for the number.
    """
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64), 0
    sums: dict[str, Tensor] = {}
    for batch in batches:
        inputs, targets = split_batch(to_device(batch, device, channels_last=channels_last))
        with autocast(device, precision):
            outputs = float32(call_model(model, inputs))
        n = task.units(inputs, targets)
        total += task.eval_loss(outputs, targets).detach().double().cpu() * n
        for name, fn in task.metric_fns.items():
            value = fn(outputs, targets).detach().double().cpu() * n
            sums[name] = sums[name] + value if name in sums else value
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("the test iterable yielded no batch")
    record: Record = {"test_loss": float(total / count)}
    for name, fn in task.metric_fns.items():
        finalize = getattr(fn, "finalize", None)
        mean = sums[name] / count
        record[f"test_{name}"] = float(finalize(mean)) if finalize is not None else float(mean)
    return record


class _Interval:
    """Running sums of the record being made: training loss by units, time, first lr."""

    def __init__(self, lr: float) -> None:
        self.losses: list[Tensor] = []  # on the device: no host sync per step
        self.units = 0
        self.lr = lr
        self.start = time.perf_counter()

    def add(self, loss_sum: Tensor, units: int) -> None:
        self.losses.append(loss_sum)
        self.units += units

    def train_loss(self) -> float | None:
        if not self.units:
            return None
        return float(torch.stack(self.losses).cpu().double().sum() / self.units)

    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": [x.detach().cpu() for x in self.losses],
            "units": self.units,
            "lr": self.lr,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> _Interval:
        interval = cls(float(state["lr"]))
        interval.losses = [x.to(device) for x in state["losses"]]
        interval.units = int(state["units"])
        return interval


def fit(
    model: nn.Module,
    optimizer: Any,
    task: Task,
    train_data: Iterable[Any],
    test_data: Iterable[Any],
    trainer: TrainerConfig,
    *,
    device: torch.device,
    scheduler: Any | None = None,
    scheduler_interval: str = "epoch",
    callbacks: Sequence[Callback] = (),
    run_dir: Path | None = None,
    logger: RunLogger | None = None,
    resume: bool = False,
    main_process: bool = True,
    forward_module: nn.Module | None = None,
) -> FitResult:
    """Train ``model`` on ``task`` as ``trainer`` says, record metrics, checkpoint; see the module doc.

    Args:
        model: the network on ``device`` (names, checkpoints and metrics are its own).
        optimizer: a torch optimizer or a :class:`kinetics.KineticOptimizer`.
        task: losses, metrics and units of the batches (:class:`~experiments.core.task.Task`).
        train_data, test_data: iterables of batches, re-iterated every epoch. The train iterable's
            ``state_dict`` / ``load_state_dict`` (if any) are checkpointed.
        scheduler: lr schedule with ``step()``, stepped per epoch or per optimizer step
            (``scheduler_interval``).
        callbacks: :class:`~experiments.engine.callbacks.Callback` s, in the order they run.
        run_dir: records go to ``run_dir/metrics.jsonl``, checkpoints to ``run_dir/`` +
            ``CHECKPOINT_NAME``.
        resume: continue from that checkpoint if it exists (else start fresh).
        main_process: under DDP only the main rank writes; every rank reads the checkpoint.
        forward_module: what forward passes go through (a DDP wrapper of ``model``); its
            ``no_sync()`` skips the gradient all-reduce of all but the last accumulated batch.
    """
    trainer.check()
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval={scheduler_interval!r} is not 'epoch' or 'step'")
    if trainer.precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA device (got {device}); use bf16 or fp32")
    if (trainer.checkpoint_every or resume) and run_dir is None:
        raise ValueError("checkpoints need a run_dir")
    loop = _Loop(
        model,
        optimizer,
        task,
        train_data,
        test_data,
        trainer,
        device,
        scheduler,
        scheduler_interval,
        list(callbacks),
        run_dir,
        logger,
        main_process,
        model if forward_module is None else forward_module,
    )
    return loop.run(resume)


class _Loop:
    """The state and the steps of one :func:`fit` call (read :meth:`run` first)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any,
        task: Task,
        train_data: Iterable[Any],
        test_data: Iterable[Any],
        trainer: TrainerConfig,
        device: torch.device,
        scheduler: Any | None,
        scheduler_interval: str,
        callbacks: list[Callback],
        run_dir: Path | None,
        logger: RunLogger | None,
        main_process: bool,
        forward_module: nn.Module,
    ) -> None:
        self.model, self.optimizer, self.task = model, optimizer, task
        self.train_data, self.test_data, self.t = train_data, test_data, trainer
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.callbacks, self.logger, self.main_process = callbacks, logger, main_process
        self.forward_module, self.device = forward_module, device
        self.scaler = torch.amp.GradScaler(device.type) if trainer.precision == "fp16" else None
        self.state = LoopState(model, optimizer, device)
        self.path = Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None
        self.metrics_path = Path(run_dir) / "metrics.jsonl" if run_dir is not None else None
        self.batches_per_epoch = steps_per_epoch(train_data, 1)
        steps = steps_per_epoch(train_data, trainer.grad_accum_steps)
        self.total_steps = trainer.max_steps or (trainer.epochs * steps if steps else None)
        self.result = FitResult()
        self.writer: MetricsWriter | None = None
        self.interval = _Interval(self.lr())

    # ------------------------------------------------------------------ the loop

    def run(self, resume: bool) -> FitResult:
        """Resume or record the initial model, then train epoch by epoch until the budget."""
        start = time.perf_counter()
        checkpoint = self.resume() if resume else None
        if self.metrics_path is not None and self.main_process:
            self.writer = MetricsWriter(self.metrics_path, initial=self.result.history)
        if checkpoint is None:
            self.make_record(evaluated=True, initial=True)
            # After the initial record: its evaluation is no part of the first interval's time
            # and throughput (with unit=step no epoch start restarts the interval).
            self.start_interval()
        progress = progress_enabled(self.t.progress)
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc="steps",
            disable=not progress,
            dynamic_ncols=True,
        )
        with logging_redirect_tqdm() if progress else contextlib.nullcontext(), bar:
            while not _done(self.state, self.t):
                self.train_epoch(checkpoint, bar)
                checkpoint = None
        self.result.final = self.result.history[-1] if self.result.history else {}
        self.result.wall_time = time.perf_counter() - start
        return self.result

    def train_epoch(self, checkpoint: dict[str, Any] | None, bar: Any) -> None:
        """One pass over the training data (or what remains of it after ``checkpoint``)."""
        state, t = self.state, self.t
        if checkpoint is None:
            data_state = _data_state(self.train_data)
            if t.unit == "epoch":
                self.start_interval()
        else:  # the epoch the checkpoint was made in, from its start, minus what it consumed
            data_state = checkpoint["data"]
            if data_state is not None:
                self.train_data.load_state_dict(data_state)  # type: ignore[attr-defined]
        jump = getattr(self.train_data, "skip_batches", None) if checkpoint is not None else None
        if jump is not None:
            jump(state.batch)  # data without random transforms: no need to read what it skips
        batches = iter(self.train_data)
        if checkpoint is not None:
            if jump is None:
                _skip(batches, state.batch)
            restore_random_state(checkpoint, self.model)  # after the skip's random draws
        self.model.train()
        for group in _groups(batches, t.grad_accum_steps):
            self.interval.add(*self.train_step(group))
            bar.update(1)
            if t.unit == "step" and _due(state.step, t, self.total_steps):
                self.make_record(evaluated=_eval_due(state.step, t, self.total_steps))
                if _checkpoint_due(state.step, t, self.total_steps):
                    self.save(data_state)
                self.start_interval()
                self.model.train()
            if state.step == self.total_steps:
                break
        if state.batch == 0:
            raise ValueError("the training iterable yielded no batch")
        finished = state.step != self.total_steps or _epoch_exhausted(self.train_data, state.batch)
        if finished:
            state.epoch += 1
            state.batch = 0
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
        if t.unit == "epoch":
            last = _done(state, t)
            self.make_record(evaluated=last or state.epoch % t.eval_every == 0)
            if t.checkpoint_every and (last or state.epoch % t.checkpoint_every == 0):
                self.save(_data_state(self.train_data) if finished else data_state)
        bar.set_postfix(epoch=state.epoch, train=_fmt(self.result.history[-1]["train_loss"]))

    def train_step(self, group: list[Any]) -> tuple[Tensor, int]:
        """One optimizer step over ``group``, then the per-step schedule and callbacks."""
        loss_sum, units = _train_step(
            group,
            self.forward_module,
            self.optimizer,
            self.task,
            self.t,
            self.state,
            self.scaler,
            self.callbacks,
        )
        self.state.step += 1
        self.state.batch += len(group)
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        for callback in self.callbacks:
            callback.on_step_end(self.state)
        return loss_sum, units

    # ------------------------------------------------------------------ records

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def start_interval(self) -> None:
        for callback in self.callbacks:
            callback.on_interval_start(self.state)
        self.interval = _Interval(self.lr())

    def make_record(self, evaluated: bool, initial: bool = False) -> None:
        """Write the record of the interval that ends now (and log a line when due)."""
        state, t = self.state, self.t
        epoch: float = state.epoch
        if t.unit == "step" and self.batches_per_epoch:  # how far into the data, as HF logs it
            epoch = state.epoch + state.batch / self.batches_per_epoch
        record: Record = {"epoch": epoch, "step": state.step}
        record["train_loss"] = None if initial else self.interval.train_loss()
        if evaluated:
            record.update(
                evaluate(
                    self.forward_module,
                    self.test_data,
                    self.task,
                    self.device,
                    precision=t.precision,
                    channels_last=t.channels_last,
                )
            )
        else:
            record["test_loss"] = None
            record.update({f"test_{name}": None for name in self.task.metric_fns})
        record["lr"] = self.interval.lr
        time_key = "epoch_time" if t.unit == "epoch" else "interval_time"
        record[time_key] = None if initial else time.perf_counter() - self.interval.start
        state.initial = initial
        for callback in self.callbacks:
            callback.on_record(state, record)
        state.initial = False
        self.result.history.append(record)
        if self.writer is not None:
            self.writer.write(record)
        if self.logger is not None:
            self.logger.log_metrics(record, step=state.step if t.unit == "step" else state.epoch)
        count = state.epoch if t.unit == "epoch" else state.step
        total = (t.epochs if t.unit == "epoch" and not t.max_steps else self.total_steps) or "?"
        if not initial and (t.unit == "step" or count % t.log_every == 0 or _done(state, t)):
            _log_line(record, count, t.unit, total)

    # ------------------------------------------------------------------ checkpoints

    def save(self, data_state: Any) -> None:
        """Checkpoint after a record: the next interval starts empty."""
        sharded = self.path is not None and is_sharded(self.model)
        if sharded:  # every rank takes part in gathering the shards
            full_model, full_optimizer = gather_full_state(self.model, self.optimizer)
        if not self.main_process or self.path is None:
            return
        contents = {
            "epoch": self.state.epoch,
            "step": self.state.step,
            "batch": self.state.batch,
            "model": self.model.state_dict(),
            **{k: (v.state_dict() if v is not None else None) for k, v in self.stateful().items()},
            **({"model": full_model, "optimizer": full_optimizer} if sharded else {}),
            "data": data_state,
            "interval": _Interval(self.lr()).state_dict(),
            "callbacks": [c.state_dict() for c in self.callbacks],
            "logger_run_id": self.logger.run_id if self.logger is not None else None,
            "history": self.result.history,
        }
        save_checkpoint(self.path, contents, self.model)

    def stateful(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def resume(self) -> dict[str, Any] | None:
        """Load the checkpoint if there is one; the RNG states are restored by
        :meth:`train_epoch`, after it has skipped the batches the checkpoint consumed."""
        if self.path is None or not self.path.exists():
            log.info("resume requested but %s does not exist: starting fresh", self.path)
            return None
        checkpoint = load_checkpoint(self.path)
        sharded = is_sharded(self.model)
        if sharded:
            load_full_state(
                self.model, self.optimizer, checkpoint["model"], checkpoint["optimizer"]
            )
        else:
            self.model.load_state_dict(checkpoint["model"])
        for key, obj in self.stateful().items():
            if sharded and key == "optimizer":
                continue
            if obj is not None and checkpoint.get(key) is not None:
                obj.load_state_dict(checkpoint[key])
        for callback, saved in zip(self.callbacks, checkpoint["callbacks"], strict=False):
            callback.load_state_dict(saved)
        state = self.state
        state.epoch, state.step, state.batch = (
            int(checkpoint[k]) for k in ("epoch", "step", "batch")
        )
        self.result.history = list(checkpoint["history"])
        self.interval = _Interval.from_state(checkpoint["interval"], self.device)
        log.info("resumed from %s at epoch %d, step %d", self.path, state.epoch, state.step)
        return checkpoint


def _train_step(
    group: list[Any],
    forward_module: nn.Module,
    optimizer: Any,
    task: Task,
    t: TrainerConfig,
    state: LoopState,
    scaler: torch.amp.GradScaler | None,
    callbacks: Sequence[Callback],
) -> tuple[Tensor, int]:
    """One optimizer step over ``group``'s batches; returns (sum of loss x units, units)."""
    device = state.device
    group = [split_batch(to_device(b, device, channels_last=t.channels_last)) for b in group]
    units = [task.units(inputs, targets) for inputs, targets in group]
    total = sum(units)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=device)
    for i, ((inputs, targets), n) in enumerate(zip(group, units, strict=True)):
        last = i == len(group) - 1
        no_sync = getattr(forward_module, "no_sync", None)
        with no_sync() if no_sync is not None and not last else contextlib.nullcontext():
            with autocast(device, t.precision):
                outputs = call_model(forward_module, inputs)
            loss = task.train_loss(float32(outputs), targets)
            # The step's gradient is that of the mean loss over all the group's units.
            scaled = loss if len(group) == 1 else loss * (n / total)
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum = loss_sum + loss.detach() * n
        state.batch_units = n
        for callback in callbacks:
            callback.on_batch_end(state)
    if scaler is not None:
        scaler.unscale_(optimizer)  # the clipping and the collision see true gradients
    if t.grad_clip is not None:
        nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip)
    if scaler is None:
        optimizer.step()  # a KineticOptimizer collides here, after clipping (SPEC §1.4)
    else:
        scaler.step(optimizer)  # skips step and collision when a gradient is inf/nan
        scaler.update()
    return loss_sum, total


def _groups(batches: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` batches (the last one may be shorter)."""
    while group := list(itertools.islice(batches, size)):
        yield group


def _skip(batches: Iterator[Any], count: int) -> None:
    for _ in itertools.islice(batches, count):
        pass


def _data_state(data: Iterable[Any]) -> Any:
    state_dict = getattr(data, "state_dict", None)
    return state_dict() if callable(state_dict) else None


def steps_per_epoch(data: Iterable[Any], accum: int) -> int | None:
    """Optimizer steps in one pass over ``data`` (the last step may take fewer batches); None
    for an iterable without a length."""
    try:
        return -(-len(data) // accum)  # type: ignore[arg-type]
    except TypeError:
        return None


def _epoch_exhausted(data: Iterable[Any], batches: int) -> bool:
    try:
        return batches >= len(data)  # type: ignore[arg-type]
    except TypeError:
        return False


def _done(state: LoopState, t: TrainerConfig) -> bool:
    if t.max_steps:
        return state.step >= t.max_steps
    return state.epoch >= t.epochs


def _due(step: int, t: TrainerConfig, total: int | None) -> bool:
    return step % t.log_every == 0 or _eval_due(step, t, total)


def _eval_due(step: int, t: TrainerConfig, total: int | None) -> bool:
    return step % t.eval_every == 0 or step == total


def _checkpoint_due(step: int, t: TrainerConfig, total: int | None) -> bool:
    return bool(t.checkpoint_every) and (step % t.checkpoint_every == 0 or step == total)


def _log_line(record: Record, count: int, unit: str, total: int | str) -> None:
    log.info(
        "%s %d/%s  train_loss %s  test_loss %s  lr %.3g",
        unit,
        count,
        total,
        _fmt(record["train_loss"]),
        _fmt(record["test_loss"]),
        record["lr"],
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.6g}" if math.isfinite(value) else str(value)
