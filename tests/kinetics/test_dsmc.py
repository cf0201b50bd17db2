"""kinetics.dsmc.collide against the paper-literal reference, and the invariants of SPEC §1.1."""

from __future__ import annotations

import math

import pytest
import torch
from reference import literal_collide, literal_mask

from kinetics.dsmc import collide

F64 = torch.float64
EPS64 = torch.finfo(F64).eps


def _system(n: int, d: int, seed: int, x_scale: float = 0.3, v_scale: float = 1.0):
    """Random positions (clustered, so exp(-x_r) is not tiny) and velocities, float64 (N, d)."""
    gen = torch.Generator().manual_seed(seed)
    x = x_scale * torch.randn(n, d, generator=gen, dtype=F64)
    v = v_scale * torch.randn(n, d, generator=gen, dtype=F64)
    return x, v


def _threshold_margin(x, v, coll_coef: float, mean_free_path: float = 1.0) -> float:
    """Smallest |score - (1 - coll_coef)| over pairs: test inputs must not sit on the threshold."""
    n = x.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    v_r = {p: float(torch.linalg.vector_norm(v[p[0]] - v[p[1]])) for p in pairs}
    v_max = max(v_r.values(), default=0.0)
    if v_max == 0.0 or coll_coef in (0.0, 1.0):
        return math.inf  # no score comparison can be borderline here
    margins = []
    for i, j in pairs:
        x_r = float(torch.linalg.vector_norm(x[i] - x[j]))
        score = v_r[i, j] * math.exp(-x_r / mean_free_path) / v_max
        margins.append(abs(score - (1.0 - coll_coef)))
    return min(margins)


