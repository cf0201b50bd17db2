"""KITINet inside transformers models: `insert_kitinet`, `remove_kitinet` (issue 10 §1).

``insert_kitinet(model, collision_heads=..., coll_coef=...)`` turns the residual additions of a
GPT-2, BERT, DistilBERT, Qwen2 or Llama model into :class:`~kinetics.KITINet` modules, one system
per token (SPEC §1.5: per-token systems keep causal models causal). ``"attn"`` is the addition
after the self-attention sub-block, ``"mlp"`` the one after the feed-forward; the skip path is
always KITINet's ``x`` and the branch output its ``v``, whatever order transformers writes the sum
in (GPT-2's attention residual is ``attn_output + residual``; float addition is commutative, so the
stock result and ``torch.add(skip, branch)`` are bitwise equal either way). In BERT and DistilBERT
the addition sits inside a post-norm, ``LayerNorm(branch + skip)``, and becomes
``LayerNorm(KITINet(skip, branch))``.

How: each module that holds a chosen addition (the block, or BERT's ``BertSelfOutput`` /
``BertOutput``) is switched to a subclass of its stock class (``module.__class__ = ...``) whose
``forward`` is the stock forward of the pinned transformers version with that addition routed
through a registered ``kitinet_attn`` / ``kitinet_mlp`` child. Subclasses keep ``isinstance`` true,
so transformers' output capture (``output_hidden_states``, ``output_attentions``) and gradient
checkpointing work as before (the recompute in backward restores the global RNG state, so it draws
the forward's directions). Lookups by class name, such as accelerate's ``_no_split_modules``, see
``KITINet<StockName>``: dispatch a model over devices before inserting KITINet. KITINet has no
parameters or buffers, so the state dict and ``save_pretrained`` checkpoints are exactly the stock
ones. In eval KITINet is ``x + v``: outputs are bitwise the stock model's. :func:`remove_kitinet`
switches the stock classes back and deletes the children.

This module never imports transformers (``kinetics`` needs torch only): the stock classes are
recognised by their qualified names, and the version of the transformers that built the model is
checked when KITINet is inserted.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from torch import Tensor, nn

from kinetics.kitinet import KITINet

__all__ = ["SITES", "insert_kitinet", "remove_kitinet"]

SITES = ("attn", "mlp")
"""The residual additions of a block that KITINet can replace, in block order."""

_TESTED_MAJOR = 5  # the forwards below follow transformers 5.x (written against 5.23.0)


def _add(owner: nn.Module, site: str, skip: Tensor, branch: Tensor) -> Tensor:
    """``KITINet(skip, branch)`` where ``owner`` holds a KITINet for ``site``, else the stock sum
    (``skip + branch``: bitwise ``branch + skip``)."""
    kitinet = owner._modules.get(f"kitinet_{site}")
    return skip + branch if kitinet is None else kitinet(skip, branch)


# The forwards. Each follows the stock forward of transformers 5.23.0 line by line (same
# arguments, keyword forwarding, caches, masks and return value); only the residual additions
# go through _add. They are mixed into subclasses of the stock classes by _kitinet_class.


class _GPT2Block:
    """``GPT2Block.forward``; the cross-attention residual (encoder-decoder use) stays stock."""

    def forward(
        self: Any,
        hidden_states: Tensor,
        past_key_values: Any = None,
        attention_mask: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        use_cache: bool | None = False,
        **kwargs: Any,
    ) -> Tensor:
        residual = hidden_states
        attn_output, _ = self.attn(
            self.ln_1(hidden_states),
            past_key_values=past_key_values,
            attention_mask=attention_mask,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = _add(self, "attn", residual, attn_output)

        if encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ValueError(
                    f"If `encoder_hidden_states` are passed, {self} has to be instantiated with "
                    "cross-attention layers by setting `config.add_cross_attention=True`"
                )
            residual = hidden_states
            cross_attn_output, _ = self.crossattention(
                self.ln_cross_attn(hidden_states),
                past_key_values=past_key_values,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
            )
            hidden_states = residual + cross_attn_output

        residual = hidden_states
        feed_forward_hidden_states = self.mlp(self.ln_2(hidden_states))
        return _add(self, "mlp", residual, feed_forward_hidden_states)


class _PreNormDecoderLayer:
    """``Qwen2DecoderLayer.forward`` and ``LlamaDecoderLayer.forward`` (the same code)."""

    def forward(
        self: Any,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool | None = False,
        position_embeddings: tuple[Tensor, Tensor] | None = None,
        **kwargs: Any,
    ) -> Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = _add(self, "attn", residual, hidden_states)

        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return _add(self, "mlp", residual, hidden_states)


class _DistilBertBlock:
    """``TransformerBlock.forward`` of DistilBERT: post-norm, ``LayerNorm(branch + skip)``."""

    def forward(
        self: Any, hidden_states: Tensor, attention_mask: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        attention_output, _ = self.attention(hidden_states, attention_mask=attention_mask, **kwargs)
        attention_output = self.sa_layer_norm(_add(self, "attn", hidden_states, attention_output))
        ffn_output = self.ffn(attention_output)
        return self.output_layer_norm(_add(self, "mlp", attention_output, ffn_output))


class _BertSelfOutput:
    """``BertSelfOutput.forward``: ``LayerNorm(dropout(dense(h)) + input_tensor)``, the attention
    residual of a ``BertLayer`` (``input_tensor`` is the skip path)."""

    def forward(self: Any, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        branch = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(_add(self, "attn", input_tensor, branch))


class _BertOutput:
    """``BertOutput.forward``: the arithmetic of :class:`_BertSelfOutput`, for the MLP residual."""

    def forward(self: Any, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        branch = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(_add(self, "mlp", input_tensor, branch))


_GPT2 = "transformers.models.gpt2.modeling_gpt2."
_BERT = "transformers.models.bert.modeling_bert."
_DISTILBERT = "transformers.models.distilbert.modeling_distilbert."
_QWEN2 = "transformers.models.qwen2.modeling_qwen2."
_LLAMA = "transformers.models.llama.modeling_llama."

# Qualified name of a stock class holding a residual addition -> the forward mixed into it.
_FORWARDS: dict[str, type] = {
    _GPT2 + "GPT2Block": _GPT2Block,
    _BERT + "BertSelfOutput": _BertSelfOutput,
    _BERT + "BertOutput": _BertOutput,
    _DISTILBERT + "TransformerBlock": _DistilBertBlock,
    _QWEN2 + "Qwen2DecoderLayer": _PreNormDecoderLayer,
    _LLAMA + "LlamaDecoderLayer": _PreNormDecoderLayer,
}


@dataclass(frozen=True)
class _Architecture:
    """Where an architecture keeps its blocks and, inside a block, each site's addition."""

    name: str
    models: str
    """the supported model classes, for error messages"""
    blocks: str
    """path of the block list (``nn.ModuleList``) in the base model"""
    block: str
    """qualified name of the stock block class"""
    owners: dict[str, str]
    """site -> path, relative to the block, of the module whose forward holds the addition"""


