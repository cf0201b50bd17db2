"""LM builders (experiments/lm/models.py) and the optimizer's weight-decay groups for them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import experiments.domains  # noqa: F401  (registers the models)
from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from experiments.engine.optim import _decay_groups
from kinetics import KITINet, KITINetConfig, select_modules

pytest.importorskip("transformers")
TINY_GPT2 = {"n_layer": 3, "n_embd": 16, "n_head": 2}
TINY_QWEN2 = {
    "num_hidden_layers": 2,
    "hidden_size": 16,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 32,
}


def test_architecture_overrides_vocab_and_eos_come_through() -> None:
    model = MODELS.create("gpt2_medium", config=TINY_GPT2, vocab_size=77, eos_id=76)
    config = model.config
    assert (config.n_layer, config.n_embd, config.vocab_size) == (3, 16, 77)
    assert config.eos_token_id == config.bos_token_id == 76
    assert config.n_positions == 1024 and config.use_cache is False
    assert model.get_input_embeddings().num_embeddings == 77
    qwen = MODELS.create("qwen2_1_5b", config=TINY_QWEN2, vocab_size=50)
    assert qwen.config.tie_word_embeddings
    assert qwen.config.rope_parameters["rope_theta"] == 1e6
    assert qwen.lm_head.weight is qwen.get_input_embeddings().weight


def test_kitinet_goes_into_every_block_or_the_chosen_ones() -> None:
    kiti = KITINetConfig(collision_heads=2, coll_coef=0.5)
    every = MODELS.create("gpt2", config=TINY_GPT2, vocab_size=40, kitinet=kiti)
    assert sum(isinstance(m, KITINet) for m in every.modules()) == 3
    last = MODELS.create(
        "gpt2",
        config=TINY_GPT2,
        vocab_size=40,
        kitinet=kiti,
        kitinet_layers=[-1],
        kitinet_sites=["attn", "mlp"],
    )
    names = [n for n, m in last.named_modules() if isinstance(m, KITINet)]
    assert len(names) == 2 and all(".h.2." in n for n in names)
    with pytest.raises(ConfigError, match="collision=kitinet on this model"):
        MODELS.create("gpt2", config=TINY_GPT2, vocab_size=40, kitinet=kiti, kitinet_layers=[7])


def test_last_block_names_every_matrix_of_the_last_decoder_layer() -> None:
    qwen = MODELS.create("qwen2_0_5b", config=TINY_QWEN2, vocab_size=50)
    chosen = select_modules(qwen, "last_block")
    assert sorted(n.rsplit(".", 1)[-1] for n in chosen) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    assert all(n.startswith("model.layers.1.") for n in chosen)


def test_pretrained_must_match_the_named_architecture(tmp_path: Path) -> None:
    MODELS.create("gpt2", config=TINY_GPT2, vocab_size=40).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="n_layer 12 expected, 3 loaded"):
        MODELS.create("gpt2", pretrained=str(tmp_path))
    loaded = MODELS.create("gpt2", pretrained=str(tmp_path), config=TINY_GPT2)
    assert loaded.config.n_layer == 3 and loaded.config.use_cache is False


def test_decay_groups_exempt_embeddings_biases_and_norms_once() -> None:
    model = MODELS.create("qwen2_0_5b", config=TINY_QWEN2, vocab_size=50)  # tied head
    decay, exempt = _decay_groups(model, 0.1, no_decay_bias_norm=True)
    assert decay["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + exempt["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert id(model.get_input_embeddings().weight) in {id(p) for p in exempt["params"]}
    assert all(p.ndim == 2 for p in decay["params"])
    assert {id(p) for p in exempt["params"]} >= {id(p) for p in model.parameters() if p.ndim < 2}
    # without no_decay_bias_norm only the embedding is exempt
    _, only_embedding = _decay_groups(model, 0.1, no_decay_bias_norm=False)
    assert [p.shape for p in only_embedding["params"]] == [torch.Size([50, 16])]
