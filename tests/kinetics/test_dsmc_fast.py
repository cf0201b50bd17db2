"""The fast paths of kinetics.dsmc: chunked selection with its prefilter, the custom autograd
function of the pair collision, and the random stream of the directions.

Every selection path (position prefilter with tile expansion, dense compare, no prefilter) and
every chunking must give the same pairs as the documented rule evaluated densely; the autograd
function must match gradcheck and plain autograd; directions are the rows of one randn draw.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from reference import literal_kitinet, literal_kitinet_masks, literal_mask

from kinetics import _pairs, dsmc, kitinet
from kinetics._pairs import draw_key
from kinetics.dsmc import collide, collide_features, collide_pairs, pairwise_distances, select_pairs
from kinetics.kitinet import kitinet_collision_with_rate
from kinetics.streams import normal_directions, stream_key

F64 = torch.float64


def _dense_rule(x, v, coll_coef, mean_free_path=1.0):
    """The selection rule of select_pairs' docstring, evaluated on full matrices."""
    x_r, v_r = pairwise_distances(x), pairwise_distances(v)
    v_max = v_r.amax(dim=(-2, -1), keepdim=True)
    score = (-x_r / mean_free_path).exp() * v_r
    mask = (score > (1.0 - coll_coef) * v_max) & (v_max > 0)
    if coll_coef == 0.0:
        mask[:] = False
    return mask.triu(diagonal=1)


