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
from kinetics.streams import stream_key

__all__ = [
    "hard_collision",
    "hard_collision_with_stats",
    "soft_collision",
    "soft_collision_with_stats",
]

# KineticOptimizer calls the collisions through the operators at the end of this module:
# torch.compile sees one opaque node per layer (no host sync, no data-dependent branch).


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
    key: tuple[int, int] | None = None,
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
        key=key,
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
    key: tuple[int, int] | None = None,
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
        generator: draws the key of the random directions, one number per call (default:
            torch's global generator); not used when ``key`` is given.
        key: stream key of the directions (:func:`kinetics.streams.stream_key`): pair (i, j)
            takes the direction of its index in that stream (:mod:`kinetics.streams`).

    Returns:
        The new gradient, same shape and dtype as ``grad``; ``grad`` unchanged (a copy) if
        ``weight`` or ``grad`` holds a NaN or Inf (see :func:`hard_collision_with_stats`).
    """
    new, _ = hard_collision_with_stats(
        weight, grad, coll_coef, mean_free_path=mean_free_path, generator=generator, key=key
    )
    return new


# --------------------------------------------------------------------------------------------
# The collisions as operators (torch.library custom ops) for KineticOptimizer


@torch.library.custom_op("kinetics::soft_collision", mutates_args=())
def _soft_op(weight: Tensor, grad: Tensor, coll_coef: float, exclude_self: bool) -> Tensor:
    return soft_collision(weight, grad, coll_coef, exclude_self=exclude_self)


@_soft_op.register_fake
def _(weight, grad, coll_coef, exclude_self):  # type: ignore[no-untyped-def]
    return torch.empty_like(grad)


@torch.library.custom_op("kinetics::hard_collision", mutates_args=())
def _hard_op(
    weight: Tensor,
    grad: Tensor,
    calls: Tensor,
    seed: int,
    layer: int,
    coll_coef: float,
    mean_free_path: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(new grad, collision rate, nonfinite)`` of one layer's hard collision, its directions
    keyed by (seed, calls, layer). A non-finite layer: the gradient (a copy), NaN, True."""
    nonfinite = not bool(torch.isfinite(weight).all() & torch.isfinite(grad).all())
    if nonfinite:
        nan = torch.full((), float("nan"), device=grad.device)
        return grad.clone(), nan, torch.ones((), dtype=torch.bool, device=grad.device)
    key = stream_key(seed, int(calls), layer)
    w, g = _as_rows(weight, grad)
    result = collide(
        w.unsqueeze(0), g.unsqueeze(0), coll_coef, mean_free_path=mean_free_path, key=key
    )
    new = result.v_new.reshape(grad.shape).to(grad.dtype)
    if new.data_ptr() == grad.data_ptr():  # an operator returns no alias of an input
        new = new.clone()
    flag = torch.zeros((), dtype=torch.bool, device=grad.device)
    return new, result.collision_rate.to(grad.device), flag


@_hard_op.register_fake
def _(weight, grad, calls, seed, layer, coll_coef, mean_free_path):  # type: ignore[no-untyped-def]
    scalar = torch.empty((), device=grad.device)
    return torch.empty_like(grad), scalar, torch.empty((), dtype=torch.bool, device=grad.device)


def soft_collision_op(weight: Tensor, grad: Tensor, coll_coef: float, exclude_self: bool) -> Tensor:
    """:func:`soft_collision` as the operator ``kinetics::soft_collision`` (for torch.compile)."""
    return _soft_op(weight, grad, float(coll_coef), bool(exclude_self))


def hard_collision_op(
    weight: Tensor,
    grad: Tensor,
    calls: Tensor,
    *,
    seed: int,
    layer: int,
    coll_coef: float,
    mean_free_path: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`hard_collision` as the operator ``kinetics::hard_collision``, its random directions
    keyed by ``(seed, calls, layer)`` (``calls``: a 0-d int64 tensor, e.g. a step counter).

    Returns ``(new gradient, collision rate, nonfinite)``; a layer with a NaN or Inf in ``weight``
    or ``grad`` gives a copy of ``grad``, a NaN rate and ``nonfinite`` True.
    """
    return _hard_op(weight, grad, calls, int(seed), int(layer), float(coll_coef), mean_free_path)
