"""Sequence classifiers from transformers (KO Table 3, KITINet Table 5), registered by name.

Each name is ``AutoModelForSequenceClassification`` of a checkpoint: from the hub by default,
from any local directory (``model.pretrained=<dir>``), or built from a config alone
(``model.config={model_type: bert, hidden_size: 32, ...}``: randomly initialised, as the tests
do). ``num_labels`` comes from the data set. With ``collision=kitinet`` the residual additions of
the layers ``kitinet_layers`` at ``kitinet_sites`` become KITINet modules
(:func:`kinetics.hf.insert_kitinet`, one system per token).

Registered: ``bert_base_cased``, ``bert_base_uncased``, ``distilbert_base_uncased``,
``minilm_l6`` (sentence-transformers' all-MiniLM-L6-v2, a 6-layer 384-wide BERT: the CPU-scale
stand-in for bert-base-uncased), and ``hf_classifier`` (any checkpoint, ``pretrained`` required).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from experiments.core.errors import ConfigError
from experiments.core.hf_models import add_kitinet, from_config, from_pretrained
from experiments.core.registry import MODELS
from kinetics import KITINetConfig

__all__ = ["hf_classifier"]

_AUTO_CLASS = "AutoModelForSequenceClassification"


def hf_classifier(
    pretrained: str | None = None,
    config: Mapping[str, Any] | None = None,
    num_labels: int = 2,
    kitinet: KITINetConfig | None = None,
    kitinet_sites: Sequence[str] = ("attn",),
    kitinet_layers: Sequence[int] = (-1,),
) -> nn.Module:
    """A transformers sequence classifier: ``pretrained`` (hub id or local dir) or ``config``.

    ``kitinet_sites``: "attn" (the residual after self-attention) and/or "mlp" (after the
    feed-forward); ``kitinet_layers``: block indices, -1 the final layer (KITINet Table 5).
    """
    if (pretrained is None) == (config is None):
        raise ConfigError("set exactly one of model.pretrained and model.config")
    if config is not None:
        model = from_config(_AUTO_CLASS, config, num_labels=num_labels)
    else:
        assert pretrained is not None
        model = from_pretrained(_AUTO_CLASS, pretrained, num_labels=num_labels)
    return add_kitinet(model, kitinet, kitinet_sites, kitinet_layers)


def _named(checkpoint: str) -> Callable[..., nn.Module]:
    """``hf_classifier`` with ``pretrained`` defaulting to ``checkpoint`` (still overridable)."""

    def build(
        pretrained: str | None = checkpoint,
        config: Mapping[str, Any] | None = None,
        num_labels: int = 2,
        kitinet: KITINetConfig | None = None,
        kitinet_sites: Sequence[str] = ("attn",),
        kitinet_layers: Sequence[int] = (-1,),
    ) -> nn.Module:
        if config is not None:
            pretrained = None  # a config builds the architecture without the checkpoint
        return hf_classifier(pretrained, config, num_labels, kitinet, kitinet_sites, kitinet_layers)

    build.__doc__ = f"``{checkpoint}`` as a sequence classifier (see :func:`hf_classifier`)."
    return build


MODELS.register(hf_classifier)
for _name, _checkpoint in {
    "bert_base_cased": "bert-base-cased",
    "bert_base_uncased": "bert-base-uncased",
    "distilbert_base_uncased": "distilbert-base-uncased",
    "minilm_l6": "sentence-transformers/all-MiniLM-L6-v2",
}.items():
    MODELS.register(_named(_checkpoint), name=_name)
