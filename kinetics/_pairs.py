"""The collision of given pairs of particles: forward, backward, random directions (SPEC §1.1).

The differentiable half of a DSMC step, shared by :func:`kinetics.dsmc.collide` (KO's hard
collision; particles as rows) and KITINet (particles as columns of feature rows, see
:mod:`kinetics.kitinet`). Everything costs O(K d) for K accepted pairs, in chunks of bounded
size. The random direction of pair ``(s, i, j)`` is a function of the stream key and the pair's
flat index ``s*N*N + i*N + j`` only (:mod:`kinetics.streams`): it does not depend on which other
pairs collide, on the chunking or on any generator's state, and backward recomputes it instead of
replaying a generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kinetics.streams import normal_directions

__all__ = ["collide_features", "collide_pairs", "draw_key"]

# Elements (pairs x dims) of per-pair tensors (directions, gathered velocities) materialised at
# once: 2**20 float32 = 4 MiB per buffer. Results do not depend on it.
_CHUNK_ELEMENTS = 1 << 20

# Drawn directions (pairs x dims) kept for backward up to this size (64 MiB in float32); beyond
# it backward recomputes them from the key (one more pass of the hash, no memory).
_SAVE_DIRECTIONS_ELEMENTS = 1 << 24

_TINY = {dt: torch.finfo(dt).tiny for dt in (torch.float32, torch.float64)}


def _pair_rows(flat: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Rows ``s*N + i`` and ``s*N + j`` of the particles of flat pair indices ``s*N*N + i*N + j``."""
    ii = torch.div(flat, n, rounding_mode="floor")
    jj = ii - ii.remainder(n) + flat.remainder(n)
    return ii, jj


def draw_key(generator: torch.Generator | None, device: torch.device) -> tuple[int, int]:
    """A stream key drawn from ``generator`` (None: torch's global generator on ``device``): one
    64-bit draw per call, however many pairs collide, so the generator advances the same way
    whatever the data."""
    gen_device = generator.device if generator is not None else device
    word = torch.randint(
        -(2**63), 2**63 - 1, (), dtype=torch.int64, generator=generator, device=gen_device
    )
    value = int(word) & ((1 << 64) - 1)
    return value & 0xFFFFFFFF, value >> 32


class _Directions:
    """Unit directions of accepted pairs: caller-given rows (tests against a reference), or
    counter-based Gaussians of the pairs' flat indices under ``key``, returned unnormalised with
    ``1 / |z|`` per row (the normalisation is folded into the kick's scale)."""

    def __init__(
        self,
        key: tuple[int, int],
        dtype: torch.dtype,
        device: torch.device,
        given: Tensor | None = None,
    ) -> None:
        self.key, self.dtype, self.device, self.given = key, dtype, device, given

    def block(self, flat: Tensor, start: int, stop: int, d: int) -> tuple[Tensor, Tensor | None]:
        """Directions of pairs ``start:stop`` whose flat indices are ``flat``: ``(z, inv_norm)``
        (``inv_norm`` None for given unit directions)."""
        if self.given is not None:
            return self.given[start:stop].to(device=self.device, dtype=self.dtype), None
        return normal_directions(self.key, flat, d, self.dtype)

    def kept(self, rows: list[Tensor]) -> _Directions:
        """The same directions, from the unit rows drawn in forward (saves backward the hash)."""
        given = torch.cat(rows) if rows else torch.empty(0, 1, dtype=self.dtype)
        return _Directions(self.key, self.dtype, self.device, given)


class _Rows:
    """Particles as rows of (S*N, d) tensors: row ``s*N + i`` (the layout of :func:`collide`)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def index(self, flat: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(idx_i, idx_j, row_i, row_j)`` of flat pairs ``s*N*N + i*N + j``."""
        ii, jj = _pair_rows(flat, self.n)
        return ii, jj, ii, jj

    def gather(self, t: Tensor, idx: Tensor) -> Tensor:
        return t.index_select(0, idx)  # ~2x faster than t[idx] for rows

    def scatter(self, acc: Tensor, idx: Tensor, values: Tensor, alpha: float = 1.0) -> None:
        # index_add_ with alpha != 1 takes a ~3x slower path than negating first.
        acc.index_add_(0, idx, values if alpha == 1.0 else values.mul(alpha))


