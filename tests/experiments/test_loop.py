"""The shared training loop: step budgets, gradient accumulation, step-unit records, dict batches
and model-output objects, mid-epoch kill-and-resume."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from helpers import compose_cfg, read_metrics, run_inprocess, without_times
from torch import nn

from experiments.core.config import TrainerConfig
from experiments.core.loaders import TensorBatches, TensorTask
from experiments.core.task import TaskDefaults
from experiments.engine.callbacks import Callback, LoopState, Throughput
from experiments.engine.loop import fit

CPU = torch.device("cpu")


def regression(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)


def train(trainer: TrainerConfig, batch_size: int, **options) -> tuple[nn.Module, list[dict]]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = regression()
    task = TensorTask(x, y, x, y)
    train_data = TensorBatches(x, y, batch_size, shuffle=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    result = fit(model, optimizer, task, train_data, train_data, trainer, device=CPU, **options)
    return model, result.history


def test_accumulated_steps_equal_one_big_batch() -> None:
    """4 batches of 6 accumulated = one batch of 24: the same gradient of the mean loss."""
    big, big_records = train(TrainerConfig(epochs=3), batch_size=24)
    small, small_records = train(TrainerConfig(epochs=3, grad_accum_steps=4), batch_size=6)
    for a, b in zip(big.parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert [r["step"] for r in small_records] == [0, 2, 4, 6]  # 8 batches -> 2 steps per epoch
    assert [r["train_loss"] for r in small_records[1:]] == pytest.approx(
        [r["train_loss"] for r in big_records[1:]], rel=1e-6
    )


def test_uneven_batches_are_weighted_by_units() -> None:
    """48 rows in batches of 20, 20, 8 accumulated into one step: the mean over the 48 rows."""
    full, _ = train(TrainerConfig(epochs=2), batch_size=48)
    parts, records = train(TrainerConfig(epochs=2, grad_accum_steps=3), batch_size=20)
    for a, b in zip(full.parameters(), parts.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert records[-1]["step"] == 2


def test_step_budget_ends_mid_epoch_with_step_records() -> None:
    trainer = TrainerConfig(max_steps=7, unit="step", log_every=2, eval_every=3)
    _, records = train(trainer, batch_size=12, callbacks=[Throughput()])  # 4 steps per epoch
    assert [r["step"] for r in records] == [0, 2, 3, 4, 6, 7]
    assert [r["epoch"] for r in records] == [0, 0.5, 0.75, 1.0, 1.5, 1.75]
    evaluated = [r["step"] for r in records if r["test_loss"] is not None]
    assert evaluated == [0, 3, 6, 7]
    assert all(r["interval_time"] > 0 and r["throughput"] > 0 for r in records[1:])


class _SlowEval(nn.Linear):
    """A linear model whose eval forward sleeps: evaluation time is easy to spot."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            time.sleep(0.1)
        return super().forward(x)


