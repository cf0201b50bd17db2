"""Building transformers models for the domains that use them (text classifiers, language models).

Three ways to get a model, the same for every domain: a checkpoint from the hub or a local
directory (:func:`from_pretrained`), an architecture from a config mapping with random weights
(:func:`from_config`, how the tests build tiny models), and KITINet inserted into either
(:func:`add_kitinet`). Hub failures (offline, a wrong id) become one :class:`MissingDataError` line
naming the call that failed and what to set; a config that transformers rejects becomes a
:class:`ConfigError`. transformers is imported only when a model is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from experiments.core.errors import ConfigError, MissingDataError
from kinetics import KITINetConfig

__all__ = [
    "add_kitinet",
    "first_line",
    "from_config",
    "from_pretrained",
    "load_tokenizer",
    "offline_hint",
]


def first_line(err: BaseException) -> str:
    """``"<type>: <first line of the message>"``: what a one-line error quotes of a library's."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def offline_hint() -> str:
    """`` (HF_HUB_OFFLINE=1 is set)`` and the like, or empty: why a hub call may have failed."""
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v) == "1"]
    if not offline:
        return ""
    return f" ({'=1 and '.join(offline)}=1 {'are' if len(offline) > 1 else 'is'} set)"


def load_tokenizer(name: str) -> Any:
    """``AutoTokenizer.from_pretrained(name)`` (a hub id or a local directory), or one
    :class:`MissingDataError` line saying which call failed and what to set."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise MissingDataError(
            f"AutoTokenizer.from_pretrained({name!r}) failed{offline_hint()}: {first_line(err)}; "
            "download the model once with network access, or set model.pretrained / "
            "model.tokenizer to a local directory holding it"
        ) from None


def from_pretrained(auto_class: str, pretrained: str, **kwargs: Any) -> nn.Module:
    """``transformers.<auto_class>.from_pretrained(pretrained, **kwargs)``, failing in one line."""
    import transformers
    from transformers.utils import logging as hf_logging

    cls = getattr(transformers, auto_class)
    verbosity = hf_logging.get_verbosity()
    # e.g. "newly initialized classifier" for a fine-tuning head: expected, not worth a warning
    hf_logging.set_verbosity_error()
    try:
        return cls.from_pretrained(pretrained, **kwargs)
    except (OSError, ValueError) as err:
        raise MissingDataError(
            f"{auto_class}.from_pretrained({pretrained!r}) failed{offline_hint()}: "
            f"{first_line(err)}; download it once with network access, or set "
            "model.pretrained to a local directory holding it"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)


def from_config(auto_class: str, config: Mapping[str, Any], **kwargs: Any) -> nn.Module:
    """A randomly initialised ``auto_class`` model from ``{model_type: ..., <config keys>}``;
    ``kwargs`` are further config values (e.g. ``num_labels``, ``vocab_size``)."""
    import transformers

    values = {**config, **kwargs}
    model_type = values.pop("model_type", None)
    if model_type is None:
        raise ConfigError("model.config needs a model_type (e.g. bert, gpt2, qwen2)")
    attn = values.pop("attn_implementation", None)
    try:
        hf_config = transformers.AutoConfig.for_model(model_type, **values)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"model.config is not a transformers config: {err}") from None
    extra = {} if attn is None else {"attn_implementation": attn}
    return getattr(transformers, auto_class).from_config(hf_config, **extra)


def add_kitinet(
    model: nn.Module,
    kitinet: KITINetConfig | None,
    sites: Sequence[str],
    layers: Sequence[int] | None,
) -> nn.Module:
    """``model`` with KITINet at ``sites`` of ``layers`` (None: every block) when ``kitinet`` is
    set (``collision=kitinet``), one system per token (:func:`kinetics.hf.insert_kitinet`)."""
    if kitinet is None:
        return model
    from kinetics.hf import insert_kitinet

    try:
        insert_kitinet(
            model,
            collision_heads=kitinet.collision_heads,
            coll_coef=kitinet.coll_coef,
            sites=tuple(sites),
            layers=None if layers is None else list(layers),
            dt=kitinet.dt,
            position_update=kitinet.position_update,
            mean_free_path=kitinet.mean_free_path,
            seed=kitinet.seed,
        )
    except ValueError as err:
        raise ConfigError(f"collision=kitinet on this model: {err}") from None
    return model
