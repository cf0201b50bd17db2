"""Shared measurement utilities: interleaved timing, robust statistics, machine facts and load.

Absolute times on a shared 2-core machine drift by several %, so variants that are compared are run
interleaved (round r starts with variant r mod k), repeated, and summarised by the median of the
per-round paired ratios (:func:`paired_ratio`): drift common to a round cancels.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from experiments.core.io import git_commit

__all__ = [
    "MB",
    "REPO",
    "accepted_pairs",
    "cpu_seconds",
    "data_dir",
    "machine_info",
    "paired_ratio",
    "repo_relative",
    "sgd",
    "summary",
    "time_calls",
    "time_interleaved",
    "time_rounds",
    "train_step",
]

REPO = Path(__file__).resolve().parent.parent
MB = 2**20


def data_dir() -> Path:
    """The data directory: ``$KINETICS_DATA_DIR``, else the repository's ``data/``."""
    return Path(os.environ.get("KINETICS_DATA_DIR") or REPO / "data")


def repo_relative(path: Path) -> str:
    """``path`` as a report shows it: relative to the repository when inside it (``data/...``,
    the same on every checkout), else as given."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# --------------------------------------------------------------------------------------------
# timing


def time_calls(fn: Callable[[], object], calls: int) -> float:
    """Mean seconds per call of ``calls`` back-to-back calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int,
    sample_seconds: float,
    shuffle: bool = False,
) -> dict[str, list[float]]:
    """Seconds per call of each variant: ``repeats`` samples each, variants interleaved.

    After ``warmup`` calls of every variant, each one gets a number of calls per sample so that a
    sample lasts about ``sample_seconds`` (timer resolution and call overhead then vanish). Round r
    runs the variants starting at index r mod k; then each variant still always follows the same
    one (the memory a heavy call leaves behind can slow its successor by ~10%), so ``shuffle``
    runs each round in its own random order instead (seeded: the same orders every run).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    calls = {}
    for name in names:
        once = time_calls(fns[name], 1)
        calls[name] = max(1, min(10_000, math.ceil(sample_seconds / max(once, 1e-7))))
    samples: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(0)
    for r in range(repeats):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        if shuffle:
            rng.shuffle(order)
        for name in order:
            samples[name].append(time_calls(fns[name], calls[name]))
    return samples


def time_rounds(
    fns: dict[str, Callable[[], float]], *, warmup: int, rounds: int, shuffle: bool = False
) -> dict[str, list[float]]:
    """Seconds per call of each variant over ``rounds`` interleaved rounds (round r starts with
    variant r mod k), after ``warmup`` rounds; each ``fn`` returns its own duration. ``shuffle``:
    each round in its own random order instead (seeded, as in :func:`time_interleaved`)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(0)
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        if shuffle:
            rng.shuffle(order)
        for name in order:
            samples[name].append(fns[name]())
    return samples


# --------------------------------------------------------------------------------------------
# statistics


def summary(values: list[float]) -> dict[str, float]:
    """Median and quartiles of ``values``."""
    if len(values) == 1:
        return {"median": values[0], "p25": values[0], "p75": values[0]}
    q = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "p25": q[0], "p75": q[2]}


def paired_ratio(num: list[float], den: list[float]) -> dict[str, float]:
    """Summary of the per-round ratios num[r] / den[r] (drift common to a round cancels)."""
    return summary([a / b for a, b in zip(num, den, strict=True)])


def accepted_pairs(x: torch.Tensor, v: torch.Tensor, coef: float) -> tuple[int, int]:
    """Accepted and candidate pairs of systems x, v of shape (S, N, d) (selection only)."""
    from kinetics.dsmc import collision_mask

    accepted = int(collision_mask(x, v, coef).sum())
    s, n = x.shape[0], x.shape[1]
    return accepted, s * n * (n - 1) // 2


# --------------------------------------------------------------------------------------------
# training steps (sections 4-6)


def train_step(
    model: torch.nn.Module, opt: Any, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """One SGD training step (zero_grad, forward, cross-entropy, backward, step); seconds."""
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    opt.step()
    return time.perf_counter() - start


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The benchmarks' base optimizer: SGD(lr 0.1, momentum 0.9, weight decay 5e-4)."""
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


# --------------------------------------------------------------------------------------------
# machine facts and load


def machine_info() -> dict[str, Any]:
    """Torch / CPU / git facts that make the numbers interpretable."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else cpu
    mem_gb = None
    with contextlib.suppress(OSError, AttributeError):
        kb = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)
        mem_gb = round(int(kb) / 2**20, 1)
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpus_available": len(os.sched_getaffinity(0)),
        "mem_total_gb": mem_gb,
        "load_average_1_5_15min_at_start": list(os.getloadavg()),
        "git_commit": git_commit(REPO),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine incl. VM steal, CPU seconds of this process tree)."""
    import resource

    busy = float("nan")
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    mine = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        mine += usage.ru_utime + usage.ru_stime
    return busy, mine
