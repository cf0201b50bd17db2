"""KineticOptimizer as a well-kept optimizer wrapper (issue 9): copying and pickling, state-dict
hooks, closures (L-BFGS), sparse layers, refused checkpoints, per-step rates and statistics, and
non-finite gradients or weights, which are never spread by a collision."""

from __future__ import annotations

import copy
import io
import math
import pickle

import pytest
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim import optimizer as torch_optimizer_module

from kinetics import KineticOptimizer, select_modules
from kinetics.collision import hard_collision, soft_collision
from kinetics.streams import stream_key

F64 = torch.float64


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().double()


def _batch(step: int):
    gen = torch.Generator().manual_seed(step)
    return torch.randn(12, 6, generator=gen, dtype=F64), torch.randint(0, 3, (12,), generator=gen)


def _loss(model, step):
    x, y = _batch(step)
    return nn.functional.cross_entropy(model(x), y)


def _train_step(model, opt, step):
    opt.zero_grad()
    _loss(model, step).backward()
    opt.step()


def _kinetic(model, mode="hard", coll_coef=0.95, **kwargs):
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return KineticOptimizer(base, select_modules(model, ["fc2", "head"]), mode, coll_coef, **kwargs)


def _torch_class_state():
    """Everything a stray Optimizer.__setstate__ / _patch_step_function would change."""
    classes = (Optimizer, KineticOptimizer, torch.optim.SGD)
    return (
        {cls: dict(vars(cls)) for cls in classes},
        dict(torch_optimizer_module._global_optimizer_pre_hooks),
        dict(torch_optimizer_module._global_optimizer_post_hooks),
    )


def _global_hook_calls_per_step(model, opt, step=50) -> tuple[int, int]:
    calls = {"pre": 0, "post": 0}
    pre = torch_optimizer_module.register_optimizer_step_pre_hook(
        lambda *a: calls.__setitem__("pre", calls["pre"] + 1)
    )
    post = torch_optimizer_module.register_optimizer_step_post_hook(
        lambda *a: calls.__setitem__("post", calls["post"] + 1)
    )
    try:
        _train_step(model, opt, step)
    finally:
        pre.remove()
        post.remove()
    return calls["pre"], calls["post"]


# --------------------------------------------------------------------------------------------
# 1. copy.deepcopy, pickle, torch.save of the object
# --------------------------------------------------------------------------------------------
def _round_trip(obj, how: str):
    if how == "deepcopy":
        return copy.deepcopy(obj)
    if how == "pickle":
        return pickle.loads(pickle.dumps(obj))
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch_save"])
def test_copies_of_the_optimizer_continue_bit_identically(how):
    model = _net(1)
    opt = _kinetic(model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for step in range(3):
        _train_step(model, opt, step)
        sched.step()
    before = _torch_class_state()
    model2, opt2 = _round_trip((model, opt), how)
    assert _torch_class_state() == before
    assert isinstance(opt2, KineticOptimizer) and opt2.optimizer is not opt.optimizer
    # The copy optimises the copied model's parameters, and its layers are the copied modules.
    assert opt2.layers["fc2"] is model2.fc2
    assert {id(p) for g in opt2.param_groups for p in g["params"]} == {
        id(p) for p in model2.parameters()
    }
    assert (opt2.mode, opt2.coll_coef, opt2.seed) == ("hard", 0.95, 0)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for step in range(3, 6):
        _train_step(model, opt, step)
        _train_step(model2, opt2, step)
    for (name, p), p2 in zip(model.named_parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, p2), name
    assert _global_hook_calls_per_step(model2, opt2) == (1, 1)
    assert _torch_class_state() == before


def test_a_failed_unpickle_leaves_torch_optimizer_classes_alone():
    model = _net(2)
    opt = _kinetic(model)
    before = _torch_class_state()
    broken = KineticOptimizer.__new__(KineticOptimizer)
    # What torch's Optimizer.__getstate__ would have pickled: not enough for a wrapper.
    with pytest.raises(Exception) as err:  # its type is checked last
        broken.__setstate__({"defaults": {}, "state": {}, "param_groups": []})
    assert _torch_class_state() == before
    assert "hooked" not in vars(KineticOptimizer.step)
    # A global step hook still fires once per step (around the base's step only).
    assert _global_hook_calls_per_step(model, opt) == (1, 1)
    assert err.type is ValueError and "optimizer" in str(err.value)


# --------------------------------------------------------------------------------------------
# 2. state_dict / load_state_dict hooks
# --------------------------------------------------------------------------------------------
def test_state_dict_hooks_registered_on_the_wrapper_run():
    model = _net(3)
    opt = _kinetic(model)
    _train_step(model, opt, 0)
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append(("sd_pre", o)))

    def sd_post(o, state):
        calls.append(("sd_post", o))
        state = dict(state)
        state["extra"] = 1
        return state

    opt.register_state_dict_post_hook(sd_post)
    state = opt.state_dict()
    assert [tag for tag, _ in calls] == ["sd_pre", "sd_post"]
    assert all(o is opt for _, o in calls)
    assert state["extra"] == 1 and "kinetic" in state

    fresh_model = _net(3)
    fresh = _kinetic(fresh_model)
    seen = []

    def load_pre(o, sd):
        seen.append(("load_pre", o, "kinetic" in sd))
        sd = copy.deepcopy(sd)
        sd.pop("extra")
        sd["param_groups"][0]["lr"] = 0.123
        return sd

    fresh.register_load_state_dict_pre_hook(load_pre)
    fresh.register_load_state_dict_post_hook(lambda o: seen.append(("load_post", o, None)))
    fresh.load_state_dict(state)
    assert [tag for tag, _, _ in seen] == ["load_pre", "load_post"]
    assert all(o is fresh for _, o, _ in seen) and seen[0][2]
    assert fresh.optimizer.param_groups[0]["lr"] == 0.123  # the pre-hook's state was loaded


