"""Deliberately naive, paper-literal versions of the kinetics equations: the tests' ground truth.

Everything here is written straight from the formulas (SPEC §1, KO Eqs. 5-8 and Algorithm 2,
KITINet Eqs. 2-5 and Algorithm 1) with explicit Python loops over particles and pairs ``i < j``.
Nothing is vectorised, chunked or clever: speed is irrelevant, readability against the papers is
the point. The functions use only differentiable torch scalar ops, so gradients of the literal
versions can be compared with gradients of the fast code too.

Random directions are never drawn here: callers pass ``directions`` (K, d), consumed one row per
accepted pair in row-major order of (system, i, j) with i < j, the convention of the ``directions=``
hook of :func:`kinetics.dsmc.collide`. ``n_ij`` is that row and ``n_ji = -n_ij``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LiteralCollision",
    "literal_collide",
    "literal_cosine",
    "literal_kitinet",
    "literal_kitinet_masks",
    "literal_mask",
    "literal_soft_collision",
]


def _norm(a: Tensor) -> Tensor:
    """Euclidean norm as the textbook formula sqrt(sum_k a_k^2)."""
    return torch.sqrt(sum(a[k] * a[k] for k in range(a.shape[0])))


def literal_cosine(a: Tensor, b: Tensor) -> float:
    """cos(a, b) = a.b / (|a| |b|), and 0 when either vector is zero (SPEC §1.2)."""
    na = math.sqrt(sum(float(a[k]) ** 2 for k in range(a.shape[0])))
    nb = math.sqrt(sum(float(b[k]) ** 2 for k in range(b.shape[0])))
    if na == 0.0 or nb == 0.0:
        return 0.0
    dot = sum(float(a[k]) * float(b[k]) for k in range(a.shape[0]))
    return dot / (na * nb)


def literal_soft_collision(
    w: Tensor, g: Tensor, coll_coef: float, exclude_self: bool = False
) -> Tensor:
    """KO Algorithm 2 on the rows of ``w`` / ``g`` viewed as (out, -1): g + c * (-(C_w ∘ C_g) g).

    Row ``i`` of the result is ``g_i - c * sum_j C_w[i, j] C_g[i, j] g_j``; the sum skips ``j == i``
    when ``exclude_self`` (the pairwise form of KO App. A Eq. 12).
    """
    n = w.shape[0]
    rows_w = w.detach().reshape(n, -1).double()
    rows_g = g.detach().reshape(n, -1).double()
    out = rows_g.clone()
    for i in range(n):
        for j in range(n):
            if exclude_self and i == j:
                continue
            coupling = literal_cosine(rows_w[i], rows_w[j]) * literal_cosine(rows_g[i], rows_g[j])
            out[i] = out[i] - coll_coef * coupling * rows_g[j]
    return out.reshape(g.shape).to(g.dtype)


def literal_mask(x: Tensor, v: Tensor, coll_coef: float, mean_free_path: float = 1.0) -> Tensor:
    """Accepted pairs (N, N) bool, upper triangle, by KO Eq. 7 / KITINet Eq. 4 with float math.

    score[i, j] = v_r[i, j] * exp(-x_r[i, j] / mean_free_path) / max_{a<b} v_r[a, b];
    accept iff score > 1 - coll_coef. No collision at all when max v_r == 0.
    """
    n = x.shape[0]
    accepted = torch.zeros(n, n, dtype=torch.bool)
    x_r = {}
    v_r = {}
    for i in range(n):
        for j in range(i + 1, n):
            x_r[i, j] = float(_norm((x[i] - x[j]).detach().double()))
            v_r[i, j] = float(_norm((v[i] - v[j]).detach().double()))
    v_max = max(v_r.values(), default=0.0)
    if v_max == 0.0:
        return accepted
    for (i, j), speed in v_r.items():
        score = speed * math.exp(-x_r[i, j] / mean_free_path) / v_max
        if score > 1.0 - coll_coef:
            accepted[i, j] = True
    return accepted


class LiteralCollision(NamedTuple):
    """Result of :func:`literal_collide` for one system of N particles in d dims."""

    v_new: Tensor
    x_star: Tensor
    accepted: Tensor
    num_directions_used: int


def literal_collide(
    x: Tensor,
    v: Tensor,
    coll_coef: float,
    mean_free_path: float = 1.0,
    directions: Tensor | None = None,
    position_update: bool = True,
) -> LiteralCollision:
    """One DSMC step of a single system (N, d), pair by pair (KO Eqs. 5-8, KITINet Eqs. 2-5).

    For every accepted pair i < j (in row-major order, taking the next row of ``directions``):
    (Δv)_ij = v_cm + ½ v_r n_ij - v_i and (Δv)_ji = v_cm + ½ v_r n_ji - v_j with n_ji = -n_ij;
    v'_i = v_i + sum of its (Δv). Positions: x*_i = (x_i + sum_j (x_i + x_j)/2) / (1 + k_i).
    ``x_star`` is ``x`` itself when ``position_update`` is False.
    """
    n = x.shape[0]
    accepted = literal_mask(x, v, coll_coef, mean_free_path)
    v_new = [v[i] for i in range(n)]
    x_sum = [x[i] for i in range(n)]
    partners = [0] * n
    used = 0
    for i in range(n):
        for j in range(i + 1, n):
            if not accepted[i, j]:
                continue
            if directions is None:
                raise ValueError("a pair collided but no directions were given")
            n_ij = directions[used]
            used += 1
            v_r = _norm(v[i] - v[j])
            v_cm = 0.5 * (v[i] + v[j])
            dv_ij = v_cm + 0.5 * v_r * n_ij - v[i]
            dv_ji = v_cm + 0.5 * v_r * (-n_ij) - v[j]
            v_new[i] = v_new[i] + dv_ij
            v_new[j] = v_new[j] + dv_ji
            x_cm = 0.5 * (x[i] + x[j])
            x_sum[i] = x_sum[i] + x_cm
            x_sum[j] = x_sum[j] + x_cm
            partners[i] += 1
            partners[j] += 1
    if position_update:
        x_star = torch.stack([x_sum[i] / (1 + partners[i]) for i in range(n)])
    else:
        x_star = x
    return LiteralCollision(torch.stack(v_new), x_star, accepted, used)


def _particles(row: Tensor, collision_heads: int) -> Tensor:
    """One system's D values -> (N, heads): reshape row-major to (heads, N), particle j = column j."""
    n = row.shape[0] // collision_heads
    matrix = row.reshape(collision_heads, n)
    return torch.stack([matrix[:, j] for j in range(n)])


