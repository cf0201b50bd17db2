"""KO on transformers layers: Conv1D's neurons are its output features, `last_block` selects the
last transformer layer, and layers with very many neurons are refused (issue 10 §3).

Tiny models are built from configs (no download); transformers is only imported by these tests.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kinetics import KineticOptimizer, last_block, neuron_view, select_modules, soft_collision
from kinetics.metrics import rho

transformers = pytest.importorskip("transformers")


def tiny_gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2, tie_word_embeddings=True
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def conv1d_and_linear() -> tuple[nn.Module, nn.Linear]:
    """A transformers Conv1D (weight stored (in, out)) and the equivalent nn.Linear."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(nf=12, nx=8)
    nn.init.normal_(conv.weight)
    linear = nn.Linear(8, 12)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.t())
        linear.bias.copy_(conv.bias)
    return conv, linear


def test_conv1d_neurons_are_its_output_features() -> None:
    conv, linear = conv1d_and_linear()
    x = torch.randn(5, 8)
    torch.testing.assert_close(conv(x), linear(x))
    assert neuron_view(conv, conv.weight).shape == (12, 8)  # 12 neurons, as the Linear's rows
    assert torch.equal(neuron_view(conv, conv.weight), linear.weight)
    assert neuron_view(linear, linear.weight) is linear.weight


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_ko_on_conv1d_equals_ko_on_the_equivalent_linear(mode: str) -> None:
    conv, linear = conv1d_and_linear()
    x, target = torch.randn(32, 8), torch.randn(32, 12)
    results = []
    for layer in (conv, linear):
        base = torch.optim.SGD(layer.parameters(), lr=0.1)
        optimizer = KineticOptimizer(base, {"layer": layer}, mode, coll_coef=0.9, seed=3)
        nn.functional.mse_loss(layer(x), target).backward()
        before = neuron_view(layer, layer.weight.grad).clone()
        optimizer.step()
        results.append((neuron_view(layer, layer.weight).detach(), before))
    (conv_w, conv_g), (lin_w, lin_g) = results
    torch.testing.assert_close(conv_g, lin_g)
    torch.testing.assert_close(conv_w, lin_w, rtol=1e-5, atol=1e-6)
    # The check can fail: colliding the stored (in, out) rows instead gives another gradient.
    fresh, _ = conv1d_and_linear()
    w0 = neuron_view(fresh, fresh.weight).detach()
    by_neurons = soft_collision(w0, conv_g, 0.9)
    by_stored_rows = soft_collision(w0.t(), conv_g.t(), 0.9).t()
    assert not torch.allclose(by_neurons, by_stored_rows, rtol=1e-3, atol=1e-4)


def test_rho_of_conv1d_is_the_rho_of_its_neurons() -> None:
    conv, linear = conv1d_and_linear()
    assert rho(neuron_view(conv, conv.weight)) == pytest.approx(rho(linear.weight), abs=1e-12)


def test_last_block_of_gpt2_qwen2_and_bert() -> None:
    gpt2 = tiny_gpt2()
    assert last_block(gpt2)[0] == "transformer.h.1"
    names = set(select_modules(gpt2, "last_block"))
    assert names == {
        "transformer.h.1.attn.c_attn",
        "transformer.h.1.attn.c_proj",
        "transformer.h.1.mlp.c_fc",
        "transformer.h.1.mlp.c_proj",
    }
    qwen = transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    assert set(select_modules(qwen, "last_block")) == {
        f"model.layers.2.{p}"
        for p in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    }
    bert = transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
        )
    )
    names = set(select_modules(bert, "last_block"))
    assert "bert.encoder.layer.1.attention.self.query" in names
    assert "bert.encoder.layer.1.output.dense" in names
    assert all(n.startswith("bert.encoder.layer.1.") for n in names) and len(names) == 6


def test_a_layer_with_very_many_neurons_is_refused_with_its_pair_count() -> None:
    gpt2 = tiny_gpt2()
    base = torch.optim.AdamW(gpt2.parameters())
    head = {"lm_head": gpt2.lm_head}  # 64 neurons here; a real GPT-2 has 50257
    with pytest.raises(ValueError, match=r"'lm_head' has 64 neurons, i.e. 2,016 pairs"):
        KineticOptimizer(base, head, "soft", 0.1, max_neurons=32)
    KineticOptimizer(base, head, "soft", 0.1)  # under the default limit


def test_ko_trains_the_last_block_of_gpt2() -> None:
    gpt2 = tiny_gpt2()
    base = torch.optim.AdamW(gpt2.parameters(), lr=1e-3)
    optimizer = KineticOptimizer(base, select_modules(gpt2, "last_block"), "hard", 0.9, seed=0)
    ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = gpt2(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert set(optimizer.collision_rates) == set(select_modules(gpt2, "last_block"))
