"""One DSMC hard-sphere collision step between particles (SPEC §1.1).

This is the kernel shared by KO's hard collision (particles = neurons: weight rows are positions,
gradient rows are velocities) and KITINet (particles cut from a feature vector).

A batch of ``S`` independent systems, each of ``N`` particles in ``d`` dimensions, is processed at once:

* selection: ``score[i, j] = v_r[i, j] * exp(-x_r[i, j] / mean_free_path) / max_{a<b} v_r[a, b]``;
  the pair ``i < j`` collides iff ``score > 1 - coll_coef`` (deterministic threshold, KO Eq. 7);
* every accepted pair acts at once: particle ``i`` receives
  ``sum_j A_ij [(v_j - v_i) / 2 + v_r[i, j] n_ij / 2]`` with ``n_ij`` uniform on the unit sphere and
  ``n_ji = -n_ij``, which conserves total momentum exactly;
* optional position update (KITINet Eq. 5): ``x*_i = (x_i + sum_j A_ij (x_i + x_j) / 2) / (1 + k_i)``,
  computed as ``x_i + sum_j A_ij (x_j - x_i) / (2 (1 + k_i))``.

Cost and memory (SPEC §5). :func:`select_pairs` needs no gradient. It runs over chunks of whole
systems into reused (chunk, N, N) buffers; squared distances come from one Gram matmul per
system, never from an ``(N, N, d)`` difference tensor. Since ``exp(-x_r / mfp) <= 1`` and
``v_r <= max v_r``, a pair with ``x_r >= mfp ln(1 / (1 - coll_coef))`` can never collide: minima of
small tiles of the position distances prove most of a chunk collision-free with one vectorised
pass, velocity distances (for ``max v_r``) are computed only for chunks with candidates, and the
score only at the candidates (or in place on whole matrices where they are dense). The accepted
pairs come out once, as a list of flat indices in row-major (s, i, j) order.

Everything after the selection costs O(K d) for K accepted pairs, in chunks of bounded size
(:mod:`kinetics._pairs`: :func:`collide_pairs`, :func:`collide_features`). Its autograd saves the
velocities, the pair list, one weight per particle and the directions while they are small (else
only the stream key: backward recomputes them), never autograd's per-pair intermediates. The
direction of a pair is a function of the stream key and the pair's flat index (s, i, j) alone
(:mod:`kinetics.streams`).

Numerics (issue 9). Precision: half-precision inputs (float16, bfloat16) are computed in float32
and returned in their own dtype; float32 and float64 run in their own precision. Scale: the Gram
distances square the inputs, so float32 systems with entries of 1e19 overflow and 1e-30 underflow
(and the velocity update's ``|v_i - v_j|`` with them). :func:`_make_safe` takes one max-abs per
system of ``x`` and of ``v`` (two vectorised reductions, negligible beside the Gram matmul); when
every one lies in ``[2^(emin/3), 2^(emax/3)]`` of the dtype (float32: about [2e-13, 4e12]) or is 0,
nothing else happens and the results are bitwise those of the plain code. Otherwise each system
is multiplied by a power of two bringing its max-abs into [0.5, 1):

* velocities: the selection compares ``v_r`` with ``(1 - coll_coef) max v_r`` of the same system,
  invariant to scaling v; the velocity update is homogeneous of degree 1 in v, so :func:`collide`
  and KITINet collide the scaled velocities and divide v' by the same power of two. Powers of two
  are exact: an in-range system gets bitwise its unscaled result, an out-of-range one the result
  exact arithmetic would give (v scaled by 2^70 gives exactly 2^70 times the result);
* positions: ``exp(-x_r / mean_free_path)`` is not scale invariant, so the scaled distance is
  multiplied back (by ``2^e / mean_free_path``) inside the score; a product beyond float range
  reads as an infinite distance (factor 0), an identical pair as distance 0 at any scale. The
  position prefilter is skipped then (same decisions, every entry scored).

Non-finite input: a system with a NaN or Inf in ``x`` or ``v`` is zeroed for the selection, so it
accepts no pair and its particles keep their inputs (KITINet: ``x + dt v`` there); the other
systems are bitwise unaffected. :class:`DSMCResult` flags such systems in ``nonfinite`` and its
``collision_rate`` counts only finite systems (NaN when none is). :func:`collide_pairs` and
:func:`collide_features` do no rescaling: they expect velocities in a safe range.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from kinetics._pairs import collide_features, collide_pairs, draw_key
from kinetics._scale import SafeInputs, make_safe

__all__ = [
    "DSMCResult",
    "collide",
    "collide_features",
    "collide_pairs",
    "collision_mask",
    "pairwise_distances",
    "select_pairs",
]

# Entries of one (systems, N, N) selection chunk: 2**21 float32 = 8 MiB per reused buffer. Fewer,
# larger chunks save per-op overhead and parallelise better over 2 threads; at (S, N, d) =
# (128, 512, 16) 2**21 was ~15 % faster than 2**19 and 2**22. Chunks are whole systems, so results
# do not depend on this constant.
_PAIR_ELEMENTS = 1 << 21

# Chunks with at most this many (N, N) entries skip the position prefilter (it costs more ops
# than it saves there); the result is the same either way.
_SMALL_PAIRS = 1 << 14

# Passing tiles cover more than 1 / _DENSE_FROM of a chunk's entries: score every entry in place
# instead of gathering the candidates (gathers cost several times a vectorised pass).
_DENSE_FROM = 4

# Safety margin (in units of x_r / mean_free_path) of the position prefilter: a pair is dropped only
# if exp(-x_r / mfp) <= (1 - coll_coef) * exp(-1e-4), far beyond any rounding of sqrt, exp or the
# threshold product, so the prefilter never changes a decision of the full score.
_PREFILTER_MARGIN = 1e-4


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
    nonfinite: Tensor | None = None
    """Boolean (S,): systems with a NaN or Inf in their ``x`` or ``v``. They were not collided
    (no pair selected, ``v_new``/``x_new`` equal the inputs there) and do not count in
    :attr:`collision_rate`. None means the same as all False."""

    @property
    def collision_rate(self) -> Tensor:
        """Accepted / candidate pairs over the batch's finite systems, a float32 scalar tensor
        (0 if N < 2; NaN if every system is non-finite, e.g. a layer with a NaN gradient: a loud
        value, never a silent 0)."""
        total = self.num_pairs * self.num_accepted.numel()
        if total == 0:
            return torch.zeros((), dtype=torch.float32, device=self.num_accepted.device)
        accepted = self.num_accepted.sum().to(torch.float32)
        if self.nonfinite is None:
            return accepted / total
        finite = self.nonfinite.numel() - self.nonfinite.sum()
        return accepted / (finite * self.num_pairs).to(torch.float32)  # 0 / 0: NaN


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half types lose the selection threshold and the sphere normalisation; work in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _augmented(points: Tensor) -> tuple[Tensor, Tensor]:
    """Vectors ``L_i = [a_i, s_i, 1]`` and ``R_j = [-2 a_j, 1, s_j]`` (S, N, d + 2) of centred points
    ``a`` with ``s = (1 - tol) |a|^2``: ``L_i . R_j`` is the lowered squared distance of
    :func:`pairwise_distances`, so one matmul writes each (N, N) entry once, with no broadcast
    copy or second pass. Built in the memory layout of ``points`` (KITINet's particles are
    columns, a (S, d, N) tensor seen transposed), so no layout copy is made; the results may be
    transposed views."""
    d = points.shape[-1]
    tol = 16.0 * torch.finfo(points.dtype).eps * d**0.5
    columns = points.transpose(-1, -2)
    if columns.is_contiguous() and not points.is_contiguous():
        centred = columns - columns.mean(dim=-1, keepdim=True)  # (S, d, N)
        sq = centred.square().sum(dim=-2, keepdim=True).mul_(1.0 - tol)
        ones = torch.ones_like(sq)
        left = torch.cat([centred, sq, ones], dim=-2)
        right = torch.cat([centred.mul_(-2.0), ones, sq], dim=-2)
        return left.transpose(-1, -2), right.transpose(-1, -2)
    centred = points - points.mean(dim=-2, keepdim=True)
    left = torch.nn.functional.pad(centred, (0, 2), value=1.0)
    torch.sum(centred.square_(), dim=-1, out=left[..., d]).mul_(1.0 - tol)
    right = left * -2.0
    right[..., d] = 1.0
    right[..., d + 1] = left[..., d]
    return left, right


def _squared_distances(points: Tensor) -> Tensor:
    """Squared distances (S, N, N) of ``points`` (S, N, d), lowered by their rounding bound, not
    clamped (entries may be slightly negative). See :func:`pairwise_distances`."""
    left, right = _augmented(points)
    return torch.bmm(left, right.transpose(-1, -2))


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
    the conservation laws. The selection of :func:`collide` uses exactly these distances.
    """
    return _squared_distances(points).clamp_min_(0.0).sqrt_()