class _Columns:
    """Particles as columns of (S, D) feature rows, D = d*N: particle i of system s has the
    coordinates ``t[s, k*N + i]`` (KITINet's row-major (heads, N) reshape). Gathers and
    scatters work on the strided (S, N, d) view, so no layout copy of the whole tensor is made."""

    def __init__(self, n: int, d: int) -> None:
        self.n, self.d = n, d

    def index(self, flat: Tensor) -> tuple[Any, Any, Tensor, Tensor]:
        ii, jj = _pair_rows(flat, self.n)
        system = torch.div(flat, self.n * self.n, rounding_mode="floor")
        i, j = ii.remainder(self.n), jj.remainder(self.n)
        return (system, i), (system, j), ii, jj

    def gather(self, t: Tensor, idx: tuple[Tensor, Tensor]) -> Tensor:
        return t.reshape(t.shape[0], self.d, self.n).transpose(1, 2)[idx]

    def scatter(
        self, acc: Tensor, idx: tuple[Tensor, Tensor], values: Tensor, alpha: float = 1.0
    ) -> None:
        # acc is contiguous (made here), so the view writes through to it.
        acc.view(acc.shape[0], self.d, self.n).transpose(1, 2).index_put_(
            idx, values if alpha == 1.0 else values.mul(alpha), accumulate=True
        )


def _half_weights(pairs: Tensor, n: int, rows: int, dtype: torch.dtype) -> Tensor:
    """``1 / (2 (1 + k_i))`` per particle row ``s*N + i`` (k_i = accepted partners), (S*N,)."""
    ii, jj = _pair_rows(pairs, n)
    degree = torch.bincount(ii, minlength=rows) + torch.bincount(jj, minlength=rows)
    return degree.to(dtype).add_(1.0).mul_(2.0).reciprocal_()


