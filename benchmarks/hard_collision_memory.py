"""Section 3: hard collision when (nearly) every pair collides, against the extra-peak budget.

At an ImageNet head (N=1000, d=2048) with near-coincident weights, coll_coef near 1 accepts every
pair: the peak extra memory must stay within ``Config.memory_budget_mb`` (SPEC §5: 64 MB) and not
grow with the number of accepted pairs. The largest coll_coef is cross-checked by RSS in a fresh
process (:func:`benchmarks.memory.rss_peak_extra_bytes`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.measure import MB, accepted_pairs
from benchmarks.memory import profile_call, rss_peak_extra_bytes

__all__ = ["bench_hard_all", "hard_all_inputs"]


def hard_all_inputs(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Near-coincident weight rows (exp(-|w_i - w_j|) ~ 1) and N(0, 1) gradient rows: with
    coll_coef near 1 every pair passes the threshold."""
    gen = torch.Generator().manual_seed(seed)
    weight = 1e-4 * torch.randn(n, d, generator=gen)
    grad = torch.randn(n, d, generator=gen)
    return weight, grad


def bench_hard_all(cfg: Config) -> list[dict[str, Any]]:
    """Accepted pairs, time and peak extra memory of hard collision for several coll_coef."""
    from kinetics import hard_collision

    n, d = cfg.hard_all_size
    weight, grad = hard_all_inputs(n, d)
    gen = torch.Generator().manual_seed(0)
    rows = []
    hard_collision(weight[:50], grad[:50], 1.0, generator=gen)  # warm-up on a small problem
    for coef in cfg.hard_all_coefs:
        accepted, pairs = accepted_pairs(weight[None], grad[None], coef)
        peak, seconds = profile_call(
            functools.partial(hard_collision, weight, grad, coef, generator=gen)
        )
        row: dict[str, Any] = {
            "N": n,
            "d": d,
            "coll_coef": coef,
            "accepted_pairs": accepted,
            "pairs": pairs,
            "time_s": seconds,
            "peak_bytes": peak,
            "budget_mb": cfg.memory_budget_mb,
            "naive_directions_bytes": accepted * d * 4,
        }
        if cfg.rss_check and coef == max(cfg.hard_all_coefs):
            row["rss_peak_bytes"] = rss_peak_extra_bytes(f"hard:{n}:{d}:{coef}", cfg.threads)
        rows.append(row)
        print(
            f"[hard-all] coef {coef}: {accepted}/{pairs} pairs, "
            f"{seconds:.2f} s, {peak / MB:.1f} MB",
            flush=True,
        )
    return rows
