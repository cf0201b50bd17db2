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
(random directions exist per chunk only). The differentiable part is a custom autograd function
(:func:`collide_pairs`, :func:`collide_features`) that saves the velocities, the pair list, one
weight per particle and the directions while they are small (else the generator state: backward
redraws them), never autograd's per-pair intermediates.

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
from typing import Any, NamedTuple

import torch
from torch import Tensor

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

# Elements (pairs x dims) of per-pair tensors (random directions, gathered velocities) materialised
# at once. 2**20 float32 = 4 MiB per buffer. On CPU the random stream does not depend on it (see
# _chunks), nor on how systems are grouped.
_CHUNK_ELEMENTS = 1 << 20

# Drawn directions (pairs x dims) kept for backward up to this size (64 MiB in float32); beyond it
# backward redraws them from the saved generator state (one more randn pass, no memory).
_SAVE_DIRECTIONS_ELEMENTS = 1 << 24

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

    Numerics: the selection runs on systems rescaled by powers of two where their max-abs is
    outside the safe range (see :func:`select_pairs`), and so does the velocity update (it is
    homogeneous in v: collided in the safe scale, scaled back exactly). Systems with a NaN or Inf
    in ``x`` or ``v`` are not collided: their ``v_new`` / ``x_new`` rows are the inputs, they are
    flagged in ``nonfinite`` and left out of the collision rate (NaN if no system is finite).

    Random directions: the K accepted pairs in row-major (s, i, j) order take the normalised rows
    of ``randn(K, d, generator=generator)`` (drawn in blocks; on CPU the blocks continue one stream
    exactly), so equal generator states give equal results.
    """
    if x.dim() != 3 or x.shape != v.shape:
        raise ValueError(
            f"x and v must both have shape (S, N, d); got {tuple(x.shape)} and {tuple(v.shape)}"
        )
    _check_coef(coll_coef, mean_free_path)
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
        generator=generator,
        directions=directions,
        position_update=position_update,
    )
    v_new = v_flat.reshape(n_sys, n, d)
    if v_scale is not None:
        v_new = v_new / v_scale
    v_new = v_new.to(out_dtype)
    x_new = x_flat.reshape(n_sys, n, d).to(x.dtype) if position_update else None
    return DSMCResult(v_new, x_new, accepted, num_accepted, num_pairs, nonfinite)


# --------------------------------------------------------------------------------------------
# The collision of accepted pairs: forward, backward and the replayable random directions.


_TINY = {dt: torch.finfo(dt).tiny for dt in (torch.float32, torch.float64)}


def _pair_rows(flat: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Rows ``s*N + i`` and ``s*N + j`` of the particles of flat pair indices ``s*N*N + i*N + j``."""
    ii = torch.div(flat, n, rounding_mode="floor")
    jj = ii - ii.remainder(n) + flat.remainder(n)
    return ii, jj