def literal_kitinet_masks(
    x: Tensor, v: Tensor, collision_heads: int, coll_coef: float, mean_free_path: float = 1.0
) -> Tensor:
    """Accepted-pair masks (S, N, N) of every system (row) of (S, D), by :func:`literal_mask`."""
    return torch.stack(
        [
            literal_mask(
                _particles(x[k], collision_heads),
                _particles(v[k], collision_heads),
                coll_coef,
                mean_free_path,
            )
            for k in range(x.shape[0])
        ]
    )


def literal_kitinet(
    x: Tensor,
    v: Tensor,
    collision_heads: int,
    coll_coef: float,
    dt: float = 1.0,
    position_update: bool = True,
    mean_free_path: float = 1.0,
    directions: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """KITINet Algorithm 1 for each row of (S, D); returns (x', accepted masks (S, N, N)).

    Each row is reshaped row-major to (collision_heads, N); particle j is column j (SPEC §1.5).
    Output x' = x* + dt v' (x + dt v' without position update), flattened back the same way.
    ``directions`` rows are consumed system after system.
    """
    s, d_total = x.shape
    if d_total % collision_heads != 0:
        raise ValueError(f"collision_heads={collision_heads} does not divide D={d_total}")
    rows, masks = [], []
    used = 0
    for k in range(s):
        particles_x = _particles(x[k], collision_heads)  # (N, heads)
        particles_v = _particles(v[k], collision_heads)
        dirs = directions[used:] if directions is not None else None
        res = literal_collide(
            particles_x, particles_v, coll_coef, mean_free_path, dirs, position_update
        )
        used += res.num_directions_used
        new_particles = res.x_star + dt * res.v_new  # (N, heads)
        # Column j of the (heads, N) matrix is particle j; flatten row-major.
        rows.append(new_particles.T.reshape(d_total))
        masks.append(res.accepted)
    if directions is not None and used != directions.shape[0]:
        raise ValueError(f"{directions.shape[0]} directions given, {used} pairs collided")
    return torch.stack(rows), torch.stack(masks)
