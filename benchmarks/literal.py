"""Paper-literal, deliberately naive KO collisions: the baseline ``make bench`` measures against.

Both functions follow KO Algorithms 1-2 step by step and materialise every pairwise quantity as a
dense ``(N, N, d)`` tensor, as the authors' public code does (SPEC §5): relative vectors, centre-of-
mass velocities, one random direction per ordered pair and the full velocity change of Eq. 6, which
is only then masked by the selection of Eq. 7. The physics is the SPEC's (§1.1-1.3), so with the same
directions the result equals the fast implementation; only the cost differs. Memory grows as
``N² d`` (N=1000, d=2048: 8 GB per tensor), so this module exists for benchmarking only
(:mod:`benchmarks.fast_vs_literal`) and is not part of the ``kinetics`` package.
``tests/reference.py`` is the independent reference for tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["hard_collision_literal", "literal_peak_bytes", "soft_collision_literal"]

# Upper bounds on how many (N, N, d) float tensors are alive at once (measured with the profiler of
# benchmarks/memory.py at N=100, d=512: soft 3.0, hard 4.0), plus a margin; used to skip sizes that
# cannot fit in memory.
_LIVE_PAIR_TENSORS = {"soft": 4, "hard": 6}


def literal_peak_bytes(kind: str, n: int, d: int, itemsize: int = 4) -> int:
    """Estimated peak extra bytes of the literal ``kind`` ("soft" or "hard") collision for (N, d)."""
    return _LIVE_PAIR_TENSORS[kind] * n * n * d * itemsize


@torch.no_grad()
def soft_collision_literal(weight: Tensor, grad: Tensor, coll_coef: float) -> Tensor:
    """KO Algorithm 2 with broadcast cosine similarities: ``g - coll_coef (C_w ∘ C_g) g``.

    ``F.cosine_similarity`` on ``(N, 1, d)`` against ``(1, N, d)`` forms the ``(N, N, d)`` products.
    A zero row has cosine 0 (the eps guard of ``cosine_similarity``).
    """
    n = weight.shape[0]
    w = weight.reshape(n, -1)
    g = grad.reshape(n, -1)
    cos_w = F.cosine_similarity(w.unsqueeze(1), w.unsqueeze(0), dim=-1)
    cos_g = F.cosine_similarity(g.unsqueeze(1), g.unsqueeze(0), dim=-1)
    delta = -(cos_w * cos_g) @ g
    return (g + coll_coef * delta).reshape(grad.shape)


@torch.no_grad()
def hard_collision_literal(
    weight: Tensor,
    grad: Tensor,
    coll_coef: float,
    *,
    mean_free_path: float = 1.0,
    generator: torch.Generator | None = None,
    directions: Tensor | None = None,
) -> Tensor:
    """KO Algorithm 1 (Eqs. 5-8) with dense pairwise tensors.

    Args:
        weight: layer weight (N, ...), rows are particle positions.
        grad: its gradient, rows are velocities.
        coll_coef: selection threshold parameter of Eq. 7, in [0, 1].
        mean_free_path: length scale of ``exp(-w_r / mean_free_path)`` (paper: 1).
        generator: source of the directions when ``directions`` is None.
        directions: optional (K, d) unit vectors for the K accepted pairs in row-major (i, j), i < j,
            order (the convention of ``kinetics.dsmc.collide``), for exact comparisons.

    Returns:
        The new gradient, same shape as ``grad``.
    """
    n = weight.shape[0]
    w = weight.reshape(n, -1)
    g = grad.reshape(n, -1)
    d = g.shape[1]

    # Eq. 5: relative distances / speeds and centre-of-mass velocities, all pairs at once.
    w_r = (w.unsqueeze(1) - w.unsqueeze(0)).norm(dim=-1)  # (N, N) via an (N, N, d) difference
    g_r = (g.unsqueeze(1) - g.unsqueeze(0)).norm(dim=-1)
    g_cm = 0.5 * (g.unsqueeze(1) + g.unsqueeze(0))  # (N, N, d)

    # Eq. 7: deterministic selection of pairs i < j; no collision when all velocities are equal.
    g_r_max = g_r.max()
    upper = torch.ones(n, n, dtype=torch.bool, device=g.device).triu_(diagonal=1)
    if coll_coef == 0.0 or g_r_max == 0:
        accepted = torch.zeros_like(upper)
    else:
        score = g_r * torch.exp(-w_r / mean_free_path) / g_r_max
        accepted = (score > 1.0 - coll_coef) & upper

    # One unit direction per pair i < j (uniform on the sphere), n_ji = -n_ij: an (N, N, d) tensor.
    if directions is None:
        dirs = torch.randn(n, n, d, generator=generator, dtype=g.dtype, device=g.device)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    else:
        dirs = torch.zeros(n, n, d, dtype=g.dtype, device=g.device)
        dirs[accepted] = directions.to(dtype=g.dtype, device=g.device)
    dirs = dirs * upper.unsqueeze(-1)
    dirs = dirs - dirs.transpose(0, 1)

    # Eq. 6: full velocity change for every ordered pair; Eq. 8: sum over the accepted ones.
    delta = g_cm + 0.5 * g_r.unsqueeze(-1) * dirs - g.unsqueeze(1)
    both = (accepted | accepted.T).unsqueeze(-1)
    new = g + (delta * both).sum(dim=1)
    return new.reshape(grad.shape)
