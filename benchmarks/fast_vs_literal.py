"""Section 1: KO soft / hard collision, fast (``kinetics``) against paper-literal.

The literal functions (:mod:`benchmarks.literal`) materialise dense ``(N, N, d)`` tensors; sizes
whose estimated literal peak exceeds ``Config.literal_limit_bytes`` time the fast code alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.literal import hard_collision_literal, literal_peak_bytes, soft_collision_literal
from benchmarks.measure import MB, accepted_pairs, paired_ratio, summary, time_interleaved
from benchmarks.memory import peak_extra_bytes

__all__ = ["bench_collisions", "collision_inputs"]


def collision_inputs(n: int, d: int, distance: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Weight rows ~ N(0, s^2) with typical pair distance ``distance``; gradient rows N(0, 1)
    with log-normal row scales (real gradient rows differ in size, which spreads relative speeds).
    """
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, d, generator=gen) * (distance / math.sqrt(2 * d))
    scales = torch.exp(0.5 * torch.randn(n, 1, generator=gen))
    grad = torch.randn(n, d, generator=gen) * scales
    return weight, grad


def bench_collisions(cfg: Config) -> list[dict[str, Any]]:
    """Fast vs literal soft and hard collision: median time and peak extra memory per size."""
    rows = []
    for n, d in cfg.collision_sizes:
        weight, grad = collision_inputs(n, d, cfg.collision_distance)
        accepted, pairs = accepted_pairs(weight[None], grad[None], cfg.collision_coef)
        coef = cfg.collision_coef
        variants = _collision_variants(weight, grad, coef, torch.Generator().manual_seed(1))
        for kind, fns in variants.items():
            estimate = literal_peak_bytes(kind, n, d)
            row: dict[str, Any] = {
                "kind": kind,
                "N": n,
                "d": d,
                "coll_coef": coef,
                "accepted_pairs": accepted if kind == "hard" else None,
                "pairs": pairs,
                "literal_estimated_bytes": estimate,
                "note": "",
            }
            if estimate > cfg.literal_limit_bytes:
                fns = {"fast": fns["fast"]}
                row["note"] = (
                    f"literal skipped: needs ~{estimate / 2**30:.0f} GB "
                    f"(> {cfg.literal_limit_bytes / 2**30:.0f} GB limit)"
                )
            samples = time_interleaved(
                fns, repeats=cfg.repeats, warmup=cfg.warmup, sample_seconds=cfg.sample_seconds
            )
            row["time_s"] = {name: summary(values) for name, values in samples.items()}
            row["peak_bytes"] = {name: peak_extra_bytes(fn) for name, fn in fns.items()}
            if "literal" in fns:
                row["speedup"] = paired_ratio(samples["literal"], samples["fast"])
                row["memory_ratio"] = row["peak_bytes"]["literal"] / max(
                    row["peak_bytes"]["fast"], 1
                )
            rows.append(row)
            print(f"[collision] {kind} N={n} d={d}: {_fmt_row(row)}", flush=True)
    return rows


def _collision_variants(
    weight: torch.Tensor, grad: torch.Tensor, coef: float, gen: torch.Generator
) -> dict[str, dict[str, Callable[[], object]]]:
    """{kind: {"fast" | "literal": call}} on fixed inputs."""
    from kinetics import hard_collision, soft_collision

    return {
        "soft": {
            "fast": lambda: soft_collision(weight, grad, coef),
            "literal": lambda: soft_collision_literal(weight, grad, coef),
        },
        "hard": {
            "fast": lambda: hard_collision(weight, grad, coef, generator=gen),
            "literal": lambda: hard_collision_literal(weight, grad, coef, generator=gen),
        },
    }


def _fmt_row(row: dict[str, Any]) -> str:
    parts = [f"{k} {v['median'] * 1e3:.3f} ms" for k, v in row["time_s"].items()]
    parts += [f"{k} {v / MB:.2f} MB" for k, v in row["peak_bytes"].items()]
    if "speedup" in row:
        parts.append(f"speedup x{row['speedup']['median']:.1f}")
    return ", ".join(parts)
