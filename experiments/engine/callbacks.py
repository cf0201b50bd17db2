"""What the training loop measures besides the loss: callbacks that add keys to its records.

:func:`experiments.engine.loop.fit` calls, in order, ``on_interval_start`` when a record's interval
begins (an epoch, or ``log_every`` steps), ``on_batch_end`` after every micro-batch's backward,
``on_step_end`` after every optimizer step and ``on_record`` before a record is written. The
record of the initial model (``state.initial``) has no training behind it: callbacks write
``None`` for what only training produces.

* :class:`CollisionRates`: accepted / candidate pairs per collision site (KO hard collision on a
  layer, or a KITINet module), averaged over the interval's steps -> ``collision_rate.<site>``.
* :class:`CollisionEffect`: KO's effect on each collided layer's gradient (alignment, norm ratio)
  and the collisions skipped for non-finite values.
* :class:`Condensation`: ``rho.<layer>``, ``max_cos.<layer>`` (and the layer's collision rate) of
  the watched layers (SPEC §1.6).
* :class:`PeakMemory`: ``peak_memory_mb`` of the interval.
* :class:`Throughput`: training units (rows, tokens, points) per second -> ``throughput``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Callback",
    "CollisionEffect",
    "CollisionRates",
    "Condensation",
    "LoopState",
    "PeakMemory",
    "Record",
    "Throughput",
]

Record = dict[str, Any]


@dataclass
class LoopState:
    """Where the loop is; handed to every callback."""

    model: nn.Module
    optimizer: Any
    device: torch.device
    epoch: int = 0
    """Epochs completed."""
    step: int = 0
    """Optimizer steps taken."""
    batch: int = 0
    """Batches consumed in the current epoch."""
    batch_units: int = 0
    """Units (rows, tokens, ...) of the last micro-batch."""
    initial: bool = False
    """The record being made describes the initial model (no training yet)."""
    extra: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Hooks into the loop; every method is optional. ``state_dict`` is checkpointed."""

    def on_interval_start(self, state: LoopState) -> None:
        """A record's interval begins."""

    def on_batch_end(self, state: LoopState) -> None:
        """A micro-batch's forward and backward are done."""

    def on_step_end(self, state: LoopState) -> None:
        """An optimizer step is done."""

    def on_record(self, state: LoopState, record: Record) -> None:
        """Add keys to ``record`` before it is written."""

    def state_dict(self) -> dict[str, Any]:
        """Running sums a mid-interval checkpoint must keep."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


class CollisionRates(Callback):
    """Mean collision rate per site over the interval's steps (None for a site without any).

    Sites: every module of the model with ``last_collision_rate`` (KITINet, read after each
    micro-batch and then cleared, so none counts twice) and the layers of a KO hard-collision
    optimizer (its ``collision_rate_tensors``, read after each step without a host sync). Soft
    collision has no acceptance step, hence no rate.
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
        self.values: dict[str, list[Tensor]] = {}
        self._last: dict[str, Any] = {}

    def on_batch_end(self, state: LoopState) -> None:
        for name, module in self.kitinet.items():
            rate = module.last_collision_rate
            if rate is not None:
                self.values.setdefault(name, []).append(torch.as_tensor(rate))
                module.last_collision_rate = None

    def on_step_end(self, state: LoopState) -> None:
        if self.optimizer is None:
            return
        rates = getattr(self.optimizer, "collision_rate_tensors", None)
        if rates is None:
            rates = self.optimizer.collision_rates
        if _stale(rates, self._last):  # a GradScaler skipped the step: nothing collided
            return
        self._last = dict(rates)
        for name, rate in rates.items():
            self.values.setdefault(name, []).append(torch.as_tensor(rate))

    def on_record(self, state: LoopState, record: Record) -> None:
        for name in self.sites:
            values = self.values.get(name)
            # nanmean: a hard-mode layer skipped for non-finite values has a NaN rate that step
            mean = float(torch.stack([v.float() for v in values]).nanmean()) if values else None
            record[f"collision_rate.{name}"] = None if mean is None or math.isnan(mean) else mean
        self.values = {}

    def state_dict(self) -> dict[str, Any]:
        return {"values": {k: [v.detach().cpu() for v in vs] for k, vs in self.values.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values = {k: list(vs) for k, vs in state["values"].items()}


def _stale(values: Mapping[str, Any], last: Mapping[str, Any]) -> bool:
    """Whether ``values`` are the very objects read after the previous step (no new step ran)."""
    return any(isinstance(v, Tensor) and v is last.get(k) for k, v in values.items())


class CollisionEffect(Callback):
    """What KO's collisions did to each collided layer's gradient, averaged over the interval's
    steps: ``collision_alignment.<layer>`` = <g_new, g> / |g|^2 (1: unchanged, < 0: the collision
    turned a descent direction into an ascent one, KO Eq. 8 with many partners) and
    ``collision_norm_ratio.<layer>`` = |g_new| / |g|; and ``nonfinite_skips.<layer>``, how many
    collisions so far were skipped because the gradient or weight held a NaN/Inf (the gradient was
    left as it was). Reads :attr:`kinetics.KineticOptimizer.collision_stats` without host syncs."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer if hasattr(optimizer, "collision_stats") else None
        self.layers = list(getattr(self.optimizer, "layers", {}))
        self.values: dict[str, list[Tensor]] = {}
        self._last: dict[str, Any] = {}

    def on_step_end(self, state: LoopState) -> None:
        if self.optimizer is None:
            return
        stats = self.optimizer.collision_stats
        firsts = {name: s["alignment"] for name, s in stats.items()}
        if _stale(firsts, self._last):  # a GradScaler skipped the step: nothing collided
            return
        self._last = firsts
        for name, s in stats.items():
            for key in ("alignment", "norm_ratio"):
                self.values.setdefault(f"{key}.{name}", []).append(s[key].detach().float())

    def on_record(self, state: LoopState, record: Record) -> None:
        if self.optimizer is None:
            return
        skips = self.optimizer.nonfinite_skip_tensors
        for name in self.layers:
            for key in ("alignment", "norm_ratio"):
                values = self.values.get(f"{key}.{name}")
                # nanmean: a skipped step has NaN numbers and is counted in nonfinite_skips
                mean = float(torch.stack(values).nanmean()) if values else None
                record[f"collision_{key}.{name}"] = None if mean != mean else mean
            record[f"nonfinite_skips.{name}"] = int(skips[name]) if name in skips else 0
        self.values = {}

    def state_dict(self) -> dict[str, Any]:
        return {"values": {k: [v.cpu() for v in vs] for k, vs in self.values.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values = {k: list(vs) for k, vs in state["values"].items()}


class Condensation(Callback):
    """rho and max|cos| between the neurons of each watched layer, and its collision rate: its
    own site's, or the mean over the collision sites inside it (e.g. a ResNet stage's KITINets).

    Add it after :class:`CollisionRates`, whose keys it reads from the record.
    """

    def __init__(self, watch: Mapping[str, nn.Module]) -> None:
        self.watch = dict(watch)

    def on_record(self, state: LoopState, record: Record) -> None:
        from kinetics import neuron_view
        from kinetics.metrics import max_offdiag_abs_cos, rho

        rates = {
            k.removeprefix("collision_rate."): v
            for k, v in record.items()
            if k.startswith("collision_rate.")
        }
        for name, module in self.watch.items():
            weight = neuron_view(module, module.weight)  # one neuron per row (Conv1D: columns)
            record[f"rho.{name}"] = rho(weight)
            record[f"max_cos.{name}"] = max_offdiag_abs_cos(weight)
            record[f"collision_rate.{name}"] = _rate_for(name, rates)


def _rate_for(layer: str, rates: Mapping[str, float | None]) -> float | None:
    if layer in rates:
        return rates[layer]
    inner = [r for site, r in rates.items() if site.startswith(layer + ".") and r is not None]
    return float(np.mean(inner)) if inner else None


class PeakMemory(Callback):
    """Peak memory of each interval, in MB.

    On CUDA the allocator's ``max_memory_allocated`` (tensors only, as the papers' tables most
    likely report). On CPU the process's peak resident set size: Linux lets a process reset its
    ``VmHWM`` by writing 5 to ``/proc/self/clear_refs``; where that is impossible the lifetime
    peak (``ru_maxrss``) is reported, which never decreases.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def on_interval_start(self, state: LoopState) -> None:
        self.reset()

    def on_record(self, state: LoopState, record: Record) -> None:
        record["peak_memory_mb"] = None if state.initial else self.peak_mb()

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