def test_first_step_interval_excludes_the_initial_evaluation() -> None:
    torch.manual_seed(0)
    model = _SlowEval(3, 1)
    x, y = regression()
    data = TensorBatches(x, y, 12, shuffle=False)
    trainer = TrainerConfig(max_steps=4, unit="step", log_every=100, eval_every=100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = fit(
        model,
        optimizer,
        TensorTask(x, y, x, y),
        data,
        data,
        trainer,
        device=CPU,
        callbacks=[Throughput()],
    ).history
    train_seconds = 48 / history[-1]["throughput"]  # 4 steps of 12 rows
    assert train_seconds < 0.2  # the initial evaluation (4 batches x 0.1 s) is not in it


def test_bad_trainer_values_are_refused() -> None:
    with pytest.raises(ValueError, match=r"trainer.grad_accum_steps=0 must be >= 1"):
        train(TrainerConfig(grad_accum_steps=0), batch_size=12)
    with pytest.raises(ValueError, match=r"trainer.unit='batch' is unknown; allowed: epoch, step"):
        train(TrainerConfig(unit="batch"), batch_size=12)


@dataclass
class Output:
    """A transformers-style output object."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class DictModel(nn.Module):
    """Takes keyword inputs and returns an object with ``logits`` and ``loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        logits = self.head(self.embed(input_ids).mean(dim=1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return Output(logits, loss)


class DictTask(TaskDefaults):
    """Dict batches (``input_ids``, ``labels``); the loss is the model's own."""

    metric_fns: ClassVar = {"acc": lambda out, y: (out.logits.argmax(-1) == y).float().mean()}

    @staticmethod
    def train_loss(outputs: Output, targets: torch.Tensor) -> torch.Tensor:
        return outputs.loss

    eval_loss = train_loss

    def units(self, inputs: dict, targets: torch.Tensor) -> int:
        return int(inputs["input_ids"].numel())  # tokens


def test_dict_batches_and_output_objects() -> None:
    g = torch.Generator().manual_seed(0)
    batches = [
        {"input_ids": torch.randint(0, 10, (4, 5), generator=g), "labels": torch.arange(4) % 3}
        for _ in range(3)
    ]
    torch.manual_seed(0)
    model = DictModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    result = fit(
        model, optimizer, DictTask(), batches, batches, TrainerConfig(epochs=20), device=CPU
    )
    assert result.final["step"] == 60
    assert result.final["train_loss"] < result.history[1]["train_loss"]
    assert result.final["test_acc"] == 1.0


class Kill(Callback):
    """Stands in for a job killed after the record of a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_record(self, state: LoopState, record: dict) -> None:
        if record["step"] == self.step:
            raise KeyboardInterrupt


def test_mid_epoch_kill_and_resume_with_accumulation_is_bitwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after step 5 (mid-epoch: 3 steps per epoch), resumed from the checkpoint of step 4:
    the same records, bit for bit, as an uninterrupted run, KITINet and shuffling included."""
    import experiments.runner as runner

    common = [
        "model=kitinet_fc",
        "collision=kitinet",
        "collision.coll_coef=0.9",
        "trainer.epochs=4",
        "trainer.batch_size=10",
        "trainer.grad_accum_steps=3",
        "trainer.unit=step",
        "trainer.log_every=2",
        "trainer.eval_every=2",
        "trainer.checkpoint_every=2",
        "scheduler=cosine",
        "scheduler.interval=step",
        "scheduler.warmup_steps=2",
    ]
    run_inprocess(tmp_path / "whole", *common)
    real_fit = runner.fit

    def killed_fit(*args, **kwargs):
        return real_fit(*args, **{**kwargs, "callbacks": [*kwargs["callbacks"], Kill(6)]})

    monkeypatch.setattr(runner, "fit", killed_fit)
    with pytest.raises(KeyboardInterrupt):
        run_inprocess(tmp_path / "killed", *common)
    monkeypatch.setattr(runner, "fit", real_fit)
    checkpoint = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)
    assert (checkpoint["step"], checkpoint["epoch"], checkpoint["batch"]) == (4, 1, 3)
    run_inprocess(tmp_path / "killed", *common, "resume=auto")
    whole = without_times(read_metrics(tmp_path / "whole"))
    resumed = without_times(read_metrics(tmp_path / "killed"))
    assert [r["step"] for r in whole] == [0, 2, 4, 6, 8, 10, 12]
    assert resumed == whole
    assert any(r["collision_rate.residual"] for r in whole[1:])


def test_warmup_in_steps_reaches_the_lr(tmp_path: Path) -> None:
    run_inprocess(
        tmp_path,
        "trainer.epochs=3",
        "trainer.batch_size=20",
        "trainer.unit=step",
        "trainer.log_every=1",
        "scheduler=cosine",
        "scheduler.interval=step",
        "scheduler.warmup_steps=4",
        "scheduler.warmup_prefix=true",
        "optimizer.lr=0.01",
    )
    lrs = [r["lr"] for r in read_metrics(tmp_path)[1:]]
    assert lrs[:5] == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01])
    assert lrs[-1] < lrs[5]  # the cosine decays after the warm-up
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["step"] == 12


def test_warmup_steps_need_a_per_step_schedule() -> None:
    from experiments.core.config import validate
    from experiments.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"scheduler.warmup_steps=4 needs scheduler.interval"):
        validate(compose_cfg("scheduler=cosine", "scheduler.warmup_steps=4"))


def test_ko_effect_and_nonfinite_skips_are_logged() -> None:
    """A NaN in one batch's targets makes that step's gradient NaN: KO leaves the layer alone,
    the record counts the skips, and the alignment averages the steps that collided."""
    from experiments.engine.callbacks import CollisionEffect
    from kinetics import KineticOptimizer

    torch.manual_seed(0)
    model = nn.Linear(3, 8)
    x, y = regression(32)
    y = y.repeat(1, 8)
    y[20] = float("nan")  # in the third batch of 8
    task = TensorTask(x, y, x[:8], y[:8])
    base = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer = KineticOptimizer(base, {"fc": model}, "hard", coll_coef=0.99, seed=0)
    trainer = TrainerConfig(epochs=1, batch_size=8)
    data = TensorBatches(x, y, 8, shuffle=False)
    result = fit(
        model,
        optimizer,
        task,
        data,
        data,
        trainer,
        device=CPU,
        callbacks=[CollisionEffect(optimizer)],
    )
    record = result.final
    # step 3: NaN gradient; SGD then applies it (as without KO), so step 4 has a NaN weight
    assert record["nonfinite_skips.fc"] == 2
    assert record["collision_alignment.fc"] < 1.0  # steps 1 and 2 collided (many partners)
    assert record["collision_norm_ratio.fc"] > 0
