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

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from experiments.core.errors import ConfigError, MissingDataError
from experiments.core.registry import MODELS
from kinetics import KITINetConfig
from kinetics.hf import insert_kitinet

__all__ = ["hf_classifier"]


def _from_pretrained(pretrained: str, num_labels: int) -> nn.Module:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier": expected, it is the head
    try:
        return AutoModelForSequenceClassification.from_pretrained(pretrained, num_labels=num_labels)
    except (OSError, ValueError) as err:
        offline = [v for v in ("HF_HUB_OFFLINE",) if os.environ.get(v) == "1"]
        hint = f" ({offline[0]}=1 is set)" if offline else ""
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise MissingDataError(
            f"AutoModelForSequenceClassification.from_pretrained({pretrained!r}) failed{hint}: "
            f"{type(err).__name__}: {first}; download it once with network access, or set "
            "model.pretrained to a local directory holding it"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _from_config(config: Mapping[str, Any], num_labels: int) -> nn.Module:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    values = dict(config)
    model_type = values.pop("model_type", None)
    if model_type is None:
        raise ConfigError("model.config needs a model_type (e.g. bert, distilbert)")
    try:
        hf_config = AutoConfig.for_model(model_type, num_labels=num_labels, **values)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"model.config is not a transformers config: {err}") from None
    return AutoModelForSequenceClassification.from_config(hf_config)


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
        model = _from_config(config, num_labels)
    else:
        assert pretrained is not None
        model = _from_pretrained(pretrained, num_labels)
    if kitinet is not None:
        try:
            insert_kitinet(
                model,
                collision_heads=kitinet.collision_heads,
                coll_coef=kitinet.coll_coef,
                sites=tuple(kitinet_sites),
                layers=list(kitinet_layers),
                dt=kitinet.dt,
                position_update=kitinet.position_update,
                mean_free_path=kitinet.mean_free_path,
                seed=kitinet.seed,
            )
        except ValueError as err:
            raise ConfigError(f"collision=kitinet on this model: {err}") from None
    return model


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
