"""Training-loop options of issue 3: precision, channels_last, per-epoch peak memory, and the
external logger's run id in checkpoints (a resumed job continues its W&B run)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest
import torch
from helpers import read_metrics, run_inprocess
from torch import nn

from experiments.core.config import TrainerConfig
from experiments.core.errors import ConfigError
from experiments.core.loaders import TensorTask
from experiments.engine.callbacks import PeakMemory
from experiments.engine.checkpoint import CHECKPOINT_NAME
from experiments.engine.loop import fit
from experiments.engine.rundir import NullLogger


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def image_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g))] * 3


def train(model: nn.Module, *, fit_options: dict | None = None, **trainer) -> list[dict]:
    """Two epochs of SGD on three fixed image batches; ``trainer`` sets TrainerConfig fields."""
    data = image_batches()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.CrossEntropyLoss()
    task = TensorTask(data[0][0], data[0][1], data[0][0], data[0][1], loss, loss)
    config = TrainerConfig(epochs=2, **trainer)
    device = torch.device("cpu")
    options = {"callbacks": [PeakMemory(device)], **(fit_options or {})}
    result = fit(model, optimizer, task, data, data, config, device=device, **options)
    return result.history


def test_bf16_autocast_trains_float32_parameters_with_float32_losses() -> None:
    fp32 = train(conv_net())
    model = conv_net()
    bf16 = train(model, precision="bf16")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    losses = [r["train_loss"] for r in bf16[1:]]
    assert all(isinstance(v, float) and v == v for v in losses)
    # bfloat16 has an 8-bit mantissa: close to fp32, yet not the same arithmetic
    assert losses == pytest.approx([r["train_loss"] for r in fp32[1:]], rel=0.05)
    assert losses != [r["train_loss"] for r in fp32[1:]]


def test_fp16_without_cuda_is_refused_early() -> None:
    with pytest.raises(ValueError, match=r"fp16.*CUDA"):
        train(conv_net(), precision="fp16")
    with pytest.raises(ValueError, match="precision='fp8' is unknown"):
        train(conv_net(), precision="fp8")


def test_precision_is_validated_with_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trainer.precision='half' is unknown; allowed: fp32"):
        run_inprocess(tmp_path, "trainer.precision=half")
    with pytest.raises(ConfigError, match=r"trainer.precision=fp16 needs a CUDA device"):
        run_inprocess(tmp_path, "trainer.precision=fp16")


def test_channels_last_gives_the_same_training_up_to_rounding() -> None:
    plain = train(conv_net())
    model = conv_net().to(memory_format=torch.channels_last)
    last = train(model, channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain, last, strict=True):
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)


def test_peak_memory_sees_an_allocation_and_resets_between_intervals() -> None:
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    # A fresh anonymous mapping, touched page by page: always new resident pages (a tensor could
    # reuse heap memory that earlier tests freed but the allocator kept resident).
    block = mmap.mmap(-1, 64 * 2**20)
    block.write(b"\1" * len(block))
    block.close()
    with_block = memory.peak_mb()
    memory.reset()
    without = memory.peak_mb()
    assert with_block > 0 and without > 0
    if Path("/proc/self/clear_refs").exists() and os.access("/proc/self/clear_refs", os.W_OK):
        assert with_block - without > 48  # the reset forgot the 64 MB block
    else:
        assert with_block >= without  # lifetime peak only


def test_records_carry_the_epoch_peak_memory() -> None:
    history = train(conv_net())
    assert history[0]["peak_memory_mb"] is None  # the initial evaluation is no epoch
    assert all(r["peak_memory_mb"] > 10 for r in history[1:])  # a python process is > 10 MB


class FakeLogger(NullLogger):
    """A logger with an id, like a W&B run."""

    @property
    def run_id(self) -> str | None:
        return "run-abc123"


def test_checkpoint_keeps_the_logger_run_id(tmp_path: Path) -> None:
    train(conv_net(), fit_options={"run_dir": tmp_path, "logger": FakeLogger()}, checkpoint_every=1)
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["logger_run_id"] == "run-abc123"
    assert checkpoint["scaler"] is None


def test_resumed_wandb_run_continues_the_same_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    common = ["logger=wandb", "trainer.checkpoint_every=1", "trainer.num_threads=1"]
    run_inprocess(run_dir, *common, "trainer.epochs=2")
    first = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)["logger_run_id"]
    assert first
    run_inprocess(run_dir, *common, "trainer.epochs=3", "resume=auto")
    offline = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(first) for name in offline)
    assert [r["epoch"] for r in read_metrics(run_dir)] == [0, 1, 2, 3]
