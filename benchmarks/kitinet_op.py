"""Section 2: the KITINet collision per token at GPT-2 shape.

Systems (S, D) = ``Config.kitinet_shape`` (GPT-2 small: B*T = 8*256 tokens of D = 768 features),
for each number of collision heads and two input regimes (:func:`regime_inputs`):

* ``gpt2``: x ~ N(0, 1) per feature (a residual stream), v ~ N(0, 0.5^2) (a block's output): the
  particles are far apart, so collisions are rare or absent;
* ``dense``: x ~ N(0, s^2), s = spread / sqrt(2 heads) (typical particle distance ~ spread),
  v ~ N(0, 1): a real fraction of the pairs collides.

Measured in one interleaved run per pass (forward; forward+backward; every round in its own random
order), every ratio paired per round:

* ``kitinet_collision_with_rate`` against the plain residual ``x + v`` (time and peak extra memory);
* forward only, against the floor of the selection's own arithmetic (:func:`floor_fn`): two
  batched Gram matmuls (S, N, d+2) x (S, d+2, N), 2 S N^2 (d+2) FLOPs each, and one exp per
  candidate pair, S N (N-1) / 2;
* the counter-based direction stream (:mod:`kinetics.streams`) against the sequential generator
  it replaced (:func:`randn_directions`): the same op with only the direction source swapped.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.measure import MB, accepted_pairs, paired_ratio, summary, time_interleaved
from benchmarks.memory import peak_extra_bytes

__all__ = [
    "REGIMES",
    "bench_kitinet",
    "floor_flops",
    "floor_fn",
    "randn_directions",
    "regime_inputs",
]

REGIMES = ("gpt2", "dense")
PASSES = ("forward", "forward+backward")


def regime_inputs(
    cfg: Config, regime: str, heads: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaf tensors x, v (S, D) of one input regime (see the module docstring)."""
    s, dim = cfg.kitinet_shape
    if regime == "gpt2":
        x_std, v_std = cfg.kitinet_gpt2_std
    elif regime == "dense":
        x_std, v_std = cfg.kitinet_spread / math.sqrt(2 * heads), 1.0
    else:
        raise ValueError(f"unknown regime {regime!r}")
    x = torch.randn(s, dim, generator=gen).mul_(x_std).requires_grad_()
    v = torch.randn(s, dim, generator=gen).mul_(v_std).requires_grad_()
    return x, v


def regime_coef(cfg: Config, regime: str) -> float:
    """The coll_coef the benchmark uses in ``regime``."""
    return cfg.kitinet_gpt2_coef if regime == "gpt2" else cfg.kitinet_dense_coef


def floor_flops(s: int, n: int, d: int) -> tuple[int, int]:
    """(matmul FLOPs, exps) of the selection's floor: two Gram matmuls of S systems of N
    particles over d + 2 augmented columns, one exp per candidate pair."""
    return 2 * (2 * s * n * n * (d + 2)), s * n * (n - 1) // 2