_ARCHITECTURES = (
    _Architecture(
        "GPT-2", "GPT2Model, GPT2LMHeadModel", "h", _GPT2 + "GPT2Block", {"attn": "", "mlp": ""}
    ),
    _Architecture(
        "BERT",
        "BertModel, BertForSequenceClassification",
        "encoder.layer",
        _BERT + "BertLayer",
        {"attn": "attention.output", "mlp": "output"},
    ),
    _Architecture(
        "DistilBERT",
        "DistilBertModel, DistilBertForSequenceClassification",
        "transformer.layer",
        _DISTILBERT + "TransformerBlock",
        {"attn": "", "mlp": ""},
    ),
    _Architecture(
        "Qwen2",
        "Qwen2Model, Qwen2ForCausalLM",
        "layers",
        _QWEN2 + "Qwen2DecoderLayer",
        {"attn": "", "mlp": ""},
    ),
    _Architecture(
        "Llama",
        "LlamaModel, LlamaForCausalLM",
        "layers",
        _LLAMA + "LlamaDecoderLayer",
        {"attn": "", "mlp": ""},
    ),
)


def _stock_class(module: nn.Module) -> type:
    """The stock transformers class of ``module``, also when KITINet has switched it."""
    return getattr(type(module), "_kitinet_stock", type(module))


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@cache
def _kitinet_class(stock: type) -> type:
    """The subclass of ``stock`` whose forward routes the residual additions through KITINet.

    Built once per stock class: its forward is the mixin's, and transformers'
    ``GradientCheckpointingLayer.__init_subclass__`` wraps it for gradient checkpointing as it does
    the stock forward.
    """
    forward = _FORWARDS[_qualname(stock)]
    namespace = {"__module__": __name__, "_kitinet_stock": stock, "__doc__": forward.__doc__}
    return type(f"KITINet{stock.__name__}", (forward, stock), namespace)


def _supported() -> str:
    return "; ".join(f"{a.name} ({a.models})" for a in _ARCHITECTURES)


def _find_blocks(model: nn.Module) -> tuple[_Architecture, nn.ModuleList]:
    """The architecture of ``model`` and its base model's list of blocks, found by structure."""
    base = getattr(model, "base_model", model)
    for arch in _ARCHITECTURES:
        try:
            blocks = base.get_submodule(arch.blocks)
        except AttributeError:
            continue
        if (
            isinstance(blocks, nn.ModuleList)
            and len(blocks) > 0
            and all(_qualname(_stock_class(b)) == arch.block for b in blocks)
        ):
            return arch, blocks
    raise ValueError(
        f"insert_kitinet does not support {type(model).__name__}: no list of blocks of a "
        f"supported architecture found. Supported: {_supported()}"
    )


def _owners(arch: _Architecture, block: nn.Module, sites: Iterable[str]) -> list[nn.Module]:
    return [block.get_submodule(arch.owners[site]) for site in sites]


