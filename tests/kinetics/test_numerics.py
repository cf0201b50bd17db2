"""Collisions under bad numbers: scale invariance, half precision, NaN/Inf (issue 9).

The selection score ``v_r exp(-x_r / mfp) / max v_r`` is invariant to scaling v, so gradients
of 1e19 or 1e-30 must select the pairs they select at 1 (float32 Gram distances would overflow or
underflow); positions enter through ``exp(-x_r / mfp)`` and must keep that dependence exactly.
A NaN or Inf must neither spread over a layer or batch nor hide behind a silent rate of 0.
"""

from __future__ import annotations

import math

import pytest
import torch
from reference import literal_mask

from kinetics import collide, collision_mask, hard_collision, kitinet_collision, soft_collision
from kinetics.collision import hard_collision_with_stats, soft_collision_with_stats
from kinetics.kitinet import kitinet_collision_with_rate

F32 = torch.float32
NAN, INF = math.nan, math.inf


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _layer(seed: int = 3, n: int = 24, d: int = 8, w_scale: float = 0.05):
    gen = _gen(seed)
    w = w_scale * torch.randn(n, d, generator=gen)
    g = torch.randn(n, d, generator=gen)
    return w, g


def _features(seed: int = 5, s: int = 6, features: int = 64):
    gen = _gen(seed)
    return 0.05 * torch.randn(s, features, generator=gen), torch.randn(s, features, generator=gen)


# --------------------------------------------------------------------------------------------
# Scale invariance in v
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e19, 1e-30, 1e30, 1e-38])
def test_hard_collision_selects_the_same_pairs_at_any_gradient_scale(scale):
    w, g = _layer()
    want, ref = hard_collision_with_stats(w, g, 0.6, generator=_gen(1))
    assert 0 < int(ref.num_accepted) < ref.num_pairs  # the comparison means something
    got, res = hard_collision_with_stats(w, g * scale, 0.6, generator=_gen(1))
    assert torch.equal(res.accepted, ref.accepted)
    assert float(res.collision_rate) == float(ref.collision_rate)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got / scale, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(hard_collision(w, g * scale, 0.6, generator=_gen(1)), got)


def test_power_of_two_gradient_scale_is_bitwise_exact():
    """Rescaling is by powers of two: a gradient scaled by 2^70 gives bitwise 2^70 times the result."""
    w, g = _layer()
    want, ref = hard_collision_with_stats(w, g, 0.6, generator=_gen(1))
    got, res = hard_collision_with_stats(
        w, torch.ldexp(g, torch.tensor(70)), 0.6, generator=_gen(1)
    )
    assert torch.equal(res.accepted, ref.accepted)
    assert torch.equal(torch.ldexp(got, torch.tensor(-70)), want)


@pytest.mark.parametrize("scale", [1e19, 1e-30])
def test_collision_mask_is_invariant_to_velocity_scale_and_matches_literal(scale):
    gen = _gen(7)
    x = 0.1 * torch.randn(3, 12, 4, generator=gen)
    v = torch.randn(3, 12, 4, generator=gen)
    want = torch.stack([literal_mask(x[s], v[s], 0.7) for s in range(3)])
    assert want.any()
    assert torch.equal(collision_mask(x, v, 0.7), want)
    assert torch.equal(collision_mask(x, v * scale, 0.7), want)


@pytest.mark.parametrize("scale", [1e19, 1e-30])
@pytest.mark.parametrize("position_update", [True, False])
def test_kitinet_collides_the_same_at_any_velocity_scale(scale, position_update):
    x, v = _features()
    kwargs = dict(collision_heads=4, coll_coef=0.6, position_update=position_update)
    _, rate = kitinet_collision_with_rate(x, v, seed=2, **kwargs)
    assert 0 < float(rate) < 1
    _, rate_s = kitinet_collision_with_rate(x, v * scale, seed=2, **kwargs)
    assert float(rate_s) == float(rate)
    # With x = 0 the output is v' itself (x* = 0), so it can be compared scaled back.
    zero = torch.zeros_like(x)
    want, rate0 = kitinet_collision_with_rate(zero, v, seed=2, **kwargs)
    assert float(rate0) > 0
    got, rate0_s = kitinet_collision_with_rate(zero, v * scale, seed=2, **kwargs)
    assert float(rate0_s) == float(rate0)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got / scale, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1e19, 1e-30])
def test_kitinet_gradients_are_scale_equivariant(scale):
    _, v = _features()
    kwargs = dict(collision_heads=4, coll_coef=0.6)
    grads = []
    for s in (1.0, scale):
        vs = (v * s).requires_grad_()
        out = kitinet_collision(torch.zeros_like(v), vs, seed=2, **kwargs)
        (out / s).pow(2).sum().backward()  # out / s = v'(v): its Jacobian does not depend on s
        grads.append(vs.grad * s)
    assert torch.isfinite(grads[1]).all()
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)


