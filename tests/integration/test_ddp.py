"""KineticOptimizer under DistributedDataParallel (SPEC §1.4): replicas stay bit-identical.

Two CPU processes (gloo) train the same small model on different data with hard collisions. The
gadget's generator is seeded identically on every rank, so after all-reduce every rank draws the
same directions. A second model whose seed differs per rank is the power check: it must drift.
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from kinetics import KineticOptimizer, select_modules

WORLD_SIZE = 2
STEPS = 20


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)
    )


def _train(rank: int, gadget_seed: int) -> tuple[torch.Tensor, float]:
    """STEPS of DDP training on rank-specific data; returns flat parameters and the summed rate."""
    model = DistributedDataParallel(_model())
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    layers = select_modules(model.module, ["2", "head"])
    opt = KineticOptimizer(base, layers, "hard", coll_coef=0.95, seed=gadget_seed)
    data = torch.Generator().manual_seed(100 + rank)  # different data on every rank
    rate_sum = 0.0
    for _ in range(STEPS):
        x = torch.randn(16, 10, generator=data)
        y = torch.randint(0, 4, (16,), generator=data)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        rate_sum += sum(opt.collision_rates.values())
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return flat, rate_sum


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60)
    )
    try:
        results = {}
        for label, seed in (("shared_seed", 0), ("seed_per_rank", rank)):
            flat, rate_sum = _train(rank, seed)
            gathered = [torch.empty_like(flat) for _ in range(WORLD_SIZE)]
            dist.all_gather(gathered, flat)
            results[label] = {
                "identical": all(torch.equal(gathered[0], g) for g in gathered[1:]),
                "rate_sum": rate_sum,
            }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_replicas_stay_bit_identical_with_hard_collisions(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    for rank in range(WORLD_SIZE):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert results["shared_seed"]["identical"], rank
        assert results["shared_seed"]["rate_sum"] > 0, "no collision happened: the test is vacuous"
        # Power check: with different gadget seeds per rank the replicas do drift apart.
        assert not results["seed_per_rank"]["identical"], rank


def test_slurm_tasks_become_torchrun_ranks() -> None:
    from experiments.engine.distributed import first_slurm_host, slurm_environment

    assert first_slurm_host("gpu[07-09,12],cpu1") == "gpu07"
    assert first_slurm_host("node3,node4") == "node3"
    assert first_slurm_host("a[1,3]") == "a1"
    slurm = {
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-10]",
        "SLURM_JOB_ID": "123456",
    }
    assert slurm_environment(slurm) == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }
    assert slurm_environment({**slurm, "MASTER_PORT": "29500"})["MASTER_PORT"] == "29500"
    assert slurm_environment({**slurm, "WORLD_SIZE": "8", "RANK": "5"}) == {}  # torchrun's win
    assert slurm_environment({**slurm, "SLURM_NTASKS": "1"}) == {}  # one task: no DDP
    assert slurm_environment({}) == {}
