"""KITINet: a residual addition ``x + dt * v`` that, in training, is one DSMC collision step (SPEC §1.5).

The skip path ``x`` gives particle positions and the residual branch ``v`` their velocities. Each
system's ``D`` features are reshaped row-major to ``(collision_heads, N)`` and particle ``j`` is column
``j``: ``N = D / collision_heads`` particles in ``collision_heads`` dimensions. After the collision the
output is ``x* + dt * v'`` (``x + dt * v'`` without the position update). Like dropout or timm's
DropPath, this happens only in training; in eval the module is exactly ``x + dt * v``.

Training cost: the pair selection (:func:`kinetics.dsmc.select_pairs`, no autograd, two small
Gram matmuls per system at most) dominates. When no pair collides the result is exactly
``torch.add(x, v, alpha=dt)``; otherwise the changes of the colliding particles are added to it by
a custom autograd function whose memory is O(S D + K) for K accepted pairs.

Numerics (see :mod:`kinetics.dsmc`): float16/bfloat16 features are collided in float32 and the
output cast back (an Inf in the output then means the float32 result itself exceeds the half range).
Systems whose features are outside a safe range (float32: max-abs beyond about [2e-13, 4e12]) are
rescaled by powers of two for the selection and the velocity update, so velocities of 1e19 or
1e-30 collide as at 1; the positions' scale stays exact in ``exp(-x_r / mean_free_path)``. A system
(sample or token) with a NaN or Inf in ``x`` or ``v`` is not collided: its output is ``x + dt v``,
it leaves every other system unchanged, and the reported collision rate counts only the finite
systems (NaN if there is none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from kinetics._scale import make_safe
from kinetics.dsmc import (
    _check_coef,
    _compute_dtype,
    _select_safe,
    collide,
    collide_features,
    collide_pairs,
)

__all__ = ["KITINet", "KITINetConfig", "kitinet_collision", "kitinet_collision_with_rate"]


# Above this many accepted pairs per particle (K > _ROWS_FROM * S * N) the collision runs on
# particle-major copies of x and v (contiguous gathers, parallel index_add) instead of in place
# on the (S, D) feature layout.
_ROWS_FROM = 0.25


def _check_heads(num_features: int, collision_heads: int) -> int:
    if int(collision_heads) != collision_heads or collision_heads < 1:
        raise ValueError(f"collision_heads={collision_heads} must be an integer >= 1")
    if num_features % collision_heads != 0:
        raise ValueError(
            f"collision_heads={collision_heads} does not divide the feature size D={num_features}; "
            f"allowed values are the divisors of {num_features}"
        )
    return num_features // collision_heads


def _rows(t: Tensor, work: torch.dtype, collision_heads: int) -> Tensor:
    """Features (S, D) as particle rows (S * N, heads), particle i of system s at row s*N + i."""
    n_sys = t.shape[0]
    return (
        t.to(work).reshape(n_sys, collision_heads, -1).transpose(1, 2).reshape(-1, collision_heads)
    )


def kitinet_collision_with_rate(
    x: Tensor,
    v: Tensor,
    *,
    collision_heads: int,
    coll_coef: float,
    dt: float = 1.0,
    position_update: bool = True,
    mean_free_path: float = 1.0,
    generator: torch.Generator | None = None,
    directions: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`kitinet_collision` that also returns the collision rate (accepted / candidate pairs).

    ``directions`` (K, collision_heads), if given, replaces the random directions of the K accepted
    pairs in row-major (system, i, j) order; it exists for exact tests against a reference.
    The rate counts the pairs of finite systems only (NaN if no system is finite).
    """
    if x.dim() != 2 or x.shape != v.shape:
        raise ValueError(
            f"x and v must both have shape (S, D); got {tuple(x.shape)} and {tuple(v.shape)}"
        )
    _check_coef(coll_coef, mean_free_path)
    n_sys, n_features = x.shape
    n = _check_heads(n_features, collision_heads)
    if coll_coef == 0.0 or n < 2 or n_sys == 0:
        return torch.add(x, v, alpha=dt), torch.zeros((), device=x.device)

    # (S, D) -> (S, heads, N) row-major -> particles (S, N, heads)
    work = _compute_dtype(x.dtype)
    xp = x.detach().to(work).reshape(n_sys, collision_heads, n).transpose(1, 2)
    vp = v.detach().to(work).reshape(n_sys, collision_heads, n).transpose(1, 2)
    # The selection (no gradient, chunked over systems) gives the accepted pairs once, on
    # systems rescaled where needed; non-finite systems select nothing (see kinetics.dsmc).
    safe = make_safe(xp, vp, mean_free_path)
    pairs, _ = _select_safe(safe, coll_coef, mean_free_path)
    k = pairs.shape[0]
    finite = n_sys - (int(safe.nonfinite.sum()) if safe.nonfinite is not None else 0)
    candidates = finite * (n * (n - 1) // 2)
    rate = torch.tensor(k / candidates if candidates else math.nan, device=x.device)
    if directions is not None and directions.shape[0] != k:
        raise ValueError(f"directions has {directions.shape[0]} rows but {k} pairs collided")
    if k == 0:  # nothing collides: exactly the residual addition, nothing else to pay
        return torch.add(x, v, alpha=dt), rate

    kwargs = dict(generator=generator, directions=directions, position_update=position_update)
    if safe.v_scale is not None:
        # Velocities outside the safe range: collide them rescaled (the step is homogeneous in v)
        # on particle rows, scale v' back exactly (powers of two), then drift.
        scale = safe.v_scale.repeat_interleave(n).unsqueeze(-1)  # per particle row
        x_rows = _rows(x, work, collision_heads)
        v_new, x_new = collide_pairs(
            x_rows, _rows(v, work, collision_heads) * scale, pairs, n, **kwargs
        )
        out = torch.add(x_new if x_new is not None else x_rows, v_new / scale, alpha=dt)
        out = out.reshape(n_sys, n, collision_heads).transpose(1, 2).reshape(n_sys, n_features)
        return out.to(x.dtype), rate
    if k <= _ROWS_FROM * n_sys * n:
        # Few pairs: change x + dt v in place on strided views, no layout copies.
        out = collide_features(
            x.to(work).contiguous(), v.to(work).contiguous(), pairs, n, dt, **kwargs
        )
        return out.to(x.dtype), rate

    # Many pairs: per-pair gathers and scatters are much faster on particle-major rows, worth
    # copying x and v into that layout (and the result back).
    x_rows = _rows(x, work, collision_heads)
    v_new, x_new = collide_pairs(x_rows, _rows(v, work, collision_heads), pairs, n, **kwargs)
    out = torch.add(x_new if x_new is not None else x_rows, v_new, alpha=dt)
    out = out.reshape(n_sys, n, collision_heads).transpose(1, 2).reshape(n_sys, n_features)
    return out.to(x.dtype), rate


def kitinet_collision(
    x: Tensor,
    v: Tensor,
    *,
    collision_heads: int,
    coll_coef: float,
    dt: float = 1.0,
    position_update: bool = True,
    mean_free_path: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One KITINet collision step for ``S`` systems (KITINet Algorithm 1, Eqs. 2-5).

    Args:
        x: positions (skip path), shape (S, D), one system per row.
        v: velocities (residual branch), shape (S, D).
        collision_heads: dimension of the collision space; must divide D (N = D / heads particles).
        coll_coef: in [0, 1]; 0 gives exactly ``x + dt * v``.
        dt: time step of the drift ``x' = x* + dt * v'``.
        position_update: use the collision-averaged position x* (Eq. 5); False gives ``x + dt * v'``.
        mean_free_path: length scale of the locality factor exp(-x_r / mean_free_path).
        generator: source of the random directions (default: torch's global generator).

    Returns:
        x' of shape (S, D), differentiable w.r.t. ``x`` and ``v``.
    """
    out, _ = kitinet_collision_with_rate(
        x,
        v,
        collision_heads=collision_heads,
        coll_coef=coll_coef,
        dt=dt,
        position_update=position_update,
        mean_free_path=mean_free_path,
        generator=generator,
    )
    return out


@dataclass(frozen=True)
class KITINetConfig:
    """The settings of KITINet collisions, one object from a config file to every module of a model.

    A model builder takes ``kitinet: KITINetConfig | None`` and calls :meth:`build` for each residual
    addition it turns into a collision (``None``: plain additions).
    """

    collision_heads: int
    """Dimension of the collision space; must divide each system's feature size."""
    coll_coef: float
    """In [0, 1]; fraction-like control of accepted pairs (0: never collide)."""
    dt: float = 1.0
    """Time step of ``x' = x* + dt v'``."""
    position_update: bool = True
    """Use the collision-averaged position ``x*`` (False: KITINet Table 6's ablation)."""
    mean_free_path: float = 1.0
    """Length scale of the locality factor exp(-x_r / mean_free_path); > 0."""
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)
    """Source of the random directions, shared by the modules built from this config (None: torch's
    global generator)."""

    def build(self, system: Literal["sample", "token"] = "sample") -> KITINet:
        """A :class:`KITINet` with these settings and one system per ``system``."""
        return KITINet(
            self.collision_heads,
            self.coll_coef,
            self.dt,
            self.position_update,
            self.mean_free_path,
            system,
            generator=self.generator,
        )


class KITINet(nn.Module):
    """Drop-in replacement for a residual addition ``x + dt * v`` (KITINet, SPEC §1.5).

    In training, ``forward(x, v)`` returns the result of one DSMC collision between particles cut
    from each system's features; in eval it returns exactly ``x + dt * v`` (for ``dt == 1`` the same
    arithmetic as ``x + v``), so inference costs nothing extra. The module has no parameters.

    Args:
        collision_heads: dimension of the collision space; must divide the system's feature size.
        coll_coef: in [0, 1]; fraction-like control of accepted pairs (0: never collide).
        dt: time step.
        position_update: use the collision-averaged position x* (False: the Table 6 ablation).
        mean_free_path: length scale of the locality factor; > 0.
        system: ``"sample"``: one system per leading index, all other dims flattened (CNN/FNO maps);
            ``"token"``: one system per vector along the last dim (sequence models; causal).
        acceleration: KITINet App. D "a-edition": the branch output is an acceleration ``a``;
            ``forward(x, a, velocity=None)`` collides ``velocity + dt * a`` and returns the tuple
            ``(x', v')``, ``v'`` to be passed to the next such module. A missing ``velocity`` is drawn
            from N(0, initial_velocity_std^2) in training and is zero in eval. The paper found this
            variant worse; it is off by default.
        initial_velocity_std: standard deviation of the first a-edition module's velocity.
        generator: optional source of random directions (default: torch's global generator, like
            dropout).

    Attributes:
        last_collision_rate: accepted / candidate pairs of the last training forward (a detached
            scalar tensor), None before the first one.
    """

    def __init__(
        self,
        collision_heads: int,
        coll_coef: float,
        dt: float = 1.0,
        position_update: bool = True,
        mean_free_path: float = 1.0,
        system: Literal["sample", "token"] = "sample",
        *,
        acceleration: bool = False,
        initial_velocity_std: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_coef(coll_coef, mean_free_path)
        if int(collision_heads) != collision_heads or collision_heads < 1:
            raise ValueError(f"collision_heads={collision_heads} must be an integer >= 1")
        if system not in ("sample", "token"):
            raise ValueError(f"system={system!r} is not one of 'sample', 'token'")
        self.collision_heads = int(collision_heads)
        self.coll_coef = float(coll_coef)
        self.dt = float(dt)
        self.position_update = bool(position_update)
        self.mean_free_path = float(mean_free_path)
        self.system = system
        self.acceleration = bool(acceleration)
        self.initial_velocity_std = float(initial_velocity_std)
        self.generator = generator
        self.last_collision_rate: Tensor | None = None

    def check_features(self, num_features: int) -> None:
        """Raise ValueError now if ``collision_heads`` does not divide ``num_features``.

        Models call this when they are built, so a bad configuration fails before training.
        """
        _check_heads(num_features, self.collision_heads)

    def _systems(self, t: Tensor) -> Tensor:
        if self.system == "token":
            return t.reshape(-1, t.shape[-1])
        return t.reshape(t.shape[0], -1)

    def _collide(self, x: Tensor, v: Tensor) -> Tensor:
        out, rate = kitinet_collision_with_rate(
            self._systems(x),
            self._systems(v),
            collision_heads=self.collision_heads,
            coll_coef=self.coll_coef,
            dt=self.dt,
            position_update=self.position_update,
            mean_free_path=self.mean_free_path,
            generator=self.generator,
        )
        self.last_collision_rate = rate.detach()
        return out.reshape(x.shape)

    def forward(
        self, x: Tensor, v: Tensor, velocity: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``x + dt * v`` with a collision in training; see the class docstring for ``acceleration``."""
        if x.shape != v.shape:
            raise ValueError(
                f"x and v must have the same shape, got {tuple(x.shape)} and {tuple(v.shape)}"
            )
        if not self.acceleration:
            if velocity is not None:
                raise ValueError("velocity is only used with acceleration=True")
            if not self.training:
                return torch.add(x, v, alpha=self.dt)
            return self._collide(x, v)

        if velocity is None:
            if self.training:
                gen_device = self.generator.device if self.generator is not None else None
                noise = torch.randn(
                    v.shape, generator=self.generator, dtype=v.dtype, device=gen_device
                )
                velocity = noise.to(v.device) * self.initial_velocity_std
            else:
                velocity = torch.zeros_like(v)
        v_in = torch.add(velocity, v, alpha=self.dt)
        if not self.training:
            return torch.add(x, v_in, alpha=self.dt), v_in
        return self._collide_with_velocity(x, v_in)

    def _collide_with_velocity(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        # The a-edition needs v' itself (for the next module), not only x' = x* + dt v'.
        n = self.collision_heads
        xs, vs = self._systems(x), self._systems(v)
        n_sys, n_features = xs.shape
        n_part = _check_heads(n_features, n)
        xp = xs.reshape(n_sys, n, n_part).transpose(1, 2)
        vp = vs.reshape(n_sys, n, n_part).transpose(1, 2)
        res = collide(
            xp,
            vp,
            self.coll_coef,
            mean_free_path=self.mean_free_path,
            generator=self.generator,
            position_update=self.position_update,
        )
        self.last_collision_rate = res.collision_rate.detach()
        x_star = res.x_new if self.position_update else xp
        x_out = torch.add(x_star, res.v_new, alpha=self.dt)
        x_out = x_out.transpose(1, 2).reshape(x.shape)
        v_out = res.v_new.transpose(1, 2).reshape(v.shape)
        return x_out, v_out

    def extra_repr(self) -> str:
        return (
            f"collision_heads={self.collision_heads}, coll_coef={self.coll_coef}, dt={self.dt}, "
            f"position_update={self.position_update}, mean_free_path={self.mean_free_path}, "
            f"system={self.system!r}, acceleration={self.acceleration}"
        )
