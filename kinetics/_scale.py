"""Bringing DSMC inputs into a safe scale before the pair selection (see :mod:`kinetics.dsmc`).

The selection's distances come from Gram matrices, whose squares overflow or lose resolution far
from 1 (float32 gradients of 1e19 or 1e-30). :func:`make_safe` rescales such systems by powers of
two (exact) and zeroes non-finite ones; in range it returns its inputs untouched.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["SafeInputs", "make_safe"]


def _exponent_range(dtype: torch.dtype) -> tuple[int, int]:
    """Binary exponents ``e`` (``a = m 2^e``, 0.5 <= m < 1) of the smallest normal and the largest
    finite number of ``dtype``."""
    info = torch.finfo(dtype)
    return math.frexp(info.tiny)[1], math.frexp(info.max)[1]


def _safe_range(dtype: torch.dtype) -> tuple[float, float]:
    """Max-abs values of a system for which its Gram matrices neither overflow nor lose the
    relative resolution of ``dtype`` to underflow: ``[2^(emin / 3), 2^(emax / 3)]`` (float32:
    about [2e-13, 4e12]; squared distances then stay below 2^86 (4 d) and above 2^-84)."""
    emin, emax = _exponent_range(dtype)
    return 2.0 ** (emin // 3), 2.0 ** (emax // 3)


def _power_of_two(amax: Tensor, finite: Tensor) -> tuple[Tensor, Tensor]:
    """Per-system binary exponents ``e`` with ``amax * 2^-e`` in [0.5, 1) (0 for zero or
    non-finite systems), clamped so that ``2^-e`` is representable, and the scales ``2^-e``."""
    emin, emax = _exponent_range(amax.dtype)
    exponent = torch.frexp(torch.where(finite, amax, torch.zeros_like(amax))).exponent
    exponent = exponent.clamp_(emin, emax)
    return exponent, torch.ldexp(torch.ones_like(amax), exponent.neg())


def _max_abs(t: Tensor) -> Tensor:
    """Max-abs per system of (S, N, d), NaN where a system holds a NaN. max(amax, -amin): two
    vectorised reductions, no abs copy (~5x faster than vector_norm(ord=inf) on CPU)."""
    return torch.maximum(t.amax(dim=(-2, -1)), t.amin(dim=(-2, -1)).neg_())


class SafeInputs(NamedTuple):
    """Inputs of the selection brought into a safe scale (see :func:`make_safe`)."""

    x: Tensor
    """Positions for the selection: non-finite systems zeroed, rescaled if ``x_factor``."""
    v: Tensor
    """Velocities for the selection: non-finite systems zeroed, rescaled if ``v_scale``."""
    x_factor: Tensor | None
    """(S,) ``-2^e / mean_free_path``: the selection's ``-x_r / mfp`` is ``sqrt(D_x) * x_factor``
    of the rescaled positions' squared distances ``D_x``. None: positions not rescaled."""
    v_scale: Tensor | None
    """(S,) powers of two the velocities were multiplied by (1 for non-finite systems); None:
    not rescaled."""
    nonfinite: Tensor | None
    """(S,) bool, systems with a NaN or Inf in x or v; None if there is none."""


@torch.no_grad()
def make_safe(x: Tensor, v: Tensor, mean_free_path: float) -> SafeInputs:
    """Systems (S, N, d) brought into a range where the Gram-matrix distances are exact enough.

    One max-abs pass per tensor. When every system is finite and its max-abs lies in
    :func:`_safe_range` (or is 0), ``x`` and ``v`` are returned as they are: the ordinary path,
    no extra work. Otherwise:

    * velocities of every system are multiplied by a power of two bringing their max-abs into
      [0.5, 1). The selection compares ``v_r`` with ``(1 - c) max v_r`` of the same system, so it
      is invariant to this scaling; a power of two is exact, so in-range systems get bitwise the
      decisions they would get unscaled, and out-of-range ones those of exact arithmetic.
    * positions the same, but their scale is not a symmetry (``exp(-x_r / mfp)``): the scaled
      distance is multiplied back by ``2^e / mfp`` inside the score (overflow reads as an infinite
      distance, i.e. a factor 0: what exact arithmetic gives in float32).
    * systems with a NaN or Inf in x or v are zeroed for the selection: they accept no pair.
    """
    if x.numel() == 0:
        return SafeInputs(x, v, None, None, None)
    amax_x, amax_v = _max_abs(x), _max_abs(v)
    low, high = _safe_range(x.dtype)
    # Fast check (few tiny ops, one host sync): every max-abs in range or 0. NaN propagates
    # through aminmax and fails the comparison, as does Inf.
    both = torch.stack([amax_x, amax_v])
    smallest, largest = torch.aminmax(both.masked_fill_(both == 0, 1.0))
    if low <= smallest.item() and largest.item() <= high:
        return SafeInputs(x, v, None, None, None)
    finite = torch.isfinite(amax_x).logical_and_(torch.isfinite(amax_v))

    def outside(amax: Tensor) -> Tensor:
        return ((amax > high) | ((amax < low) & (amax > 0))).logical_and_(finite)

    flags = torch.stack([~finite.all(), outside(amax_x).any(), outside(amax_v).any()])
    any_nonfinite, rescale_x, rescale_v = flags.tolist()  # one host sync
    if not (any_nonfinite or rescale_x or rescale_v):
        return SafeInputs(x, v, None, None, None)
    nonfinite = ~finite if any_nonfinite else None
    if any_nonfinite:
        keep = finite.view(-1, 1, 1)
        x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        v = torch.where(keep, v, torch.zeros((), dtype=v.dtype, device=v.device))
    x_factor = v_scale = None
    if rescale_x:
        exponent, scale = _power_of_two(amax_x, finite)
        x = x * scale.view(-1, 1, 1)
        factor = torch.ldexp(torch.ones_like(amax_x, dtype=torch.float64), exponent)
        factor = factor.div_(-mean_free_path).clamp_min_(-torch.finfo(x.dtype).max)
        x_factor = factor.to(x.dtype)
    if rescale_v:
        _, v_scale = _power_of_two(amax_v, finite)
        v = v * v_scale.view(-1, 1, 1)
    return SafeInputs(x, v, x_factor, v_scale, nonfinite)