def _check_sites(sites: str | Iterable[str]) -> list[str]:
    """The chosen sites in block order (a single string is one site)."""
    chosen = [sites] if isinstance(sites, str) else list(sites)
    unknown = [s for s in chosen if s not in SITES]
    if unknown or not chosen:
        problem = f"unknown sites {unknown}" if unknown else "no site given"
        raise ValueError(f"{problem}: allowed sites are {', '.join(map(repr, SITES))}")
    return [s for s in SITES if s in chosen]


def _check_layers(layers: Iterable[int] | None, num_blocks: int) -> list[int]:
    """Sorted block indices; negative ones count from the end ([-1] is the last block)."""
    if layers is None:
        return list(range(num_blocks))
    chosen = [operator.index(i) for i in layers]
    bad = [i for i in chosen if not -num_blocks <= i < num_blocks]
    if bad or not chosen:
        raise ValueError(
            f"layers={chosen}: the model has {num_blocks} blocks, valid indices are "
            f"{-num_blocks}..{num_blocks - 1} (negative ones count from the end)"
        )
    return sorted({i % num_blocks for i in chosen})


def _check_transformers() -> None:
    """Refuse transformers versions whose block forwards we did not follow (the model's classes
    come from transformers, so it is imported already)."""
    version = sys.modules["transformers"].__version__
    if int(version.split(".")[0]) != _TESTED_MAJOR:
        raise RuntimeError(
            f"kinetics.hf follows the block forwards of transformers {_TESTED_MAJOR}.x; "
            f"transformers {version} is installed"
        )


def _inserted(arch: _Architecture, blocks: nn.ModuleList) -> list[KITINet]:
    """The KITINet modules of the blocks, in block order, attn before mlp."""
    return [
        owner._modules[f"kitinet_{site}"]
        for block in blocks
        for site, owner in zip(SITES, _owners(arch, block, SITES), strict=True)
        if f"kitinet_{site}" in owner._modules
    ]


def insert_kitinet(
    model: nn.Module,
    *,
    collision_heads: int,
    coll_coef: float,
    sites: str | Iterable[str] = ("attn",),
    layers: Iterable[int] | None = None,
    dt: float = 1.0,
    position_update: bool = True,
    mean_free_path: float = 1.0,
    seed: int = 0,
) -> list[KITINet]:
    """Replace residual additions of a transformers model by KITINet modules (one system per token).

    Args:
        model: a GPT-2, BERT, DistilBERT, Qwen2 or Llama model (base model or one with a head).
        collision_heads, coll_coef, dt, position_update, mean_free_path: see :class:`KITINet`;
            ``collision_heads`` must divide the hidden size.
        sites: ``"attn"`` (the residual after self-attention) and/or ``"mlp"`` (after the
            feed-forward); order and repeats do not matter.
        layers: block indices (negative from the end, ``[-1]`` is the last block; repeats do not
            matter); None: every block.
        seed: set as ``module.seed`` on every inserted module, with ``module.stream`` its index in
            the returned list, to key their random streams.

    Returns:
        The inserted modules in block order, attn before mlp within a block. Each is a registered
        submodule (``model.train()`` / ``model.eval()`` reach it); after a training forward its
        ``last_collision_rate`` holds the step's collision rate.

    Raises:
        ValueError: for an unsupported model, an unknown site, a block index out of range, a
            ``collision_heads`` that does not divide the hidden size, or a model that already has
            KITINet inserted (call :func:`remove_kitinet` first). Nothing is changed then.
        RuntimeError: when the model comes from a transformers major version other than 5.
    """
    arch, blocks = _find_blocks(model)
    _check_transformers()
    chosen_sites = _check_sites(sites)
    indices = _check_layers(layers, len(blocks))
    present = _inserted(arch, blocks)
    if present:
        raise ValueError(
            f"KITINet is already inserted in this model ({len(present)} modules); "
            "call kinetics.hf.remove_kitinet(model) before inserting again"
        )
    settings = (collision_heads, coll_coef, dt, position_update, mean_free_path)
    KITINet(*settings, system="token").check_features(model.config.hidden_size)

    modules: list[KITINet] = []
    for index in indices:
        block = blocks[index]
        for site, owner in zip(chosen_sites, _owners(arch, block, chosen_sites), strict=True):
            kitinet = KITINet(*settings, system="token")
            kitinet.seed = seed
            kitinet.stream = len(modules)
            owner.__class__ = _kitinet_class(_stock_class(owner))
            owner.add_module(f"kitinet_{site}", kitinet)
            modules.append(kitinet)
    return modules


def remove_kitinet(model: nn.Module) -> list[KITINet]:
    """Undo :func:`insert_kitinet`: stock classes (and so stock forwards) back, KITINet children
    deleted. Returns the removed modules in block order (empty if there were none)."""
    arch, blocks = _find_blocks(model)
    removed = _inserted(arch, blocks)
    for block in blocks:
        for site, owner in zip(SITES, _owners(arch, block, SITES), strict=True):
            if f"kitinet_{site}" in owner._modules:
                delattr(owner, f"kitinet_{site}")
            owner.__class__ = _stock_class(owner)
    return removed
