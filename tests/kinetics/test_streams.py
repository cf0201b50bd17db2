"""Counter-based random streams (issue 10 §2, SPEC §1.5): directions are a pure function of
(key, index); KITINet's draws depend on (seed, stream, call, rank, system, pair) only.

Statistical tests use fixed keys and tolerances a wrong generator fails (e.g. a constant, a
shifted mean, correlated coordinates or neighbouring indices, non-uniform directions).
"""

from __future__ import annotations

import math

import pytest
import torch

from kinetics import KITINet, kitinet, streams
from kinetics.kitinet import (
    kitinet_collision_with_rate,
    kitinet_state,
    load_kitinet_state,
    seed_kitinet,
)
from kinetics.streams import normal_directions, normals, stream_key

F64 = torch.float64


# --------------------------------------------------------------------------------------------
# The stream itself
# --------------------------------------------------------------------------------------------
def test_stream_key_is_a_deterministic_function_of_all_its_parts() -> None:
    assert stream_key(1, 2, 3) == stream_key(1, 2, 3)
    keys = {stream_key(*parts) for parts in [(1, 2, 3), (1, 2, 4), (2, 2, 3), (1, 3, 2), (1, 2)]}
    assert len(keys) == 5  # every part and the order matter
    assert stream_key(-1) != stream_key(1)
    assert all(0 <= word < 2**32 for word in stream_key(7, 8))


def test_rows_depend_only_on_key_and_index(monkeypatch: pytest.MonkeyPatch) -> None:
    key = stream_key(3)
    index = torch.randint(0, 2**40, (5000,), generator=torch.Generator().manual_seed(0))
    z = normals(key, index, 7, torch.float32)
    perm = torch.randperm(5000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(normals(key, index[perm], 7, torch.float32), z[perm])
    assert torch.equal(normals(key, index[:10], 7, torch.float32), z[:10])
    monkeypatch.setattr(streams, "_BLOCK_ELEMENTS", 8)  # many blocks
    assert torch.equal(normals(key, index, 7, torch.float32), z)
    assert not torch.equal(normals(stream_key(4), index, 7, torch.float32), z)
    # float64 rows are the float32 rows up to float32 rounding (same uniforms)
    torch.testing.assert_close(normals(key, index, 7, F64).float(), z, rtol=1e-5, atol=1e-5)


def test_global_rng_is_not_touched() -> None:
    state = torch.get_rng_state()
    normals(stream_key(0), torch.arange(1000), 4, torch.float32)
    assert torch.equal(torch.get_rng_state(), state)


def _normal_cdf(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(t / math.sqrt(2)))


def test_normals_are_standard_normal_and_independent() -> None:
    n, d = 200_000, 6
    z = normals(stream_key(11), torch.arange(n), d, F64)
    flat = z.flatten()
    m = flat.numel()
    assert abs(float(flat.mean())) < 4 / math.sqrt(m)
    assert abs(float(flat.var()) - 1) < 4 * math.sqrt(2 / m)
    # Kolmogorov-Smirnov distance to N(0, 1); the 1e-3 critical value is 1.95 / sqrt(m).
    sample = flat[:200_000].sort().values
    ecdf = torch.arange(1, sample.numel() + 1, dtype=F64) / sample.numel()
    ks = float((ecdf - _normal_cdf(sample)).abs().max())
    assert ks < 1.95 / math.sqrt(sample.numel())
    # Coordinates of a row, and the same coordinate of neighbouring indices, are uncorrelated.
    corr = torch.corrcoef(z.T)
    off = corr - torch.eye(d, dtype=F64)
    assert float(off.abs().max()) < 5 / math.sqrt(n)
    neighbours = torch.corrcoef(torch.stack([z[:-1, 0], z[1:, 0]]))[0, 1]
    assert abs(float(neighbours)) < 5 / math.sqrt(n)
    # Tails: P(|z| > 3) = 0.0027
    tail = float((flat.abs() > 3).double().mean())
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / m)


@pytest.mark.parametrize("d", [1, 2, 3, 12])
def test_directions_are_uniform_on_the_sphere(d: int) -> None:
    n = 100_000
    z, inv_norm = normal_directions(stream_key(5, d), torch.arange(n), d, F64)
    u = z * inv_norm
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(n, dtype=F64))
    # E[u] = 0 and E[u u^T] = I / d for the uniform distribution on the sphere.
    assert float(u.mean(0).abs().max()) < 5 / math.sqrt(n)
    second = u.T @ u / n
    tol = 5 * math.sqrt(2 / (d * d * n)) + 5 / n
    torch.testing.assert_close(second, torch.eye(d, dtype=F64) / d, rtol=0, atol=tol * 3)
    if d == 1:  # a random sign, fair
        assert abs(float((u > 0).double().mean()) - 0.5) < 5 * 0.5 / math.sqrt(n)