class Throughput(Callback):
    """Training units per second over the interval, from its start to its last optimizer step
    (evaluation excluded). Units are the task's (rows, tokens, points).

    With ``flops_per_unit`` (training FLOPs of one unit, forward and backward) it also records
    the achieved ``flops_per_s`` of this process, and with ``peak_flops`` (one device's peak) the
    model FLOPs utilisation ``mfu``.
    """

    def __init__(self, flops_per_unit: float | None = None, peak_flops: float | None = None):
        self.flops_per_unit = flops_per_unit
        self.peak_flops = peak_flops
        self.units = 0
        self.start = self.last = time.perf_counter()

    def on_interval_start(self, state: LoopState) -> None:
        self.units = 0
        self.start = self.last = time.perf_counter()

    def on_batch_end(self, state: LoopState) -> None:
        self.units += state.batch_units

    def on_step_end(self, state: LoopState) -> None:
        self.last = time.perf_counter()

    def on_record(self, state: LoopState, record: Record) -> None:
        seconds = self.last - self.start
        throughput = self.units / seconds if self.units and seconds > 0 else None
        record["throughput"] = throughput
        if self.flops_per_unit is None:
            return
        flops = None if throughput is None else throughput * self.flops_per_unit
        record["flops_per_s"] = flops
        if self.peak_flops:
            record["mfu"] = None if flops is None else flops / self.peak_flops