def test_state_dict_hooks_prepend_order():
    opt = _kinetic(_net(3))
    order = []
    opt.register_state_dict_pre_hook(lambda o: order.append("a"))
    opt.register_state_dict_pre_hook(lambda o: order.append("b"), prepend=True)
    opt.state_dict()
    assert order == ["b", "a"]


# --------------------------------------------------------------------------------------------
# 3. Closures: L-BFGS
# --------------------------------------------------------------------------------------------
def test_lbfgs_collides_after_every_closure_evaluation():
    kinetic_model, manual_model = _net(4), _net(4)
    coef = 0.3
    opt = KineticOptimizer(
        torch.optim.LBFGS(kinetic_model.parameters(), lr=0.5, max_iter=4),
        {"fc2": kinetic_model.fc2},
        "soft",
        coef,
    )
    manual = torch.optim.LBFGS(manual_model.parameters(), lr=0.5, max_iter=4)
    evaluations = {"kinetic": 0, "manual": 0}
    collisions = []
    original = opt.collide_gradients
    opt.collide_gradients = lambda: (collisions.append(1), original())

    for step in range(2):

        def closure(step=step):
            evaluations["kinetic"] += 1
            opt.zero_grad()
            loss = _loss(kinetic_model, step)
            loss.backward()
            return loss

        def manual_closure(step=step):
            evaluations["manual"] += 1
            manual.zero_grad()
            loss = _loss(manual_model, step)
            loss.backward()
            w = manual_model.fc2.weight
            with torch.no_grad():
                w.grad.copy_(soft_collision(w, w.grad, coef))
            return loss

        loss = opt.step(closure)
        manual.step(manual_closure)
        assert torch.is_tensor(loss)
    assert evaluations["kinetic"] == evaluations["manual"] > 2  # L-BFGS re-evaluated
    assert len(collisions) == evaluations["kinetic"]
    for (name, p), q in zip(
        kinetic_model.named_parameters(), manual_model.parameters(), strict=True
    ):
        assert torch.equal(p, q), name


def test_lbfgs_without_a_closure_is_a_clear_error():
    model = _net(4)
    opt = KineticOptimizer(torch.optim.LBFGS(model.parameters()), [model.fc2], "soft", 0.3)
    _loss(model, 0).backward()
    with pytest.raises(ValueError, match="LBFGS"):
        opt.step()


# --------------------------------------------------------------------------------------------
# 4. Sparse gradients
# --------------------------------------------------------------------------------------------
def test_a_layer_with_sparse_gradients_is_refused_at_construction():
    emb = nn.Embedding(10, 4, sparse=True)
    base = torch.optim.SGD(emb.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'tokens'.*sparse"):
        KineticOptimizer(base, {"tokens": emb}, "soft", 0.5)
    dense = nn.Embedding(10, 4)  # a dense embedding's rows may collide
    KineticOptimizer(torch.optim.SGD(dense.parameters(), lr=0.1), [dense], "soft", 0.5)


# --------------------------------------------------------------------------------------------
# 5. load_state_dict refuses another configuration
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "saved", "current"),
    [
        ("mode", "soft", "hard"),
        ("coll_coef", 0.5, 0.95),
        ("seed", 3, 0),
        ("exclude_self", True, False),
        ("mean_free_path", 2.0, 1.0),
    ],
)
def test_load_state_dict_refuses_another_configuration(key, saved, current):
    config = {"mode": "hard", "coll_coef": 0.95, "seed": 0, "exclude_self": False}
    config["mean_free_path"] = 1.0
    saved_config = {**config, key: saved}
    model = _net(5)
    opt_saved = _kinetic(
        model, saved_config.pop("mode"), saved_config.pop("coll_coef"), **saved_config
    )
    _train_step(model, opt_saved, 0)
    state = opt_saved.state_dict()
    target_model = _net(5)
    target = _kinetic(target_model, config.pop("mode"), config.pop("coll_coef"), **config)
    lr_before = target.param_groups[0]["lr"]
    target.param_groups[0]["lr"] = 0.321
    with pytest.raises(ValueError) as err:
        target.load_state_dict(state)
    message = str(err.value)
    assert key in message and repr(saved) in message and repr(current) in message
    assert target.param_groups[0]["lr"] == 0.321 != lr_before  # nothing was loaded
    assert not target.state


