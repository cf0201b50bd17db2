"""Learning-rate schedules from timm's factory, driven the way :func:`experiments.engine.loop.fit` drives
them: one argument-free ``step()`` per epoch or per optimizer update.

``create_schedule`` builds ``none`` / ``cosine`` / ``linear`` / ``multistep`` (each with an optional linear
warm-up) with ``timm.scheduler.create_scheduler_v2`` and wraps it in :class:`TimmSchedule`, which
counts its own ``step()`` calls. The recipes it covers:

* KO Table 1: cosine over the epochs, stepped per epoch, no warm-up. The lr of epoch ``e``
  (1-based) is ``eta_min + (lr - eta_min) (1 + cos(pi (e - 1) / t_max)) / 2``, the same as
  ``torch.optim.lr_scheduler.CosineAnnealingLR``.
* KITINet Table 3: ``multistep`` with milestones ``[80, 120]``: the lr is multiplied by ``gamma``
  after epochs 80 and 120 (epoch 81 is the first with ``0.1 lr``), as with torch's ``MultiStepLR``.
* ImageNet (KO Table 2): linear warm-up from ``warmup_lr`` then cosine, updated after every
  optimizer step like timm's ``train.py`` with ``--sched-on-updates``.

Time is counted in *ticks*: epochs (``interval="epoch"``) or optimizer updates
(``interval="step"``, ``steps_per_epoch`` updates per epoch). Tick ``t`` (0-based) uses timm's
value at ``t``, exactly as timm's train.py calls ``step(epoch + 1)`` after an epoch or
``step_update(num_updates)`` after an update. Every length is converted to ticks here and handed to
timm with ``step_on_epochs=True``, rather than letting timm multiply epochs by ``updates_per_epoch``:
that way a milestone can be placed on the first update after an epoch, which timm's own
update-based milestones (whole multiples of ``updates_per_epoch``, taking effect one tick early,
see ``timm.scheduler.MultiStepLRScheduler``) cannot express.
"""

from __future__ import annotations

from typing import Any

import torch

from experiments.core.config import SCHEDULER_INTERVALS, RunConfig, SchedulerConfig
from experiments.core.timm import import_timm

__all__ = ["TimmSchedule", "build_scheduler", "cosine_epochs", "create_schedule"]