def _default_generator(device: torch.device) -> torch.Generator | None:
    """The global generator torch.randn would use on ``device`` (None if we cannot name it)."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    return None


class _Directions:
    """The random unit directions of the K accepted pairs, in blocks, replayable for backward.

    Either rows of caller-given ``directions`` or Gaussian ``randn`` blocks of the chunk size in
    pair order; a drawn block is returned unnormalised with ``1 / |z|`` per row (the normalisation is
    folded into the kick's scale). The generator's state before the first draw is kept, so backward
    can redraw the identical blocks from a private copy without touching the caller's generator.
    """

    def __init__(
        self, generator: torch.Generator | None, like: Tensor, directions: Tensor | None
    ) -> None:
        self.given = directions
        self.dtype = like.dtype
        self.device = like.device
        self.generator = generator
        self.state: Tensor | None = None
        if directions is None:
            gen = generator if generator is not None else _default_generator(like.device)
            if gen is not None:
                self.state = gen.get_state()
                self.gen_device = gen.device

    def replay(self) -> _Directions:
        """A source that yields the same blocks again (for backward)."""
        if self.given is not None:
            return self
        if self.state is None:
            raise RuntimeError("cannot replay random directions drawn on this device")
        twin = torch.Generator(device=self.gen_device)
        twin.set_state(self.state)
        clone = _Directions.__new__(_Directions)
        clone.__dict__.update(self.__dict__, generator=twin)
        return clone

    def block(self, start: int, stop: int, d: int) -> tuple[Tensor, Tensor | None]:
        """Directions of pairs ``start:stop``: ``(z, inv_norm)``, unit vectors ``z * inv_norm``
        (``inv_norm`` None for given unit directions). Blocks must be requested in order."""
        if self.given is not None:
            return self.given[start:stop].to(device=self.device, dtype=self.dtype), None
        gen_device = self.generator.device if self.generator is not None else self.device
        z = torch.randn(
            stop - start, d, generator=self.generator, dtype=self.dtype, device=gen_device
        ).to(self.device)
        norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min_(_TINY[self.dtype])
        return z, norm.reciprocal_()


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


def _chunks(k: int, d: int) -> list[tuple[int, int]]:
    """Pair ranges of at most ~_CHUNK_ELEMENTS / d pairs, a multiple of 16 pairs each: CPU
    ``randn`` blocks of 16n numbers continue one stream exactly, so the drawn directions are
    the rows of a single ``randn(K, d)`` whatever the chunk size."""
    step = max(16, (_CHUNK_ELEMENTS // max(d, 1)) // 16 * 16)
    return [(start, min(start + step, k)) for start in range(0, k, step)]


def _half_weights(pairs: Tensor, n: int, rows: int, dtype: torch.dtype) -> Tensor:
    """``1 / (2 (1 + k_i))`` per particle row ``s*N + i`` (k_i = accepted partners), (S*N,)."""
    ii, jj = _pair_rows(pairs, n)
    degree = torch.bincount(ii, minlength=rows) + torch.bincount(jj, minlength=rows)
    return degree.to(dtype).add_(1.0).mul_(2.0).reciprocal_()


def _forward_pairs(
    layout: _Rows | _Columns,
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    source: _Directions,
    weights: Tensor | None,
    dt: float | None,
    keep: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The collision of the given pairs (``keep``: a list to collect drawn unit directions in).

    ``dt`` None: returns ``(v', x* or None)`` (x* when ``weights`` are given). Otherwise returns
    ``(x* + dt v', None)`` (``x + dt v'`` without weights), built as ``x + dt v`` plus the changes
    of colliding particles, so every other entry is bit-identical to ``torch.add(x, v, alpha=dt)``.
    Per pair (i, j): v_i gains ``c = (v_j - v_i) / 2 + v_r n_ij / 2`` and v_j loses it; x_i gains
    ``(x_j - x_i) w_i`` and x_j gains ``(x_i - x_j) w_j``, ``w = 1 / (2 (1 + k))``.
    """
    d = v.shape[-1] if isinstance(layout, _Rows) else layout.d
    if dt is None:
        out_v, out_x = torch.zeros_like(v), (torch.zeros_like(x) if weights is not None else None)
    else:
        out_v, out_x = torch.add(x, v, alpha=dt), None
    for start, stop in _chunks(pairs.shape[0], d):
        idx_i, idx_j, row_i, row_j = layout.index(pairs[start:stop])
        diff = layout.gather(v, idx_i).sub_(layout.gather(v, idx_j))  # v_i - v_j
        # Exact relative speed of accepted pairs (no Gram cancellation).
        half_v_rel = 0.5 * torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
        z, inv_norm = source.block(start, stop, d)
        if keep is not None:
            keep.append(z * inv_norm if inv_norm is not None else z)
        change = z.mul_(half_v_rel.mul_(inv_norm)) if inv_norm is not None else z * half_v_rel
        change.sub_(diff, alpha=0.5)
        del diff, z
        if dt is not None:
            change.mul_(dt)
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
    if dt is not None:
        return out_v, None
    return out_v.add_(v), (out_x.add_(x) if out_x is not None else None)


def _backward_pairs(
    layout: _Rows | _Columns,
    grad_v: Tensor | None,
    grad_x: Tensor | None,
    v: Tensor,
    pairs: Tensor,
    source: _Directions,
    weights: Tensor | None,
    v_scale: float,
) -> tuple[Tensor | None, Tensor | None]:
    """Vector-Jacobian products of :func:`_forward_pairs`: ``(grad wrt x, grad wrt v)``.

    ``grad_v`` is the gradient of v' divided by ``v_scale`` (KITINet passes the gradient g of
    ``x* + dt v'`` with ``v_scale = dt``, so that g serves for both v' and x*). Per pair, with
    ``w = g_i - g_j`` (of v'), ``u = (v_i - v_j) / v_r``: v_i gets ``-w / 2 + (w . n_ij / 2) u``
    and v_j its negative (the mean part and the derivative of v_r); positions: x_i gets
    ``w_j h_j - w_i h_i`` and x_j its negative, h the gradient of x*.
    """
    d = v.shape[-1] if isinstance(layout, _Rows) else layout.d
    gv = grad_v.mul(v_scale).contiguous() if grad_v is not None else None
    gx = grad_x.clone(memory_format=torch.contiguous_format) if grad_x is not None else None
    for start, stop in _chunks(pairs.shape[0], d):
        idx_i, idx_j, row_i, row_j = layout.index(pairs[start:stop])
        if gv is not None:
            assert grad_v is not None
            diff = layout.gather(v, idx_i).sub_(layout.gather(v, idx_j))
            v_rel = torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
            unit = diff.div_(v_rel.clamp_min_(_TINY[v.dtype]))  # 0 where v_r == 0
            z, inv_norm = source.block(start, stop, d)
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


class _PairCollision(torch.autograd.Function):
    """Autograd for the collision of given pairs. Saves v, the pair list, the weights and the
    directions: drawn ones while they take at most _SAVE_DIRECTIONS_ELEMENTS, else only the
    generator state (backward redraws them); no other per-pair tensor."""

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
        # Drawn directions: kept for backward while small, else redrawn there from the state.
        keep = None
        if source.given is None and ctx.needs_input_grad[1]:
            keep = [] if pairs.shape[0] * d <= _SAVE_DIRECTIONS_ELEMENTS else None
        first, x_new = _forward_pairs(layout, x, v, pairs, source, weights, dt, keep)
        if keep:
            source = _Directions(None, v, torch.cat(keep))
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
        source = ctx.source.replay() if grad_v is not None and need_v else ctx.source
        gx, gv = _backward_pairs(
            ctx.layout,
            grad_v if need_v else None,
            grad_x if need_x else None,
            v,
            pairs,
            source,
            weights,
            v_scale,
        )
        if ctx.dt is not None and weights is None and need_x:
            gx = grad_first  # x' = x + dt v': identity in x
        return gx, gv, None, None, None, None, None


def _prepare(
    v: Tensor,
    k: int,
    d: int,
    generator: torch.Generator | None,
    directions: Tensor | None,
) -> _Directions:
    if directions is not None and tuple(directions.shape) != (k, d):
        raise ValueError(
            f"directions must have shape ({k}, {d}) for the accepted pairs, "
            f"got {tuple(directions.shape)}"
        )
    source = _Directions(generator, v, directions)
    if directions is None and source.state is None and torch.is_grad_enabled():
        # No nameable global generator here: keep the drawn directions instead of replaying.
        source = _Directions(None, v, _draw_all(k, d, v, generator))
    return source


def collide_pairs(
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    n: int,
    *,
    generator: torch.Generator | None = None,
    directions: Tensor | None = None,
    position_update: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Collide the given pairs of flat particles: the differentiable half of :func:`collide`.

    Args:
        x: positions (S*N, d) of S systems of N particles, system after system.
        v: velocities (S*N, d).
        pairs: flat pair indices ``s*N*N + i*N + j`` (i < j) in row-major order, e.g. from
            :func:`select_pairs`.
        n: particles per system N.
        generator, directions: as in :func:`collide`.
        position_update: also return x*.

    Returns:
        ``(v', x* or None)``, differentiable with respect to ``x`` and ``v`` (through x*, v' and the
        relative speed of the random term; pairs and directions are constants). Memory kept for
        backward: v, the pairs and the generator state (directions are redrawn), O(S N d + K).
    """
    source = _prepare(v, pairs.shape[0], v.shape[1], generator, directions)
    v_new, x_new = _PairCollision.apply(x, v, pairs, _Rows(n), source, position_update, None)
    return v_new, (x_new if position_update else None)


def collide_features(
    x: Tensor,
    v: Tensor,
    pairs: Tensor,
    n: int,
    dt: float,
    *,
    generator: torch.Generator | None = None,
    directions: Tensor | None = None,
    position_update: bool = True,
) -> Tensor:
    """KITINet's ``x* + dt v'`` (``x + dt v'``) for systems given as feature rows (S, D).

    Particle i of system s has coordinates ``x[s, k*N + i]``, k < D / N (the row-major
    ``(heads, N)`` reshape of SPEC §1.5); ``pairs`` as in :func:`collide_pairs`. The result is
    ``torch.add(x, v, alpha=dt)`` plus the changes of colliding particles, written in place on
    strided views: no copy into a particle layout and back, forward or backward.
    """
    d = x.shape[1] // n
    source = _prepare(v, pairs.shape[0], d, generator, directions)
    layout = _Columns(n, d)
    out, _ = _PairCollision.apply(x, v, pairs, layout, source, position_update, float(dt))
    return out


def _draw_all(k: int, d: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """All K unit directions at once, in the block order of :class:`_Directions`."""
    source = _Directions(generator, like, None)
    blocks = []
    for start, stop in _chunks(k, d):
        z, inv_norm = source.block(start, stop, d)
        blocks.append(z.mul_(inv_norm))
    return torch.cat(blocks) if blocks else like.new_zeros(0, d)