def test_load_state_dict_accepts_states_of_the_previous_format():
    """A checkpoint written before exclude_self / mean_free_path / nonfinite_skips were saved."""
    reference, resumed = _net(6), _net(6)
    opt_ref, opt_first = _kinetic(reference), _kinetic(resumed)
    for step in range(2):
        _train_step(reference, opt_ref, step)
        _train_step(resumed, opt_first, step)
    state = opt_first.state_dict()
    old = {k: state["kinetic"][k] for k in ("mode", "coll_coef", "seed", "collisions")}
    state["kinetic"] = old
    opt_new = _kinetic(resumed)
    opt_new.load_state_dict(state)
    for step in range(2, 4):
        _train_step(reference, opt_ref, step)
        _train_step(resumed, opt_new, step)
    assert torch.equal(reference.fc2.weight, resumed.fc2.weight)


def test_a_state_with_torch_generator_states_loads_and_says_its_stream_restarts():
    """States of the kinetics versions that drew KO's directions from a torch.Generator."""
    model = _net(6)
    opt = _kinetic(model)
    _train_step(model, opt, 0)
    state = opt.state_dict()
    del state["kinetic"]["collisions"]
    state["kinetic"]["generators"] = {"cpu": torch.Generator().get_state()}
    fresh = _kinetic(model)
    with pytest.warns(UserWarning, match="restart"):
        fresh.load_state_dict(state)
    assert int(fresh._collisions) == 0


# --------------------------------------------------------------------------------------------
# 6. Per-step rates: a layer without a gradient has none
# --------------------------------------------------------------------------------------------
def test_a_layer_without_a_gradient_has_no_rate_for_that_step():
    model = _net(7)
    opt = _kinetic(model)
    _train_step(model, opt, 0)
    assert set(opt.collision_rates) == {"fc2", "out"}
    _loss(model, 1).backward()
    model.fc2.weight.grad = None
    opt.step()
    assert set(opt.collision_rates) == {"out"}
    assert set(opt.collision_rate_tensors) == {"out"}
    assert set(opt.collision_stats) == {"out"}


# --------------------------------------------------------------------------------------------
# 7. Non-finite gradients and weights are never spread
# --------------------------------------------------------------------------------------------
def _square_layer(seed=8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("where", ["grad_nan", "grad_inf", "weight_nan"])
def test_a_non_finite_layer_keeps_its_gradient_and_is_counted(mode, where):
    plain, kinetic = _square_layer(), _square_layer()
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-2)
    opt = KineticOptimizer(
        torch.optim.Adam(kinetic.parameters(), lr=1e-2),
        {"first": kinetic[0], "second": kinetic[2]},
        mode,
        0.9,
    )
    gen = torch.Generator().manual_seed(0)
    for model in (plain, kinetic):
        gen.manual_seed(0)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        with torch.no_grad():
            if where == "weight_nan":
                model[2].weight[3, 5] = math.nan
            else:
                model[2].weight.grad[3, 5] = math.nan if where == "grad_nan" else math.inf
    grad_before = kinetic[2].weight.grad.clone()
    first_before = kinetic[0].weight.grad.clone()
    opt_plain.step()
    opt.step()
    # The poisoned layer's gradient reached Adam untouched: as many non-finite weights as plain.
    torch.testing.assert_close(kinetic[2].weight.grad, grad_before, rtol=0, atol=0, equal_nan=True)
    bad = int((~torch.isfinite(kinetic[2].weight)).sum())
    assert bad == int((~torch.isfinite(plain[2].weight)).sum()) == 1
    # The healthy layer still collided.
    assert not torch.equal(kinetic[0].weight.grad, first_before)
    assert torch.isfinite(kinetic[0].weight).all()
    assert opt.nonfinite_skips == {"first": 0, "second": 1}
    stats = opt.collision_stats
    assert bool(stats["second"]["skipped"]) and not bool(stats["first"]["skipped"])
    assert math.isnan(float(stats["second"]["alignment"]))
    if mode == "hard":
        assert set(opt.collision_rates) == {"first"}
        assert math.isnan(float(opt.collision_rate_tensors["second"]))  # no host sync to drop it
    # The next finite step is not skipped, and the count persists.
    with torch.no_grad():
        kinetic[2].weight.nan_to_num_(0.0)
    for p in kinetic.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()
    assert opt.nonfinite_skips == {"first": 0, "second": 1}
    assert not bool(opt.collision_stats["second"]["skipped"])


