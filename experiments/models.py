"""Model registry (timm style) and the papers' synthetic networks.

``@register_model`` registers a builder function under its name; ``create_model(name, **kwargs)``
calls it. A builder that takes a ``kitinet`` argument has residual connections that KITINet can
replace: the runner passes the KITINet keyword arguments there when ``collision=kitinet`` and
``None`` otherwise (plain additions ``x + v``).

The synthetic networks (KO Fig. 2, KITINet §5.7) fit ``R^5 -> R`` and name their layers so one
config fits all: ``fc1`` is always the input layer ``Linear(d_in, m)``, the layer whose input
weights the condensation heat maps show.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from experiments.config import ConfigError

__all__ = [
    "ACTIVATIONS",
    "KITINetMLP",
    "PlainResidual",
    "SkipNet",
    "TwoLayerMLP",
    "XTanh",
    "check_activation",
    "create_model",
    "get_builder",
    "list_models",
    "make_activation",
    "make_residual",
    "register_model",
    "supports_kitinet",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` as the builder of the model named ``fn.__name__``."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``."""
    if name not in _MODELS:
        raise ConfigError(
            f"model.name={name!r} is unknown; registered models: {', '.join(list_models())}"
        )
    return _MODELS[name]


def supports_kitinet(name: str) -> bool:
    """Whether model ``name`` has residual additions that KITINet can replace."""
    return "kitinet" in inspect.signature(get_builder(name)).parameters


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``."""
    return get_builder(name)(**kwargs)


# --------------------------------------------------------------------------- building blocks


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


def make_residual(kitinet: Mapping[str, Any] | None, num_features: int) -> nn.Module:
    """``PlainResidual`` for ``kitinet=None``, else ``KITINet(**kitinet)`` checked for the size.

    Raises:
        ConfigError: ``collision_heads`` does not divide ``num_features``.
    """
    if kitinet is None:
        return PlainResidual()
    from kinetics import KITINet

    heads = int(kitinet["collision_heads"])
    if num_features % heads:
        divisors = [d for d in range(1, num_features + 1) if num_features % d == 0]
        raise ConfigError(
            f"collision.collision_heads={heads} does not divide the feature size {num_features} "
            f"(model.hidden); allowed: {', '.join(map(str, divisors))}"
        )
    module = KITINet(**kitinet)
    module.check_features(num_features)
    return module


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
        kitinet: Mapping[str, Any] | None,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, hidden)
        self.residual = make_residual(kitinet, hidden)
        self.fc3 = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x))
        h = self.residual(h, self.act(self.fc2(h)))
        return self.fc3(h)


class SkipBlock(nn.Module):
    """``h <- residual(h, act(fc(h)))``."""

    def __init__(self, width: int, activation: str, kitinet: Mapping[str, Any] | None) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = make_activation(activation)
        self.residual = make_residual(kitinet, width)

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
        kitinet: Mapping[str, Any] | None,
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


@register_model
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


@register_model
def kitinet_fc(
    in_features: int = 5,
    hidden: int = 50,
    out_features: int = 1,
    activation: str = "relu",
    init_gamma: float = 4.0,
    kitinet: Mapping[str, Any] | None = None,
) -> nn.Module:
    """KITINet §5.7 FC net d_in-m-d_out whose second linear layer feeds a KITINet (see KITINetMLP)."""
    _check_sizes(in_features=in_features, hidden=hidden, out_features=out_features)
    model = KITINetMLP(in_features, hidden, out_features, activation, kitinet)
    _init_normal_(model, _gamma_std(hidden, init_gamma))
    return model


@register_model
def skipnet(
    in_features: int = 5,
    hidden: int = 50,
    out_features: int = 1,
    activation: str = "relu",
    depth: int = 6,
    kitinet_layers: int = 0,
    init_gamma: float = 4.0,
    kitinet: Mapping[str, Any] | None = None,
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


# The vision models and the PDE neural operators (experiments/vision/models.py,
# experiments/pde/models.py) register themselves with `register_model` when imported; importing
# them here makes the registry the same whichever module is imported first.
import experiments.pde.models  # noqa: E402
import experiments.vision.models  # noqa: E402, F401