# --------------------------------------------------------------------------------------------
# KITINet: causality, determinism, resume, ranks
# --------------------------------------------------------------------------------------------
def _tokens(batch: int = 2, seq: int = 12, features: int = 48, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = 0.2 * torch.randn(batch, seq, features, generator=gen, dtype=F64)
    v = torch.randn(batch, seq, features, generator=gen, dtype=F64)
    return x, v


def _accepted(x: torch.Tensor, v: torch.Tensor) -> float:
    _, rate = kitinet_collision_with_rate(
        x.reshape(-1, 48), v.reshape(-1, 48), collision_heads=4, coll_coef=0.8
    )
    return float(rate) * x.shape[0] * x.shape[1] * 12 * 11 / 2


@pytest.mark.parametrize(
    ("future", "layout"),
    [
        ("dense", "switch"),
        *[
            (f, layout)
            for f in ("dense", "rescaled", "nonfinite")
            for layout in ("columns", "rows")
        ],
    ],
)
def test_future_tokens_leave_past_outputs_bitwise_unchanged(
    future: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token systems: after position t of sequence 0 the tokens change so that (a) many more
    pairs collide, (b) one velocity is 1e19 (every system then goes through the rescaled path)
    or (c) one is NaN. Outputs at positions <= t, and all of sequence 1, stay bitwise the same,
    with either internal layout, or when the change of pair count switches the layout."""
    x, v = _tokens()
    x = x * 5  # sparse collisions at first
    t = 5
    x2, v2 = x.clone(), v.clone()
    if future == "dense":
        x2[0, t + 1 :] *= 1e-3  # nearly coincident particles: every pair of those tokens
    elif future == "rescaled":
        v2[0, t + 3, 0] = 1e19
    else:
        v2[0, t + 1, 4] = math.nan
    systems_particles = x.shape[0] * x.shape[1] * 12
    if layout == "switch":
        k1, k2 = _accepted(x, v), _accepted(x2, v2)
        assert 0 < k1 < k2 / 2
        monkeypatch.setattr(kitinet, "_ROWS_FROM", (k1 + k2) / 2 / systems_particles)
    else:
        monkeypatch.setattr(kitinet, "_ROWS_FROM", math.inf if layout == "columns" else 0.0)
    module = KITINet(4, 0.8, system="token", seed=3).train()
    out = module(x, v)
    rate = float(module.last_collision_rate)
    module.calls.zero_()
    out2 = module(x2, v2)
    assert 0 < rate < 1
    assert torch.equal(out[:, : t + 1], out2[:, : t + 1])
    assert torch.equal(out[1], out2[1])
    assert not torch.equal(out[0, t + 1 :], out2[0, t + 1 :])


def test_both_layouts_and_the_rescaled_path_give_the_same_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The data-dependent internal choices (layout by pair count, rescaling when a system is out
    of range) never change the bits of a system that is not itself rescaled."""
    x, v = _tokens(seq=6)
    xs, vs = x.reshape(-1, 48), v.reshape(-1, 48)
    outs = []
    for rows_from in (0.0, math.inf):
        monkeypatch.setattr(kitinet, "_ROWS_FROM", rows_from)
        outs.append(kitinet_collision_with_rate(xs, vs, collision_heads=4, coll_coef=0.8)[0])
    assert torch.equal(outs[0], outs[1])
    vs_big = vs.clone()
    vs_big[0] *= 2.0**70  # system 0 out of range: every system is scaled by its power of two
    big, _ = kitinet_collision_with_rate(xs, vs_big, collision_heads=4, coll_coef=0.8)
    assert torch.equal(big[1:], outs[0][1:])


def test_same_seed_same_bits_in_outputs_and_gradients_and_seed_stream_call_rank_matter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, v = _tokens(seq=4)

    def run(**key):
        a, b = x.clone().requires_grad_(), v.clone().requires_grad_()
        out, _ = kitinet_collision_with_rate(
            a.reshape(-1, 48), b.reshape(-1, 48), collision_heads=4, coll_coef=0.8, **key
        )
        out.pow(2).sum().backward()
        return out.detach(), a.grad, b.grad

    base = run(seed=1)
    again = run(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(base, again, strict=True))
    for key in [dict(seed=2), dict(seed=1, stream=1), dict(seed=1, call=1)]:
        assert not torch.equal(run(**key)[0], base[0]), key
    monkeypatch.setattr(kitinet, "_rank", lambda: 1)  # another DDP rank
    assert not torch.equal(run(seed=1)[0], base[0])


def test_global_rng_after_a_training_step_does_not_depend_on_the_input() -> None:
    module = KITINet(4, 0.8, system="token").train()
    states = []
    for scale in (1.0, 1e-3):  # few and many collisions
        x, v = _tokens()
        torch.manual_seed(0)
        out = module(x * scale, v.requires_grad_())
        out.sum().backward()
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])
    assert torch.equal(states[0], torch.manual_seed(0).get_state())  # untouched at all


def test_calls_advance_the_stream_and_a_restored_counter_resumes_it() -> None:
    """Each training call draws new directions; eval calls draw none; restoring the counters
    (what a checkpoint holds) makes a fresh model continue bit-identically."""
    x, v = _tokens()
    net = torch.nn.ModuleDict({"a": KITINet(4, 0.8, system="token"), "b": KITINet(4, 0.8)})
    modules = seed_kitinet(net, 9)
    assert [(m.seed, m.stream) for m in modules] == [(9, 0), (9, 1)]
    net.train()
    first = net["a"](x, v)
    second = net["a"](x, v)
    assert not torch.equal(first, second)
    net.eval()
    net["a"](x, v)
    assert kitinet_state(net) == {"a": 2, "b": 0}
    net.train()
    third = net["a"](x, v)

    fresh = torch.nn.ModuleDict({"a": KITINet(4, 0.8, system="token"), "b": KITINet(4, 0.8)})
    seed_kitinet(fresh, 9)
    load_kitinet_state(fresh, {"a": 2, "b": 0})
    assert torch.equal(fresh.train()["a"](x, v), third)
    with pytest.raises(ValueError, match="names modules"):
        load_kitinet_state(fresh, {"a": 1})
    assert "calls" not in str(list(fresh.state_dict()))  # not in the state_dict


def test_modules_of_one_seed_draw_from_different_streams() -> None:
    x, v = _tokens()
    a, b = KITINet(4, 0.8, stream=0).train(), KITINet(4, 0.8, stream=1).train()
    assert not torch.equal(a(x, v), b(x, v))
