"""KO's gradient collisions between the neurons of one layer (SPEC §1.2-1.3).

A neuron is a row of the layer's weight viewed as ``(out_features, -1)``: a Linear weight
``(out, in)`` as it is, a Conv weight ``(out, in, kh, kw)`` as ``(out, in * kh * kw)``. Both functions
take the weight and its gradient and return a new gradient of the gradient's shape and dtype; they
never modify their inputs and never build graphs (call them on ``.grad`` tensors).

Numerics. Half-precision weights and gradients are computed in float32 and returned in their own
dtype. Soft collision is scale-safe as written: cosines normalise each row by its max-abs first
(:func:`kinetics.metrics.cosine_similarity_matrix`) and ``(C_w ∘ C_g) @ g`` is linear in ``g``. Hard
collision's pair selection and velocity update rescale the layer by a power of two when its max-abs
lies outside a safe range (:mod:`kinetics.dsmc`), so gradients of size 1e19 or 1e-30 select the same
pairs as at size 1. Non-finite input: a NaN or Inf anywhere in ``weight`` or ``grad`` would spread
over the whole layer (soft: through the cosine matrix; hard: through the Gram distances), so both
functions then return the gradient unchanged and report it: ``soft_collision_with_stats`` returns a
``nonfinite`` flag, ``hard_collision_with_stats``'s result has ``nonfinite`` set and a NaN
``collision_rate`` (not a silent 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kinetics.dsmc import DSMCResult, _check_coef, _compute_dtype, collide
from kinetics.metrics import cosine_similarity_matrix

__all__ = [
    "hard_collision",
    "hard_collision_with_stats",
    "soft_collision",
    "soft_collision_with_stats",
]


def _as_rows(weight: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    if weight.shape != grad.shape:
        raise ValueError(
            f"weight and grad must have the same shape, got {tuple(weight.shape)} and "
            f"{tuple(grad.shape)}"
        )
    if weight.dim() < 2:
        raise ValueError(
            f"collisions act on neurons (rows) of a weight with >= 2 dims, got shape "
            f"{tuple(weight.shape)}; biases and norm scales are not collided"
        )
    work = _compute_dtype(grad.dtype)
    n = weight.shape[0]
    return weight.detach().reshape(n, -1).to(work), grad.detach().reshape(n, -1).to(work)


@torch.no_grad()
def soft_collision(
    weight: Tensor, grad: Tensor, coll_coef: float, *, exclude_self: bool = False
) -> Tensor:
    """KO soft collision (Algorithm 2): ``g + coll_coef * (-(C_w ∘ C_g) @ g)``.

    ``C_w`` and ``C_g`` are the cosine-similarity matrices of the weight rows and gradient rows.
    With the diagonal included (the default, as Algorithm 2 is written) the self term scales each
    ``g_i`` by ``1 - coll_coef``; ``exclude_self=True`` drops it, giving the pairwise repulsion of KO
    App. A Eq. 12.

    Args:
        weight: layer weight, Linear (out, in) or Conv (out, in, kh, kw).
        grad: its gradient, same shape.
        coll_coef: strength of the repulsion, in [0, 1].
        exclude_self: leave out the i == j term.

    Returns:
        The new gradient, same shape and dtype as ``grad``; ``grad`` unchanged (a copy) if
        ``weight`` or ``grad`` holds a NaN or Inf (see :func:`soft_collision_with_stats`).
    """
    new, _ = soft_collision_with_stats(weight, grad, coll_coef, exclude_self=exclude_self)
    return new


@torch.no_grad()
def soft_collision_with_stats(
    weight: Tensor, grad: Tensor, coll_coef: float, *, exclude_self: bool = False
) -> tuple[Tensor, Tensor]:
    """:func:`soft_collision` that also returns ``nonfinite``, a 0-dim bool tensor.

    ``nonfinite`` is True when ``weight`` or ``grad`` holds a NaN or Inf; the returned gradient is
    then ``grad`` unchanged (a copy): one bad entry would otherwise make every row NaN through the
    cosine matrix. The check runs on the device, without a host sync.
    """
    _check_coef(coll_coef, 1.0)
    w, g = _as_rows(weight, grad)
    nonfinite = ~(torch.isfinite(w).all() & torch.isfinite(g).all())
    if coll_coef == 0.0:
        return grad.clone(), nonfinite
    coupling = cosine_similarity_matrix(w).mul_(cosine_similarity_matrix(g))
    if exclude_self:
        coupling.fill_diagonal_(0.0)
    new = g - coll_coef * (coupling @ g)
    new = torch.where(nonfinite, g, new)
    return new.reshape(grad.shape).to(grad.dtype), nonfinite


@torch.no_grad()
def hard_collision_with_stats(
    weight: Tensor,
    grad: Tensor,
    coll_coef: float,
    *,
    mean_free_path: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, DSMCResult]:
    """:func:`hard_collision` that also returns the :class:`~kinetics.dsmc.DSMCResult` (mask, rate).

    A NaN or Inf in ``weight`` or ``grad``: the gradient is returned unchanged (a copy), the
    result's ``nonfinite`` is ``tensor([True])`` and its ``collision_rate`` is NaN.
    """
    w, g = _as_rows(weight, grad)
    result = collide(
        w.unsqueeze(0),
        g.unsqueeze(0),
        coll_coef,
        mean_free_path=mean_free_path,
        generator=generator,
    )
    new = result.v_new.reshape(grad.shape).to(grad.dtype)
    if new.data_ptr() == grad.data_ptr():  # nothing collided: never hand back an alias of the input
        new = new.clone()
    return new, result


def hard_collision(
    weight: Tensor,
    grad: Tensor,
    coll_coef: float,
    *,
    mean_free_path: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """KO hard collision (Algorithm 1, Eqs. 5-8): one DSMC hard-sphere step between neurons.

    Weight rows are the particles' positions, gradient rows their velocities. Pairs are selected by
    the deterministic threshold of SPEC §1.1 and every accepted pair changes the velocities at once,
    ``g*_i = g_i + sum_j [(g_j - g_i)/2 + |g_i - g_j| n_ij / 2]``, conserving the sum of gradient rows.

    Args:
        weight: layer weight, Linear (out, in) or Conv (out, in, kh, kw).
        grad: its gradient, same shape.
        coll_coef: in [0, 1]; higher accepts more pairs, 0 none.
        mean_free_path: length scale of the locality factor exp(-|w_i - w_j| / mean_free_path).
        generator: source of the random directions (default: torch's global generator).

    Returns:
        The new gradient, same shape and dtype as ``grad``; ``grad`` unchanged (a copy) if
        ``weight`` or ``grad`` holds a NaN or Inf (see :func:`hard_collision_with_stats`).
    """
    new, _ = hard_collision_with_stats(
        weight, grad, coll_coef, mean_free_path=mean_free_path, generator=generator
    )
    return new