def test_systems_of_very_different_scales_in_one_batch():
    """Rescaling is per system: a 1e19 system and a 1e-30 system in one batch both collide."""
    x, v = _features(s=3)
    scales = torch.tensor([1.0, 1e19, 1e-30]).unsqueeze(-1)
    zero = torch.zeros_like(x)
    kwargs = dict(collision_heads=4, coll_coef=0.6)
    for row in range(3):
        alone = kitinet_collision(zero[row : row + 1], v[row : row + 1], seed=2, **kwargs)
        assert not torch.equal(alone, v[row : row + 1])  # it collides
    res = collide(
        zero.reshape(3, 4, 16).transpose(1, 2),
        (v * scales).reshape(3, 4, 16).transpose(1, 2),
        0.6,
        generator=_gen(2),
    )
    ref = collide(
        zero.reshape(3, 4, 16).transpose(1, 2),
        v.reshape(3, 4, 16).transpose(1, 2),
        0.6,
        generator=_gen(2),
    )
    assert torch.equal(res.accepted, ref.accepted)
    torch.testing.assert_close(res.v_new / scales.view(3, 1, 1), ref.v_new, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Positions: not a symmetry, the formula decides
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x_scale", "mean_free_path"),
    [(1e20, 1e20), (1e20, 1.0), (1e-25, 1e-25), (1e-25, 1.0), (3.0, 1.0), (30.0, 1.0)],
)
def test_position_scale_changes_the_selection_as_the_formula_says(x_scale, mean_free_path):
    gen = _gen(11)
    x = 0.2 * torch.randn(2, 10, 3, generator=gen)
    x[:, 7] = x[:, 2]  # identical positions: x_r = 0 at any scale, the pair may collide
    v = torch.randn(2, 10, 3, generator=gen)
    xs = x * x_scale
    want = torch.stack([literal_mask(xs[s], v[s], 0.8, mean_free_path) for s in range(2)])
    assert torch.equal(collision_mask(xs, v, 0.8, mean_free_path), want)
    if x_scale == mean_free_path:  # the same geometry in units of the mean free path
        assert torch.equal(want, collision_mask(x, v, 0.8, 1.0))
        assert want.sum() > 2
    if x_scale >= 30.0 and mean_free_path == 1.0:  # far apart: only the identical pair remains
        assert not want[:, :, :7].any() and want.any()


# --------------------------------------------------------------------------------------------
# Half precision
# --------------------------------------------------------------------------------------------
def test_hard_collision_float16_near_its_max_is_finite_and_matches_float32():
    # Gradients near 5.5e4 sharing a drift, with relative speeds ~1e3: the collision keeps every
    # entry representable in float16, so the float16 result must be finite.
    w, g = _layer(n=12, d=4)
    g16 = (5.5e4 + 1e3 * g).to(torch.float16)
    w16 = w.to(torch.float16)
    want = hard_collision(w16.float(), g16.float(), 0.5, generator=_gen(10))
    assert want.abs().max() < 6.5e4  # a draw that stays in float16's range (seeds vary ~6e4-7e4)
    got, res = hard_collision_with_stats(w16, g16, 0.5, generator=_gen(10))
    assert int(res.num_accepted) > 0
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    torch.testing.assert_close(got, want.to(torch.float16), rtol=1e-3, atol=0.0)


def test_kitinet_float16_near_its_max_is_finite_and_matches_float32():
    x, v = _features(s=3, features=32)
    v16 = (5.5e4 + 3e2 * v).to(torch.float16)
    x16 = x.to(torch.float16)
    kwargs = dict(collision_heads=2, coll_coef=0.5, position_update=True)
    want, rate = kitinet_collision_with_rate(x16.float(), v16.float(), seed=4, **kwargs)
    assert float(rate) > 0 and want.abs().max() < 6.5e4
    got, rate16 = kitinet_collision_with_rate(x16, v16, seed=4, **kwargs)
    assert float(rate16) == float(rate)
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    torch.testing.assert_close(got, want.to(torch.float16), rtol=1e-3, atol=0.0)


# --------------------------------------------------------------------------------------------
# NaN / Inf
# --------------------------------------------------------------------------------------------
def _poison(t: torch.Tensor, value: float, where=(3, 2)) -> torch.Tensor:
    t = t.clone()
    t[where] = value
    return t


