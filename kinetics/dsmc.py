"""One DSMC hard-sphere collision step between particles (SPEC §1.1).

This is the kernel shared by KO's hard collision (particles = neurons: weight rows are positions,
gradient rows are velocities) and KITINet (particles cut from a feature vector).

A batch of ``S`` independent systems, each of ``N`` particles in ``d`` dimensions, is processed at once:

* selection: ``score[i, j] = v_r[i, j] * exp(-x_r[i, j] / mean_free_path) / max_{a<b} v_r[a, b]``;
  the pair ``i < j`` collides iff ``score > 1 - coll_coef`` (deterministic threshold, KO Eq. 7);
* every accepted pair acts at once: particle ``i`` receives
  ``sum_j A_ij [(v_j - v_i) / 2 + v_r[i, j] n_ij / 2]`` with ``n_ij`` uniform on the unit sphere and
  ``n_ji = -n_ij``, which conserves total momentum exactly;
* optional position update (KITINet Eq. 5): ``x*_i = (x_i + sum_j A_ij (x_i + x_j) / 2) / (1 + k_i)``.

Cost and memory (SPEC §5): pairwise distances come from one Gram matmul per system, never from an
``(N, N, d)`` difference tensor. Random directions exist only for accepted pairs and are drawn in
chunks of bounded size, so peak memory does not grow with the number of accepted pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "DSMCResult",
    "collide",
    "collision_mask",
    "pairwise_distances",
]

# Elements (pairs x dims) of random directions materialised at once. 2**20 float32 = 4 MiB per buffer.
_CHUNK_ELEMENTS = 1 << 20


class DSMCResult(NamedTuple):
    """Outcome of :func:`collide` for a batch of ``S`` systems of ``N`` particles in ``d`` dims."""

    v_new: Tensor
    """Post-collision velocities, shape (S, N, d)."""
    x_new: Tensor | None
    """Post-collision positions x* (S, N, d) when ``position_update`` was requested, else None."""
    accepted: Tensor
    """Boolean (S, N, N) mask of accepted pairs, upper triangle only (i < j)."""
    num_accepted: Tensor
    """Accepted pairs per system, int64 of shape (S,)."""
    num_pairs: int
    """Candidate pairs per system, N (N - 1) / 2."""

    @property
    def collision_rate(self) -> Tensor:
        """Accepted / candidate pairs over the whole batch, a float32 scalar tensor (0 if N < 2)."""
        total = self.num_pairs * self.num_accepted.numel()
        if total == 0:
            return torch.zeros((), dtype=torch.float32, device=self.num_accepted.device)
        return self.num_accepted.sum().to(torch.float32) / total


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half types lose the selection threshold and the sphere normalisation; work in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def pairwise_distances(points: Tensor) -> Tensor:
    """Euclidean distance matrices of ``points`` (S, N, d) -> (S, N, N) via one Gram matmul.

    Points are centred per system first: distances are translation invariant and centring removes
    most of the cancellation error of ``|a|^2 + |b|^2 - 2 a.b`` for clustered points. That formula's
    rounding error is of order ``eps sqrt(d) (|a|^2 + |b|^2)`` (``a, b`` the centred points), so we
    compute ``max(0, (1 - tol)(|a|^2 + |b|^2) - 2 a.b)`` with ``tol = 16 eps sqrt(d)``: the squared
    distance lowered by a bound on its own rounding noise. The diagonal and identical points are
    then exactly zero and no entry is negative. The price: distances shorter than about
    ``sqrt(tol)`` times the points' spread around their centroid read as 0 (float32, d = 2048: ~1 %;
    float64: ~1e-7). This changes acceptance only for pairs on the threshold's edge (e.g. at
    coll_coef = 1 a pair with a relative speed below that resolution is not accepted) and never
    the conservation laws.
    """
    centred = points - points.mean(dim=-2, keepdim=True)
    tol = 16.0 * torch.finfo(points.dtype).eps * points.shape[-1] ** 0.5
    shrunk_sq_norms = (1.0 - tol) * centred.square().sum(dim=-1)
    # One (S, N, N) buffer, built in place: memory traffic, not flops, is the cost here.
    sq_dist = torch.baddbmm(
        shrunk_sq_norms.unsqueeze(-1), centred, centred.transpose(-1, -2), alpha=-2.0
    )
    sq_dist.add_(shrunk_sq_norms.unsqueeze(-2)).clamp_min_(0.0)
    return sq_dist.sqrt_()


def collision_mask(x: Tensor, v: Tensor, coll_coef: float, mean_free_path: float = 1.0) -> Tensor:
    """Accepted pairs of SPEC §1.1 as a boolean (S, N, N) mask, upper triangle (i < j) only.

    Systems whose velocities are all equal (max relative speed 0) accept nothing.
    """
    _check_coef(coll_coef, mean_free_path)
    n = x.shape[-2]
    if coll_coef == 0.0 or n < 2:
        return torch.zeros((*x.shape[:-2], n, n), dtype=torch.bool, device=x.device)
    with torch.no_grad():
        v_rel = pairwise_distances(v)
        v_max = v_rel.amax(dim=(-2, -1), keepdim=True)
        # score > 1 - c  <=>  v_r exp(-x_r / mfp) > (1 - c) v_max; no division, so v_max = 0 is safe.
        score = pairwise_distances(x).mul_(-1.0 / mean_free_path).exp_().mul_(v_rel)
        del v_rel
        accepted = score > (1.0 - coll_coef) * v_max
        accepted.logical_and_(v_max > 0)
        return accepted.triu_(diagonal=1)


def _check_coef(coll_coef: float, mean_free_path: float) -> None:
    if not 0.0 <= float(coll_coef) <= 1.0:
        raise ValueError(f"coll_coef={coll_coef} is outside [0, 1]")
    if not float(mean_free_path) > 0.0:
        raise ValueError(f"mean_free_path={mean_free_path} must be > 0")


def collide(
    x: Tensor,
    v: Tensor,
    coll_coef: float,
    *,
    mean_free_path: float = 1.0,
    generator: torch.Generator | None = None,
    position_update: bool = False,
    directions: Tensor | None = None,
    accepted: Tensor | None = None,
) -> DSMCResult:
    """One collision step for a batch of systems (SPEC §1.1, KITINet Eqs. 2-5, KO Eqs. 5-8).

    Args:
        x: positions, (S, N, d).
        v: velocities, (S, N, d), same dtype and device as ``x``.
        coll_coef: in [0, 1]; 0 means no collision, 1 accepts every pair with positive score.
        mean_free_path: length scale of the locality factor exp(-x_r / mean_free_path); > 0.
        generator: source of the random directions (default: torch's global generator).
        position_update: also return x* (KITINet Eq. 5); otherwise ``x_new`` is None.
        directions: optional (K, d) unit vectors for the K accepted pairs in row-major order of
            (system, i, j), i < j, used instead of drawing (for exact tests against a reference).
        accepted: optional precomputed :func:`collision_mask` of these inputs (saves recomputing it).

    Returns:
        :class:`DSMCResult`. Gradients flow through ``v_new``/``x_new`` to ``x`` and ``v`` (including the
        relative speed in the random term); the acceptance mask and directions are constants.
        Half-precision inputs are computed in float32 and returned in their own dtype.
    """
    if x.dim() != 3 or x.shape != v.shape:
        raise ValueError(
            f"x and v must both have shape (S, N, d); got {tuple(x.shape)} and {tuple(v.shape)}"
        )
    out_dtype = v.dtype
    work = _compute_dtype(out_dtype)
    xw, vw = x.to(work), v.to(work)
    _, n, d = vw.shape

    if accepted is None:
        accepted = collision_mask(xw, vw, coll_coef, mean_free_path)
    num_accepted = accepted.sum(dim=(-2, -1))
    num_pairs = n * (n - 1) // 2

    # Flat indices s*N*N + i*N + j of the K accepted pairs, in row-major (s, i, j) order: K ints.
    pairs = accepted.reshape(-1).nonzero().squeeze(-1)
    if pairs.shape[0] == 0:
        if directions is not None and directions.shape[0] != 0:
            raise ValueError(f"directions has {directions.shape[0]} rows but no pair collided")
        x_new = x if position_update else None
        return DSMCResult(v, x_new, accepted, num_accepted, num_pairs)
    if directions is not None and tuple(directions.shape) != (pairs.shape[0], d):
        raise ValueError(
            f"directions must have shape ({pairs.shape[0]}, {d}) for the accepted pairs, "
            f"got {tuple(directions.shape)}"
        )

    adjacency = accepted.to(work)
    adjacency = adjacency + adjacency.transpose(-1, -2)  # symmetric A_ij
    degree = adjacency.sum(dim=-1, keepdim=True)  # k_i

    # Mean part: sum_j A_ij (v_j - v_i) / 2, as one matmul.
    dv = 0.5 * (adjacency @ vw - degree * vw)
    dv = dv + _random_kicks(vw, pairs, generator, directions)
    v_new = (vw + dv).to(out_dtype)

    x_new = None
    if position_update:
        # x*_i = (x_i + sum_j A_ij (x_i + x_j) / 2) / (1 + k_i)
        x_star = ((1.0 + 0.5 * degree) * xw + 0.5 * (adjacency @ xw)) / (1.0 + degree)
        x_new = x_star.to(x.dtype)
    return DSMCResult(v_new, x_new, accepted, num_accepted, num_pairs)


_TINY = {dt: torch.finfo(dt).tiny for dt in (torch.float32, torch.float64)}


def _dev(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return generator.device if generator is not None else like.device


def _random_kicks(
    v: Tensor, pairs: Tensor, generator: torch.Generator | None, directions: Tensor | None
) -> Tensor:
    """sum_j A_ij v_r[i, j] n_ij / 2 for every particle, accumulated chunk by chunk over the pairs."""
    n_sys, n, d = v.shape
    flat_v = v.reshape(n_sys * n, d)
    out = torch.zeros_like(flat_v)
    chunk = max(1, _CHUNK_ELEMENTS // max(d, 1))
    for start in range(0, pairs.shape[0], chunk):
        flat = pairs[start : start + chunk]
        ii = flat // n  # row of particle i in (S*N, d): s*N + i
        jj = (flat // (n * n)) * n + flat % n  # row of particle j: s*N + j
        # Exact relative speed of accepted pairs (no Gram cancellation); differentiable.
        half_v_rel = 0.5 * torch.linalg.vector_norm(flat_v[ii] - flat_v[jj], dim=-1, keepdim=True)
        if directions is None:
            # n_ij = z / |z| with z Gaussian; the normalisation is folded into the kick's scale.
            z = torch.randn(
                ii.shape[0], d, generator=generator, dtype=v.dtype, device=_dev(generator, v)
            )
            z_norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min_(_TINY[v.dtype])
            kick = z.to(v.device).mul_(half_v_rel / z_norm.to(v.device))
        else:
            kick = directions[start : start + chunk].to(device=v.device, dtype=v.dtype) * half_v_rel
        out.index_add_(0, ii, kick).index_add_(0, jj, kick, alpha=-1.0)
    return out.reshape(n_sys, n, d)
