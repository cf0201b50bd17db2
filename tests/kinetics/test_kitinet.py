"""KITINet (SPEC §1.5): kitinet_collision and the KITINet module against the paper-literal reference."""

from __future__ import annotations

import math

import pytest
import torch
from reference import literal_kitinet, literal_kitinet_masks

from kinetics import KITINet, collision_mask, kitinet_collision
from kinetics.kitinet import kitinet_collision_with_rate

F64 = torch.float64


def _inputs(s: int, d_total: int, seed: int, x_scale: float = 0.3, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    x = x_scale * torch.randn(s, d_total, generator=gen, dtype=dtype)
    v = torch.randn(s, d_total, generator=gen, dtype=dtype)
    return x, v


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Fast vs literal
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("s", "d_total", "heads"),
    [(3, 12, 1), (3, 12, 3), (2, 12, 4), (2, 16, 2), (4, 10, 5), (2, 8, 8)],
)
@pytest.mark.parametrize("coll_coef", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("position_update", [True, False])
@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_kitinet_matches_literal(
    s, d_total, heads, coll_coef, position_update, dt, unit_directions
):
    x, v = _inputs(s, d_total, seed=10 * d_total + heads)
    kwargs = dict(
        collision_heads=heads, coll_coef=coll_coef, dt=dt, position_update=position_update
    )
    k = int(literal_kitinet_masks(x, v, heads, coll_coef).sum())
    dirs = unit_directions(k, heads, seed=k)
    want, _ = literal_kitinet(x, v, directions=dirs, **kwargs)
    got, rate = kitinet_collision_with_rate(x, v, directions=dirs, **kwargs)
    assert got.dtype == F64 and got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    n = d_total // heads
    pairs = s * n * (n - 1) // 2
    assert math.isclose(float(rate), k / pairs if pairs else 0.0, rel_tol=1e-6, abs_tol=1e-12)


def test_kitinet_sweep_accepts_pairs():
    """Guard for the sweep: its inputs collide at coll_coef 0.9 without colliding everything."""
    x, v = _inputs(3, 12, seed=123)
    assert 0 < int(literal_kitinet_masks(x, v, 3, 0.9).sum()) < 3 * 6


def test_kitinet_layout_particle_is_column_of_row_major_reshape(unit_directions):
    """Particle j of a system is column j of the (heads, N) row-major reshape: moving particle 0's
    coordinates (features 0, N, 2N, ...) far away must stop exactly its collisions."""
    heads, n = 3, 4
    x, v = _inputs(1, heads * n, seed=5)
    x_far = x.clone()
    x_far[0, 0::n] += 1e4  # particle 0 = column 0 = features 0, 4, 8
    masks = literal_kitinet_masks(x_far, v, heads, 1.0)
    assert not masks[0, 0].any() and int(masks.sum()) == 3
    got, rate = kitinet_collision_with_rate(
        x_far, v, collision_heads=heads, coll_coef=1.0, directions=unit_directions(3, heads)
    )
    assert math.isclose(float(rate), 3 / 6, rel_tol=1e-6)
    want, _ = literal_kitinet(x_far, v, heads, 1.0, directions=unit_directions(3, heads))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # Particle 0 did not collide: its features are exactly x + v.
    torch.testing.assert_close(got[0, 0::n], (x_far + v)[0, 0::n], rtol=0, atol=0)


@pytest.mark.parametrize("position_update", [True, False])
def test_public_function_mean_matches_literal_mean(position_update):
    """kitinet_collision with its own random directions: E[x'] is the literal result with the random
    term removed (n = 0), and the spread matches ¼ Σ_j A_ij v_r² per particle (dt = 1)."""
    heads, n, draws = 3, 4, 4000
    x, v = _inputs(1, heads * n, seed=21)
    masks = literal_kitinet_masks(x, v, heads, 0.8)
    k = int(masks.sum())
    assert 0 < k < 6
    zeros = torch.zeros(k, heads, dtype=F64)  # no random term: the mean of x'
    mean_want, _ = literal_kitinet(
        x, v, heads, 0.8, position_update=position_update, directions=zeros
    )
    out = kitinet_collision(
        x.expand(draws, -1),
        v.expand(draws, -1),
        collision_heads=heads,
        coll_coef=0.8,
        position_update=position_update,
        seed=3,
    )
    spread = out - mean_want  # (draws, D): the random parts
    sigma = spread.std(0) / math.sqrt(draws)
    assert ((out.mean(0) - mean_want[0]).abs() <= 5 * sigma + 1e-12).all()
    # Per particle: E|random part|² = ¼ Σ_j A_ij v_r[i, j]².
    adj = (masks[0] | masks[0].T).to(F64)
    vp = v[0].reshape(heads, n).T
    expected_sq = 0.25 * (adj * torch.cdist(vp, vp).square()).sum(1)
    rand_sq = spread.reshape(draws, heads, n).square().sum(1)  # (draws, N)
    tol = 5 * rand_sq.std(0) / math.sqrt(draws) + 1e-12 * expected_sq
    assert ((rand_sq.mean(0) - expected_sq).abs() <= tol).all()


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("position_update", [True, False])
def test_gradcheck(position_update):
    x, v = _inputs(2, 6, seed=31)

    def fn(x_, v_):
        return kitinet_collision(
            x_,
            v_,
            collision_heads=2,
            coll_coef=0.9,
            dt=0.7,
            position_update=position_update,
            seed=4,
        )

    _, rate = kitinet_collision_with_rate(x, v, collision_heads=2, coll_coef=0.9)
    assert float(rate) > 0
    inputs = (x.clone().requires_grad_(), v.clone().requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradients_match_literal(unit_directions):
    x0, v0 = _inputs(2, 12, seed=41)
    k = int(literal_kitinet_masks(x0, v0, 3, 0.9).sum())
    assert k > 0
    dirs = unit_directions(k, 3, seed=2)
    weights = torch.randn(2, 12, generator=_gen(9), dtype=F64)

    def grads(fn):
        x, v = x0.clone().requires_grad_(), v0.clone().requires_grad_()
        (fn(x, v) * weights).sum().backward()
        return x.grad, v.grad

    def fast(x, v):
        return kitinet_collision_with_rate(
            x, v, collision_heads=3, coll_coef=0.9, dt=0.5, directions=dirs
        )[0]

    def lit(x, v):
        return literal_kitinet(x, v, 3, 0.9, dt=0.5, directions=dirs)[0]

    for got, want in zip(grads(fast), grads(lit), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", [1.0, 0.5])
@pytest.mark.parametrize("system", ["sample", "token"])
def test_eval_mode_is_exactly_the_residual_addition(dt, system):
    module = KITINet(collision_heads=4, coll_coef=0.9, dt=dt, system=system).eval()
    x, v = _inputs(3, 16, seed=51, dtype=torch.float32)
    out = module(x, v)
    assert torch.equal(out, torch.add(x, v, alpha=dt))
    if dt == 1.0:
        assert torch.equal(out, x + v)


def test_train_mode_coll_coef_zero_is_the_residual_addition():
    module = KITINet(collision_heads=4, coll_coef=0.0, dt=0.5).train()
    x, v = _inputs(3, 16, seed=52)
    assert torch.equal(module(x, v), torch.add(x, v, alpha=0.5))
    assert torch.equal(
        kitinet_collision(x, v, collision_heads=4, coll_coef=0.0, dt=0.5),
        torch.add(x, v, alpha=0.5),
    )


def test_train_mode_collides_and_reports_rate():
    module = KITINet(collision_heads=4, coll_coef=0.6, seed=0).train()
    assert module.last_collision_rate is None
    x, v = _inputs(3, 16, seed=53)
    out = module(x, v)
    rate = float(module.last_collision_rate)
    masks = literal_kitinet_masks(x, v, 4, 0.6)
    assert math.isclose(rate, int(masks.sum()) / (3 * 6), rel_tol=1e-6)
    assert 0 < rate < 1
    assert not torch.allclose(out, x + v)


def test_position_update_changes_the_output():
    x, v = _inputs(2, 12, seed=54)
    on = kitinet_collision(x, v, collision_heads=3, coll_coef=0.9, seed=1)
    off = kitinet_collision(x, v, collision_heads=3, coll_coef=0.9, position_update=False, seed=1)
    # Same draws, so the velocities agree; only the position part x* - x differs.
    assert not torch.allclose(on, off)


def test_token_system_is_causal():
    """One system per token: output at t depends on no other token (in particular no future one)."""
    b, t_len, d_total = 2, 5, 12
    module = KITINet(collision_heads=3, coll_coef=0.9, system="token").train()
    x, v = _inputs(b * t_len, d_total, seed=61)
    x = x.reshape(b, t_len, d_total).requires_grad_()
    v = v.reshape(b, t_len, d_total).requires_grad_()
    out = module(x, v)
    assert float(module.last_collision_rate) > 0
    for t in range(t_len):
        gx, gv = torch.autograd.grad(out[:, t].sum(), (x, v), retain_graph=True)
        for grad in (gx, gv):
            others = torch.cat([grad[:, :t], grad[:, t + 1 :]], dim=1)
            assert torch.equal(others, torch.zeros_like(others)), t
            assert grad[:, t].abs().sum() > 0
    # And the collision does couple features within a token (not a per-feature identity).
    gx = torch.autograd.grad(out[0, 0, 0], x)[0]
    assert (gx[0, 0, 1:] != 0).any()


@pytest.mark.parametrize("system", ["sample", "token"])
def test_systems_are_the_documented_reshapes(system):
    x, v = _inputs(2 * 3 * 2, 8, seed=71)
    x, v = x.reshape(2, 3, 2, 8), v.reshape(2, 3, 2, 8)
    module = KITINet(collision_heads=4, coll_coef=0.9, system=system, seed=5).train()
    out = module(x, v)
    rows = (2, -1) if system == "sample" else (-1, 8)
    want = kitinet_collision(
        x.reshape(rows), v.reshape(rows), collision_heads=4, coll_coef=0.9, seed=5
    )
    assert out.shape == x.shape
    assert torch.equal(out, want.reshape(x.shape))


# --------------------------------------------------------------------------------------------
# Degenerate inputs, dtypes, layout, errors, determinism
# --------------------------------------------------------------------------------------------
def test_zero_rows_and_identical_particles_do_not_collide():
    x, v = _inputs(3, 12, seed=81)
    x[0], v[0] = 0.0, 0.0  # a zero system
    v[1] = 2.5  # all particles of system 1 have the same velocity
    x[2] = 0.7  # system 2: identical positions ...
    v[2] = -1.0  # ... and velocities
    out, rate = kitinet_collision_with_rate(x, v, collision_heads=3, coll_coef=1.0)
    assert float(rate) == 0.0
    assert torch.equal(out, torch.add(x, v))
    assert torch.isfinite(out).all()


def test_zero_velocities_keep_positions():
    x, _ = _inputs(2, 12, seed=82)
    out = kitinet_collision(x, torch.zeros_like(x), collision_heads=4, coll_coef=1.0)
    assert torch.equal(out, x)


def test_far_apart_particles_never_collide():
    x, v = _inputs(2, 12, seed=83, x_scale=1e4)
    out, rate = kitinet_collision_with_rate(x, v, collision_heads=3, coll_coef=0.99)
    assert float(rate) == 0.0
    assert torch.equal(out, torch.add(x, v))


@pytest.mark.parametrize("dt", [1.0, 0.3])
def test_single_particle(dt):
    """D == collision_heads: one particle, no pair, x' = x + dt v."""
    x, v = _inputs(3, 4, seed=84)
    out = kitinet_collision(x, v, collision_heads=4, coll_coef=1.0, dt=dt)
    torch.testing.assert_close(out, torch.add(x, v, alpha=dt), rtol=0, atol=0)
    module = KITINet(collision_heads=4, coll_coef=1.0, dt=dt).train()
    torch.testing.assert_close(module(x, v), torch.add(x, v, alpha=dt), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtype_preserved_and_finite(dtype):
    x, v = _inputs(4, 32, seed=85, dtype=dtype)
    module = KITINet(collision_heads=4, coll_coef=0.9, seed=0).train()
    out = module(x, v)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    assert float(module.last_collision_rate) > 0


def test_non_contiguous_inputs_match_contiguous_copies():
    gen = _gen(86)
    x = 0.3 * torch.randn(12, 3, generator=gen, dtype=F64).T  # (3, 12) transposed view
    v = torch.randn(3, 36, generator=gen, dtype=F64)[:, ::3]  # (3, 12) strided view
    assert not x.is_contiguous() and not v.is_contiguous()

    def run(a, b):
        return kitinet_collision(a, b, collision_heads=3, coll_coef=0.9, seed=2)

    torch.testing.assert_close(run(x, v), run(x.contiguous(), v.contiguous()), rtol=0, atol=1e-14)
    # A channels_last feature map through the module ("sample" systems).
    fmap = torch.randn(2, 4, 3, 3, generator=gen, dtype=F64)
    vmap = torch.randn(2, 4, 3, 3, generator=gen, dtype=F64)
    cl_x = fmap.to(memory_format=torch.channels_last)
    cl_v = vmap.to(memory_format=torch.channels_last)
    module = KITINet(collision_heads=4, coll_coef=0.9, seed=3).train()
    got = module(cl_x, cl_v)
    module.calls.zero_()  # the same call of the stream as above
    torch.testing.assert_close(got, module(fmap, vmap), rtol=0, atol=1e-14)


def test_heads_not_dividing_features_is_a_clear_error():
    x, v = _inputs(2, 10, seed=87)
    with pytest.raises(ValueError, match=r"(?s)(3.*10|10.*3)"):
        kitinet_collision(x, v, collision_heads=3, coll_coef=0.5)
    module = KITINet(collision_heads=4, coll_coef=0.5).train()
    with pytest.raises(ValueError, match=r"(?s)(4.*10|10.*4)"):
        module(x, v)


def test_same_seed_same_output_different_seed_different_output():
    x, v = _inputs(3, 12, seed=88)

    def run(seed):
        return kitinet_collision(x, v, collision_heads=3, coll_coef=0.9, seed=seed)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


@pytest.mark.slow  # 4-9 s: 2**24+ pair entries, to exceed the internal chunk size
def test_large_batch_of_systems_equals_system_by_system():
    """Many large systems (processed in chunks internally) give what each system gives alone."""
    s, n = 5, 2048
    gen = _gen(91)
    x = 0.1 * torch.randn(s, n, generator=gen)
    v = torch.randn(s, n, generator=gen)
    counts = collision_mask(x[:, :, None], v[:, :, None], 0.3).sum((1, 2)).tolist()
    assert all(k > 0 for k in counts)
    signs = torch.randint(0, 2, (sum(counts), 1), generator=gen).float() * 2 - 1
    together, _ = kitinet_collision_with_rate(
        x, v, collision_heads=1, coll_coef=0.3, directions=signs
    )
    start = 0
    for row, k in enumerate(counts):
        alone, _ = kitinet_collision_with_rate(
            x[row : row + 1],
            v[row : row + 1],
            collision_heads=1,
            coll_coef=0.3,
            directions=signs[start : start + k],
        )
        start += k
        torch.testing.assert_close(together[row : row + 1], alone, rtol=1e-6, atol=1e-5)


# --------------------------------------------------------------------------- acceleration variant


def _accel_inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 2, 2, generator=gen, dtype=torch.float64) * 0.1
    a = torch.randn(3, 4, 2, 2, generator=gen, dtype=torch.float64)
    vel = torch.randn(3, 4, 2, 2, generator=gen, dtype=torch.float64)
    return x, a, vel


def test_acceleration_eval_is_plain_drift_with_zero_initial_velocity():
    x, a, vel = _accel_inputs()
    module = KITINet(2, 0.9, dt=0.5, acceleration=True).eval()
    out, v_out = module(x, a, vel)
    v_in = torch.add(vel, a, alpha=0.5)
    assert torch.equal(v_out, v_in)
    assert torch.equal(out, torch.add(x, v_in, alpha=0.5))
    out0, v0 = module(x, a)  # first module in eval: the missing velocity is zero, not random
    assert torch.equal(v0, torch.add(torch.zeros_like(a), a, alpha=0.5))
    assert torch.equal(out0, torch.add(x, v0, alpha=0.5))


def test_acceleration_training_collides_v_plus_dt_a_and_conserves_momentum():
    x, a, vel = _accel_inputs()
    module = KITINet(2, 0.9, dt=0.5, acceleration=True, seed=3).train()
    out, v_out = module(x, a, vel)
    v_in = torch.add(vel, a, alpha=0.5)
    assert float(module.last_collision_rate) > 0
    assert not torch.equal(v_out, v_in)
    assert torch.isfinite(out).all() and not torch.equal(out, torch.add(x, v_in, alpha=0.5))
    # Particles of one system: (heads=2, N=8) columns of each sample's 16 features.
    momentum_out = v_out.reshape(3, 2, 8).sum(dim=-1)
    momentum_in = v_in.reshape(3, 2, 8).sum(dim=-1)
    torch.testing.assert_close(momentum_out, momentum_in, rtol=0, atol=1e-12)
    # Without collisions the a-edition is exactly the drift of v + dt a.
    still = KITINet(2, 0.0, dt=0.5, acceleration=True).train()
    out_still, v_still = still(x, a, vel)
    assert torch.equal(v_still, v_in) and torch.equal(out_still, torch.add(x, v_in, alpha=0.5))


def test_acceleration_first_module_draws_its_velocity_in_training():
    x, a, _ = _accel_inputs()
    outs = []
    for seed in (0, 0, 1):
        module = KITINet(
            2,
            0.0,
            acceleration=True,
            initial_velocity_std=2.0,
            seed=seed,
        ).train()
        outs.append(module(x, a)[1])
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert 1.5 < float((outs[0] - a).std()) < 2.5  # v = N(0, 2^2) draw + dt * a


def test_velocity_argument_requires_the_acceleration_variant():
    x, a, vel = _accel_inputs()
    with pytest.raises(ValueError, match="acceleration=True"):
        KITINet(2, 0.5)(x, a, vel)