def _chunks(pairs: Tensor, n: int, d: int) -> list[tuple[int, int]]:
    """Ranges of the pair list, each of at most ~_CHUNK_ELEMENTS / d pairs, cut only between
    systems (a system with more pairs than that is cut in pieces counted from its own first pair).

    Where a cut falls changes the order in which a particle's changes are summed (its changes as
    ``i`` and as ``j`` of a chunk are scattered in turn), so cuts must not depend on other
    systems' pairs: then a system's result is a function of its own data, bit for bit.
    """
    k = pairs.shape[0]
    step = max(1, _CHUNK_ELEMENTS // max(d, 1))
    if k <= step:
        return [(0, k)] if k else []
    systems = torch.div(pairs, n * n, rounding_mode="floor")
    counts = torch.unique_consecutive(systems, return_counts=True)[1].tolist()
    chunks, first, start = [], 0, 0
    for count in counts:
        stop = start + count
        if count > step or stop - first > step:
            if first < start:
                chunks.append((first, start))
            first = start
            if count > step:
                chunks.extend((a, min(a + step, stop)) for a in range(start, stop, step))
                first = stop
        start = stop
    if first < k:
        chunks.append((first, k))
    return chunks


def _system_scale(flat: Tensor, n: int, scale: Tensor | None) -> Tensor | None:
    """The per-system ``scale`` (S,) of each pair's system, (K, 1); None if ``scale`` is."""
    if scale is None:
        return None
    return scale[torch.div(flat, n * n, rounding_mode="floor")].unsqueeze(-1)


def forward_pairs(
    layout: _Rows | _Columns,
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    source: _Directions,
    weights: Tensor | None,
    *,
    base: Tensor | None = None,
    dt: float = 1.0,
    scale: Tensor | None = None,
    keep: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The collision of the given pairs (``keep``: a list to collect drawn unit directions in).

    ``base`` None: returns ``(v', x* or None)`` (x* when ``weights`` are given). Otherwise returns
    ``(base + changes, None)`` with ``base = x + dt v`` computed by the caller (KITINet): the
    result is ``x* + dt v'`` (``x + dt v'`` without weights), and every entry of a particle that
    collides with nothing is bitwise ``base``. ``v`` may be the caller's velocities multiplied per
    system by the power of two ``scale`` (S,) (see :mod:`kinetics._scale`); velocity changes are
    divided by it, exactly. Per pair (i, j): v_i gains ``c = (v_j - v_i) / 2 + v_r n_ij / 2`` and
    v_j loses it; x_i gains ``(x_j - x_i) w_i`` and x_j gains ``(x_i - x_j) w_j``,
    ``w = 1 / (2 (1 + k))``. The arithmetic of a pair does not depend on the layout, and each
    particle receives its pairs' changes in the same order in both, so both give the same bits.
    """
    d = v.shape[-1] if isinstance(layout, _Rows) else layout.d
    if base is None:
        out_v, out_x = torch.zeros_like(v), (torch.zeros_like(x) if weights is not None else None)
    else:
        out_v, out_x = base, None
    for start, stop in _chunks(pairs, layout.n, d):
        flat = pairs[start:stop]
        idx_i, idx_j, row_i, row_j = layout.index(flat)
        diff = layout.gather(v, idx_i).sub_(layout.gather(v, idx_j))  # v_i - v_j
        # Exact relative speed of accepted pairs (no Gram cancellation).
        half_v_rel = 0.5 * torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
        z, inv_norm = source.block(flat, start, stop, d)
        if keep is not None:
            keep.append(z * inv_norm if inv_norm is not None else z)
        change = z.mul_(half_v_rel.mul_(inv_norm)) if inv_norm is not None else z * half_v_rel
        change.sub_(diff, alpha=0.5)
        del diff, z
        if base is not None and dt != 1.0:
            change.mul_(dt)
        pair_scale = _system_scale(flat, layout.n, scale)
        if pair_scale is not None:
            change.div_(pair_scale)
        if weights is not None:
            towards = layout.gather(x, idx_j).sub_(layout.gather(x, idx_i))  # x_j - x_i
            w_i, w_j = weights[row_i].unsqueeze(-1), weights[row_j].unsqueeze(-1)
            if out_x is None:  # one output: the position changes go into it as well
                change_j = torch.addcmul(change, towards, w_j)  # enters with a minus sign
                change.addcmul_(towards, w_i)
                layout.scatter(out_v, idx_i, change)
                layout.scatter(out_v, idx_j, change_j, alpha=-1.0)
                continue
            layout.scatter(out_x, idx_i, towards * w_i)
            layout.scatter(out_x, idx_j, towards.mul_(w_j), alpha=-1.0)
        layout.scatter(out_v, idx_i, change)
        layout.scatter(out_v, idx_j, change, alpha=-1.0)
    if base is not None:
        return out_v, None
    return out_v.add_(v), (out_x.add_(x) if out_x is not None else None)


def backward_pairs(
    layout: _Rows | _Columns,
    grad_v: Tensor | None,
    grad_x: Tensor | None,
    v: Tensor,
    pairs: Tensor,
    source: _Directions,
    weights: Tensor | None,
    v_scale: float,
) -> tuple[Tensor | None, Tensor | None]:
    """Vector-Jacobian products of :func:`forward_pairs`: ``(grad wrt x, grad wrt v)``.

    ``grad_v`` is the gradient of v' divided by ``v_scale`` (KITINet passes the gradient g of
    ``x* + dt v'`` with ``v_scale = dt``, so that g serves for both v' and x*). Per pair, with
    ``w = g_i - g_j`` (of v'), ``u = (v_i - v_j) / v_r``: v_i gets ``-w / 2 + (w . n_ij / 2) u``
    and v_j its negative (the mean part and the derivative of v_r); positions: x_i gets
    ``w_j h_j - w_i h_i`` and x_j its negative, h the gradient of x*. ``v`` may be scaled per
    system by a power of two: only its direction ``u`` enters (the step is homogeneous of
    degree 1 in v).
    """
    d = v.shape[-1] if isinstance(layout, _Rows) else layout.d
    gv = grad_v.mul(v_scale).contiguous() if grad_v is not None else None
    gx = grad_x.clone(memory_format=torch.contiguous_format) if grad_x is not None else None
    for start, stop in _chunks(pairs, layout.n, d):
        flat = pairs[start:stop]
        idx_i, idx_j, row_i, row_j = layout.index(flat)
        if gv is not None:
            assert grad_v is not None
            diff = layout.gather(v, idx_i).sub_(layout.gather(v, idx_j))
            v_rel = torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
            unit = diff.div_(v_rel.clamp_min_(_TINY[v.dtype]))  # 0 where v_r == 0
            z, inv_norm = source.block(flat, start, stop, d)
            w = layout.gather(grad_v, idx_i).sub_(layout.gather(grad_v, idx_j))
            if v_scale != 1.0:
                w.mul_(v_scale)
            along = (w * z).sum(dim=-1, keepdim=True).mul_(0.5)
            if inv_norm is not None:
                along.mul_(inv_norm)
            change = unit.mul_(along).sub_(w, alpha=0.5)
            del w, z
            layout.scatter(gv, idx_i, change)
            layout.scatter(gv, idx_j, change, alpha=-1.0)
        if gx is not None and weights is not None:
            assert grad_x is not None
            h_i = layout.gather(grad_x, idx_i).mul_(weights[row_i].unsqueeze(-1))
            h_j = layout.gather(grad_x, idx_j).mul_(weights[row_j].unsqueeze(-1))
            towards = h_j.sub_(h_i)
            layout.scatter(gx, idx_i, towards)
            layout.scatter(gx, idx_j, towards, alpha=-1.0)
    return gx, gv


def keeps_directions(source: _Directions, k: int, d: int, needs_grad: bool) -> list[Tensor] | None:
    """A list for forward to collect the drawn directions in when backward will need them and
    they are small enough to keep (else None: backward recomputes them)."""
    if source.given is not None or not needs_grad or k * d > _SAVE_DIRECTIONS_ELEMENTS:
        return None
    return []


class _PairCollision(torch.autograd.Function):
    """Autograd for the collision of given pairs. Saves v, the pair list, the weights and the
    drawn directions while they are small (else only the key: backward recomputes them)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        v: Tensor,
        pairs: Tensor,
        layout: _Rows | _Columns,
        source: _Directions,
        position_update: bool,
        dt: float | None,
    ) -> tuple[Tensor, Tensor]:
        d = v.shape[-1] if isinstance(layout, _Rows) else layout.d
        weights = (
            _half_weights(pairs, layout.n, x.numel() // d, x.dtype) if position_update else None
        )
        keep = keeps_directions(source, pairs.shape[0], d, ctx.needs_input_grad[1])
        base = None if dt is None else torch.add(x, v, alpha=dt)
        first, x_new = forward_pairs(
            layout, x, v, pairs, source, weights, base=base, dt=dt or 1.0, keep=keep
        )
        if keep is not None:
            source = source.kept(keep)
        ctx.set_materialize_grads(False)
        ctx.layout, ctx.source, ctx.dt = layout, source, dt
        ctx.save_for_backward(v, pairs, weights)
        if x_new is None:
            x_new = x.new_empty(0)
            ctx.mark_non_differentiable(x_new)
        return first, x_new

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_first: Tensor | None, grad_x: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        v, pairs, weights = ctx.saved_tensors
        if ctx.dt is None:  # outputs v' and x*
            grad_v, v_scale = grad_first, 1.0
            if weights is None:
                grad_x = None
        else:  # one output x* + dt v' (x + dt v'): x* and v' both get its gradient
            grad_v, grad_x, v_scale = grad_first, grad_first, ctx.dt
            if grad_first is not None and weights is None:
                grad_x = None
        need_x, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx, gv = backward_pairs(
            ctx.layout,
            grad_v if need_v else None,
            grad_x if need_x else None,
            v,
            pairs,
            ctx.source,
            weights,
            v_scale,
        )
        if ctx.dt is not None and weights is None and need_x:
            gx = grad_first  # x' = x + dt v': identity in x
        return gx, gv, None, None, None, None, None


def _source(
    v: Tensor,
    k: int,
    d: int,
    key: tuple[int, int] | None,
    generator: torch.Generator | None,
    directions: Tensor | None,
) -> _Directions:
    if directions is not None and tuple(directions.shape) != (k, d):
        raise ValueError(
            f"directions must have shape ({k}, {d}) for the accepted pairs, "
            f"got {tuple(directions.shape)}"
        )
    if key is None:
        key = draw_key(generator, v.device)
    return _Directions(key, v.dtype, v.device, directions)


def collide_pairs(
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    n: int,
    *,
    key: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    directions: Tensor | None = None,
    position_update: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Collide the given pairs of flat particles: the differentiable half of
    :func:`kinetics.dsmc.collide`.

    Args:
        x: positions (S*N, d) of S systems of N particles, system after system.
        v: velocities (S*N, d).
        pairs: flat pair indices ``s*N*N + i*N + j`` (i < j) in row-major order, e.g. from
            :func:`kinetics.dsmc.select_pairs`.
        n: particles per system N.
        key: stream key of the random directions (:func:`kinetics.streams.stream_key`); None
            draws one from ``generator`` (None: torch's global generator), one draw per call.
        directions: optional (K, d) unit vectors used instead (exact tests against a reference).
        position_update: also return x*.

    Returns:
        ``(v', x* or None)``, differentiable with respect to ``x`` and ``v`` (through x*, v' and the
        relative speed of the random term; pairs and directions are constants). Memory kept for
        backward: v, the pairs and the directions while small, O(S N d + K d).
    """
    source = _source(v, pairs.shape[0], v.shape[1], key, generator, directions)
    v_new, x_new = _PairCollision.apply(x, v, pairs, _Rows(n), source, position_update, None)
    return v_new, (x_new if position_update else None)


def collide_features(
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    n: int,
    dt: float,
    *,
    key: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    directions: Tensor | None = None,
    position_update: bool = True,
) -> Tensor:
    """KITINet's ``x* + dt v'`` (``x + dt v'``) for systems given as feature rows (S, D).

    Particle i of system s has coordinates ``x[s, k*N + i]``, k < D / N (the row-major
    ``(heads, N)`` reshape of SPEC §1.5); ``pairs``, ``key``, ``generator`` and ``directions`` as
    in :func:`collide_pairs`. The result is ``torch.add(x, v, alpha=dt)`` plus the changes of
    colliding particles, written in place on strided views: no copy into a particle layout.
    """
    d = x.shape[1] // n
    source = _source(v, pairs.shape[0], d, key, generator, directions)
    out, _ = _PairCollision.apply(x, v, pairs, _Columns(n, d), source, position_update, float(dt))
    return out
