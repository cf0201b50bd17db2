"""KO soft and hard collisions (SPEC §1.2-1.3) against the paper-literal reference."""

from __future__ import annotations

import math

import pytest
import torch
from reference import literal_collide, literal_cosine, literal_mask, literal_soft_collision
from torch import nn

from kinetics import hard_collision, soft_collision
from kinetics.collision import hard_collision_with_stats

F64 = torch.float64
SHAPES = [(1, 3), (2, 5), (6, 4), (10, 10), (7, 3, 3, 3), (4, 2, 1, 5)]


def _weight_grad(shape, seed: int, zero_rows: bool = False):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen, dtype=F64)
    g = torch.randn(shape, generator=gen, dtype=F64)
    if zero_rows and shape[0] > 2:
        w[0] = 0.0  # a dead neuron
        g[1] = 0.0  # a neuron without gradient
    return w, g


# --------------------------------------------------------------------------------------------
# Soft collision (KO Algorithm 2)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("coll_coef", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("zero_rows", [False, True])
def test_soft_matches_literal(shape, coll_coef, exclude_self, zero_rows):
    w, g = _weight_grad(shape, seed=sum(shape), zero_rows=zero_rows)
    w0, g0 = w.clone(), g.clone()
    got = soft_collision(w, g, coll_coef, exclude_self=exclude_self)
    want = literal_soft_collision(w, g, coll_coef, exclude_self=exclude_self)
    assert got.shape == g.shape and got.dtype == g.dtype
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(w, w0) and torch.equal(g, g0), "inputs must not be modified"


@pytest.mark.parametrize("exclude_self", [False, True])
def test_soft_coll_coef_zero_returns_grad_exactly(exclude_self):
    w, g = _weight_grad((6, 5), seed=0)
    out = soft_collision(w, g, 0.0, exclude_self=exclude_self)
    assert torch.equal(out, g)
    out.add_(1.0)
    assert not torch.equal(out, g), "the result must not alias the input gradient"


@pytest.mark.parametrize("coll_coef", [0.2, 0.7, 1.0])
def test_soft_orthogonal_rows_only_self_term(coll_coef):
    """Mutually orthogonal weight rows: C_w = I, so the diagonal scales g_i by (1 - coll_coef)
    and without it the gradient is unchanged."""
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(8, 5, generator=gen, dtype=F64))
    w = q.T * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=F64)[:, None]  # (5, 8), orthogonal rows
    g = torch.randn(5, 8, generator=gen, dtype=F64)
    torch.testing.assert_close(soft_collision(w, g, coll_coef), (1 - coll_coef) * g)
    torch.testing.assert_close(soft_collision(w, g, coll_coef, exclude_self=True), g)


def test_soft_exclude_self_is_ko_eq12_pairwise_form():
    """Two neurons: Δ_i = α g_j, Δ_j = α g_i with α = -c cos(w_i, w_j) cos(g_i, g_j) (KO Eq. 12)."""
    w, g = _weight_grad((2, 6), seed=2)
    coll_coef = 0.4
    alpha = -coll_coef * literal_cosine(w[0], w[1]) * literal_cosine(g[0], g[1])
    assert abs(alpha) > 1e-3
    got = soft_collision(w, g, coll_coef, exclude_self=True)
    torch.testing.assert_close(got - g, alpha * g.flip(0), rtol=1e-12, atol=1e-14)