def _clustered(s, n, d, seed, spread=3.0, dtype=F64):
    """Points mostly far apart (x_r beyond the prefilter's reach) with a few close groups, so the
    prefilter's tiles are sparse, and velocities with varied sizes."""
    gen = torch.Generator().manual_seed(seed)
    x = spread * torch.randn(s, n, d, generator=gen, dtype=dtype)
    groups = torch.randint(0, n, (s, n // 8), generator=gen)
    for k in range(s):  # every 8th particle sits next to another one
        x[k, groups[k]] = x[k, groups[k].roll(1)] + 0.05 * torch.randn(
            groups.shape[1], d, generator=gen, dtype=dtype
        )
    v = torch.randn(s, n, d, generator=gen, dtype=dtype)
    v *= torch.exp(0.5 * torch.randn(s, n, 1, generator=gen, dtype=dtype))
    return x, v


@pytest.fixture(params=["default", "tiny chunks", "no small shortcut", "both"])
def selection_config(request, monkeypatch):
    """Run a test under several chunk sizes and with the small-problem shortcut off."""
    if request.param in ("tiny chunks", "both"):
        monkeypatch.setattr(dsmc, "_PAIR_ELEMENTS", 1)  # one system per chunk
    if request.param in ("no small shortcut", "both"):
        monkeypatch.setattr(dsmc, "_SMALL_PAIRS", 0)  # prefilter even tiny matrices
    return request.param


class _PathSpy:
    """Records which candidate path each chunk took (True = score every entry, False = tiles)."""

    def __init__(self, monkeypatch):
        self.paths: list[bool] = []
        original = dsmc._Selector._candidates

        def spy(selector, sq_x):
            local = original(selector, sq_x)
            self.paths.append(local is None)
            return local

        monkeypatch.setattr(dsmc._Selector, "_candidates", spy)


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("s", "n", "d"), [(3, 64, 3), (2, 50, 2), (4, 37, 5), (1, 96, 16)])
@pytest.mark.parametrize("coll_coef", [0.3, 0.9, 0.99, 1.0])
@pytest.mark.parametrize(("mean_free_path", "spread"), [(1.0, 3.0), (4.0, 3.0), (1.0, 12.0)])
def test_select_pairs_equals_dense_rule(
    s, n, d, coll_coef, mean_free_path, spread, selection_config
):
    x, v = _clustered(s, n, d, seed=n + d, spread=spread)
    want = _dense_rule(x, v, coll_coef, mean_free_path)
    pairs, counts = select_pairs(x, v, coll_coef, mean_free_path)
    got = torch.zeros(s * n * n, dtype=torch.bool)
    got[pairs] = True
    assert torch.equal(got.reshape(s, n, n), want)
    assert torch.equal(pairs, want.reshape(-1).nonzero().squeeze(-1))  # row-major (s, i, j)
    assert torch.equal(counts, want.sum(dim=(1, 2)))


def test_selection_paths_are_exercised(monkeypatch):
    """The inputs above reach both candidate paths: sparse tiles and the dense compare."""
    monkeypatch.setattr(dsmc, "_SMALL_PAIRS", 0)
    spy = _PathSpy(monkeypatch)
    x, v = _clustered(3, 64, 3, seed=67, spread=12.0)
    pairs, _ = select_pairs(x, v, 0.9)
    assert pairs.numel() > 0 and spy.paths and not any(spy.paths)  # tiles
    spy.paths.clear()
    select_pairs(0.01 * x, v, 0.9)  # everything within reach: score every entry
    assert spy.paths and all(spy.paths)


@pytest.mark.parametrize("coll_coef", [0.5, 0.9, 1.0])
def test_select_pairs_matches_literal_through_every_path(coll_coef, selection_config):
    """Against the paper-literal mask (float64 loops) on inputs off the threshold's edge."""
    x, v = _clustered(2, 24, 3, seed=5, spread=0.8)
    want = torch.stack([literal_mask(x[k], v[k], coll_coef) for k in range(2)])
    assert 0 < int(want.sum()) < 2 * 24 * 23 // 2 or coll_coef == 1.0
    pairs, _ = select_pairs(x, v, coll_coef)
    got = torch.zeros(2 * 24 * 24, dtype=torch.bool)
    got[pairs] = True
    assert torch.equal(got.reshape(2, 24, 24), want)


def test_select_pairs_float32_kitinet_layout_is_chunk_independent(monkeypatch):
    """KITINet's particles are columns of (S, D) rows (a transposed view): same pairs for any
    chunk size, and a batch gives what each system gives alone."""
    gen = torch.Generator().manual_seed(3)
    s, heads, n = 6, 4, 128
    x = torch.relu(torch.randn(s, heads * n, generator=gen))  # many exact-zero particles
    v = torch.randn(s, heads * n, generator=gen)
    xp, vp = (t.reshape(s, heads, n).transpose(1, 2) for t in (x, v))
    pairs, counts = select_pairs(xp, vp, 0.9)
    assert 0 < pairs.numel() < s * n * (n - 1) // 2
    monkeypatch.setattr(dsmc, "_PAIR_ELEMENTS", 1)
    assert torch.equal(select_pairs(xp, vp, 0.9)[0], pairs)
    for k in range(s):
        alone, _ = select_pairs(xp[k : k + 1], vp[k : k + 1], 0.9)
        mine = pairs[(pairs // (n * n)) == k] - k * n * n
        assert torch.equal(alone, mine), k
    assert int(counts.sum()) == pairs.numel()


def test_prefilter_reach_is_conservative():
    """A pair just inside the reach with the largest relative speed is accepted; the reach is
    mfp ln(1/(1-c)): exp(-x_r/mfp) v_max > (1-c) v_max iff x_r < mfp ln(1/(1-c))."""
    coll_coef, mfp = 0.9, 2.0
    reach = mfp * math.log(1.0 / (1.0 - coll_coef))
    for x_r, accepted in ((reach * (1 - 1e-6), True), (reach * (1 + 1e-6), False)):
        x = torch.zeros(1, 2, 3, dtype=F64)
        x[0, 1, 0] = x_r
        v = torch.zeros(1, 2, 3, dtype=F64)
        v[0, 1, 2] = 1.0
        pairs, _ = select_pairs(x, v, coll_coef, mfp)
        assert (pairs.numel() == 1) is accepted, x_r


# --------------------------------------------------------------------------------------------
# Random stream
# --------------------------------------------------------------------------------------------
def test_directions_are_keyed_by_the_flat_pair_index(monkeypatch):
    """Pair (s, i, j) takes the direction of its flat index s*N*N + i*N + j in the stream of the
    key (one 64-bit draw of the generator per call), however the pairs are chunked."""
    x, v = _clustered(3, 16, 5, seed=9, spread=0.3)
    res = collide(x, v, 0.9, generator=torch.Generator().manual_seed(5), position_update=True)
    k = int(res.num_accepted.sum())
    assert k > 40
    key = draw_key(torch.Generator().manual_seed(5), torch.device("cpu"))
    flat = res.accepted.reshape(-1).nonzero().squeeze(-1)
    z, inv_norm = normal_directions(key, flat, 5, F64)
    given = collide(x, v, 0.9, directions=z * inv_norm, position_update=True)
    torch.testing.assert_close(res.v_new, given.v_new, rtol=1e-13, atol=1e-13)
    keyed = collide(x, v, 0.9, key=key, position_update=True)
    assert torch.equal(keyed.v_new, res.v_new)
    # One pair per chunk splits every system: the same directions, but a particle's changes
    # are summed in another order (only cuts inside a system do that; see _pairs._chunks).
    monkeypatch.setattr(_pairs, "_CHUNK_ELEMENTS", 1)
    small = collide(x, v, 0.9, generator=torch.Generator().manual_seed(5), position_update=True)
    torch.testing.assert_close(small.v_new, res.v_new, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(small.x_new, res.x_new, rtol=1e-13, atol=1e-13)


def test_chunks_cut_only_between_systems():
    """Chunk boundaries fall between systems, and a system larger than a chunk is cut at offsets
    counted from its own first pair: a system's chunks do not depend on other systems' pairs."""
    n = 10
    counts = [3, 5, 2, 20, 1, 4]
    pairs = torch.cat([torch.arange(c) + s * n * n for s, c in enumerate(counts)])
    monkeypatch_step = 6  # pairs per chunk at d = 1
    old = _pairs._CHUNK_ELEMENTS
    _pairs._CHUNK_ELEMENTS = monkeypatch_step
    try:
        chunks = _pairs._chunks(pairs, n, 1)
    finally:
        _pairs._CHUNK_ELEMENTS = old
    starts = [0, *torch.tensor(counts).cumsum(0).tolist()]
    assert chunks[0][0] == 0 and chunks[-1][1] == len(pairs)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    for start, stop in chunks:
        assert stop - start <= monkeypatch_step
        inside = [s for s in range(len(counts)) if starts[s] < stop and starts[s + 1] > start]
        if len(inside) > 1:  # several systems: whole ones only
            assert start in starts and stop in starts
    big = [c for c in chunks if starts[3] <= c[0] < starts[4]]  # the 20-pair system
    assert [c[0] - starts[3] for c in big] == [0, 6, 12, 18]


def test_the_generator_advances_by_one_draw_whatever_collides():
    """collide draws one number per call: the generator's next state does not depend on the data
    (K = 0, a few, or every pair)."""
    x, v = _clustered(2, 12, 3, seed=1, spread=0.3)
    states = []
    for coef, scale in [(0.0, 1.0), (0.9, 1.0), (1.0, 1.0), (0.5, 1e3)]:
        gen = torch.Generator().manual_seed(7)
        collide(x * scale, v, coef, generator=gen)
        states.append(gen.get_state())
    assert all(torch.equal(s, states[0]) for s in states)


@pytest.mark.parametrize("pair_elements", [1, 1 << 12])
def test_kitinet_output_does_not_depend_on_system_chunks(monkeypatch, pair_elements):
    gen = torch.Generator().manual_seed(11)
    x = torch.relu(torch.randn(5, 64, generator=gen, dtype=F64))
    v = torch.randn(5, 64, generator=gen, dtype=F64)

    def run():
        return kitinet_collision_with_rate(x, v, collision_heads=4, coll_coef=0.9, seed=1)

    want, rate = run()
    assert float(rate) > 0
    monkeypatch.setattr(dsmc, "_PAIR_ELEMENTS", pair_elements)
    got, _ = run()
    assert torch.equal(got, want)


@pytest.mark.parametrize("position_update", [True, False])
def test_kitinet_layouts_agree(position_update, monkeypatch, unit_directions):
    """In place on the (S, D) layout (few pairs) or on particle-major copies (many pairs): the
    same output and gradients."""
    gen = torch.Generator().manual_seed(13)
    x = 0.05 * torch.randn(3, 60, generator=gen, dtype=F64)
    v = torch.randn(3, 60, generator=gen, dtype=F64)
    k = int(literal_kitinet_masks(x, v, 3, 0.9).sum())
    dirs = unit_directions(k, 3, seed=1)
    results = []
    for rows_from in (0.0, math.inf):
        monkeypatch.setattr(kitinet, "_ROWS_FROM", rows_from)
        a, b = x.clone().requires_grad_(), v.clone().requires_grad_()
        out, _ = kitinet_collision_with_rate(
            a,
            b,
            collision_heads=3,
            coll_coef=0.9,
            dt=0.6,
            position_update=position_update,
            directions=dirs,
        )
        out.pow(3).sum().backward()
        results.append((out.detach(), a.grad, b.grad))
    # Forward: bit for bit (the choice depends on how many pairs collide in the whole batch, so
    # it must not change any system's result); backward: to rounding.
    assert torch.equal(results[0][0], results[1][0])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Autograd function
# --------------------------------------------------------------------------------------------
def _pairs_and_dirs(unit_directions, s=2, n=6, d=3, coll_coef=0.8, seed=7):
    x, v = _clustered(s, n, d, seed=seed, spread=0.3)
    pairs, _ = select_pairs(x, v, coll_coef)
    assert pairs.numel() > 2
    return x, v, pairs, unit_directions(pairs.numel(), d, seed=seed)


@pytest.mark.parametrize("position_update", [True, False])
def test_gradcheck_collide_pairs(position_update, unit_directions):
    x, v, pairs, dirs = _pairs_and_dirs(unit_directions)
    s, n, d = x.shape

    def fn(x_, v_):
        v_new, x_new = collide_pairs(
            x_, v_, pairs, n, directions=dirs, position_update=position_update
        )
        return (v_new, x_new) if position_update else v_new

    inputs = (x.reshape(s * n, d).requires_grad_(), v.reshape(s * n, d).requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("position_update", [True, False])
@pytest.mark.parametrize("dt", [1.0, 0.3])
def test_gradcheck_collide_features(position_update, dt, unit_directions):
    x, v, pairs, dirs = _pairs_and_dirs(unit_directions, s=2, n=5, d=4)
    s, n, d = x.shape
    # Features of system k: row-major (heads=d, N) with particle i in column i.
    xf = x.transpose(1, 2).reshape(s, d * n)
    vf = v.transpose(1, 2).reshape(s, d * n)

    def fn(x_, v_):
        return collide_features(
            x_, v_, pairs, n, dt, directions=dirs, position_update=position_update
        )

    inputs = (xf.clone().requires_grad_(), vf.clone().requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def _plain_autograd_collision(x, v, pairs, n, dirs, dt, position_update):
    """Straightforward differentiable version (per-pair loop over index lists) of x* + dt v'."""
    s, d = x.shape[0], x.shape[1] // n
    xp = x.reshape(s, d, n).transpose(1, 2).reshape(s * n, d)
    vp = v.reshape(s, d, n).transpose(1, 2).reshape(s * n, d)
    ii, jj = pairs // n, (pairs // (n * n)) * n + pairs % n
    v_rel = torch.linalg.vector_norm(vp[ii] - vp[jj], dim=-1, keepdim=True)
    kick = 0.5 * (vp[jj] - vp[ii]) + 0.5 * v_rel * dirs
    v_new = vp.index_add(0, ii, kick).index_add(0, jj, -kick)
    x_new = xp
    if position_update:
        degree = torch.zeros(s * n, 1, dtype=x.dtype).index_add(
            0, torch.cat([ii, jj]), torch.ones(2 * len(ii), 1, dtype=x.dtype)
        )
        total = xp.index_add(0, ii, 0.5 * (xp[ii] + xp[jj])).index_add(
            0, jj, 0.5 * (xp[ii] + xp[jj])
        )
        x_new = total / (1.0 + degree)
    out = x_new + dt * v_new
    return out.reshape(s, n, d).transpose(1, 2).reshape(s, d * n)


@pytest.mark.parametrize("position_update", [True, False])
def test_custom_backward_matches_plain_autograd(position_update, unit_directions):
    x, v, pairs, dirs = _pairs_and_dirs(unit_directions, s=3, n=8, d=3, coll_coef=0.9)
    s, n, d = x.shape
    xf = x.transpose(1, 2).reshape(s, d * n)
    vf = v.transpose(1, 2).reshape(s, d * n)
    weights = torch.randn(s, d * n, generator=torch.Generator().manual_seed(2), dtype=F64)

    def grads(fn):
        a, b = xf.clone().requires_grad_(), vf.clone().requires_grad_()
        out = fn(a, b)
        (out * weights).sum().backward()
        return out.detach(), a.grad, b.grad

    fast = grads(
        lambda a, b: collide_features(
            a, b, pairs, n, 0.4, directions=dirs, position_update=position_update
        )
    )
    plain = grads(
        lambda a, b: _plain_autograd_collision(a, b, pairs, n, dirs, 0.4, position_update)
    )
    for got, want in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("keep_directions", [True, False])
def test_backward_uses_the_forward_directions(keep_directions, monkeypatch):
    """Backward uses the forward's directions (kept, or recomputed from the key when too many to
    keep): gradients equal those with the directions passed explicitly, for collide_features
    and for the KITINet operator (which always recomputes)."""
    if not keep_directions:
        monkeypatch.setattr(_pairs, "_SAVE_DIRECTIONS_ELEMENTS", 0)
    x, v = _clustered(2, 12, 3, seed=21, spread=0.3)
    xf = x.transpose(1, 2).reshape(2, 36)
    vf = v.transpose(1, 2).reshape(2, 36)
    pairs, _ = select_pairs(x, v, 0.9)
    assert pairs.numel() > 5
    key = stream_key(4, 0, 0, 0)  # the KITINet functional default stream, seed 4
    z, inv_norm = normal_directions(key, pairs, 3, F64)
    dirs = z * inv_norm

    def grads(fn):
        a, b = xf.clone().requires_grad_(), vf.clone().requires_grad_()
        out = fn(a, b)
        out.square().sum().backward()
        return out.detach(), a.grad, b.grad

    keyed = grads(lambda a, b: collide_features(a, b, pairs, 12, 0.5, key=key))
    given = grads(lambda a, b: collide_features(a, b, pairs, 12, 0.5, directions=dirs))
    op = grads(
        lambda a, b: kitinet_collision_with_rate(
            a, b, collision_heads=3, coll_coef=0.9, dt=0.5, seed=4
        )[0]
    )
    for got, want in [*zip(keyed, given, strict=True), *zip(op, given, strict=True)]:
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # And the literal reference agrees on the output.
    want, _ = literal_kitinet(xf, vf, 3, 0.9, dt=0.5, directions=dirs)
    torch.testing.assert_close(op[0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows", [False, True])
def test_autograd_saves_no_per_pair_tensors(rows, monkeypatch):
    """Saved for backward by the KITINet operator: x, v, the pair list and the key, not K x d
    tensors (in both layouts of kitinet_collision; backward recomputes the directions)."""
    monkeypatch.setattr(_pairs, "_SAVE_DIRECTIONS_ELEMENTS", 0)
    monkeypatch.setattr(kitinet, "_ROWS_FROM", 0.0 if rows else math.inf)
    gen = torch.Generator().manual_seed(0)
    s, heads, n = 4, 8, 64
    x = 1e-3 * torch.randn(s, heads * n, generator=gen)  # nearly all pairs collide
    v = torch.randn(s, heads * n, generator=gen).requires_grad_()
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, rate = kitinet_collision_with_rate(
            x.requires_grad_(), v, collision_heads=heads, coll_coef=0.99
        )
    k = round(float(rate) * s * n * (n - 1) / 2)
    assert k > 5000
    per_pair_tensor = k * heads * 4
    assert sum(saved) <= 2 * v.numel() * 4 + k * 8 + 16
    assert sum(saved) < per_pair_tensor
    out.sum().backward()
    assert torch.isfinite(v.grad).all()
