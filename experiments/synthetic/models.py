"""The papers' synthetic networks (KO Fig. 2, KITINet §5.7), registered in the model registry.

They fit ``R^5 -> R`` and name their layers so one config fits all: ``fc1`` is always the input
layer ``Linear(d_in, m)``, the layer whose input weights the condensation heat maps show. A builder
that takes ``kitinet`` has residual additions KITINet can replace (``None``: plain ``x + v``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from experiments.core.blocks import make_activation, make_residual
from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from kinetics import KITINetConfig

__all__ = ["KITINetMLP", "SkipNet", "TwoLayerMLP", "kitinet_fc", "mlp", "skipnet"]


def _init_normal_(model: nn.Module, std: float) -> None:
    """Every parameter (weights and biases) drawn from N(0, std^2), as in the synthetic papers."""
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, std)


def _check_sizes(**sizes: int) -> None:
    for key, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.{key}={value!r} must be an integer >= 1")


# --------------------------------------------------------------------------- synthetic models


class TwoLayerMLP(nn.Module):
    """``Linear(d_in, m) - act - Linear(m, d_out)``: layers ``fc1``, ``act``, ``fc2``."""

    def __init__(self, in_features: int, hidden: int, out_features: int, activation: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class KITINetMLP(nn.Module):
    """Three linear layers, the middle one a residual branch: layers ``fc1, fc2, residual, fc3``.

    ``h = act(fc1(x)); h = residual(h, act(fc2(h))); y = fc3(h)`` where ``residual`` is KITINet
    or the plain ``h + act(fc2(h))``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        activation: str,
        kitinet: KITINetConfig | None,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, hidden)
        self.residual = make_residual(kitinet, num_features=hidden, size_key="model.hidden")
        self.fc3 = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x))
        h = self.residual(h, self.act(self.fc2(h)))
        return self.fc3(h)


class SkipBlock(nn.Module):
    """``h <- residual(h, act(fc(h)))``."""

    def __init__(self, width: int, activation: str, kitinet: KITINetConfig | None) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = make_activation(activation)
        self.residual = make_residual(kitinet, num_features=width, size_key="model.hidden")

    def forward(self, h: Tensor) -> Tensor:
        return self.residual(h, self.act(self.fc(h)))


class SkipNet(nn.Module):
    """``fc1`` + act, ``depth`` skip blocks (``blocks.i.fc``), then ``head``.

    KITINet replaces the residual addition of the last ``kitinet_layers`` blocks.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        activation: str,
        depth: int,
        kitinet_layers: int,
        kitinet: KITINetConfig | None,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = make_activation(activation)
        first_kitinet = depth - kitinet_layers
        self.blocks = nn.Sequential(
            *(
                SkipBlock(hidden, activation, kitinet if i >= first_kitinet else None)
                for i in range(depth)
            )
        )
        self.head = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.act(self.fc1(x))))


@MODELS.register
def mlp(
    in_features: int = 5,
    hidden: int = 50,
    out_features: int = 1,
    activation: str = "tanh",
    init_std: float = 0.005,
) -> nn.Module:
    """KO Fig. 2 (after Zhou et al. 2022b): 5-50-1 two-layer net, every parameter ~ N(0, 0.005^2)."""
    _check_sizes(in_features=in_features, hidden=hidden, out_features=out_features)
    if not init_std > 0:
        raise ConfigError(f"model.init_std={init_std} must be > 0")
    model = TwoLayerMLP(in_features, hidden, out_features, activation)
    _init_normal_(model, init_std)
    return model


def _gamma_std(hidden: int, init_gamma: float) -> float:
    """KITINet §5.7: parameters ~ N(0, sigma^2) with sigma = m^-gamma."""
    if not init_gamma > 0:
        raise ConfigError(f"model.init_gamma={init_gamma} must be > 0")
    return math.pow(hidden, -init_gamma)


@MODELS.register
def kitinet_fc(
    in_features: int = 5,
    hidden: int = 50,
    out_features: int = 1,
    activation: str = "relu",
    init_gamma: float = 4.0,
    kitinet: KITINetConfig | None = None,
) -> nn.Module:
    """KITINet §5.7 FC net d_in-m-d_out whose second linear layer feeds a KITINet (see KITINetMLP)."""
    _check_sizes(in_features=in_features, hidden=hidden, out_features=out_features)
    model = KITINetMLP(in_features, hidden, out_features, activation, kitinet)
    _init_normal_(model, _gamma_std(hidden, init_gamma))
    return model


@MODELS.register
def skipnet(
    in_features: int = 5,
    hidden: int = 50,
    out_features: int = 1,
    activation: str = "relu",
    depth: int = 6,
    kitinet_layers: int = 0,
    init_gamma: float = 4.0,
    kitinet: KITINetConfig | None = None,
) -> nn.Module:
    """KITINet §5.7 six-layer skip network; KITINet in the last ``kitinet_layers`` blocks.

    Without ``kitinet`` (collision other than kitinet) every block uses the plain addition, so
    ``kitinet_layers`` only matters with ``collision=kitinet``.
    """
    _check_sizes(in_features=in_features, hidden=hidden, out_features=out_features, depth=depth)
    if not isinstance(kitinet_layers, int) or not 0 <= kitinet_layers <= depth:
        raise ConfigError(f"model.kitinet_layers={kitinet_layers!r} is outside [0, {depth}]")
    model = SkipNet(in_features, hidden, out_features, activation, depth, kitinet_layers, kitinet)
    _init_normal_(model, _gamma_std(hidden, init_gamma))
    return model