@pytest.mark.parametrize("bad", ["grad_nan", "grad_inf", "weight_nan", "weight_inf"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_soft_collision_leaves_a_nonfinite_layer_unchanged(bad, exclude_self):
    w, g = _layer()
    value = NAN if bad.endswith("nan") else INF
    if bad.startswith("grad"):
        g = _poison(g, value)
    else:
        w = _poison(w, value)
    got = soft_collision(w, g, 0.5, exclude_self=exclude_self)
    assert torch.equal(got.nan_to_num(), g.nan_to_num())  # unchanged, the NaN included
    new, nonfinite = soft_collision_with_stats(w, g, 0.5, exclude_self=exclude_self)
    assert bool(nonfinite) and torch.equal(new.nan_to_num(), g.nan_to_num())
    _, clean = soft_collision_with_stats(*_layer(), 0.5)
    assert not bool(clean)


@pytest.mark.parametrize("bad", ["grad_nan", "grad_inf", "grad_-inf", "weight_nan", "weight_inf"])
def test_hard_collision_leaves_a_nonfinite_layer_unchanged_and_says_so(bad):
    w, g = _layer()
    value = {"nan": NAN, "inf": INF, "-inf": -INF}[bad.split("_")[1]]
    if bad.startswith("grad"):
        g = _poison(g, value)
    else:
        w = _poison(w, value)
    new, res = hard_collision_with_stats(w, g, 0.9, generator=_gen(1))
    assert torch.equal(new.nan_to_num(), g.nan_to_num()) and new.data_ptr() != g.data_ptr()
    assert math.isnan(float(res.collision_rate))  # loud, not a silent 0
    assert res.nonfinite is not None and res.nonfinite.tolist() == [True]
    assert int(res.num_accepted) == 0
    assert torch.equal(hard_collision(w, g, 0.9).nan_to_num(), g.nan_to_num())
    _, clean = hard_collision_with_stats(*_layer(), 0.9, generator=_gen(1))
    assert clean.nonfinite is not None and clean.nonfinite.tolist() == [False]
    assert float(clean.collision_rate) > 0


def test_collide_batch_skips_nonfinite_systems_only():
    gen = _gen(9)
    x = 0.1 * torch.randn(4, 10, 3, generator=gen)
    v = torch.randn(4, 10, 3, generator=gen)
    bad_x, bad_v = x.clone(), v.clone()
    bad_v[1, 4, 0] = NAN
    bad_x[2, 0, 1] = -INF
    res = collide(bad_x, bad_v, 0.8, generator=_gen(3), position_update=True)
    good = [0, 3]
    # The clean batch, same key: its finite systems draw the same directions (keyed by system).
    ref = collide(x, v, 0.8, generator=_gen(3), position_update=True)
    assert res.nonfinite.tolist() == [False, True, True, False]
    assert res.num_accepted[1:3].tolist() == [0, 0]
    assert torch.equal(res.v_new[good], ref.v_new[good])
    assert torch.equal(res.x_new[good], ref.x_new[good])
    assert torch.equal(res.v_new[1:3].nan_to_num(), bad_v[1:3].nan_to_num())
    assert torch.equal(res.x_new[1:3].nan_to_num(), bad_x[1:3].nan_to_num())
    rate_good = float(ref.num_accepted[good].sum()) / (len(good) * ref.num_pairs)
    assert float(res.collision_rate) == pytest.approx(rate_good) and rate_good > 0


@pytest.mark.parametrize("v_scale", [1.0, 1e19])
def test_kitinet_nonfinite_system_is_the_plain_residual_and_spares_the_others(v_scale):
    x, v = _features(s=5)
    v = v * v_scale
    bad_x, bad_v = x.clone(), v.clone()
    bad_v[1, 5] = NAN
    bad_x[3, 0] = INF
    kwargs = dict(collision_heads=4, coll_coef=0.6, dt=0.5)
    got, rate = kitinet_collision_with_rate(bad_x, bad_v, seed=2, **kwargs)
    good = [0, 2, 4]
    _, want_rate = kitinet_collision_with_rate(x[good], v[good], seed=2, **kwargs)
    assert float(want_rate) > 0
    assert float(rate) == float(want_rate)  # over the finite systems
    # The clean batch draws the same directions for the same systems: bitwise the same there.
    want, _ = kitinet_collision_with_rate(x, v, seed=2, **kwargs)
    assert torch.equal(got[good], want[good])
    plain = torch.add(bad_x, bad_v, alpha=0.5)
    assert torch.equal(got[[1, 3]].nan_to_num(), plain[[1, 3]].nan_to_num())


def test_kitinet_all_systems_nonfinite_reports_nan_rate():
    x, v = _features(s=2)
    v[:, 0] = NAN
    out, rate = kitinet_collision_with_rate(x, v, collision_heads=4, coll_coef=0.6)
    assert math.isnan(float(rate))
    assert torch.equal(out.nan_to_num(), torch.add(x, v).nan_to_num())
