"""Tests of the PDE neural operators (experiments/pde/models.py): FNO, KITI-FNO, OFormer, metrics."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import experiments.domains  # noqa: F401
from experiments.core.errors import ConfigError
from experiments.core.metrics import mse, relative_l2, rmse
from experiments.core.registry import MODELS
from experiments.pde.models import (
    FNO,
    SpectralConv,
    check_resolution,
    grid_coordinates,
    practical_collision_heads,
)
from kinetics import KITINet, KITINetConfig

TINY_FNO1D = {"width": 8, "modes": 8, "n_layers": 3, "projection_hidden": 16}
TINY_FNO2D = {"in_channels": 4, "width": 6, "modes": 4, "n_layers": 2, "projection_hidden": 8}
TINY_OFORMER = {"in_channels": 3, "out_channels": 2, "dim": 16, "num_heads": 2}
EAGER = KITINetConfig(collision_heads=8, coll_coef=0.9, mean_free_path=100.0)


def _pair(name: str, kitinet: dict, seed: int = 0, **kwargs) -> tuple[torch.nn.Module, ...]:
    """A vanilla model and its KITI- twin with identical weights."""
    torch.manual_seed(seed)
    vanilla = MODELS.create(name, **kwargs)
    kiti = MODELS.create(name, kitinet=kitinet, **kwargs)
    kiti.load_state_dict(vanilla.state_dict())
    return vanilla, kiti


def _kitinets(model: torch.nn.Module) -> dict[str, KITINet]:
    return {n: m for n, m in model.named_modules() if isinstance(m, KITINet)}


def _smooth_1d(n: int) -> torch.Tensor:
    x = torch.arange(n) / n
    u = torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x + 0.3)
    return torch.stack([u, -0.7 * u]).unsqueeze(-1)  # (2, n, 1)


# --------------------------------------------------------------------------- shapes and errors


def test_registry_names() -> None:
    assert {"fno1d", "fno2d", "oformer"} <= set(MODELS.names())
    with pytest.raises(ConfigError, match="unknown"):
        MODELS.create("fno3d")


def test_output_shapes() -> None:
    torch.manual_seed(0)
    assert MODELS.create("fno1d", **TINY_FNO1D)(torch.randn(2, 32, 1)).shape == (2, 32, 1)
    u = torch.randn(2, 16, 12, 4)
    rollout = MODELS.create("fno2d", t_out=5, out_channels=2, **TINY_FNO2D)
    assert rollout(u).shape == (2, 16, 12, 5)  # 3 calls of 2 steps, truncated to 5
    one_shot = MODELS.create("fno2d", t_out=None, out_channels=5, **TINY_FNO2D)
    assert one_shot(u).shape == (2, 16, 12, 5)
    oformer = MODELS.create("oformer", **TINY_OFORMER)
    values, coords, queries = torch.randn(2, 40, 3), torch.rand(2, 40, 2), torch.rand(2, 25, 2)
    assert oformer(values, coords, queries).shape == (2, 25, 2)
    assert oformer(values, coords).shape == (2, 40, 2)
    # One batch object, as the training loop passes it.
    oformer.eval()
    assert torch.equal(oformer((values, coords, queries)), oformer(values, coords, queries))
    assert torch.equal(oformer([values, coords]), oformer(values, coords))
    with pytest.raises(TypeError, match="needs coords"):
        oformer(values)


def test_bad_inputs_raise() -> None:
    model = MODELS.create("fno1d", **TINY_FNO1D)
    with pytest.raises(ValueError, match="channels last"):
        model(torch.randn(2, 1, 32))
    with pytest.raises(ConfigError, match="kitinet_layers"):
        MODELS.create("fno1d", kitinet=EAGER, kitinet_layers=[3], **TINY_FNO1D)
    with pytest.raises(ConfigError, match="does not divide the token width"):
        MODELS.create(
            "oformer", kitinet=KITINetConfig(collision_heads=3, coll_coef=0.5), **TINY_OFORMER
        )


def test_rollout_feeds_predictions_back() -> None:
    """Autoregressive output = manual loop over forward_step with a sliding window."""
    torch.manual_seed(0)
    model = MODELS.create("fno2d", t_out=3, **TINY_FNO2D).eval()
    u = torch.randn(1, 8, 8, 4)
    with torch.no_grad():
        steps, window = [], u
        for _ in range(3):
            steps.append(model.forward_step(window))
            window = torch.cat([window, steps[-1]], dim=-1)[..., 1:]
        torch.testing.assert_close(model(u), torch.cat(steps, dim=-1), rtol=0, atol=0)


# --------------------------------------------------------------------------- spectral conv


def test_grid_coordinates_are_periodic() -> None:
    grid = grid_coordinates((4, 2))
    assert grid.shape == (4, 2, 2)
    assert torch.equal(grid[:, 0, 0], torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert torch.equal(grid[1, :, 1], torch.tensor([0.0, 0.5]))


def test_spectral_conv_one_mode_by_hand() -> None:
    """Weight w on mode k = 1 maps cos(2 pi x) to Re(w exp(2 pi i x)) = 2 cos - 3 sin for w = 2+3i."""
    conv = SpectralConv(1, 1, (4,))
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1] = torch.tensor([2.0, 3.0])
    x = torch.arange(16) / 16
    out = conv(torch.cos(2 * math.pi * x).view(1, 1, 16))
    expected = 2 * torch.cos(2 * math.pi * x) - 3 * torch.sin(2 * math.pi * x)
    torch.testing.assert_close(out.view(16), expected, atol=1e-5, rtol=0)


def test_spectral_conv_2d_negative_modes_by_hand() -> None:
    """Mode (k1, k2) = (-1, 1) lives in the last row block of the 2D weight."""
    conv = SpectralConv(1, 1, (3, 3))
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 2 * 3 - 1, 1] = torch.tensor([2.0, 3.0])
    grid = grid_coordinates((8, 8))
    phase = 2 * math.pi * (grid[..., 1] - grid[..., 0])
    out = conv(torch.cos(phase).view(1, 1, 8, 8))
    expected = 2 * torch.cos(phase) - 3 * torch.sin(phase)
    torch.testing.assert_close(out.view(8, 8), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("modes", [(8,), (5, 5)])
def test_spectral_conv_is_exactly_resolution_invariant(modes: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, modes)
    coarse = (16,) * len(modes)
    fine = (32,) * len(modes)
    # A band-limited input: random coefficients on modes below 5, synthesised on both grids.
    coeffs = torch.randn(2, *(5,) * len(modes), dtype=torch.complex64)

    def field(shape: tuple[int, ...]) -> torch.Tensor:
        full = torch.zeros(2, *shape[:-1], shape[-1] // 2 + 1, dtype=torch.complex64)
        full[(slice(None), *(slice(0, 5),) * len(modes))] = coeffs * math.prod(shape)
        return torch.fft.irfftn(full, s=shape, dim=tuple(range(1, 1 + len(modes)))).unsqueeze(0)

    out_coarse, out_fine = conv(field(coarse)), conv(field(fine))
    sub = (slice(None), slice(None), *(slice(None, None, 2),) * len(modes))
    torch.testing.assert_close(out_fine[sub], out_coarse, atol=1e-5, rtol=1e-4)


def test_fno_resolution_invariance() -> None:
    """Built once, runs at 32 and 64; with low-mode spectral weights the outputs agree.

    Errors are relative to the output's non-constant part (at init the biases dominate). What
    remains (~1%) is aliasing of the pointwise layers' harmonics (GELU, the grid-coordinate ramp).
    """
    torch.manual_seed(0)
    model = MODELS.create("fno1d", width=16, modes=16, n_layers=4).eval()
    with torch.no_grad():
        for layer in model.layers:
            layer.spectral.weight.normal_(0.0, 0.02)
            layer.spectral.weight[:, :, 4:] = 0.0
        out32, out64 = model(_smooth_1d(32)), model(_smooth_1d(64))
    assert out64.shape == (2, 64, 1)
    scale = (out32 - out32.mean(dim=1, keepdim=True)).norm()
    assert (out64[:, ::2] - out32).norm() / scale < 0.03
    # Misaligned by half a coarse cell the outputs disagree: the tolerance can fail.
    assert (out64[:, 1::2] - out32).norm() / scale > 0.06


# --------------------------------------------------------------------------- KITI-FNO


@pytest.mark.parametrize("name", ["fno1d", "fno2d"])
def test_kiti_fno_eval_equals_fno(name: str) -> None:
    kwargs = TINY_FNO1D if name == "fno1d" else {**TINY_FNO2D, "t_out": 2, "width": 8}
    vanilla, kiti = _pair(name, EAGER, **kwargs)
    assert len(_kitinets(kiti)) == kwargs["n_layers"] and not _kitinets(vanilla)
    shape = (3, 32, 1) if name == "fno1d" else (3, 8, 8, 4)
    u = torch.randn(shape)
    assert torch.equal(kiti.eval()(u), vanilla.eval()(u))
    # coll_coef = 0 never collides: training output equals the vanilla one too.
    _, never = _pair(name, replace(EAGER, coll_coef=0.0), **kwargs)
    assert torch.equal(never.train()(u), vanilla(u))


def test_kitinet_gets_skip_as_x_and_spectral_as_v() -> None:
    """KITINet App. E.1: 1x1-conv (skip) output = position x, spectral-conv output = velocity v."""
    model = MODELS.create("fno1d", kitinet=EAGER, **TINY_FNO1D)
    layer = model.layers[1]
    seen: dict[str, torch.Tensor] = {}
    layer.skip.register_forward_hook(lambda m, args, out: seen.__setitem__("skip", out))
    layer.spectral.register_forward_hook(lambda m, args, out: seen.__setitem__("spectral", out))
    layer.residual.register_forward_hook(
        lambda m, args, out: seen.update(x=args[0], v=args[1], out=out)
    )
    model.train()(torch.randn(2, 32, 1))
    assert seen["x"] is seen["skip"] and seen["v"] is seen["spectral"]
    assert seen["out"].shape == (2, 8, 32)


def test_kiti_fno_training_collides_and_logs_rates() -> None:
    vanilla, kiti = _pair("fno1d", EAGER, **TINY_FNO1D)
    u = _smooth_1d(32) + 0.1 * torch.randn(2, 32, 1)
    kiti.train()
    out = kiti(u)
    rates = {name: m.last_collision_rate for name, m in _kitinets(kiti).items()}
    assert list(rates) == ["layers.0.residual", "layers.1.residual", "layers.2.residual"]
    assert all(r is not None and 0.0 < float(r) <= 1.0 for r in rates.values()), rates
    assert not torch.allclose(out, vanilla(u), atol=1e-4)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in kiti.parameters())


def test_kitinet_layers_and_position_update_reach_modules() -> None:
    kitinet = replace(EAGER, position_update=False)
    model = MODELS.create("fno1d", kitinet=kitinet, kitinet_layers=[0, 2], **TINY_FNO1D)
    modules = _kitinets(model)
    assert list(modules) == ["layers.0.residual", "layers.2.residual"]
    assert all(not m.position_update and m.system == "sample" for m in modules.values())

    u = _smooth_1d(32)
    outputs = {}
    for flag in (True, False):
        config = replace(EAGER, position_update=flag, seed=1)
        _, kiti = _pair("fno1d", config, **TINY_FNO1D)
        outputs[flag] = kiti.train()(u)
    assert not torch.allclose(outputs[True], outputs[False], atol=1e-4)


def test_check_resolution_and_forward_errors() -> None:
    model = MODELS.create("fno1d", kitinet=replace(EAGER, collision_heads=16), **TINY_FNO1D)
    report = check_resolution(model, (32,))
    assert report == {f"layers.{i}.residual": (256, 16) for i in range(3)}
    with pytest.raises(ConfigError, match="more than max_particles=8"):
        check_resolution(model, (32,), max_particles=8)
    bad = MODELS.create("fno1d", kitinet=replace(EAGER, collision_heads=3), **TINY_FNO1D)
    with pytest.raises(ConfigError, match="allowed: 1, 2, 4, 8, 16"):
        check_resolution(bad, (32,))
    with pytest.raises(ValueError, match="does not divide"):
        bad.train()(torch.randn(2, 32, 1))
    assert check_resolution(MODELS.create("fno1d", **TINY_FNO1D), (32,)) == {}


def test_practical_collision_heads() -> None:
    burgers = practical_collision_heads(64 * 1024, max_particles=2048)
    assert burgers == [2**k for k in range(5, 17)]
    assert practical_collision_heads(20 * 32 * 32, max_particles=2048)[:3] == [10, 16, 20]


# --------------------------------------------------------------------------- OFormer


def test_oformer_kitinet_trains_and_eval_equals_vanilla() -> None:
    kitinet = KITINetConfig(collision_heads=4, coll_coef=0.9, mean_free_path=100.0)
    vanilla, kiti = _pair("oformer", kitinet, **TINY_OFORMER)
    modules = _kitinets(kiti)
    assert len(modules) == 2 * (4 + 1) and all(m.system == "token" for m in modules.values())

    torch.manual_seed(1)
    values, coords, target = torch.randn(2, 30, 3), torch.rand(2, 30, 2), torch.randn(2, 30, 2)
    optimizer = torch.optim.Adam(kiti.parameters(), lr=1e-3)
    kiti.train()
    loss = mse(kiti(values, coords), target)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(float(m.last_collision_rate) > 0 for m in modules.values())

    vanilla.load_state_dict(kiti.state_dict())
    assert torch.equal(kiti.eval()(values, coords), vanilla.eval()(values, coords))


# --------------------------------------------------------------------------- training, metrics


@pytest.mark.parametrize("kitinet", [None, KITINetConfig(collision_heads=8, coll_coef=0.3)])
def test_training_smoke_decreases_loss(kitinet: KITINetConfig | None) -> None:
    torch.manual_seed(0)
    model: FNO = MODELS.create("fno1d", kitinet=kitinet, **TINY_FNO1D)
    u = torch.randn(8, 32, 1)
    target = torch.roll(u, 3, dims=1) - 0.5 * u  # a linear operator the FNO can represent
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = relative_l2(model(u), target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.75 * losses[0], losses


def test_metrics_by_hand() -> None:
    target = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    pred = torch.tensor([[3.0, 4.0], [3.0, 0.0]])  # errors 0 / 5 and 2 / 1
    assert torch.equal(relative_l2(pred, target, reduction="none"), torch.tensor([0.0, 2.0]))
    assert float(relative_l2(pred, target)) == 1.0
    assert float(relative_l2(pred, target, reduction="sum")) == 2.0
    # Per-sample norms run over every non-batch dimension.
    cube = torch.ones(2, 2, 2)
    assert float(relative_l2(2 * cube, cube)) == 1.0
    assert float(mse(pred, target)) == 1.0  # (0 + 0 + 4 + 0) / 4
    torch.testing.assert_close(
        rmse(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 5.0])),
        torch.tensor(math.sqrt(4 / 3)),
    )
    with pytest.raises(ValueError, match="differ"):
        relative_l2(pred, target[:1])
