"""experiments.engine.schedulers: timm's schedules behind fit()'s step() protocol, and their validation."""

from __future__ import annotations

import io
import math

import pytest
import torch
from helpers import CONFIG_DIR
from hydra import compose, initialize_config_dir

from experiments.core.config import SchedulerConfig, validate
from experiments.core.errors import ConfigError
from experiments.engine.schedulers import TimmSchedule, create_schedule


def _optimizer(lr: float = 0.1, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def _lrs(schedule: TimmSchedule, ticks: int) -> list[float]:
    """The lr of group 0 at ticks 0 .. ticks-1 (stepping the schedule)."""
    out = []
    for _ in range(ticks):
        out.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.step()
    return out


def test_cosine_per_epoch_equals_torch_cosine_annealing() -> None:
    """KO Table 1: the lr of every epoch is CosineAnnealingLR's, up to rounding."""
    ours = create_schedule(_optimizer(), SchedulerConfig("cosine", eta_min=1e-4), epochs=200)
    base = _optimizer()
    torch_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(base, T_max=200, eta_min=1e-4)
    expected = []
    for _ in range(201):
        expected.append(base.param_groups[0]["lr"])
        base.step()
        torch_schedule.step()
    got = _lrs(ours, 201)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-12
    assert got[0] == 0.1 and got[200] == pytest.approx(1e-4, abs=1e-15)


def test_cosine_t_max_longer_than_the_run() -> None:
    got = _lrs(create_schedule(_optimizer(), SchedulerConfig("cosine", t_max=10), epochs=5), 5)
    assert got == pytest.approx([0.05 * (1 + math.cos(math.pi * e / 10)) for e in range(5)])


@pytest.mark.parametrize("steps_per_epoch", [1, 7])
def test_multistep_decays_after_each_milestone_epoch(steps_per_epoch: int) -> None:
    """KITINet Table 3: x0.1 after epochs 80 and 120 (torch's MultiStepLR), per epoch or per step."""
    interval = "epoch" if steps_per_epoch == 1 else "step"
    config = SchedulerConfig("multistep", interval=interval, milestones=[80, 120])
    schedule = create_schedule(_optimizer(), config, epochs=160, steps_per_epoch=steps_per_epoch)
    got = _lrs(schedule, 160 * steps_per_epoch)
    epoch_of_tick = [t // steps_per_epoch + 1 for t in range(len(got))]  # 1-based epochs
    expected = [0.1 * 0.1 ** ((e > 80) + (e > 120)) for e in epoch_of_tick]
    assert got == pytest.approx(expected, rel=1e-12)
    if steps_per_epoch == 1:
        base = _optimizer()
        torch_schedule = torch.optim.lr_scheduler.MultiStepLR(base, milestones=[80, 120])
        reference = []
        for _ in range(160):
            reference.append(base.param_groups[0]["lr"])
            base.step()
            torch_schedule.step()
        assert got == reference


@pytest.mark.parametrize("prefix", [False, True])
def test_warmup_then_cosine_per_step(prefix: bool) -> None:
    """The ImageNet recipes: linear warm-up from warmup_lr, then cosine to eta_min, per update."""
    epochs, warmup, steps, lr, start, floor = 6, 2, 5, 0.4, 0.01, 1e-3
    config = SchedulerConfig(
        "cosine",
        interval="step",
        eta_min=floor,
        warmup_epochs=warmup,
        warmup_lr=start,
        warmup_prefix=prefix,
    )
    schedule = create_schedule(
        _optimizer(lr, groups=2), config, epochs=epochs, steps_per_epoch=steps
    )
    total, w = epochs * steps, warmup * steps
    got = _lrs(schedule, total + 1)
    length = total - w if prefix else total
    expected = [
        start + t * (lr - start) / w
        if t < w
        else floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * (t - w * prefix) / length))
        for t in range(total + 1)
    ]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert got[total] == pytest.approx(floor)  # the run ends at eta_min
    assert all(g["lr"] == got[-1] for g in schedule.optimizer.param_groups)  # every group


def test_none_is_no_schedule_or_a_warmup_to_a_constant() -> None:
    assert create_schedule(_optimizer(), SchedulerConfig("none"), epochs=5) is None
    schedule = create_schedule(
        _optimizer(), SchedulerConfig("none", warmup_epochs=2, warmup_lr=0.0), epochs=5
    )
    assert _lrs(schedule, 5) == pytest.approx([0.0, 0.05, 0.1, 0.1, 0.1])


def test_step_interval_needs_the_number_of_updates() -> None:
    with pytest.raises(ValueError, match="steps_per_epoch"):
        create_schedule(_optimizer(), SchedulerConfig("cosine", interval="step"), epochs=5)


def test_state_dict_round_trip_through_a_weights_only_checkpoint() -> None:
    def make() -> TimmSchedule:
        config = SchedulerConfig("cosine", interval="step", warmup_epochs=1, warmup_lr=0.0)
        return create_schedule(_optimizer(0.4), config, epochs=4, steps_per_epoch=3)

    whole = make()
    expected = _lrs(whole, 12)
    first = make()
    _lrs(first, 5)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = make()  # a fresh optimizer and schedule, as after a restart
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.ticks == 5
    assert _lrs(resumed, 7) == expected[5:]  # bitwise


def _validate(*overrides: str) -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        validate(compose("config", overrides=list(overrides)))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["scheduler=cosine", "trainer.epochs=5", "scheduler.warmup_epochs=5"],
            "scheduler.warmup_epochs=5 must be < trainer.epochs=5",
        ),
        (
            ["scheduler=cosine", "scheduler.warmup_epochs=-1"],
            "scheduler.warmup_epochs=-1 must be >= 0",
        ),
        (
            ["scheduler=cosine", "scheduler.warmup_epochs=2", "scheduler.warmup_lr=0.5"],
            "scheduler.warmup_lr=0.5 is above optimizer.lr=0.001",
        ),
        (["scheduler=cosine", "scheduler.warmup_lr=-0.1"], "scheduler.warmup_lr=-0.1 must be >= 0"),
        (
            ["scheduler=cosine", "scheduler.interval=batch"],
            "scheduler.interval='batch' is unknown; allowed: epoch, step",
        ),
    ],
)
def test_bad_schedules_are_rejected(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _validate(*overrides)
    assert message in str(err.value)
