"""KineticOptimizer and select_modules (SPEC §1.4): the gadget edits only the chosen weight grads."""

from __future__ import annotations

import copy
import io
import math
import warnings

import pytest
import torch
from reference import literal_soft_collision
from torch import nn

from kinetics import KineticOptimizer, select_modules

F64 = torch.float64


class Net(nn.Module):
    """Conv + three Linear layers; ``out`` is the classifier (the last nn.Linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, kernel_size=3)
        self.fc1 = nn.Linear(36, 16)
        self.fc2 = nn.Linear(16, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x)).flatten(1)
        return self.out(torch.tanh(self.fc2(torch.tanh(self.fc1(h)))))


class NetWithHeadMethod(Net):
    """A timm-style model whose classifier is not the last Linear registered."""

    def __init__(self) -> None:
        super().__init__()
        self.aux = nn.Linear(3, 2)

    def get_classifier(self) -> nn.Module:
        return self.out


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().double()


def _batch(step: int, seed: int = 0):
    gen = torch.Generator().manual_seed(1000 * seed + step)
    x = torch.randn(8, 2, 5, 5, generator=gen, dtype=F64)
    return x, torch.randint(0, 3, (8,), generator=gen)


def _train_step(model, opt, step, seed=0):
    x, y = _batch(step, seed)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _inject_grads(models, step: int) -> dict[str, torch.Tensor]:
    """Give every parameter of every model the same random gradient (no forward pass)."""
    gen = torch.Generator().manual_seed(step)
    grads = {
        n: torch.randn(p.shape, generator=gen, dtype=p.dtype)
        for n, p in models[0].named_parameters()
    }
    for model in models:
        for name, p in model.named_parameters():
            p.grad = grads[name].clone()
    return grads


def _make_base(kind: str, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)
    return torch.optim.Adam(params, lr=1e-2)


# --------------------------------------------------------------------------------------------
# Only the chosen weights change
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["sgd", "adam"])
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_unselected_parameters_follow_the_bare_base_optimizer(base, mode):
    plain, kinetic = _net(0), _net(0)
    chosen = select_modules(kinetic, ["fc2", "conv"])
    opt_plain = _make_base(base, plain.parameters())
    opt_kin = KineticOptimizer(_make_base(base, kinetic.parameters()), chosen, mode, 0.9, seed=1)
    selected = {"fc2.weight", "conv.weight"}
    for step in range(5):
        _inject_grads([plain, kinetic], step)
        opt_plain.step()
        opt_kin.step()
    params_plain = dict(plain.named_parameters())
    for name, p in kinetic.named_parameters():
        if name in selected:
            assert not torch.equal(p, params_plain[name]), name
        else:
            assert torch.equal(p, params_plain[name]), name


@pytest.mark.parametrize("exclude_self", [False, True])
def test_soft_mode_edits_exactly_the_selected_weight_grads(exclude_self):
    model = _net(1)
    opt = KineticOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1),
        select_modules(model, ["conv", "fc2"]),
        "soft",
        0.7,
        exclude_self=exclude_self,
    )
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = _inject_grads([model], step=3)
    opt.step()
    for name, p in model.named_parameters():
        if name in ("conv.weight", "fc2.weight"):
            want = literal_soft_collision(weights[name], grads[name], 0.7, exclude_self)
            torch.testing.assert_close(p.grad, want, rtol=1e-12, atol=1e-12)
        else:  # biases of the chosen layers included
            assert torch.equal(p.grad, grads[name]), name
        torch.testing.assert_close(p, weights[name] - 0.1 * p.grad, rtol=0, atol=1e-15)


def test_hard_mode_edits_only_selected_grads_and_conserves_their_sum():
    model = _net(2)
    opt = KineticOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), select_modules(model, "fc*"), "hard", 0.9
    )
    grads = _inject_grads([model], step=4)
    opt.step()
    rates = opt.collision_rates
    assert set(rates) == {"fc1", "fc2"}
    assert all(0.0 < r <= 1.0 for r in rates.values()), rates
    for name, p in model.named_parameters():
        if name in ("fc1.weight", "fc2.weight"):
            assert not torch.equal(p.grad, grads[name])
            torch.testing.assert_close(p.grad.sum(0), grads[name].sum(0), rtol=1e-12, atol=1e-12)
        else:
            assert torch.equal(p.grad, grads[name]), name


def test_collision_rates_zero_without_collisions():
    model = _net(3)
    opt = KineticOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), select_modules(model, "head"), "hard", 0.0
    )
    grads = _inject_grads([model], step=5)
    opt.step()
    assert opt.collision_rates == {"out": 0.0}
    assert torch.equal(model.out.weight.grad, grads["out.weight"])


def test_closure_and_zero_grad_are_forwarded():
    model = _net(4)
    opt = KineticOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), [model.out], "soft", 0.5)
    x, y = _batch(0)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and torch.isfinite(loss)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Checkpointing, schedulers, AMP
# --------------------------------------------------------------------------------------------
def _kinetic_sgd(model, seed=7):
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return KineticOptimizer(base, select_modules(model, ["fc2", "head"]), "hard", 0.95, seed=seed)


def test_state_dict_round_trip_continues_bit_identically(tmp_path):
    reference, resumed = _net(5), _net(5)
    opt_ref, opt_first = _kinetic_sgd(reference), _kinetic_sgd(resumed)
    for step in range(3):
        _train_step(reference, opt_ref, step)
        _train_step(resumed, opt_first, step)
    assert all(r > 0 for r in opt_first.collision_rates.values())
    torch.save(
        {"model": resumed.state_dict(), "optim": opt_first.state_dict()}, tmp_path / "ckpt.pt"
    )
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    fresh = _net(99)  # different init, overwritten by the checkpoint
    fresh.load_state_dict(ckpt["model"])
    opt_fresh = _kinetic_sgd(fresh)
    opt_fresh.load_state_dict(ckpt["optim"])
    for step in range(3, 6):
        _train_step(reference, opt_ref, step)
        _train_step(fresh, opt_fresh, step)
    for (name, p_ref), p_new in zip(reference.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p_ref, p_new), name


def test_resuming_without_the_generator_state_would_differ():
    """Power check for the round trip above: a fresh generator (same seed) replays old draws."""
    reference, resumed = _net(5), _net(5)
    opt_ref, opt_res = _kinetic_sgd(reference), _kinetic_sgd(resumed)
    for step in range(3):
        _train_step(reference, opt_ref, step)
        _train_step(resumed, opt_res, step)
    state = opt_res.state_dict()
    state.pop("kinetic")
    opt_new = _kinetic_sgd(resumed)
    opt_new.load_state_dict(state)
    _train_step(reference, opt_ref, 3)
    _train_step(resumed, opt_new, 3)
    assert not torch.equal(reference.fc2.weight, resumed.fc2.weight)


@pytest.mark.parametrize("scheduler", ["step", "cosine"])
def test_lr_scheduler_drives_the_base_without_warnings(scheduler):
    model = _net(6)
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = KineticOptimizer(base, select_modules(model, "head"), "hard", 0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
            expected = [0.1, 0.05, 0.05, 0.025]
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
            expected = [0.05 * (1 + math.cos(k * math.pi / 4)) for k in (1, 2, 3, 4)]
        lrs = []
        for step in range(4):
            _train_step(model, opt, step)
            sched.step()
            lrs.append(base.param_groups[0]["lr"])
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    messages = [str(w.message) for w in caught]
    assert not messages, messages


def test_grad_scaler_unscales_before_the_collision():
    plain, scaled = _net(8), _net(8)
    opt_plain, opt_scaled = _kinetic_sgd(plain), _kinetic_sgd(scaled)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    seen = []
    original = opt_scaled.collide_gradients

    def recording_collide():
        seen.append(scaled.fc2.weight.grad.clone())
        original()

    opt_scaled.collide_gradients = recording_collide
    for step in range(4):
        _train_step(plain, opt_plain, step)
        # What the collision must see: the true (unscaled) gradient of this step.
        x, y = _batch(step)
        probe = copy.deepcopy(scaled)
        nn.functional.cross_entropy(probe(x), y).backward()
        opt_scaled.zero_grad()
        scaler.scale(nn.functional.cross_entropy(scaled(x), y)).backward()
        scaler.step(opt_scaled)
        scaler.update()
        assert len(seen) == step + 1
        torch.testing.assert_close(seen[-1], probe.fc2.weight.grad, rtol=1e-12, atol=1e-15)
    assert scaler.get_scale() == 2.0**12
    for (name, p_plain), p_scaled in zip(
        plain.named_parameters(), scaled.parameters(), strict=True
    ):
        torch.testing.assert_close(p_scaled, p_plain, rtol=1e-12, atol=1e-14, msg=name)


def test_grad_scaler_skips_the_step_and_the_collision_on_inf():
    model = _net(9)
    opt = _kinetic_sgd(model)
    calls = []
    original = opt.collide_gradients
    opt.collide_gradients = lambda: (calls.append(1), original())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = copy.deepcopy(model.state_dict())
    x, y = _batch(0)
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    model.fc1.weight.grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert not calls
    assert scaler.get_scale() < 2.0**8
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


# --------------------------------------------------------------------------------------------
# select_modules
# --------------------------------------------------------------------------------------------
def test_select_modules_patterns():
    model = Net()
    assert list(select_modules(model, "head")) == ["out"]
    assert list(select_modules(model, "fc*")) == ["fc1", "fc2"]
    assert list(select_modules(model, ["conv", "fc2"])) == ["conv", "fc2"]
    assert select_modules(model, "fc1")["fc1"] is model.fc1
    assert list(select_modules(NetWithHeadMethod(), "head")) == ["out"]
    seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert list(select_modules(seq, "head")) == ["2"]
    assert list(select_modules(seq, "*")) == ["0", "2"]  # the ReLU and the container have no weight


def test_select_modules_no_match_is_a_clear_error():
    with pytest.raises(ValueError, match="nomatch"):
        select_modules(Net(), ["fc1", "nomatch*"])


def test_optimizer_rejects_layers_it_does_not_optimise():
    model = _net(0)
    base = torch.optim.SGD(model.fc1.parameters(), lr=0.1)
    with pytest.raises(ValueError):
        KineticOptimizer(base, select_modules(model, "head"), "soft", 0.5)


def test_state_dict_is_loadable_with_weights_only():
    model = _net(0)
    opt = _kinetic_sgd(model)
    _train_step(model, opt, 0)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert "kinetic" in state


def test_step_hooks_registered_on_the_wrapper_run_around_the_base_step():
    model = _net()
    opt = _kinetic_sgd(model)
    seen: list[tuple[str, torch.Tensor]] = []
    head = model.out.weight
    opt.register_step_pre_hook(lambda o, a, k: seen.append(("pre", head.grad.clone())))
    opt.register_step_post_hook(lambda o, a, k: seen.append(("post", head.detach().clone())))
    _train_step(model, opt, step=0)
    assert [tag for tag, _ in seen] == ["pre", "post"]
    # The pre-hook sees the collided gradient: the one the base optimizer consumes.
    assert torch.equal(seen[0][1], head.grad)
    assert torch.equal(seen[1][1], head.detach())
