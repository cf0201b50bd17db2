"""Image classifiers of both papers' vision experiments (SPEC §3), registered in the model registry.

Importing this module registers in :data:`experiments.core.registry.MODELS`:

* ``cifar_resnet18/34/50/101/152``: ResNets for 32x32 images (He et al. 2016, the CIFAR variant of
  the KO and KITINet experiments): a 3x3 stride-1 stem conv without max-pool, four stages
  ``layer1..layer4`` of widths ``base_width * (1, 2, 4, 8)`` (64-128-256-512 by default),
  ``BasicBlock`` for 18/34 and ``Bottleneck`` (expansion 4) for 50/101/152, global average pool and
  the classifier ``fc`` (:meth:`ResNet.get_classifier`); one ``functools.partial`` of one builder
  per row of the table ``_DEPTHS`` (block, blocks per stage). ``base_width`` scales the whole
  network (16 gives a CPU-sized model), ``in_chans=1`` takes Fashion-MNIST. ``stem="imagenet"``
  swaps in the torchvision stem (7x7 stride-2 conv + 3x3 stride-2 max-pool); it exists because
  KITINet Table 3's MFLOPs column matches that stem, not the CIFAR one (see :func:`count_mflops`).
* KITI-ResNet: the same builders with ``kitinet={...}`` (KITINet keyword arguments): every block of
  the stages in ``kitinet_stages`` (default ``(4,)``, the paper's "last stage") computes
  ``relu(KITINet(shortcut(x), branch(x)))`` instead of ``relu(shortcut(x) + branch(x))``, one system
  per sample (``D = C*H*W`` of the block output). The final ReLU stays after the KITINet. KITINet
  has no parameters, so a KITI-ResNet and a ResNet share state dicts, and in eval they compute
  exactly the same numbers. :func:`check_input_size` checks ``collision_heads`` against ``D`` for
  an input size before training.
* ``resnet18_fc_head``: KO Fig. 4 (after Zhou et al. 2022b): the CIFAR ResNet18 whose classifier is
  ``fc1`` (512 -> 1024) - act - ``fc2`` (1024 -> 1024) - act - ``fc`` (1024 -> classes), act
  ``tanh`` or ``xtanh``.
* ``timm_model``: any timm model by ``model_name`` (``resnet50``, ``convnext_tiny``,
  ``convnext_small`` for KO Table 2); timm models have ``get_classifier()`` already.

Not built: KITINet Table 3's "Dit-ResNet" (Liu et al. [24], dendritic/quadratic neurons with a
"quadratic integration matrix" trained at lr 1) is not specified enough in the paper to rebuild.

Module names follow torchvision (``conv1``, ``bn1``, ``layer{s}.{i}.conv{k}``, ``fc``) so KO layer
patterns such as ``layer4.*.conv2`` or ``head`` work; the residual slot of block ``i`` of stage ``s``
is ``layer{s}.{i}.residual``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from experiments.core.blocks import make_activation, make_residual
from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from experiments.core.timm import import_timm
from kinetics import KITINet, KITINetConfig

__all__ = [
    "STEMS",
    "BasicBlock",
    "Bottleneck",
    "FCHeadResNet",
    "ResNet",
    "check_input_size",
    "cifar_resnet18",
    "cifar_resnet34",
    "cifar_resnet50",
    "cifar_resnet101",
    "cifar_resnet152",
    "count_mflops",
    "resnet18_fc_head",
    "timm_model",
]

STEMS = ("cifar", "imagenet")


# --------------------------------------------------------------------------- building blocks


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def _downsampled(size: int, stride: int) -> int:
    """Output length of a padded conv/pool (3x3 pad 1, 1x1 pad 0, 7x7 pad 3) of this stride."""
    return (size - 1) // stride + 1


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Identity, or a strided 1x1 conv + BN where the shape changes (ResNet option B)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(_conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3 convs: ``relu(residual(shortcut(x), bn2(conv2(relu(bn1(conv1(x)))))))``.

    ``residual`` is the addition ``x + v`` or a KITINet (x = shortcut output, v = branch output).
    """

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int, kitinet: KITINetConfig | None
    ) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = planes * self.expansion
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_planes, self.out_channels, stride)
        self.residual = make_residual(kitinet)

    def branch(self, x: Tensor) -> Tensor:
        """The residual branch, before the addition and the final ReLU."""
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(self.shortcut(x), self.branch(x)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand (x4); residual and ReLU as BasicBlock."""

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int, kitinet: KITINetConfig | None
    ) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = planes * self.expansion
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, self.out_channels)
        self.bn3 = nn.BatchNorm2d(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_planes, self.out_channels, stride)
        self.residual = make_residual(kitinet)

    def branch(self, x: Tensor) -> Tensor:
        """The residual branch, before the addition and the final ReLU."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(self.shortcut(x), self.branch(x)))


# depth -> (block, blocks per stage): one registered builder ``cifar_resnet<depth>`` per row.
_DEPTHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


# --------------------------------------------------------------------------- networks


class ResNet(nn.Module):
    """ResNet with a CIFAR (or ImageNet) stem; KITINet in the residuals of ``kitinet_stages``.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each of the four stages.
        num_classes: outputs of ``fc``.
        in_chans: image channels (3 for CIFAR, 1 for Fashion-MNIST).
        base_width: channels of the stem and of stage 1; stages have ``base_width * 2**(s-1)``
            (times the block expansion at their output).
        stem: ``"cifar"`` (3x3 stride-1 conv, no max-pool) or ``"imagenet"`` (7x7 stride-2 conv,
            3x3 stride-2 max-pool).
        kitinet: KITINet keyword arguments, or None for plain additions everywhere.
        kitinet_stages: stages (1..4) whose blocks get KITINet when ``kitinet`` is given.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        base_width: int = 64,
        stem: str = "cifar",
        kitinet: KITINetConfig | None = None,
        kitinet_stages: Sequence[int] = (4,),
    ) -> None:
        super().__init__()
        _check_sizes(num_classes=num_classes, in_chans=in_chans, base_width=base_width)
        if stem not in STEMS:
            raise ConfigError(f"model.stem={stem!r} is unknown; allowed: {', '.join(STEMS)}")
        # Checked even without kitinet, so a typo fails before the collision=kitinet run.
        stages_with_kitinet = _check_stages(kitinet_stages)
        with_kitinet = stages_with_kitinet if kitinet is not None else set()
        self.in_chans = in_chans
        self.stem = stem
        if stem == "cifar":
            self.conv1 = _conv3x3(in_chans, base_width)
        else:
            self.conv1 = nn.Conv2d(in_chans, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(3, stride=2, padding=1)

        in_planes = base_width
        stages = []
        for stage, num_blocks in enumerate(layers, start=1):
            planes = base_width * 2 ** (stage - 1)
            stage_kitinet = kitinet if stage in with_kitinet else None
            blocks = []
            for i in range(num_blocks):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(block(in_planes, planes, stride, stage_kitinet))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's ResNet init: He-normal (fan_out) convs, BN at (1, 0), Linear left default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features ``(B, num_features)``: stem, the four stages, global average pool."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits from pooled features."""
        return self.fc(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final classifier layer ``fc`` (KO's default collision layer)."""
        return self.fc

    def kitinet_systems(self, input_size: Sequence[int]) -> dict[str, int]:
        """``{module name: D}`` of every KITINet residual for images of size ``(C, H, W)``."""
        if len(input_size) != 3 or int(input_size[0]) != self.in_chans:
            raise ConfigError(
                f"input size {tuple(input_size)} must be (C, H, W) with C = in_chans = "
                f"{self.in_chans}"
            )
        height, width = int(input_size[1]), int(input_size[2])
        if self.stem == "imagenet":  # stride-2 conv, then stride-2 max-pool
            height = _downsampled(_downsampled(height, 2), 2)
            width = _downsampled(_downsampled(width, 2), 2)
        systems = {}
        for stage in (1, 2, 3, 4):
            for i, blk in enumerate(getattr(self, f"layer{stage}")):
                height, width = _downsampled(height, blk.stride), _downsampled(width, blk.stride)
                if isinstance(blk.residual, KITINet):
                    systems[f"layer{stage}.{i}.residual"] = blk.out_channels * height * width
        return systems


class FCHeadResNet(ResNet):
    """ResNet whose classifier is ``fc1 - act - fc2 - act - fc`` (KO Fig. 4, Zhou et al. 2022b).

    ``fc1`` maps the pooled features (512 for ResNet18) to ``hidden``; ``fc`` is the final layer
    (``get_classifier()``). ``act`` is one of :data:`experiments.core.blocks.ACTIVATIONS`.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        hidden: int = 1024,
        activation: str = "tanh",
        num_classes: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(block, layers, num_classes=num_classes, **kwargs)
        _check_sizes(hidden=hidden)
        del self.fc  # re-created below, after fc1 and fc2, so the modules are listed in order
        self.fc1 = nn.Linear(self.num_features, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(self.act(self.fc2(self.act(self.fc1(features)))))


def _check_sizes(**sizes: int) -> None:
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.{key}={value!r} must be an integer >= 1")


def _check_stages(stages: Sequence[int]) -> set[int]:
    chosen = set()
    for stage in stages:
        if isinstance(stage, bool) or not isinstance(stage, int) or stage not in (1, 2, 3, 4):
            raise ConfigError(f"model.kitinet_stages entry {stage!r} is not one of 1, 2, 3, 4")
        chosen.add(stage)
    if not chosen:
        raise ConfigError("model.kitinet_stages is empty: KITINet would replace no residual")
    return chosen


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_input_size(
    model: nn.Module, input_size: Sequence[int], *, max_particles: int | None = None
) -> dict[str, tuple[int, int]]:
    """Check every KITINet of ``model`` against images of size ``(C, H, W)``, before any forward.

    Args:
        model: a model of this module (others have no KITINet: the result is empty).
        input_size: ``(C, H, W)`` of the training images, e.g. ``(3, 32, 32)``.
        max_particles: if given, also reject ``N = D / collision_heads`` above it (the pair
            matrices are ``N x N`` per sample).

    Returns:
        ``{module name: (D, N)}`` for every KITINet residual.

    Raises:
        ConfigError (a ValueError): ``C`` differs from the model's ``in_chans``, ``collision_heads``
            does not divide some ``D`` (the message lists the divisors), or ``N > max_particles``.
    """
    systems_of = getattr(model, "kitinet_systems", None)
    if systems_of is None:
        return {}
    modules = dict(model.named_modules())
    report = {}
    for name, features in systems_of(input_size).items():
        heads = modules[name].collision_heads
        if features % heads:
            raise ConfigError(
                f"collision_heads={heads} does not divide the feature size D=C*H*W={features} of "
                f"{name} for input size {tuple(input_size)}; allowed: "
                f"{', '.join(map(str, _divisors(features)))}"
            )
        particles = features // heads
        if max_particles is not None and particles > max_particles:
            allowed = [h for h in _divisors(features) if features // h <= max_particles]
            raise ConfigError(
                f"collision_heads={heads} gives N={particles} particles per sample in {name} "
                f"(D={features}), more than max_particles={max_particles}; use one of: "
                f"{', '.join(map(str, allowed))}"
            )
        report[name] = (features, particles)
    return report


def count_mflops(
    model: nn.Module, input_size: Sequence[int], *, kitinet_train: bool = False
) -> float:
    """FLOPs of one forward pass of one input of size ``input_size``, in millions.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` in eval mode: 2 FLOPs per
    multiply-add of convolutions and matrix products; BN, ReLU, additions and pooling count
    nothing. Papers' "FLOPs" from thop / ptflops / fvcore are usually multiply-adds, i.e. half of
    this number. A KITINet in eval is the plain addition and adds 0; ``kitinet_train=True`` runs the
    KITINet modules (only them) in training mode to count their collision's matrix products.
    The model's train/eval flags are restored afterwards.
    """
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    # Random, not zeros: a zero image gives all-equal velocities, so KITINet would not collide.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, *input_size, generator=gen, dtype=dtype).to(device)
    try:
        model.eval()
        if kitinet_train:
            for m in model.modules():
                if isinstance(m, KITINet):
                    m.train()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for m, training in modes.items():
            m.training = training
    return counter.get_total_flops() / 1e6


# --------------------------------------------------------------------------- registered builders


def _cifar_resnet(
    num_classes: int = 10,
    in_chans: int = 3,
    base_width: int = 64,
    stem: str = "cifar",
    kitinet: KITINetConfig | None = None,
    kitinet_stages: Sequence[int] = (4,),
    *,
    block: type[BasicBlock] | type[Bottleneck],
    layers: Sequence[int],
) -> nn.Module:
    """CIFAR ResNet of ``block`` and ``layers``; KITI-ResNet with ``kitinet``. See :class:`ResNet`.

    Registered once per row of :data:`_DEPTHS` as ``functools.partial(_cifar_resnet, block=...,
    layers=...)``: the config sets the arguments before ``*``.
    """
    if isinstance(kitinet_stages, str) or not isinstance(kitinet_stages, Sequence):
        raise ConfigError(
            f"model.kitinet_stages={kitinet_stages!r} must be a list of stages (1..4)"
        )
    return ResNet(
        block,
        layers,
        num_classes=num_classes,
        in_chans=in_chans,
        base_width=base_width,
        stem=stem,
        kitinet=kitinet,
        kitinet_stages=tuple(kitinet_stages),  # Hydra lists arrive as ListConfig
    )


for _depth, (_block, _layers) in _DEPTHS.items():
    MODELS.register(
        functools.partial(_cifar_resnet, block=_block, layers=_layers),
        name=f"cifar_resnet{_depth}",
    )
del _depth, _block, _layers

# The builders under their registry names (scripts/bench.py imports cifar_resnet18).
cifar_resnet18 = MODELS.get("cifar_resnet18")
cifar_resnet34 = MODELS.get("cifar_resnet34")
cifar_resnet50 = MODELS.get("cifar_resnet50")
cifar_resnet101 = MODELS.get("cifar_resnet101")
cifar_resnet152 = MODELS.get("cifar_resnet152")


@MODELS.register
def resnet18_fc_head(
    num_classes: int = 10,
    in_chans: int = 3,
    base_width: int = 64,
    hidden: int = 1024,
    activation: str = "tanh",
) -> nn.Module:
    """KO Fig. 4: CIFAR ResNet18 with the head ``fc1`` (512 -> hidden) - act - ``fc2`` - act - ``fc``."""
    block, layers = _DEPTHS[18]
    return FCHeadResNet(
        block,
        layers,
        hidden=hidden,
        activation=activation,
        num_classes=num_classes,
        in_chans=in_chans,
        base_width=base_width,
    )


@MODELS.register
def timm_model(
    model_name: str = "resnet50",
    pretrained: bool = False,
    num_classes: int = 1000,
    **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(model_name, pretrained=..., num_classes=..., **kwargs)``.

    The timm architecture is ``model_name`` (``name`` is the registry's key in the config). Extra
    keyword arguments (``drop_path_rate``, ``in_chans``, ...) go to timm. ``pretrained=True``
    downloads weights from the Hugging Face hub.
    """
    # imported on use: it is slow to import and only these models need it
    timm = import_timm()
    return timm.create_model(model_name, pretrained=pretrained, num_classes=num_classes, **kwargs)
