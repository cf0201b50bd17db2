"""A 2-process torchrun (gloo) training run through run.py: sharded data, KO hard collision,
gradient accumulation (DDP's no_sync on all but the last accumulated batch)."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures_vision import write_cifar10
from helpers import run_torchrun


def test_torchrun_two_ranks_end_bit_identical(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data", n_per_batch=8, n_test=8)
    run_dir = tmp_path / "run"
    run_torchrun(
        f"hydra.run.dir={run_dir}",
        "model=resnet18",
        "model.base_width=4",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.download=false",
        "dataset.verify=false",
        "collision=hard",
        "collision.coll_coef=0.95",
        "trainer.batch_size=4",
        "trainer.grad_accum_steps=2",
        "trainer.epochs=2",
        timeout=300,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["replicas_identical"] is True  # checked across ranks by the runner itself
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]  # one writer: rank 0
    # 40 images, 20 per rank: 5 batches of 4, accumulated 2 + 2 + 1 into 3 steps per epoch
    assert [r["step"] for r in records] == [0, 3, 6]
    assert records[-1]["collision_rate.fc"] > 0  # the hard collision really acted