def floor_fn(s: int, n: int, d: int, gen: torch.Generator) -> Callable[[], None]:
    """The floor of the selection's arithmetic as one call: ``torch.bmm`` of (S, N, d+2) x
    (S, d+2, N) twice (positions, velocities) and ``torch.exp`` on S N (N-1) / 2 floats, into
    preallocated outputs (the floor counts arithmetic, not allocation)."""
    left = [torch.randn(s, n, d + 2, generator=gen) for _ in range(2)]
    right = [torch.randn(s, d + 2, n, generator=gen) for _ in range(2)]
    grams = [torch.empty(s, n, n) for _ in range(2)]
    scores = torch.randn(s * n * (n - 1) // 2, generator=gen).mul_(0.1)
    exps = torch.empty_like(scores)

    def call() -> None:
        for a, b, out in zip(left, right, grams, strict=True):
            torch.bmm(a, b, out=out)
        torch.exp(scores, out=exps)

    return call


@contextlib.contextmanager
def randn_directions() -> Iterator[None]:
    """While active, accepted pairs take their directions from a sequential generator, the way
    the op drew them before the counter-based streams: ``torch.randn(stop - start, d)`` per chunk
    of pairs, normalised as before (``inv_norm = 1 / |z|`` clamped). Everything else in the op is
    unchanged, so timing the op inside and outside this context isolates the cost of the
    direction source.

    A timing stand-in, not a correctness reference: the op builds a ``_Directions`` per call in
    forward and again in backward (which recomputes the directions instead of saving them), so
    each instance gets its own generator seeded from the stream key; forward and backward walk
    the same chunks in the same order and so draw the same numbers, as the old code did by
    replaying a saved generator state.
    """
    from kinetics import _pairs

    original = _pairs._Directions.block

    def block(
        self: Any, flat: torch.Tensor, start: int, stop: int, d: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.given is not None:
            return original(self, flat, start, stop, d)
        gen = self.__dict__.get("_bench_randn")
        if gen is None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(self.key[0] | (self.key[1] << 32))
            self._bench_randn = gen
        z = torch.randn(stop - start, d, generator=gen, dtype=self.dtype, device=self.device)
        tiny = torch.finfo(self.dtype).tiny
        inv_norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min_(tiny)
        return z, inv_norm.reciprocal_()

    _pairs._Directions.block = block  # type: ignore[method-assign]
    try:
        yield
    finally:
        _pairs._Directions.block = original  # type: ignore[method-assign]


class _Cases:
    """The timed callables of one pass: ``plain``, ``floor h<H>`` (forward only) and, per regime
    and heads, ``<regime> h<H>`` (counter-based stream) and ``<regime> h<H> randn``."""

    def __init__(self, cfg: Config) -> None:
        from kinetics.kitinet import kitinet_collision_with_rate

        self.op = kitinet_collision_with_rate
        s, dim = cfg.kitinet_shape
        gen = torch.Generator().manual_seed(0)
        self.inputs = {
            (regime, h): regime_inputs(cfg, regime, h, gen)
            for regime in REGIMES
            for h in cfg.kitinet_heads
        }
        self.coefs = {regime: regime_coef(cfg, regime) for regime in REGIMES}
        self.plain_inputs = self.inputs[(REGIMES[0], cfg.kitinet_heads[0])]
        self.grad_out = torch.randn(s, dim, generator=gen)
        self.floors = {
            h: floor_fn(s, dim // h, h, torch.Generator().manual_seed(2)) for h in cfg.kitinet_heads
        }
        self.leaves = [t for pair in self.inputs.values() for t in pair]

    def forward(self, regime: str, heads: int, randn: bool = False) -> torch.Tensor:
        x, v = self.inputs[(regime, heads)]
        with randn_directions() if randn else contextlib.nullcontext():
            out, _ = self.op(x, v, collision_heads=heads, coll_coef=self.coefs[regime])
        return out

    def forward_backward(self, regime: str, heads: int, randn: bool = False) -> None:
        self.clear_grads()
        with randn_directions() if randn else contextlib.nullcontext():
            self.forward(regime, heads).backward(self.grad_out)

    def plain(self, backward: bool) -> torch.Tensor | None:
        x, v = self.plain_inputs
        if not backward:
            return x + v
        self.clear_grads()
        (x + v).backward(self.grad_out)
        return None

    def clear_grads(self) -> None:
        for leaf in self.leaves:
            leaf.grad = None

    def rate(self, regime: str, heads: int) -> tuple[float, int, int]:
        """(collision rate the op reports, accepted pairs, candidate pairs) on these inputs."""
        x, v = self.inputs[(regime, heads)]
        coef = self.coefs[regime]
        with torch.no_grad():
            _, rate = self.op(x, v, collision_heads=heads, coll_coef=coef)
            n = x.shape[1] // heads
            particles = [t.reshape(t.shape[0], heads, n).transpose(1, 2) for t in (x, v)]
            accepted, pairs = accepted_pairs(*particles, coef)
        return float(rate), accepted, pairs

    def fns(self, pass_: str, heads: tuple[int, ...]) -> dict[str, Callable[[], object]]:
        backward = pass_ == "forward+backward"
        run = self.forward_backward if backward else self.forward
        fns: dict[str, Callable[[], object]] = {"plain": functools.partial(self.plain, backward)}
        if not backward:
            fns.update({f"floor h{h}": self.floors[h] for h in heads})
        for regime in REGIMES:
            for h in heads:
                fns[f"{regime} h{h}"] = functools.partial(run, regime, h)
                fns[f"{regime} h{h} randn"] = functools.partial(run, regime, h, True)
        return fns


def bench_kitinet(cfg: Config) -> dict[str, Any]:
    """KITINet at GPT-2 shape: time and memory against x + v, the selection's floor and the
    sequential generator, per regime and collision heads (see the module docstring)."""
    cases = _Cases(cfg)
    s, dim = cfg.kitinet_shape
    record: dict[str, Any] = {
        "S": s,
        "D": dim,
        "heads": list(cfg.kitinet_heads),
        "regimes": {
            "gpt2": {
                "coll_coef": cases.coefs["gpt2"],
                "x_std": cfg.kitinet_gpt2_std[0],
                "v_std": cfg.kitinet_gpt2_std[1],
            },
            "dense": {
                "coll_coef": cases.coefs["dense"],
                "x_std": {h: cfg.kitinet_spread / math.sqrt(2 * h) for h in cfg.kitinet_heads},
                "v_std": 1.0,
                "spread": cfg.kitinet_spread,
            },
        },
        "stream_target": cfg.kitinet_stream_target,
        "repeats": cfg.kitinet_repeats,
        "plain": {},
        "floor": {},
        "rows": [],
    }
    rates = {(r, h): cases.rate(r, h) for r in REGIMES for h in cfg.kitinet_heads}
    for pass_ in PASSES:
        fns = cases.fns(pass_, cfg.kitinet_heads)
        # Shuffled rounds: with a fixed cyclic order each variant always follows the same one,
        # and a small call after a heavy one ran ~10% slower (seen on the no-pair rows, whose
        # two variants run identical code).
        samples = time_interleaved(
            fns,
            repeats=cfg.kitinet_repeats,
            warmup=1,
            sample_seconds=cfg.sample_seconds,
            shuffle=True,
        )
        peaks = {name: peak_extra_bytes(fn) for name, fn in fns.items()}
        cases.clear_grads()
        record["plain"][pass_] = {"time_s": summary(samples["plain"]), "peak_bytes": peaks["plain"]}
        if pass_ == "forward":
            for h in cfg.kitinet_heads:
                flops, exps = floor_flops(s, dim // h, h)
                name = f"floor h{h}"
                record["floor"][str(h)] = {
                    "N": dim // h,
                    "d": h,
                    "matmul_flops": flops,
                    "exps": exps,
                    "time_s": summary(samples[name]),
                    "time_ratio_to_plain": paired_ratio(samples[name], samples["plain"]),
                    "peak_bytes": peaks[name],
                }
        for regime in REGIMES:
            for h in cfg.kitinet_heads:
                name = f"{regime} h{h}"
                rate, accepted, pairs = rates[(regime, h)]
                ratio = paired_ratio(samples[name], samples[f"{name} randn"])
                row: dict[str, Any] = {
                    "regime": regime,
                    "collision_heads": h,
                    "N": dim // h,
                    "pass": pass_,
                    "coll_coef": cases.coefs[regime],
                    "collision_rate": rate,
                    "accepted_pairs": accepted,
                    "pairs": pairs,
                    "time_s": summary(samples[name]),
                    "time_ratio_to_plain": paired_ratio(samples[name], samples["plain"]),
                    "peak_bytes": peaks[name],
                    "randn_time_s": summary(samples[f"{name} randn"]),
                    "randn_peak_bytes": peaks[f"{name} randn"],
                    "stream_ratio_to_randn": ratio,
                    "stream_within_target": ratio["median"] <= cfg.kitinet_stream_target,
                }
                if pass_ == "forward":
                    row["time_ratio_to_floor"] = paired_ratio(samples[name], samples[f"floor h{h}"])
                record["rows"].append(row)
                floor = row.get("time_ratio_to_floor", {}).get("median", math.nan)
                print(
                    f"[kitinet] {pass_} {name} (rate {rate:.3%}): "
                    f"{row['time_s']['median'] * 1e3:.1f} ms, "
                    f"x{row['time_ratio_to_plain']['median']:.1f} of x+v, x{floor:.1f} of floor, "
                    f"stream/randn {ratio['median']:.3f}, {peaks[name] / MB:.1f} MB",
                    flush=True,
                )
    return record