def test_nonfinite_skip_counts_are_checkpointed():
    model = _net(9)
    opt = _kinetic(model, "soft", 0.5)
    _loss(model, 0).backward()
    model.fc2.weight.grad[0, 0] = math.nan
    opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["kinetic"]["nonfinite_skips"] == {"fc2": 1, "out": 0}
    fresh = _kinetic(_net(9), "soft", 0.5)
    fresh.load_state_dict(state)
    assert fresh.nonfinite_skips == {"fc2": 1, "out": 0}


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_finite_collisions_are_the_functional_results_bit_for_bit(mode):
    model = _net(10)
    opt = _kinetic(model, mode, 0.9, seed=5)
    _loss(model, 0).backward()
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in ("fc2", "out")}
    grads = {n: model.get_submodule(n).weight.grad.clone() for n in ("fc2", "out")}
    opt.collide_gradients()
    for name in ("fc2", "out"):
        if mode == "soft":
            want = soft_collision(weights[name], grads[name], 0.9)
        else:  # the optimizer's first collision of layer `index`: key (seed, 0, index)
            key = stream_key(5, 0, list(opt.layers).index(name))
            want = hard_collision(weights[name], grads[name], 0.9, key=key)
        assert torch.equal(model.get_submodule(name).weight.grad, want), name


# --------------------------------------------------------------------------------------------
# 8. What a collision did: alignment and norm ratio
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_collision_stats_equal_a_direct_computation(mode):
    model = _net(11)
    opt = _kinetic(model, mode, 0.9)
    _loss(model, 0).backward()
    before = {n: model.get_submodule(n).weight.grad.clone() for n in ("fc2", "out")}
    opt.collide_gradients()
    stats = opt.collision_stats
    assert set(stats) == {"fc2", "out"}
    for name, g in before.items():
        g_new = model.get_submodule(name).weight.grad
        assert not torch.equal(g_new, g), name
        s = stats[name]
        assert all(t.dim() == 0 for t in s.values())
        want_alignment = (g_new * g).sum() / (g * g).sum()
        want_ratio = g_new.norm() / g.norm()
        torch.testing.assert_close(s["alignment"], want_alignment, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(s["norm_ratio"], want_ratio, rtol=1e-12, atol=1e-14)
        assert not bool(s["skipped"])


def test_many_hard_collision_partners_turn_descent_into_ascent():
    """KO Eq. 8: k partners keep 1 - k/2 of a neuron's gradient; with all 11 partners the layer's
    collided gradient points against the original (expected alignment about 1.5 - 12/2)."""
    torch.manual_seed(12)
    layer = nn.Linear(5, 12).double()
    with torch.no_grad():
        layer.weight.mul_(1e-3)  # close neurons: exp(-distance) ~ 1, every pair passes
    opt = KineticOptimizer(torch.optim.SGD(layer.parameters(), lr=0.1), [layer], "hard", 1.0)
    layer.weight.grad = torch.randn(12, 5, dtype=F64)
    layer.bias.grad = torch.zeros(12, dtype=F64)
    opt.step()
    (name,) = opt.collision_stats
    assert opt.collision_rates[name] == 1.0
    assert float(opt.collision_stats[name]["alignment"]) < 0.0


@pytest.mark.parametrize("exclude_self", [False, True])
def test_soft_collision_with_a_small_coefficient_barely_turns_the_gradient(exclude_self):
    """<g_new, g> / |g|^2 = 1 - coef <g, M g> / |g|^2 with M = C_w ∘ C_g (diagonal 1 unless
    excluded)."""
    model = _net(13)
    coef = 0.05
    opt = _kinetic(model, "soft", coef, exclude_self=exclude_self)
    _loss(model, 0).backward()
    w = model.fc2.weight.detach().clone()
    g = model.fc2.weight.grad.clone()
    opt.collide_gradients()
    wn = nn.functional.normalize(w, dim=1)
    gn = nn.functional.normalize(g, dim=1)
    coupling = (wn @ wn.T) * (gn @ gn.T)
    if exclude_self:
        coupling.fill_diagonal_(0.0)
    quadratic = (g * (coupling @ g)).sum() / (g * g).sum()
    alignment = opt.collision_stats["fc2"]["alignment"]
    torch.testing.assert_close(alignment, 1 - coef * quadratic, rtol=1e-12, atol=1e-14)
    assert 0.9 < float(alignment) < 1.05
    if not exclude_self:
        assert float(alignment) < 1.0
