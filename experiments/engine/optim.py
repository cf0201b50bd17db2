"""The optimizer of a run: a base optimizer by name (timm's factory), wrapped by KO when asked.

:func:`build_optimizer` returns ``(optimizer to step, base optimizer)``: for ``collision=soft|hard``
a :class:`kinetics.KineticOptimizer` that shares the base's param groups and state, so lr
schedules act on the base.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from experiments.core.config import RunConfig
from experiments.core.errors import ConfigError
from experiments.core.timm import import_timm

__all__ = ["build_optimizer"]


def _base_optimizer(rc: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = rc.optimizer
    extra: dict[str, Any] = {}
    if o.name != "sgd":
        if o.betas is not None:
            extra["betas"] = tuple(o.betas)
        if o.eps is not None:
            extra["eps"] = o.eps
    # timm's "sgd" is Nesterov SGD; its "momentum" is the classical heavy-ball SGD.
    timm_name = ("sgd" if o.nesterov else "momentum") if o.name == "sgd" else o.name
    try:
        timm_optim = import_timm("timm.optim")
    except ImportError:
        timm_optim = None
    params: Any = None  # None: timm takes the model itself (and its no_weight_decay() names)
    filter_bias_and_bn = o.no_decay_bias_norm
    if o.no_decay_embeddings and o.weight_decay:
        params, filter_bias_and_bn = (
            _decay_groups(model, o.weight_decay, o.no_decay_bias_norm),
            False,
        )
    if timm_optim is not None:
        return timm_optim.create_optimizer_v2(
            model if params is None else params,
            opt=timm_name,
            lr=o.lr,
            weight_decay=o.weight_decay,
            momentum=o.momentum,
            filter_bias_and_bn=filter_bias_and_bn,
            **extra,
        )
    params = model.parameters() if params is None else params
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    if o.name in ("adam", "adamw"):
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        return cls(params, lr=o.lr, weight_decay=o.weight_decay, **extra)
    raise ConfigError(f"optimizer.name={o.name!r} needs timm, which cannot be imported")


def _decay_groups(
    model: nn.Module, weight_decay: float, no_decay_bias_norm: bool
) -> list[dict[str, Any]]:
    """Two parameter groups: decayed, and exempt (embedding tables, and with
    ``no_decay_bias_norm`` every parameter of fewer than 2 dimensions: biases, norm weights).
    A weight tied to an embedding (an LM head) is one parameter and stays exempt."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, exempt = [], []
    for param in model.parameters():  # each shared parameter once
        if not param.requires_grad:
            continue
        if id(param) in embeddings or (no_decay_bias_norm and param.ndim < 2):
            exempt.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]


def build_optimizer(
    rc: RunConfig, model: nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """``(optimizer to step, base optimizer)``: a KineticOptimizer for soft/hard collision."""
    base = _base_optimizer(rc, model)
    c = rc.collision
    if c.name not in ("soft", "hard"):
        return base, base
    from kinetics import KineticOptimizer, select_modules

    try:
        layers = select_modules(model, c.modules)
    except ValueError as err:
        raise ConfigError(f"collision.modules={c.modules}: {err}") from err
    optimizer = KineticOptimizer(
        base,
        layers,
        c.name,
        c.coll_coef,
        seed=rc.collision_seed,
        exclude_self=c.exclude_self,
        mean_free_path=c.mean_free_path,
    )
    return optimizer, base
