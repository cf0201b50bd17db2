"""Model pieces every domain shares: activations by name and the residual slot KITINet fills.

A model builder takes ``kitinet: KITINetConfig | None`` and calls :func:`make_residual` for each
residual addition: the plain ``x + v`` without it, a :class:`kinetics.KITINet` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from experiments.core.errors import ConfigError
from kinetics import KITINetConfig

__all__ = [
    "ACTIVATIONS",
    "PlainResidual",
    "XTanh",
    "check_activation",
    "make_activation",
    "make_residual",
]


class XTanh(nn.Module):
    """``x * tanh(x)`` (KO Fig. 2's xTanh)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.tanh(x)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "xtanh": XTanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
}


def check_activation(name: Any) -> None:
    """Raise ConfigError unless ``name`` is a key of :data:`ACTIVATIONS`."""
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation={name!r} is unknown; allowed: {', '.join(ACTIVATIONS)}"
        )


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    check_activation(name)
    return ACTIVATIONS[name]()


class PlainResidual(nn.Module):
    """The vanilla residual addition ``x + v``, with the same ``forward(x, v)`` as KITINet."""

    def forward(self, x: Tensor, v: Tensor) -> Tensor:
        return x + v


def make_residual(
    kitinet: KITINetConfig | None,
    *,
    system: Literal["sample", "token"] = "sample",
    num_features: int | None = None,
    size_key: str | None = None,
) -> nn.Module:
    """``PlainResidual`` for ``kitinet=None``, else a KITINet with one system per ``system``.

    ``size_key`` names the config key that sets ``num_features``, for the error message.

    Raises:
        ConfigError: ``collision_heads`` does not divide ``num_features`` (when the builder knows
            the feature size; the runner's shape probe checks every other case before training).
    """
    if kitinet is None:
        return PlainResidual()
    if num_features is not None and num_features % kitinet.collision_heads:
        divisors = [d for d in range(1, num_features + 1) if num_features % d == 0]
        raise ConfigError(
            f"collision.collision_heads={kitinet.collision_heads} does not divide the feature "
            f"size {num_features}{f' ({size_key})' if size_key else ''}; allowed: "
            f"{', '.join(map(str, divisors))}"
        )
    return kitinet.build(system)
