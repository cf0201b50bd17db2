"""Section 2: ``kitinet_collision`` against the plain residual ``x + v``.

Forward and forward+backward time (interleaved, ratio to ``x + v``) and peak extra memory at
(S, D) = ``Config.kitinet_shape`` for each number of collision heads.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.measure import MB, accepted_pairs, paired_ratio, summary, time_interleaved
from benchmarks.memory import peak_extra_bytes

__all__ = ["bench_kitinet"]


def bench_kitinet(cfg: Config) -> list[dict[str, Any]]:
    """kitinet_collision vs x + v at (S, D): forward and forward+backward time and peak memory."""
    from kinetics import kitinet_collision

    s, dim = cfg.kitinet_shape
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(s, dim, generator=gen).requires_grad_()
    xs = {
        h: (torch.randn(s, dim, generator=gen) * (cfg.kitinet_spread / math.sqrt(2 * h)))
        .detach()
        .requires_grad_()
        for h in cfg.kitinet_heads
    }
    grad_out = torch.randn(s, dim, generator=gen)
    x_plain = xs[cfg.kitinet_heads[0]]

    def forward(name: str) -> torch.Tensor:
        if name == "plain":
            return x_plain + v
        h = int(name[1:])
        return kitinet_collision(xs[h], v, collision_heads=h, coll_coef=cfg.kitinet_coef)

    def fwd_bwd(name: str) -> None:
        for leaf in (v, *xs.values()):
            leaf.grad = None
        forward(name).backward(grad_out)

    names = ["plain", *(f"h{h}" for h in cfg.kitinet_heads)]
    rows = []
    for label, runner in (("forward", forward), ("forward+backward", fwd_bwd)):
        fns = {name: functools.partial(runner, name) for name in names}
        samples = time_interleaved(
            fns, repeats=cfg.kitinet_repeats, warmup=1, sample_seconds=cfg.sample_seconds
        )
        for name in names:
            peak = peak_extra_bytes(fns[name])
            row: dict[str, Any] = {
                "variant": name,
                "pass": label,
                "S": s,
                "D": dim,
                "time_s": summary(samples[name]),
                "time_ratio_to_plain": paired_ratio(samples[name], samples["plain"]),
                "peak_bytes": peak,
            }
            if name != "plain":
                h = int(name[1:])
                n = dim // h
                with torch.no_grad():
                    x3 = xs[h].reshape(s, h, n).transpose(1, 2)
                    v3 = v.reshape(s, h, n).transpose(1, 2)
                    accepted, pairs = accepted_pairs(x3, v3, cfg.kitinet_coef)
                row.update(collision_heads=h, N=n, accepted_pairs=accepted, pairs=pairs)
            rows.append(row)
            print(
                f"[kitinet] {label} {name}: {row['time_s']['median'] * 1e3:.1f} ms, "
                f"x{row['time_ratio_to_plain']['median']:.1f} of plain, {peak / MB:.1f} MB",
                flush=True,
            )
        for leaf in (v, *xs.values()):
            leaf.grad = None
    return rows