def _disjoint_pairs_system(d: int, seed: int):
    """Six particles in three far-apart clusters of two: with coll_coef=1 exactly the pairs
    (0,1), (2,3), (4,5) collide (exp(-1000) underflows to 0, so cross-cluster scores are 0)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.zeros(6, d, dtype=F64)
    centres[:, 0] = torch.tensor([0.0, 0.0, 1000.0, 1000.0, 2000.0, 2000.0], dtype=F64)
    x = centres + 0.01 * torch.randn(6, d, generator=gen, dtype=F64)
    v = torch.randn(6, d, generator=gen, dtype=F64)
    return x, v


EXPECTED_DISJOINT = [(0, 1), (2, 3), (4, 5)]


# --------------------------------------------------------------------------------------------
# Fast vs literal
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "d"), [(2, 1), (2, 3), (5, 1), (6, 4), (9, 3), (12, 7)])
@pytest.mark.parametrize("coll_coef", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("mean_free_path", [1.0, 0.5, 3.0])
def test_collide_matches_literal(n, d, coll_coef, mean_free_path, unit_directions):
    x, v = _system(n, d, seed=100 * n + d)
    assert _threshold_margin(x, v, coll_coef, mean_free_path) > 1e-9, "input on the threshold"
    mask = literal_mask(x, v, coll_coef, mean_free_path)
    k = int(mask.sum())
    dirs = unit_directions(k, d, seed=n + d)
    res = collide(
        x[None],
        v[None],
        coll_coef,
        mean_free_path=mean_free_path,
        position_update=True,
        directions=dirs,
    )
    lit = literal_collide(x, v, coll_coef, mean_free_path, dirs, position_update=True)
    assert torch.equal(res.accepted[0], mask)
    assert torch.equal(lit.accepted, mask)
    assert int(res.num_accepted[0]) == k
    assert res.num_pairs == n * (n - 1) // 2
    assert res.v_new.dtype == F64
    torch.testing.assert_close(res.v_new[0], lit.v_new, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.x_new[0], lit.x_star, rtol=1e-12, atol=1e-12)


def test_collide_sweep_accepts_pairs():
    """Guard for the sweep above: its inputs really produce collisions at coll_coef 0.9."""
    x, v = _system(9, 3, seed=903)
    assert 0 < int(literal_mask(x, v, 0.9).sum()) < 36


def test_collide_without_position_update_returns_no_positions(unit_directions):
    x, v = _system(6, 4, seed=604)
    k = int(literal_mask(x, v, 0.9).sum())
    res = collide(x[None], v[None], 0.9, directions=unit_directions(k, 4))
    assert res.x_new is None
    lit = literal_collide(x, v, 0.9, directions=unit_directions(k, 4), position_update=False)
    torch.testing.assert_close(res.v_new[0], lit.v_new, rtol=1e-12, atol=1e-12)


def test_collide_batch_uses_directions_in_system_row_major_order(unit_directions):
    """Directions are consumed in row-major (s, i, j) order across a batch of systems."""
    systems = [_system(5, 3, seed=s) for s in (10, 11, 12)]
    x = torch.stack([s[0] for s in systems])
    v = torch.stack([s[1] for s in systems])
    masks = [literal_mask(xs, vs, 0.7) for xs, vs in systems]
    counts = [int(m.sum()) for m in masks]
    assert all(c > 0 for c in counts)
    dirs = unit_directions(sum(counts), 3, seed=5)
    res = collide(x, v, 0.7, position_update=True, directions=dirs)
    start = 0
    for s, (xs, vs) in enumerate(systems):
        lit = literal_collide(xs, vs, 0.7, directions=dirs[start : start + counts[s]])
        start += counts[s]
        assert torch.equal(res.accepted[s], masks[s])
        torch.testing.assert_close(res.v_new[s], lit.v_new, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(res.x_new[s], lit.x_star, rtol=1e-12, atol=1e-12)


def test_collide_gradients_match_literal(unit_directions):
    """Gradients flow through v', x* and v_r; mask and directions are constants (SPEC §1.5)."""
    x0, v0 = _system(6, 3, seed=7)
    k = int(literal_mask(x0, v0, 0.8).sum())
    assert k > 0
    dirs = unit_directions(k, 3, seed=1)
    gen = torch.Generator().manual_seed(3)
    wv, wx = (
        torch.randn(6, 3, generator=gen, dtype=F64),
        torch.randn(6, 3, generator=gen, dtype=F64),
    )

    def grads(fn):
        x, v = x0.clone().requires_grad_(), v0.clone().requires_grad_()
        v_new, x_new = fn(x, v)
        ((v_new * wv).sum() + (x_new * wx).sum()).backward()
        return x.grad, v.grad

    def fast(x, v):
        res = collide(x[None], v[None], 0.8, position_update=True, directions=dirs)
        return res.v_new[0], res.x_new[0]

    def lit(x, v):
        res = literal_collide(x, v, 0.8, directions=dirs)
        return res.v_new, res.x_star

    for got, want in zip(grads(fast), grads(lit), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Identities and degenerate inputs
# --------------------------------------------------------------------------------------------
def test_coll_coef_zero_is_identity():
    x, v = _system(7, 3, seed=1)
    res = collide(x[None], v[None], 0.0, position_update=True, generator=torch.Generator())
    assert not res.accepted.any()
    assert torch.equal(res.v_new[0], v)
    assert torch.equal(res.x_new[0], x)


@pytest.mark.parametrize("same_positions", [False, True])
def test_equal_velocities_never_collide(same_positions):
    """max v_r == 0: no collision and no NaN even at coll_coef = 1."""
    x, v = _system(5, 3, seed=2)
    v = v[:1].expand(5, 3).clone()
    if same_positions:
        x = x[:1].expand(5, 3).clone()
    res = collide(x[None], v[None], 1.0, position_update=True, generator=torch.Generator())
    assert not res.accepted.any()
    assert torch.equal(res.v_new[0], v)
    assert torch.equal(res.x_new[0], x)


def test_identical_pair_among_others_does_not_collide(unit_directions):
    """Two identical particles have v_r = 0, score 0, and are rejected even at coll_coef = 1."""
    x, v = _system(5, 3, seed=3)
    x[1], v[1] = x[0], v[0]
    mask = literal_mask(x, v, 1.0)
    assert not mask[0, 1] and int(mask.sum()) == 9
    res = collide(x[None], v[None], 1.0, position_update=True, directions=unit_directions(9, 3))
    assert torch.equal(res.accepted[0], mask)
    lit = literal_collide(x, v, 1.0, directions=unit_directions(9, 3))
    torch.testing.assert_close(res.v_new[0], lit.v_new, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.x_new[0], lit.x_star, rtol=1e-12, atol=1e-12)


def test_single_particle_and_empty_batch():
    x, v = _system(1, 4, seed=4)
    res = collide(x[None], v[None], 1.0, position_update=True, generator=torch.Generator())
    assert res.num_pairs == 0 and not res.accepted.any()
    assert torch.equal(res.v_new[0], v) and torch.equal(res.x_new[0], x)
    assert float(res.collision_rate) == 0.0
    empty = torch.zeros(0, 4, 3, dtype=F64)
    res = collide(empty, empty, 1.0, generator=torch.Generator())
    assert res.v_new.shape == (0, 4, 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_dtype_preserved_and_finite(dtype):
    x, v = _system(8, 4, seed=5)
    res = collide(
        x[None].to(dtype),
        v[None].to(dtype),
        0.9,
        position_update=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert int(res.num_accepted[0]) > 0
    assert res.v_new.dtype == dtype and res.x_new.dtype == dtype
    assert torch.isfinite(res.v_new).all() and torch.isfinite(res.x_new).all()


def test_directions_of_wrong_length_are_rejected(unit_directions):
    x, v = _system(6, 4, seed=604)
    k = int(literal_mask(x, v, 0.9).sum())
    with pytest.raises(ValueError):
        collide(x[None], v[None], 0.9, directions=unit_directions(k + 1, 4))


def test_same_seed_same_result_different_seed_different_result():
    x, v = _system(8, 3, seed=6)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return collide(x[None], v[None], 0.9, generator=gen).v_new

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


# --------------------------------------------------------------------------------------------
# Invariants (SPEC §1.1)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v_scale", [1e-3, 1.0, 1e3])
def test_total_momentum_conserved(v_scale):
    accepted_somewhere = 0
    for seed in range(8):
        for coll_coef in (0.3, 0.6, 0.9, 1.0):
            for mfp in (0.5, 1.0, 4.0):
                x, v = _system(10, 4, seed=seed, v_scale=v_scale)
                gen = torch.Generator().manual_seed(seed)
                res = collide(x[None], v[None], coll_coef, mean_free_path=mfp, generator=gen)
                accepted_somewhere += int(res.num_accepted.sum())
                scale = max(float(v.abs().max()), float(res.v_new.abs().max()))
                drift = (res.v_new[0].sum(0) - v.sum(0)).abs().max()
                assert float(drift) <= 64 * EPS64 * 10 * scale, (seed, coll_coef, mfp)
    assert accepted_somewhere > 100


@pytest.mark.parametrize("d", [1, 2, 3, 16])
def test_isolated_collision_conserves_energy_and_relative_speed(d):
    gen = torch.Generator().manual_seed(d)
    for trial in range(20):
        x = torch.randn(2, d, generator=gen, dtype=F64)
        v = torch.randn(2, d, generator=gen, dtype=F64)
        res = collide(x[None], v[None], 1.0, generator=gen)
        assert int(res.num_accepted[0]) == 1, trial
        v_new = res.v_new[0]
        energy, energy_new = v.square().sum(), v_new.square().sum()
        torch.testing.assert_close(energy_new, energy, rtol=1e-12, atol=0)
        torch.testing.assert_close(v_new.sum(0), v.sum(0), rtol=1e-12, atol=1e-14)
        speed, speed_new = (v[0] - v[1]).norm(), (v_new[0] - v_new[1]).norm()
        torch.testing.assert_close(speed_new, speed, rtol=1e-12, atol=0)
        if d > 1:  # the direction is random, the velocities really change
            assert not torch.allclose(v_new, v)


def test_monte_carlo_mean_change_and_random_energy():
    """E[Δv_i] = ½ Σ_j A_ij (v_j - v_i) and E|random part_i|² = ¼ Σ_j A_ij v_r², 5 sigma."""
    n, d, coll_coef, draws = 5, 3, 0.7, 20000
    x, v = _system(n, d, seed=0)
    mask = literal_mask(x, v, coll_coef)
    adj = (mask | mask.T).to(F64)
    degree = adj.sum(1)
    # The test needs a partial mask with overlapping pairs (a particle with several partners).
    assert 0 < int(mask.sum()) < n * (n - 1) // 2 and degree.max() >= 2 and degree.min() >= 1

    v_r = torch.cdist(v, v)
    expected_mean = 0.5 * (adj @ v - degree[:, None] * v)
    expected_sq = 0.25 * (adj * v_r.square()).sum(1)

    gen = torch.Generator().manual_seed(1234)
    res = collide(x.expand(draws, n, d), v.expand(draws, n, d), coll_coef, generator=gen)
    assert torch.equal(res.accepted, mask.expand(draws, n, n))
    change = res.v_new - v  # (draws, N, d)

    # Mean: per coordinate, the random part has variance (¼ Σ_j A_ij v_r²) / d.
    sigma_mean = (expected_sq / d / draws).sqrt()[:, None]
    assert ((change.mean(0) - expected_mean).abs() <= 5 * sigma_mean).all()

    random_sq = (change - expected_mean).square().sum(-1)  # (draws, N)
    sigma_sq = random_sq.std(0) / math.sqrt(draws)
    # A particle with one partner has |random part|² = ¼ v_r² in every draw: allow rounding.
    rounding = 1e-12 * expected_sq
    assert ((random_sq.mean(0) - expected_sq).abs() <= 5 * sigma_sq + rounding).all()
    # Power of the test: a missing ½ on v_r would quadruple the random energy.
    several = degree >= 2
    assert (expected_sq[several] > 10 * sigma_sq[several]).all()


def _recover_directions(v, v_new):
    """For the disjoint-pairs system: n_ij of each pair from the velocity change, plus the
    residual of n_ji = -n_ij."""
    dirs, antisym = [], []
    for i, j in EXPECTED_DISJOINT:
        mean_i = 0.5 * (v[..., j, :] - v[..., i, :])
        rand_i = v_new[..., i, :] - v[..., i, :] - mean_i
        rand_j = v_new[..., j, :] - v[..., j, :] + mean_i
        half_speed = 0.5 * (v[..., i, :] - v[..., j, :]).norm(dim=-1, keepdim=True)
        dirs.append(rand_i / half_speed)
        antisym.append((rand_i + rand_j).abs().max())
    return torch.cat(dirs), max(antisym)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_directions_uniform_on_sphere(d):
    """Recovered n_ij: unit norm, n_ji = -n_ij, mean 0, covariance I/d, E n_1^4 = 3/(d(d+2))."""
    x, v = _disjoint_pairs_system(d, seed=d)
    draws = 10000
    assert literal_mask(x, v, 1.0).nonzero().tolist() == [list(p) for p in EXPECTED_DISJOINT]
    gen = torch.Generator().manual_seed(99)
    res = collide(x.expand(draws, 6, d), v.expand(draws, 6, d), 1.0, generator=gen)
    n_ij, antisym = _recover_directions(v, res.v_new)  # (3 * draws, d)
    k = n_ij.shape[0]
    assert float(antisym) < 1e-12
    torch.testing.assert_close(n_ij.norm(dim=-1), torch.ones(k, dtype=F64), rtol=1e-10, atol=0)

    mean_tol = 5 * math.sqrt(1.0 / d / k)
    assert (n_ij.mean(0).abs() <= mean_tol).all()
    second = n_ij.T @ n_ij / k
    outer = n_ij[:, :, None] * n_ij[:, None, :]
    cov_tol = 5 * outer.reshape(k, -1).std(0).reshape(d, d) / math.sqrt(k) + 1e-12
    assert ((second - torch.eye(d, dtype=F64) / d).abs() <= cov_tol).all()
    # Fourth moment separates the uniform sphere from e.g. random signed axes (1/d) in d > 1.
    fourth = n_ij[:, 0].pow(4)
    want = 3.0 / (d * (d + 2))
    assert abs(float(fourth.mean()) - want) <= 5 * float(fourth.std()) / math.sqrt(k) + 1e-12


def test_many_accepted_pairs_cross_the_direction_chunks():
    """K > 2**20 accepted pairs (d = 1): the chunked kicks equal a dense per-pair sum."""
    n_sys, n = 2, 1100
    gen = torch.Generator().manual_seed(7)
    x = 1e-3 * torch.randn(n_sys, n, 1, generator=gen, dtype=F64)
    v = torch.randn(n_sys, n, 1, generator=gen, dtype=F64)
    res0 = collide(x, v, 1.0, generator=torch.Generator().manual_seed(0))
    k = int(res0.num_accepted.sum())
    assert k > 2**20 and k == n_sys * n * (n - 1) // 2
    signs = torch.randint(0, 2, (k,), generator=gen).to(F64) * 2 - 1  # unit "spheres" in d = 1
    res = collide(x, v, 1.0, directions=signs[:, None])
    # Dense reference: M[s, i, j] = ½ v_r n_ij on accepted i < j (row-major order); kick_i =
    # Σ_j M[i, j] - Σ_j M[j, i]; mean part ½ Σ_j (v_j - v_i) over all partners.
    dense = torch.zeros(n_sys, n, n, dtype=F64)
    dense[res.accepted] = signs
    dense = 0.5 * dense * (v - v.transpose(1, 2)).abs()
    kick = dense.sum(2) - dense.sum(1)
    mean = 0.5 * (v.sum(1, keepdim=True) - n * v)
    torch.testing.assert_close(res.v_new, v + mean + kick[..., None], rtol=1e-9, atol=1e-9)