def test_soft_conv_weight_is_viewed_as_rows():
    conv = nn.Conv2d(3, 5, kernel_size=3).double()
    g = torch.randn_like(conv.weight)
    w = conv.weight.detach()
    got = soft_collision(w, g, 0.5)
    rows = soft_collision(w.reshape(5, -1), g.reshape(5, -1), 0.5).reshape(g.shape)
    torch.testing.assert_close(got, rows, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got, literal_soft_collision(w, g, 0.5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("collide", ["soft", "hard"])
def test_zero_gradient_stays_zero(collide):
    w, _ = _weight_grad((6, 4), seed=3)
    g = torch.zeros_like(w)
    if collide == "soft":
        out = soft_collision(w, g, 0.9)
    else:
        out = hard_collision(w, g, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, g)


@pytest.mark.parametrize("collide", ["soft", "hard"])
def test_zero_rows_are_finite(collide):
    w = torch.zeros(5, 4, dtype=F64)
    w[2:] = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(4))
    g = torch.zeros_like(w)
    g[1:] = torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(5))
    if collide == "soft":
        out = soft_collision(w, g, 0.9)
        torch.testing.assert_close(out, literal_soft_collision(w, g, 0.9), rtol=1e-12, atol=1e-12)
    else:
        out = hard_collision(w, g, 1.0, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out.sum(0), g.sum(0), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("collide", ["soft", "hard"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtype_preserved_and_finite(collide, dtype):
    w, g = _weight_grad((16, 8), seed=6)
    w, g = w.to(dtype), g.to(dtype)
    if collide == "soft":
        out = soft_collision(w, g, 0.7)
    else:
        out = hard_collision(w, g, 1.0, generator=torch.Generator().manual_seed(0))
    assert out.dtype == dtype and out.shape == g.shape
    assert torch.isfinite(out).all()
    assert not torch.equal(out, g)


@pytest.mark.parametrize("collide", ["soft", "hard"])
def test_non_contiguous_inputs_match_contiguous_copies(collide):
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(9, 6, generator=gen, dtype=F64).T  # (6, 9) transposed view
    g = torch.randn(6, 27, generator=gen, dtype=F64)[:, ::3]  # (6, 9) strided view
    assert not w.is_contiguous() and not g.is_contiguous()

    def run(a, b):
        if collide == "soft":
            return soft_collision(a, b, 0.6)
        return hard_collision(a, b, 1.0, generator=torch.Generator().manual_seed(3))

    torch.testing.assert_close(
        run(w, g), run(w.contiguous(), g.contiguous()), rtol=1e-13, atol=1e-14
    )


@pytest.mark.parametrize("collide", ["soft", "hard"])
def test_bias_shaped_tensor_is_rejected(collide):
    b = torch.randn(5)
    fn = soft_collision if collide == "soft" else hard_collision
    with pytest.raises(ValueError):
        fn(b, b, 0.5)


# --------------------------------------------------------------------------------------------
# Hard collision (KO Algorithm 1, Eqs. 5-8)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "w_scale"), [((6, 4), 0.2), ((9, 3), 0.3), ((5, 2, 2, 1), 0.3)])
@pytest.mark.parametrize("coll_coef", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("mean_free_path", [0.5, 1.0, 3.0])
def test_hard_acceptance_matches_literal(shape, w_scale, coll_coef, mean_free_path):
    w, g = _weight_grad(shape, seed=11)
    w = w_scale * w
    rows_w, rows_g = w.reshape(shape[0], -1), g.reshape(shape[0], -1)
    new, result = hard_collision_with_stats(
        w, g, coll_coef, mean_free_path=mean_free_path, generator=torch.Generator()
    )
    mask = literal_mask(rows_w, rows_g, coll_coef, mean_free_path)
    assert torch.equal(result.accepted[0], mask)
    n = shape[0]
    rate = int(mask.sum()) / (n * (n - 1) / 2)
    assert math.isclose(float(result.collision_rate), rate, rel_tol=1e-6)
    # Rows without an accepted partner keep their gradient exactly.
    free = ~(mask | mask.T).any(1)
    assert torch.equal(new.reshape(n, -1)[free], rows_g[free])
    torch.testing.assert_close(new.reshape(n, -1).sum(0), rows_g.sum(0), rtol=1e-12, atol=1e-12)


def test_hard_sweep_accepts_pairs():
    w, g = _weight_grad((9, 3), seed=11)
    assert 0 < int(literal_mask(0.3 * w, g, 0.9).sum()) < 36


def _disjoint_layer(d: int, seed: int):
    """Seven neurons: pairs (0,1), (2,3), (4,5) close together, clusters and neuron 6 far apart."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.zeros(7, d, dtype=F64)
    w[:, 0] = torch.tensor([0.0, 0.0, 1e3, 1e3, 2e3, 2e3, 3e3], dtype=F64)
    w = w + 0.01 * torch.randn(7, d, generator=gen, dtype=F64)
    g = torch.randn(7, d, generator=gen, dtype=F64)
    return w, g


@pytest.mark.parametrize("d", [2, 5])
def test_hard_collision_is_the_literal_dsmc_step(d):
    """With isolated pairs, each direction can be read off the output: unit, antisymmetric, and
    the literal step with those directions reproduces the fast output."""
    w, g = _disjoint_layer(d, seed=d)
    mask = literal_mask(w, g, 1.0)
    assert mask.nonzero().tolist() == [[0, 1], [2, 3], [4, 5]]
    out = hard_collision(w, g, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[6], g[6])
    dirs = []
    for i, j in ((0, 1), (2, 3), (4, 5)):
        rand_i = out[i] - g[i] - 0.5 * (g[j] - g[i])
        rand_j = out[j] - g[j] - 0.5 * (g[i] - g[j])
        torch.testing.assert_close(rand_j, -rand_i, rtol=0, atol=1e-12)
        n_ij = rand_i / (0.5 * (g[i] - g[j]).norm())
        torch.testing.assert_close(n_ij.norm(), torch.tensor(1.0, dtype=F64))
        dirs.append(n_ij)
    lit = literal_collide(w, g, 1.0, directions=torch.stack(dirs), position_update=False)
    torch.testing.assert_close(out, lit.v_new, rtol=1e-12, atol=1e-12)


def test_hard_collision_directions_are_isotropic():
    """hard_collision's own draws (generator advanced call after call): mean 0, covariance I/d."""
    d, calls = 4, 800
    w, g = _disjoint_layer(d, seed=1)
    gen = torch.Generator().manual_seed(5)
    outs = torch.stack([hard_collision(w, g, 1.0, generator=gen) for _ in range(calls)])
    dirs = []
    for i, j in ((0, 1), (2, 3), (4, 5)):
        rand_i = outs[:, i] - g[i] - 0.5 * (g[j] - g[i])
        dirs.append(rand_i / (0.5 * (g[i] - g[j]).norm()))
    n_ij = torch.cat(dirs)
    k = n_ij.shape[0]
    assert (n_ij.mean(0).abs() <= 5 * math.sqrt(1 / d / k)).all()
    second = n_ij.T @ n_ij / k
    outer = (n_ij[:, :, None] * n_ij[:, None, :]).reshape(k, -1)
    tol = 5 * outer.std(0).reshape(d, d) / math.sqrt(k)
    assert ((second - torch.eye(d, dtype=F64) / d).abs() <= tol).all()


def test_hard_coll_coef_zero_and_equal_gradients_are_identity():
    w, g = _weight_grad((6, 4), seed=8)
    out = hard_collision(w, g, 0.0, generator=torch.Generator())
    assert torch.equal(out, g)
    out.add_(1.0)
    assert not torch.equal(out, g), "the result must not alias the input gradient"
    same = g[:1].expand(6, 4).clone()
    out = hard_collision(w, same, 1.0, generator=torch.Generator())
    assert torch.equal(out, same)


def test_hard_same_seed_same_result_different_seed_different():
    w, g = _weight_grad((8, 5), seed=9)
    w = 0.2 * w

    def run(seed):
        return hard_collision(w, g, 0.9, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