class TimmSchedule:
    """A timm scheduler behind the ``step()`` / ``state_dict()`` protocol of torch's schedulers.

    ``step()`` advances one tick (an epoch or an optimizer update, see ``interval``) and sets the
    optimizer's learning rates to the schedule's value at the new tick. The state is the tick count
    plus timm's own state, so a checkpoint restores the schedule exactly.
    """

    def __init__(self, scheduler: Any, interval: str, ticks_per_epoch: int) -> None:
        if interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"interval={interval!r} is not one of {SCHEDULER_INTERVALS}")
        self.scheduler = scheduler
        self.interval = interval
        self.ticks_per_epoch = ticks_per_epoch
        """1 with interval="epoch", the optimizer updates per epoch with "step"."""
        self.ticks = 0
        self.scheduler.step(0)  # the first tick's lr (timm already sets it; this makes it explicit)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The scheduled optimizer."""
        return self.scheduler.optimizer

    def step(self) -> None:
        """One epoch or one optimizer update has ended: move to the next tick's learning rate."""
        self.ticks += 1
        self.scheduler.step(self.ticks)

    def state_dict(self) -> dict[str, Any]:
        """Tick count and timm's state (plain numbers, lists and strings)."""
        return {"ticks": self.ticks, "timm": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` and set the optimizer's lr of that tick."""
        self.scheduler.load_state_dict(state["timm"])
        self.ticks = int(state["ticks"])
        self.scheduler.step(self.ticks)


def cosine_epochs(epochs: int, t_max: int | None, warmup_epochs: int, warmup_prefix: bool) -> int:
    """Length in epochs of the cosine decay: ``t_max``, or what remains of ``epochs`` (minus a
    prefix warm-up)."""
    if t_max is not None:
        return t_max
    return epochs - warmup_epochs if warmup_prefix else epochs


def create_schedule(
    optimizer: torch.optim.Optimizer,
    config: SchedulerConfig,
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    total_steps: int | None = None,
) -> TimmSchedule | None:
    """The schedule ``config`` describes on ``optimizer`` (its current lr is the peak), or None
    for a constant lr without warm-up.

    Args:
        config: the ``scheduler`` section (:class:`~experiments.core.config.SchedulerConfig`:
            name, interval, cosine length ``t_max`` and floor ``eta_min``, multistep
            ``milestones`` / ``gamma``, warm-up in epochs and/or steps from ``warmup_lr``,
            ``warmup_prefix``). Timm's lr at tick ``t < W`` of a warm-up of ``W`` ticks is
            ``warmup_lr + t (lr - warmup_lr) / W``.
        epochs: the run's epochs (the default cosine length).
        steps_per_epoch: optimizer updates per epoch; required with ``interval="step"``.
        total_steps: the run's length in optimizer updates when its budget is in steps
            (``interval="step"``): the default cosine length instead of ``epochs``.
    """
    name, interval, t_max = config.name, config.interval, config.t_max
    warmup_epochs, warmup_steps = config.warmup_epochs, config.warmup_steps
    warmup_lr, warmup_prefix = config.warmup_lr, config.warmup_prefix
    if interval not in SCHEDULER_INTERVALS:
        raise ValueError(f"interval={interval!r} is not one of {SCHEDULER_INTERVALS}")
    if warmup_epochs < 0 or not warmup_lr >= 0:
        raise ValueError(f"warmup_epochs={warmup_epochs} and warmup_lr={warmup_lr} must be >= 0")
    if name == "none" and warmup_epochs == 0 and warmup_steps == 0 and not config.warmup_fraction:
        return None
    if (warmup_steps or total_steps) and interval != "step":
        raise ValueError("warmup_steps and total_steps count optimizer updates: interval='step'")
    if interval == "step":
        if steps_per_epoch is None or steps_per_epoch < 1:
            raise ValueError(f"interval='step' needs steps_per_epoch >= 1, got {steps_per_epoch}")
        ticks = steps_per_epoch
        run_ticks = total_steps if total_steps is not None else epochs * ticks
        warmup_steps += round(config.warmup_fraction * run_ticks)
    else:
        ticks = 1
    import_timm("timm.scheduler")  # the first timm import hides wandb (experiments/core/timm.py)
    from timm.scheduler import create_scheduler_v2

    common: dict[str, Any] = {
        "warmup_lr": warmup_lr,
        "warmup_epochs": warmup_epochs * ticks + warmup_steps,
        "warmup_prefix": warmup_prefix,
        "step_on_epochs": True,  # ticks are counted here; see the module docstring
    }
    if name in ("cosine", "linear"):
        if t_max is None and total_steps is not None:
            length = total_steps - (common["warmup_epochs"] if warmup_prefix else 0)
        else:
            length = cosine_epochs(epochs, t_max, warmup_epochs, warmup_prefix) * ticks
            length -= warmup_steps if warmup_prefix else 0
        # linear: timm's polynomial decay of power 1 (transformers' linear schedule), to eta_min
        # at the end of the run; the warm-up, when not a prefix, lies over its start.
        sched, power = ("cosine", {}) if name == "cosine" else ("poly", {"decay_rate": 1.0})
        scheduler, _ = create_scheduler_v2(
            optimizer, sched, num_epochs=length, min_lr=config.eta_min, **power, **common
        )
    elif name == "multistep":
        # timm applies milestone m from tick m - 1 on; torch's MultiStepLR (and "x0.1 after epoch
        # m") from tick m * ticks on, the first update after epoch m: hence m * ticks + 1.
        scheduler, _ = create_scheduler_v2(
            optimizer,
            "multistep",
            decay_milestones=[m * ticks + 1 for m in config.milestones],
            decay_rate=config.gamma,
            **common,
        )
    elif name == "none":
        scheduler, _ = create_scheduler_v2(optimizer, "constant", **common)
    else:
        raise ValueError(f"unknown scheduler {name!r}; allowed: none, cosine, linear, multistep")
    return TimmSchedule(scheduler, interval, ticks)


def build_scheduler(
    rc: RunConfig, base: torch.optim.Optimizer, steps_per_epoch: int | None = None
) -> TimmSchedule | None:
    """The run's lr schedule on the base optimizer (whose param groups KO shares), or None.

    ``steps_per_epoch`` (optimizer updates per epoch per process: batches / grad_accum_steps) is
    needed when ``scheduler.interval=step``.
    """
    return create_schedule(
        base,
        rc.scheduler,
        epochs=rc.trainer.epochs,
        steps_per_epoch=steps_per_epoch,
        total_steps=rc.trainer.max_steps,
    )
