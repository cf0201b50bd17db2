"""torchrun / DDP support: process-group set-up from torchrun's environment, and replica checks.

``torchrun --nproc_per_node 2 run.py hydra.run.dir=outputs/ddp ...`` starts one process per rank;
each calls :func:`init_distributed`, which reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and
joins the process group (NCCL on GPUs, gloo on CPU). Without those variables nothing happens and
the run is an ordinary single process. Pass ``hydra.run.dir`` explicitly: every rank must agree
on the run directory (Hydra's default name has a timestamp that may differ by a second).

SLURM (``hydra/launcher=submitit_slurm`` with ``tasks_per_node`` > 1, or ``srun``) starts one
task per rank but sets only SLURM's variables; :func:`slurm_environment` translates them
(``SLURM_PROCID`` -> ``RANK``, ``SLURM_NTASKS`` -> ``WORLD_SIZE``, ``SLURM_LOCALID`` ->
``LOCAL_RANK``, the job's first node -> ``MASTER_ADDR``, a port from the job id ->
``MASTER_PORT``) when torchrun's are absent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "cleanup_distributed",
    "first_slurm_host",
    "gather_full_state",
    "init_distributed",
    "is_sharded",
    "load_full_state",
    "replicas_identical",
    "shard_model",
    "slurm_environment",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size``; ``main`` writes the files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``"gpu[07-09,12],cpu1"`` -> ``"gpu07"``."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.groups()
    if ranges is None:
        return prefix
    return prefix + re.split(r"[-,]", ranges)[0]  # keeps zero padding ("07")


def slurm_environment(env: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables derived from a multi-task SLURM job's, or {} when there is nothing to
    derive (torchrun's already set, not SLURM, or a single task)."""
    if "WORLD_SIZE" in env or int(env.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in env:
        return {}
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist and "MASTER_ADDR" not in env:
        raise RuntimeError("a multi-task SLURM job without SLURM_JOB_NODELIST: set MASTER_ADDR")
    derived = {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": env["SLURM_NTASKS"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_slurm_host(nodelist or ""),
        # one port per job, so two jobs sharing a node do not collide
        "MASTER_PORT": env.get("MASTER_PORT")
        or str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000),
    }
    return derived


def init_distributed(device_spec: str) -> tuple[DistInfo, str]:
    """Join the process group when launched by torchrun (or a multi-task SLURM job); return the
    info and the device to use.

    On CUDA each rank takes ``cuda:<LOCAL_RANK>``; on CPU the gloo backend is used.
    """
    os.environ.update(slurm_environment(os.environ))
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo(), device_spec
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )
    use_cuda = device_spec in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        device_spec = f"cuda:{info.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info, device_spec


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group (after a barrier, so no rank exits while others still talk)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_model(model: nn.Module) -> None:
    """FSDP2 (``fully_shard``): each block of the model's stack of blocks (GPT-2's
    ``transformer.h``, Qwen2's ``model.layers``, ...) is its own unit, then the rest; in place.
    Parameters become DTensors sharded over the ranks; a block's are gathered for its forward and
    backward only."""
    from torch.distributed.fsdp import fully_shard

    from kinetics.optimizer import last_block

    name, _ = last_block(model)
    stack = model.get_submodule(name.rsplit(".", 1)[0])
    for block in stack:
        fully_shard(block)
    fully_shard(model)


def is_sharded(model: nn.Module) -> bool:
    """Whether the model's parameters are FSDP shards (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def gather_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The full (unsharded) model and optimizer state dicts on the CPU of rank 0 (empty on the
    others). Every rank must call it: gathering the shards is a collective."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    optim_state = None
    if optimizer is not None:
        optim_state = get_optimizer_state_dict(model, optimizer, options=options)
    return model_state, optim_state


def load_full_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    model_state: dict[str, Any],
    optim_state: dict[str, Any] | None,
) -> None:
    """Load full state dicts (as :func:`gather_full_state` saves them, read by every rank) into
    the sharded model and optimizer: each rank keeps its shards."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    if optimizer is not None and optim_state is not None:
        set_optimizer_state_dict(model, optimizer, optim_state, options=options)


def replicas_identical(model: nn.Module) -> bool:
    """Whether every rank holds bit-identical parameters (compares raw bytes across ranks).

    KO draws its collision directions from a generator seeded identically on every rank, so after
    the all-reduced gradients every rank applies the same update; this checks that it did.
    """
    if not dist.is_initialized() or is_sharded(model):  # shards are not replicas
        return True
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()]).cpu()
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat) if dist.get_backend() == "gloo" else _gather_cuda(
        flat, gathered
    )
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _gather_cuda(flat: torch.Tensor, gathered: list[torch.Tensor]) -> None:
    device = torch.device("cuda", torch.cuda.current_device())
    on_device = [g.to(device) for g in gathered]
    dist.all_gather(on_device, flat.to(device))
    for target, source in zip(gathered, on_device, strict=True):
        target.copy_(source.cpu())
