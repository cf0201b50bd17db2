"""Causal language models from transformers (KITINet Tables 1-2, KO Table 6), registered by name.

Each name is an architecture (GPT-2 small to XL, Qwen2 0.5B / 1.5B) built with random weights
for pretraining from scratch; ``model.config`` overrides its values (the CPU-scale runs shrink it:
``model.config={n_layer: 4, n_embd: 256, n_head: 4}``). ``model.pretrained`` (a hub id or a local
directory) loads released weights instead, for continued pretraining: the checkpoint must have
the named architecture (with the overrides). ``vocab_size`` comes from the data's tokenizer. With
``collision=kitinet`` the residual additions at ``kitinet_sites`` of ``kitinet_layers`` (None:
every block) become KITINet modules (one system per token, causal). A trained model exports with
``save_pretrained`` as a stock checkpoint: KITINet adds no weights and is the identity in eval.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from experiments.core.errors import ConfigError
from experiments.core.hf_models import add_kitinet, from_config, from_pretrained
from experiments.core.registry import MODELS
from kinetics import KITINetConfig

__all__ = ["ARCHITECTURES", "causal_lm"]

_AUTO_CLASS = "AutoModelForCausalLM"

_GPT2 = {"model_type": "gpt2", "n_positions": 1024}
_QWEN2 = {
    "model_type": "qwen2",
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Radford et al. 2019, Table 2 (the released checkpoints' configs)
    "gpt2": {**_GPT2, "n_layer": 12, "n_embd": 768, "n_head": 12},
    "gpt2_medium": {**_GPT2, "n_layer": 24, "n_embd": 1024, "n_head": 16},
    "gpt2_large": {**_GPT2, "n_layer": 36, "n_embd": 1280, "n_head": 20},
    "gpt2_xl": {**_GPT2, "n_layer": 48, "n_embd": 1600, "n_head": 25},
    # the released Qwen2-0.5B / Qwen2-1.5B configs
    "qwen2_0_5b": {
        **_QWEN2,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
    },
    "qwen2_1_5b": {
        **_QWEN2,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
    },
}
# Keys of the loaded checkpoint compared with the named architecture (not its context length or
# vocabulary, which a checkpoint may legitimately differ in).
_SHAPE_KEYS = ("model_type", "n_layer", "n_embd", "n_head", "hidden_size", "num_hidden_layers")


def causal_lm(
    architecture: Mapping[str, Any],
    *,
    pretrained: str | None = None,
    config: Mapping[str, Any] | None = None,
    vocab_size: int | None = None,
    eos_id: int | None = None,
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
    kitinet: KITINetConfig | None = None,
    kitinet_sites: Sequence[str] = ("attn",),
    kitinet_layers: Sequence[int] | None = None,
) -> nn.Module:
    """A transformers causal LM of ``architecture`` (updated by ``config``), or ``pretrained``.

    Args:
        architecture: transformers config values with ``model_type`` (see :data:`ARCHITECTURES`).
        pretrained: hub id or local directory of a checkpoint of that architecture (with
            ``config``'s values: a checkpoint of another shape is refused).
        config: overrides of the architecture's values.
        vocab_size: embedding rows of a model built from scratch (the tokenizer's size).
        eos_id: the tokenizer's end-of-text id, the BOS / EOS of a model built from scratch.
        attn_implementation: transformers' attention kernel ("sdpa", "eager", ...).
        gradient_checkpointing: recompute activations in backward (KITINet supports it).
        kitinet, kitinet_sites, kitinet_layers: see the module docstring.
    """
    values = {**architecture, **(config or {})}
    if pretrained is not None:
        model = from_pretrained(_AUTO_CLASS, pretrained, attn_implementation=attn_implementation)
        _check_architecture(model, values, pretrained)
    else:
        if vocab_size is not None:
            values["vocab_size"] = vocab_size
        if eos_id is not None:
            values.update(bos_token_id=eos_id, eos_token_id=eos_id)
        model = from_config(_AUTO_CLASS, values, attn_implementation=attn_implementation)
    model.config.use_cache = False  # training and scoring never decode: no key/value cache
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return add_kitinet(model, kitinet, kitinet_sites, kitinet_layers)


def _check_architecture(model: nn.Module, architecture: Mapping[str, Any], source: str) -> None:
    loaded = model.config.to_dict()  # type: ignore[operator]
    differ = {
        key: (architecture[key], loaded.get(key))
        for key in _SHAPE_KEYS
        if key in architecture and loaded.get(key) != architecture[key]
    }
    if differ:
        shown = ", ".join(f"{k} {want} expected, {got} loaded" for k, (want, got) in differ.items())
        raise ConfigError(
            f"model.pretrained={source!r} is not this model's architecture ({shown}); "
            "choose the model config (and model.config overrides) that match it"
        )


for _name, _architecture in ARCHITECTURES.items():
    # causal_lm with the architecture bound: the builder's other arguments are the config's keys
    MODELS.register(functools.partial(causal_lm, _architecture), name=_name)
