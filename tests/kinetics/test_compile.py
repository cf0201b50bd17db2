"""torch.compile(fullgraph=True) through KITINet and KO (issue 10 §4): each collision is one
custom operator (``kinetics::kitinet_collision``, ``kinetics::soft_collision``,
``kinetics::hard_collision``) with a fake implementation and registered autograd, so a training
step compiles into one graph and computes what eager computes.

The default tests use the ``aot_eager`` backend (dynamo capture + AOTAutograd, no C++ build); the
``slow`` one runs inductor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo
from torch import nn

import kinetics
from kinetics import KineticOptimizer, KITINet

transformers = pytest.importorskip("transformers")
from kinetics.hf import insert_kitinet  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def counting_backend(graphs: list[Any], inner: str = "aot_eager") -> Callable[..., Any]:
    """A torch.compile backend that records every graph dynamo hands it."""
    backend = torch._dynamo.lookup_backend(inner)

    def compile_graph(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        graphs.append(gm)
        return backend(gm, example_inputs)

    return compile_graph


def reset_calls(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, KITINet):
            m.calls.zero_()


def kiti_gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    insert_kitinet(
        model, collision_heads=2, coll_coef=0.5, mean_free_path=4.0, sites=("attn", "mlp")
    )
    return model.train()


class KitiResidualNet(nn.Module):
    """A small CNN with KITINet residual blocks (one system per sample, as in KITI-ResNet)."""

    def __init__(self, channels: int = 8, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1) for _ in range(blocks)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(blocks))
        self.kitinet = nn.ModuleList(KITINet(16, 0.9, seed=i) for i in range(blocks))
        self.head = nn.Linear(channels, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for conv, norm, residual in zip(self.convs, self.norms, self.kitinet, strict=True):
            x = torch.relu(residual(x, norm(conv(x))))
        return self.head(x.mean(dim=(2, 3)))


def _train_step(model: nn.Module, loss_of: Callable[[], torch.Tensor]) -> tuple[Any, ...]:
    model.zero_grad(set_to_none=True)
    loss = loss_of()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("net", ["gpt2", "resnet"])
def test_a_kitinet_train_step_compiles_to_one_graph_and_matches_eager(net: str) -> None:
    if net == "gpt2":
        model = kiti_gpt2()
        ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))

        def loss_of() -> torch.Tensor:
            logits = model(input_ids=ids).logits
            return nn.functional.cross_entropy(logits.reshape(-1, 64), ids.reshape(-1))

    else:
        model = KitiResidualNet().train()
        images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
        labels = torch.tensor([1, 2, 3, 4])

        def loss_of() -> torch.Tensor:
            return nn.functional.cross_entropy(model(images), labels)

    kitinets = [m for m in model.modules() if isinstance(m, KITINet)]
    reset_calls(model)
    eager_loss, eager_grads = _train_step(model, loss_of)
    eager_rates = [float(m.last_collision_rate) for m in kitinets]
    assert all(r > 0 for r in eager_rates)

    graphs: list[Any] = []
    compiled = torch.compile(loss_of, fullgraph=True, backend=counting_backend(graphs))
    reset_calls(model)
    loss, grads = _train_step(model, compiled)
    assert len(graphs) == 1
    ops = {str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"}
    assert "kinetics.kitinet_collision.default" in ops
    torch.testing.assert_close(loss, eager_loss)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want)
    assert [float(m.last_collision_rate) for m in kitinets] == pytest.approx(eager_rates)
    # The call counters advance under compile as in eager (no recompilation per value).
    assert all(int(m.calls) == 1 for m in kitinets)
    _train_step(model, compiled)
    assert len(graphs) == 1 and all(int(m.calls) == 2 for m in kitinets)


@pytest.mark.slow
def test_inductor_compiles_a_kiti_gpt2_step() -> None:
    model = kiti_gpt2()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))

    def loss_of() -> torch.Tensor:
        return model(input_ids=ids).logits.square().mean()

    reset_calls(model)
    eager_loss, eager_grads = _train_step(model, loss_of)
    reset_calls(model)
    loss, grads = _train_step(model, torch.compile(loss_of, fullgraph=True))
    torch.testing.assert_close(loss, eager_loss)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_ko_collisions_compile_without_a_break_and_match_eager(mode: str) -> None:
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(3))
    y = torch.randn(32, 4, generator=torch.Generator().manual_seed(4))
    results = []
    for compile_step in (False, True):
        model = _mlp()
        base = torch.optim.SGD(model.parameters(), lr=0.1)
        opt = KineticOptimizer(base, {"l2": model[2], "l4": model[4]}, mode, coll_coef=0.9, seed=1)
        collide = opt.collide_gradients
        graphs: list[Any] = []
        if compile_step:
            collide = torch.compile(collide, fullgraph=True, backend=counting_backend(graphs))
        for _ in range(3):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            collide()
            base.step()
        if compile_step:
            # fullgraph: no break. The first call creates the skip counters (one recompile);
            # later ones reuse the graph: the step counter is a tensor, not a guarded int.
            assert len(graphs) == 2
            name = f"kinetics.{mode}_collision.default"
            assert all(name in {str(n.target) for n in g.graph.nodes} for g in graphs)
        results.append([p.detach().clone() for p in model.parameters()])
    if mode == "hard":
        assert int(opt._collisions) == 3
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want)


def test_a_compiled_step_with_kineticoptimizer_step_inside_breaks_only_in_torch_optim() -> None:
    """torch.optim's own step wrapper inserts graph breaks (pytorch#104053); none comes from
    the collision."""
    model = _mlp()
    base = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt = KineticOptimizer(base, {"l2": model[2], "l4": model[4]}, "hard", coll_coef=0.9)
    x, y = torch.randn(16, 8), torch.randn(16, 4)

    def train_step() -> None:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    explanation = torch._dynamo.explain(train_step)()
    package = str(Path(kinetics.__file__).parent)
    assert explanation.graph_break_count > 0  # torch.optim's, and Tensor.backward's
    for reason in explanation.break_reasons:
        files = [frame.filename for frame in reason.user_stack]
        assert not any(f.startswith(package) for f in files[-1:]), (reason.reason, files)
