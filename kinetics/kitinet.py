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
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula

from kinetics._pairs import (
    _Columns,
    _Directions,
    _half_weights,
    _Rows,
    backward_pairs,
    forward_pairs,
)
from kinetics._scale import make_safe
from kinetics.dsmc import _check_coef, _compute_dtype, _select_safe, collide
from kinetics.streams import normals, stream_key

__all__ = [
    "KITINet",
    "KITINetConfig",
    "kitinet_collision",
    "kitinet_collision_with_rate",
    "kitinet_state",
    "load_kitinet_state",
    "seed_kitinet",
]


# Above this many accepted pairs per particle (K > _ROWS_FROM * S * N) the collision runs on
# particle-major copies of x and v (contiguous gathers, parallel index_add) instead of in place
# on the (S, D) feature layout. Both give the same bits (see kinetics._pairs.forward_pairs), so
# this data-dependent choice never leaks one system's data into another's result.
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


def _rank() -> int:
    """This process's rank under torch.distributed (0 without it): ranks see other data and draw
    from their own streams, like dropout."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _recomputing() -> bool:
    """Whether this forward runs inside backward: activation checkpointing recomputing it
    (torch.utils.checkpoint, transformers' gradient checkpointing). It must draw what the
    original forward drew: that forward was the module's latest call."""
    if torch.compiler.is_compiling():
        return False  # compiled graphs save or recompute inside the graph, never rerun Python
    return torch._C._current_graph_task_id() != -1


class _Problem:
    """One KITINet collision's inputs in the working precision and the layouts it runs in."""

    def __init__(self, x: Tensor, v: Tensor, collision_heads: int, mean_free_path: float) -> None:
        self.dtype = x.dtype
        self.work = _compute_dtype(x.dtype)
        self.heads = collision_heads
        self.n_sys, self.n_features = x.shape
        self.n = self.n_features // collision_heads
        self.x = x.detach().to(self.work)
        self.v = v.detach().to(self.work)
        # (S, D) -> (S, heads, N) row-major -> particles (S, N, heads), a view
        self.safe = make_safe(self._particles(self.x), self._particles(self.v), mean_free_path)

    def _particles(self, t: Tensor) -> Tensor:
        return t.reshape(self.n_sys, self.heads, self.n).transpose(1, 2)

    def velocities(self) -> Tensor:
        """v as the pairs see it: multiplied per system by a power of two where it is outside the
        safe range (exact; 1 elsewhere)."""
        if self.safe.v_scale is None:
            return self.v
        return self.v * self.safe.v_scale.unsqueeze(-1)

    def rows(self, k: int) -> bool:
        """Whether K accepted pairs run on particle-major rows (else in place on features)."""
        return k > _ROWS_FROM * self.n_sys * self.n

    def to_rows(self, t: Tensor) -> Tensor:
        return self._particles(t).reshape(-1, self.heads)

    def from_rows(self, t: Tensor) -> Tensor:
        return t.view(self.n_sys, self.n, self.heads).transpose(1, 2).reshape(self.n_sys, -1)


def _kitinet_forward(
    x: Tensor,
    v: Tensor,
    key: tuple[int, int],
    collision_heads: int,
    coll_coef: float,
    dt: float,
    position_update: bool,
    mean_free_path: float,
    directions: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x', collision rate, accepted flat pairs)`` of systems x, v (S, D); no autograd."""
    p = _Problem(x, v, collision_heads, mean_free_path)
    pairs, _ = _select_safe(p.safe, coll_coef, mean_free_path)
    k = pairs.shape[0]
    nonfinite = int(p.safe.nonfinite.sum()) if p.safe.nonfinite is not None else 0
    candidates = (p.n_sys - nonfinite) * (p.n * (p.n - 1) // 2)
    rate = torch.tensor(k / candidates if candidates else math.nan, device=x.device)
    if directions is not None and directions.shape[0] != k:
        raise ValueError(f"directions has {directions.shape[0]} rows but {k} pairs collided")
    if k == 0:  # nothing collides: exactly the residual addition, nothing else to pay
        return torch.add(x, v, alpha=dt), rate, pairs
    source = _Directions(key, p.work, x.device, directions)
    weights = _half_weights(pairs, p.n, p.n_sys * p.n, p.work) if position_update else None
    scale = p.safe.v_scale
    if p.rows(k):  # many pairs: contiguous per-particle gathers pay for the layout copies
        out, _ = forward_pairs(
            _Rows(p.n),
            p.to_rows(p.x),
            p.to_rows(p.velocities()),
            pairs,
            source,
            weights,
            base=torch.add(p.to_rows(p.x), p.to_rows(p.v), alpha=dt),
            dt=dt,
            scale=scale,
        )
        out = p.from_rows(out)
    else:  # few pairs: change x + dt v in place on strided views, no layout copies
        out, _ = forward_pairs(
            _Columns(p.n, collision_heads),
            p.x.contiguous(),
            p.velocities().contiguous(),
            pairs,
            source,
            weights,
            base=torch.add(p.x, p.v, alpha=dt),
            dt=dt,
            scale=scale,
        )
    return out.to(x.dtype), rate, pairs


def _kitinet_backward(
    grad: Tensor,
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    key: tuple[int, int],
    collision_heads: int,
    dt: float,
    position_update: bool,
    mean_free_path: float,
    directions: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Gradients with respect to x and v of :func:`_kitinet_forward`'s x' given ``grad``."""
    k = pairs.shape[0]
    if k == 0:
        return grad.clone(), grad * dt
    p = _Problem(x, v, collision_heads, mean_free_path)
    g = grad.to(p.work)
    source = _Directions(key, p.work, x.device, directions)
    weights = _half_weights(pairs, p.n, p.n_sys * p.n, p.work) if position_update else None
    if p.rows(k):
        layout: _Rows | _Columns = _Rows(p.n)
        g, v_seen = p.to_rows(g), p.to_rows(p.velocities())
    else:
        layout, v_seen = _Columns(p.n, collision_heads), p.velocities().contiguous()
    gx, gv = backward_pairs(
        layout, g, g if position_update else None, v_seen, pairs, source, weights, dt
    )
    assert gv is not None
    if gx is None:  # x' = x + dt v': identity in x (a copy: an operator returns no input)
        gx = g.clone()
    if p.rows(k):
        gx, gv = p.from_rows(gx), p.from_rows(gv)
    return gx.to(x.dtype), gv.to(v.dtype)


# The collision as one opaque operator: torch.compile sees a node with a known output shape (the
# pair list's length is a dynamic size), not the selection's data-dependent control flow.
@torch.library.custom_op("kinetics::kitinet_collision", mutates_args=())
def _kitinet_op(
    x: Tensor,
    v: Tensor,
    calls: Tensor,
    seed: int,
    stream: int,
    collision_heads: int,
    coll_coef: float,
    dt: float,
    position_update: bool,
    mean_free_path: float,
    directions: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    key = stream_key(seed, stream, int(calls), _rank())
    out, rate, pairs = _kitinet_forward(
        x, v, key, collision_heads, coll_coef, dt, position_update, mean_free_path, directions
    )
    return out, rate, pairs, torch.tensor(key, dtype=torch.int64)


@_kitinet_op.register_fake
def _(x, v, calls, seed, stream, collision_heads, coll_coef, dt, position_update, mfp, dirs):
    k = torch.library.get_ctx().new_dynamic_size()
    return (
        torch.empty_like(x),
        torch.empty((), dtype=torch.float32, device=x.device),
        x.new_empty(k, dtype=torch.int64),
        torch.empty(2, dtype=torch.int64),
    )


@torch.library.custom_op("kinetics::kitinet_collision_backward", mutates_args=())
def _kitinet_backward_op(
    grad: Tensor,
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    key: Tensor,
    collision_heads: int,
    dt: float,
    position_update: bool,
    mean_free_path: float,
    directions: Tensor | None,
) -> tuple[Tensor, Tensor]:
    k0, k1 = key.tolist()
    return _kitinet_backward(
        grad,
        x,
        v,
        pairs,
        (k0, k1),
        collision_heads,
        dt,
        position_update,
        mean_free_path,
        directions,
    )


@_kitinet_backward_op.register_fake
def _(grad, x, v, pairs, key, collision_heads, dt, position_update, mfp, dirs):
    return torch.empty_like(x), torch.empty_like(v)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, v, _, _, _, heads, _, dt, position_update, mfp, directions = inputs
    _, _, pairs, key = output
    ctx.save_for_backward(x, v, pairs, key, directions)
    ctx.settings = (heads, dt, position_update, mfp)


def _backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    x, v, pairs, key, directions = ctx.saved_tensors
    heads, dt, position_update, mfp = ctx.settings
    gx, gv = _kitinet_backward_op(
        grad, x, v, pairs, key, heads, dt, position_update, mfp, directions
    )
    return gx, gv, *([None] * 9)


_kitinet_op.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.kinetics.kitinet_collision)
def _kitinet_flops(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs FlopCounterMode counts for one collision: the selection's two Gram matmuls,
    2 S N^2 (heads + 2) each (the velocity one is skipped where positions rule out every pair;
    the O(K heads) collision itself is not counted)."""
    heads = args[4]
    n_sys, n_features = x_shape
    n = n_features // heads
    return 2 * (2 * n_sys * n * n * (heads + 2))


def kitinet_collision_with_rate(
    x: Tensor,
    v: Tensor,
    *,
    collision_heads: int,
    coll_coef: float,
    dt: float = 1.0,
    position_update: bool = True,
    mean_free_path: float = 1.0,
    seed: int = 0,
    stream: int = 0,
    call: int = 0,
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
    n = _check_heads(x.shape[1], collision_heads)
    if coll_coef == 0.0 or n < 2 or x.shape[0] == 0:
        return torch.add(x, v, alpha=dt), torch.zeros((), device=x.device)
    calls = torch.tensor(call, dtype=torch.int64)
    out, rate, _, _ = _kitinet_op(
        x,
        v,
        calls,
        seed,
        stream,
        collision_heads,
        float(coll_coef),
        float(dt),
        bool(position_update),
        float(mean_free_path),
        directions,
    )
    return out, rate.detach()


def kitinet_collision(
    x: Tensor,
    v: Tensor,
    *,
    collision_heads: int,
    coll_coef: float,
    dt: float = 1.0,
    position_update: bool = True,
    mean_free_path: float = 1.0,
    seed: int = 0,
    stream: int = 0,
    call: int = 0,
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
        seed, stream, call: name the random stream: pair (s, i, j) takes the direction keyed by
            (seed, stream, call, rank, s, i, j) (:mod:`kinetics.streams`), whatever the other
            systems hold; the global RNG is never used.

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
        seed=seed,
        stream=stream,
        call=call,
    )
    return out


@dataclass(frozen=True)
class KITINetConfig:
    """The settings of KITINet collisions, one object from a config file to every module of a model.

    A model builder takes ``kitinet: KITINetConfig | None`` and calls :meth:`build` for each residual
    addition it turns into a collision (``None``: plain additions). After building, give each
    module its own random stream with :func:`seed_kitinet` (``seed_kitinet(model, config.seed)``).
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
    seed: int = 0
    """Seed of the modules' random streams."""

    def build(self, system: Literal["sample", "token"] = "sample") -> KITINet:
        """A :class:`KITINet` with these settings and one system per ``system``."""
        return KITINet(
            self.collision_heads,
            self.coll_coef,
            self.dt,
            self.position_update,
            self.mean_free_path,
            system,
            seed=self.seed,
        )


class KITINet(nn.Module):
    """Drop-in replacement for a residual addition ``x + dt * v`` (KITINet, SPEC §1.5).

    In training, ``forward(x, v)`` returns the result of one DSMC collision between particles cut
    from each system's features; in eval it returns exactly ``x + dt * v`` (for ``dt == 1`` the same
    arithmetic as ``x + v``), so inference costs nothing extra. The module has no parameters and
    adds nothing to a model's ``state_dict``.

    Randomness: the direction of pair (i, j) of system s in the module's c-th training call is a
    function of (seed, stream, c, rank, s, i, j) alone (:mod:`kinetics.streams`), never of the
    global RNG or of other systems' data. With one system per token (``system="token"``), a
    causal model's outputs at positions <= t do not depend on tokens after t, in training too.
    The call counter ``calls`` (a CPU int64 tensor, not a buffer) is part of the training state:
    :func:`kitinet_state` / :func:`load_kitinet_state` save and restore it, so a resumed run draws
    what the uninterrupted one would.

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
            from N(0, initial_velocity_std^2) in training (from the module's stream) and is zero in
            eval. The paper found this variant worse; it is off by default.
        initial_velocity_std: standard deviation of the first a-edition module's velocity.
        seed: seed of the module's random stream.
        stream: index distinguishing modules that share a seed (:func:`seed_kitinet` numbers them).

    Attributes:
        last_collision_rate: accepted / candidate pairs of the last training forward (a detached
            scalar tensor), None before the first one.
        calls: training forwards so far (0-d int64 CPU tensor).
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
        seed: int = 0,
        stream: int = 0,
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
        self.seed = int(seed)
        self.stream = int(stream)
        # A plain tensor, not a buffer: not in the state_dict (stock checkpoints stay stock), not
        # moved by .to(device) (read on the host), but mutable in place under torch.compile.
        self.calls = torch.zeros((), dtype=torch.int64)
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
        xs, vs = self._systems(x), self._systems(v)
        n = _check_heads(xs.shape[1], self.collision_heads)
        if self.coll_coef == 0.0 or n < 2 or xs.shape[0] == 0:
            self.last_collision_rate = torch.zeros((), device=x.device)
            return torch.add(x, v, alpha=self.dt)
        recompute = _recomputing()
        out, rate, _, _ = _kitinet_op(
            xs,
            vs,
            self.calls - 1 if recompute else self.calls,
            self.seed,
            self.stream,
            self.collision_heads,
            self.coll_coef,
            self.dt,
            self.position_update,
            self.mean_free_path,
            None,
        )
        if not recompute:
            self.calls.add_(1)
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
                velocity = self._initial_velocity(v)
            else:
                velocity = torch.zeros_like(v)
        v_in = torch.add(velocity, v, alpha=self.dt)
        if not self.training:
            return torch.add(x, v_in, alpha=self.dt), v_in
        return self._collide_with_velocity(x, v_in)

    def _key(self, *extra: int) -> tuple[int, int]:
        return stream_key(self.seed, self.stream, int(self.calls), _rank(), *extra)

    def _initial_velocity(self, v: Tensor) -> Tensor:
        # Element e's noise is keyed by e: per-token systems stay causal.
        index = torch.arange(v.numel(), device=v.device)
        noise = normals(self._key(1), index, 1, _compute_dtype(v.dtype))
        return noise.view(v.shape).to(v.dtype) * self.initial_velocity_std

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
            key=self._key(),
            position_update=self.position_update,
        )
        self.calls.add_(1)
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
            f"system={self.system!r}, acceleration={self.acceleration}, seed={self.seed}, "
            f"stream={self.stream}"
        )


def seed_kitinet(model: nn.Module, seed: int) -> list[KITINet]:
    """Give every KITINet module of ``model`` the seed ``seed`` and its own stream (its index in
    ``model.modules()`` order), and reset the call counters. Returns the modules in that order."""
    modules = [m for m in model.modules() if isinstance(m, KITINet)]
    for index, module in enumerate(modules):
        module.seed, module.stream = int(seed), index
        module.calls.zero_()
    return modules


def kitinet_state(model: nn.Module) -> dict[str, int]:
    """The call counters of ``model``'s KITINet modules by module name: the part of the training
    state that is not in ``state_dict`` (see :class:`KITINet`)."""
    return {name: int(m.calls) for name, m in model.named_modules() if isinstance(m, KITINet)}


def load_kitinet_state(model: nn.Module, state: dict[str, int]) -> None:
    """Restore the call counters saved by :func:`kitinet_state`.

    Raises:
        ValueError: ``state`` does not name exactly the KITINet modules of ``model``.
    """
    modules = {name: m for name, m in model.named_modules() if isinstance(m, KITINet)}
    if set(modules) != set(state):
        raise ValueError(
            f"KITINet state names modules {sorted(state)}, the model has {sorted(modules)}"
        )
    for name, module in modules.items():
        module.calls.fill_(int(state[name]))
