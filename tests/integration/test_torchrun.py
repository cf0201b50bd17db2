"""A 2-process torchrun (gloo) training run through run.py: sharded data, KO hard collision,
gradient accumulation (DDP's no_sync on all but the last accumulated batch)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from fixtures_vision import write_cifar10

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks_end_bit_identical(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data", n_per_batch=8, n_test=8)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "run.py",
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
    ]
    env = {**os.environ, "CI": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["replicas_identical"] is True  # checked across ranks by the runner itself
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]  # one writer: rank 0
    # 40 images, 20 per rank: 5 batches of 4, accumulated 2 + 2 + 1 into 3 steps per epoch
    assert [r["step"] for r in records] == [0, 3, 6]
    assert records[-1]["collision_rate.fc"] > 0  # the hard collision really acted