def _check_coef(coll_coef: float, mean_free_path: float) -> None:
    if not 0.0 <= float(coll_coef) <= 1.0:
        raise ValueError(f"coll_coef={coll_coef} is outside [0, 1]")
    if not float(mean_free_path) > 0.0:
        raise ValueError(f"mean_free_path={mean_free_path} must be > 0")


@torch.no_grad()
def select_pairs(
    x: Tensor, v: Tensor, coll_coef: float, mean_free_path: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Accepted pairs of SPEC §1.1 for systems ``x``, ``v`` of shape (S, N, d), without a mask.

    Returns:
        ``(pairs, num_accepted)``: int64 flat indices ``s*N*N + i*N + j`` (i < j) of the accepted
        pairs in row-major (s, i, j) order, and the accepted count per system (S,).

    The decision per pair is ``sqrt(D_v) exp(-sqrt(D_x) / mfp) > (1 - coll_coef) max sqrt(D_v)``
    with ``D`` the clamped squared distances of :func:`pairwise_distances` (entry ``[i, j]``,
    i < j); systems whose velocities are all equal (max relative speed 0) accept nothing. Every
    decision uses only its own system's numbers, so the result does not depend on the chunking.

    Numerics: systems whose max-abs is outside a safe range (float32: about [2e-13, 4e12]) are
    first rescaled by powers of two (:func:`_make_safe`), so the selection is the same for ``v``
    scaled by 1e19 or 1e-30; systems with a NaN or Inf in ``x`` or ``v`` accept no pair.
    """
    _check_coef(coll_coef, mean_free_path)
    n_sys, n, _ = x.shape
    if coll_coef == 0.0 or n < 2 or n_sys == 0:
        counts = torch.zeros(n_sys, dtype=torch.long, device=x.device)
        return torch.zeros(0, dtype=torch.long, device=x.device), counts
    return _select_safe(make_safe(x, v, mean_free_path), coll_coef, mean_free_path)


@torch.no_grad()
def _select_safe(
    safe: SafeInputs, coll_coef: float, mean_free_path: float
) -> tuple[Tensor, Tensor]:
    """:func:`select_pairs` of inputs already brought into a safe scale."""
    n_sys, n, _ = safe.x.shape
    counts = torch.zeros(n_sys, dtype=torch.long, device=safe.x.device)
    if coll_coef == 0.0 or n < 2 or n_sys == 0:
        return torch.zeros(0, dtype=torch.long, device=safe.x.device), counts
    pairs = _Selector(safe.x, safe.v, coll_coef, mean_free_path, safe.x_factor).run()
    counts += torch.bincount(torch.div(pairs, n * n, rounding_mode="floor"), minlength=n_sys)
    return pairs, counts


class _Selector:
    """The chunked selection of :func:`select_pairs` for one batch of systems.

    Position distances bound the score: ``exp(-x_r / mfp) <= 1`` and ``v_r <= max v_r``, so a
    pair with ``x_r >= reach = mfp (ln(1 / (1 - c)) + margin)`` is never accepted. A full
    compare-and-``nonzero`` over every (N, N) matrix costs several times the matmul that built
    it (those ops are not vectorised), so each matrix is first reduced, vectorised, to the minima
    of vertical tiles of ``tile`` rows; only passing tiles are expanded to their entries, and the
    score is evaluated at those (where many tiles pass, or the matrices are small, the same
    elementwise ops run in place on whole matrices instead: the same decisions). Chunks without
    a passing tile are done: their velocity distances are never computed. Matrices are built
    chunk by chunk into reused buffers: allocating fresh (chunk, N, N) tensors costs more in page
    faults than the matmul.
    """

    def __init__(
        self,
        x: Tensor,
        v: Tensor,
        coll_coef: float,
        mean_free_path: float,
        x_factor: Tensor | None = None,
    ) -> None:
        self.n_sys, self.n, _ = x.shape
        self.coll_coef = coll_coef
        self.mean_free_path = mean_free_path
        self.x_factor = x_factor  # rescaled positions: -x_r / mfp = sqrt(D_x) * x_factor
        self.chunk = min(self.n_sys, max(1, _PAIR_ELEMENTS // (self.n * self.n)))
        self.x_aug: tuple[Tensor, Tensor] | None = _augmented(x)
        self.v = v
        self.v_aug: tuple[Tensor, Tensor] | None = None  # built when a chunk has candidates
        self.buf_x = x.new_empty(self.chunk, self.n, self.n)
        self.buf_v = torch.empty_like(self.buf_x)
        self._upper: Tensor | None = None
        self.tile = math.gcd(self.n, 16)
        self.tile_min = x.new_empty(self.chunk, self.n // self.tile, self.n)
        self.reach_sq = math.inf
        if coll_coef < 1.0:  # x_r >= reach: exp(-x_r / mfp) < (1 - c), the score cannot pass
            reach = mean_free_path * (-math.log1p(-coll_coef) + _PREFILTER_MARGIN)
            self.reach_sq = reach * reach

    @property
    def upper(self) -> Tensor:
        """Boolean (N, N) mask of the pairs i < j."""
        if self._upper is None:
            self._upper = torch.ones(self.n, self.n, dtype=torch.bool, device=self.buf_x.device)
            self._upper.triu_(1)
        return self._upper

    def run(self) -> Tensor:
        """Accepted flat pairs ``s*N*N + i*N + j`` in row-major order."""
        found = [self._accept(start) for start in range(0, self.n_sys, self.chunk)]
        return torch.cat(found)

    @staticmethod
    def _gram(aug: tuple[Tensor, Tensor], start: int, stop: int, out: Tensor) -> Tensor:
        left, right = aug[0][start:stop], aug[1][start:stop]
        return torch.bmm(left, right.transpose(-1, -2), out=out[: stop - start])

    def _accept(self, start: int) -> Tensor:
        """Accepted flat pairs of the chunk of systems beginning at ``start``, row-major."""
        stop = min(start + self.chunk, self.n_sys)
        assert self.x_aug is not None
        sq_x = self._gram(self.x_aug, start, stop, self.buf_x)
        if stop == self.n_sys:
            self.x_aug = None  # last use: freed before v_aug exists (peak memory)
        local = self._candidates(sq_x)  # None: score every entry
        if local is not None and local.numel() == 0:
            return local
        if self.v_aug is None:
            self.v_aug = _augmented(self.v)
        sq_v = self._gram(self.v_aug, start, stop, self.buf_v)
        v_max = sq_v.amax(dim=(-2, -1)).clamp_min_(0.0).sqrt_()  # = max of the clamped v_r
        threshold = (1.0 - self.coll_coef) * v_max
        if local is None:  # dense: the same elementwise ops, in place on whole matrices
            score = sq_x.clamp_min_(0.0).sqrt_()
            if self.x_factor is None:
                score.mul_(-1.0 / self.mean_free_path)
            else:
                score.mul_(self.x_factor[start:stop].view(-1, 1, 1))
            score.exp_()
            score.mul_(sq_v.clamp_min_(0.0).sqrt_())
            keep = torch.gt(score, threshold.view(-1, 1, 1)).logical_and_(self.upper)
            keep.logical_and_((v_max > 0).view(-1, 1, 1))
            local = keep.view(-1).nonzero().squeeze(-1)
        else:  # sparse: only at the candidates
            v_rel = sq_v.view(-1)[local].clamp_min_(0.0).sqrt_()
            score = sq_x.view(-1)[local].clamp_min_(0.0).sqrt_()
            score.mul_(-1.0 / self.mean_free_path).exp_().mul_(v_rel)
            system = torch.div(local, self.n * self.n, rounding_mode="floor")
            keep = torch.gt(score, threshold[system]).logical_and_(v_max[system] > 0)
            local = local[keep].sort().values  # tile order -> row-major (s, i, j)
        return local.add_(start * self.n * self.n)

    def _candidates(self, sq_x: Tensor) -> Tensor | None:
        """Entries [s, i, j], i < j, below the position bound, as flat indices into ``sq_x`` in
        any order; None where scoring every entry is cheaper (every pair is then a candidate:
        the prefilter never changes a decision, so the result is the same)."""
        n, tile, systems = self.n, self.tile, sq_x.shape[0]
        if self.reach_sq == math.inf or sq_x.numel() <= _SMALL_PAIRS or self.x_factor is not None:
            return None  # coll_coef == 1, too small for the prefilter to pay, or rescaled positions
        sq_x.diagonal(dim1=-2, dim2=-1).fill_(math.inf)  # never a pair; keeps tiles honest
        blocks = n // tile
        tiles = sq_x.view(systems, blocks, tile, n)
        tile_min = torch.amin(tiles, dim=2, out=self.tile_min[:systems])
        hits = torch.lt(tile_min, self.reach_sq).view(-1).nonzero().squeeze(-1)
        if hits.numel() * tile * _DENSE_FROM > sq_x.numel():
            return None
        col = hits.remainder(n)
        block = torch.div(hits, n, rounding_mode="floor")  # s * blocks + b
        row_block = block.remainder(blocks)
        rows_above = col - row_block * tile  # rows r < this of the tile hold pairs i < j
        keep = rows_above > 0
        col, block, row_block, rows_above = (
            col[keep],
            block[keep],
            row_block[keep],
            rows_above[keep],
        )
        values = tiles[torch.div(block, blocks, rounding_mode="floor"), row_block, :, col]
        inside = torch.lt(values, self.reach_sq).view(-1).nonzero().squeeze(-1)
        which = torch.div(inside, tile, rounding_mode="floor")
        row = inside.remainder(tile)
        upper = row < rows_above[which]
        first = block.mul_(tile * n).add_(col)  # flat index of the tile's first entry
        return first[which].add_(row.mul_(n))[upper]


def collision_mask(x: Tensor, v: Tensor, coll_coef: float, mean_free_path: float = 1.0) -> Tensor:
    """Accepted pairs of SPEC §1.1 as a boolean (S, N, N) mask, upper triangle (i < j) only.

    Systems whose velocities are all equal (max relative speed 0) accept nothing.
    """
    pairs, _ = select_pairs(x, v, coll_coef, mean_free_path)
    return _mask_of(pairs, x.shape[0], x.shape[1], x.device)


def _mask_of(pairs: Tensor, n_sys: int, n: int, device: torch.device) -> Tensor:
    mask = torch.zeros(n_sys * n * n, dtype=torch.bool, device=device)
    mask[pairs] = True
    return mask.reshape(n_sys, n, n)


def collide(
    x: Tensor,
    v: Tensor,
    coll_coef: float,
    *,
    mean_free_path: float = 1.0,
    generator: torch.Generator | None = None,
    key: tuple[int, int] | None = None,
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
        generator: draws the stream key of the random directions, one 64-bit number per call
            (default: torch's global generator); not used when ``key`` is given.
        key: stream key of the random directions (:func:`kinetics.streams.stream_key`).
        position_update: also return x* (KITINet Eq. 5); otherwise ``x_new`` is None.
        directions: optional (K, d) unit vectors for the K accepted pairs in row-major order of
            (system, i, j), i < j, used instead of drawing (for exact tests against a reference).
        accepted: optional precomputed :func:`collision_mask` of these inputs (saves recomputing it).

    Returns:
        :class:`DSMCResult`. Gradients flow through ``v_new``/``x_new`` to ``x`` and ``v`` (including the
        relative speed in the random term); the acceptance mask and directions are constants.
        Half-precision inputs are computed in float32 and returned in their own dtype.

    Numerics: the selection runs on systems rescaled by powers of two where their max-abs is
    outside the safe range (see :func:`select_pairs`), and so does the velocity update (it is
    homogeneous in v: collided in the safe scale, scaled back exactly). Systems with a NaN or Inf
    in ``x`` or ``v`` are not collided: their ``v_new`` / ``x_new`` rows are the inputs, they are
    flagged in ``nonfinite`` and left out of the collision rate (NaN if no system is finite).

    Random directions: pair (s, i, j) takes the direction of its flat index ``s*N*N + i*N + j``
    in the stream ``key`` (:mod:`kinetics.streams`), whatever the other pairs and however the work
    is chunked; equal keys (or equal generator states) give equal results.
    """
    if x.dim() != 3 or x.shape != v.shape:
        raise ValueError(
            f"x and v must both have shape (S, N, d); got {tuple(x.shape)} and {tuple(v.shape)}"
        )
    _check_coef(coll_coef, mean_free_path)
    if key is None:  # drawn first: the generator advances by one number whatever collides
        key = draw_key(generator, x.device)
    out_dtype = v.dtype
    work = _compute_dtype(out_dtype)
    xw, vw = x.to(work), v.to(work)
    n_sys, n, d = vw.shape

    safe = make_safe(xw.detach(), vw.detach(), mean_free_path)
    nonfinite = safe.nonfinite
    if nonfinite is None:
        nonfinite = torch.zeros(n_sys, dtype=torch.bool, device=x.device)
    if accepted is None:
        pairs, num_accepted = _select_safe(safe, coll_coef, mean_free_path)
        accepted = _mask_of(pairs, n_sys, n, x.device)
    else:
        pairs = accepted.reshape(-1).nonzero().squeeze(-1)
        num_accepted = accepted.sum(dim=(-2, -1))
    num_pairs = n * (n - 1) // 2

    if pairs.shape[0] == 0:
        if directions is not None and directions.shape[0] != 0:
            raise ValueError(f"directions has {directions.shape[0]} rows but no pair collided")
        x_new = x if position_update else None
        return DSMCResult(v, x_new, accepted, num_accepted, num_pairs, nonfinite)

    # The step is homogeneous of degree 1 in v: collide the velocities in the selection's safe
    # scale (|v_i - v_j| neither overflows nor underflows) and scale back, exactly (powers of 2).
    v_scale = safe.v_scale.view(-1, 1, 1) if safe.v_scale is not None else None
    v_in = vw if v_scale is None else vw * v_scale
    v_flat, x_flat = collide_pairs(
        xw.reshape(n_sys * n, d),
        v_in.reshape(n_sys * n, d),
        pairs,
        n,
        key=key,
        directions=directions,
        position_update=position_update,
    )
    v_new = v_flat.reshape(n_sys, n, d)
    if v_scale is not None:
        v_new = v_new / v_scale
    v_new = v_new.to(out_dtype)
    x_new = x_flat.reshape(n_sys, n, d).to(x.dtype) if position_update else None
    return DSMCResult(v_new, x_new, accepted, num_accepted, num_pairs, nonfinite)
