"""Tests of the vision models (experiments/vision/models.py): CIFAR ResNets, KITI-ResNets, the KO
Fig. 4 FC-head ResNet18, the FLOP counter and the timm builder."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from experiments.core.blocks import PlainResidual, XTanh
from experiments.core.config import supports_kitinet
from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from experiments.vision.models import check_input_size, count_mflops
from kinetics import KITINet, KITINetConfig, select_modules

DEPTHS = (18, 34, 50, 101, 152)
TINY = {"base_width": 4}
# mean_free_path far above the particle distances: exp(-x_r / mfp) ~ 1, so pairs surely collide.
EAGER = KITINetConfig(collision_heads=4, coll_coef=0.9, mean_free_path=1e6)


def _kitinets(model: nn.Module) -> dict[str, KITINet]:
    return {n: m for n, m in model.named_modules() if isinstance(m, KITINet)}


def _randomise_bn_stats(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial running statistics, so eval mode differs from an identity normalisation."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def _twins(name: str, kitinet: dict, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A vanilla model and its KITI- twin with the same state dict."""
    torch.manual_seed(0)
    vanilla = MODELS.create(name, **kwargs)
    _randomise_bn_stats(vanilla)
    kiti = MODELS.create(name, kitinet=kitinet, **kwargs)
    kiti.load_state_dict(vanilla.state_dict())  # strict: KITINet adds no parameters or buffers
    return vanilla, kiti


# --------------------------------------------------------------------------- registry and shapes


def test_registered_names() -> None:
    names = set(MODELS.names())
    for depth in DEPTHS:
        assert f"cifar_resnet{depth}" in names
        assert supports_kitinet(f"cifar_resnet{depth}")
    assert {"resnet18_fc_head", "timm_model"} <= names
    assert not supports_kitinet("resnet18_fc_head")
    assert not supports_kitinet("timm_model")


@pytest.mark.parametrize("depth", DEPTHS)
def test_shapes_every_depth(depth: int) -> None:
    torch.manual_seed(0)
    model = MODELS.create(f"cifar_resnet{depth}", num_classes=7, **TINY)
    expansion = 1 if depth < 50 else 4
    assert model.num_features == 8 * 4 * expansion
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    head = model.get_classifier()
    assert head is model.fc and isinstance(head, nn.Linear)
    assert (head.in_features, head.out_features) == (model.num_features, 7)
    assert select_modules(model, "head") == {"fc": model.fc}


def test_grayscale_input_and_imagenet_stem() -> None:
    torch.manual_seed(0)
    gray = MODELS.create("cifar_resnet18", in_chans=1, **TINY)
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    imagenet = MODELS.create("cifar_resnet50", stem="imagenet", **TINY)
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)
    assert imagenet(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_full_width_matches_the_standard_cifar_resnets() -> None:
    """Widths 64-128-256-512, 3x3 stride-1 stem without max-pool, and the parameter counts of the
    widely used CIFAR ResNet-18 (11,173,962) and ResNet-50 (23,520,842) for 10 classes."""
    r18 = MODELS.create("cifar_resnet18")
    assert (r18.conv1.kernel_size, r18.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(r18.maxpool, nn.Identity)
    assert [r18.layer1[0].conv1.out_channels, r18.layer4[1].conv2.out_channels] == [64, 512]
    assert r18.layer4[0].conv1.stride == (2, 2) and r18.layer1[0].conv1.stride == (1, 1)
    assert sum(p.numel() for p in r18.parameters()) == 11_173_962
    r50 = MODELS.create("cifar_resnet50")
    assert r50.layer4[2].conv3.out_channels == 2048 and r50.fc.in_features == 2048
    assert r50.layer2[0].conv2.stride == (2, 2)  # the stride sits on the 3x3 conv
    assert sum(p.numel() for p in r50.parameters()) == 23_520_842


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_width": 0}, "base_width"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"stem": "vit"}, "stem"),
        ({"kitinet": EAGER, "kitinet_stages": [5]}, "kitinet_stages"),
        ({"kitinet_stages": [0]}, "kitinet_stages"),
        ({"kitinet": EAGER, "kitinet_stages": []}, "kitinet_stages"),
        ({"kitinet": EAGER, "kitinet_stages": 4}, "kitinet_stages"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MODELS.create("cifar_resnet18", **{**TINY, **kwargs})


# --------------------------------------------------------------------------- KITI-ResNet


@pytest.mark.parametrize("depth", [18, 50])
def test_kiti_eval_equals_vanilla_exactly(depth: int) -> None:
    vanilla, kiti = _twins(f"cifar_resnet{depth}", EAGER, kitinet_stages=[2, 3, 4], **TINY)
    assert len(_kitinets(kiti)) > 0
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    vanilla.eval()
    kiti.eval()
    with torch.no_grad():
        assert torch.equal(kiti(x), vanilla(x))


def test_kiti_training_collides_and_logs_rate() -> None:
    vanilla, kiti = _twins("cifar_resnet18", replace(EAGER, seed=3), **TINY)
    modules = _kitinets(kiti)
    assert all(m.last_collision_rate is None for m in modules.values())
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    out_vanilla, out_kiti = vanilla.train()(x), kiti.train()(x)
    assert not torch.allclose(out_kiti, out_vanilla)
    for module in modules.values():
        assert 0.0 < float(module.last_collision_rate) <= 1.0
    out_kiti.square().mean().backward()
    grads = [p.grad for p in kiti.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (None, {"layer4": 3}),
        ([3, 4], {"layer3": 6, "layer4": 3}),
        ([2, 3, 4], {"layer2": 4, "layer3": 6, "layer4": 3}),
        ([1], {"layer1": 3}),
    ],
)
def test_kitinet_stages_reach_the_right_blocks(stages: list | None, expected: dict) -> None:
    kwargs = {} if stages is None else {"kitinet_stages": stages}
    model = MODELS.create("cifar_resnet34", kitinet=EAGER, **TINY, **kwargs)
    found: dict[str, int] = {}
    for name in _kitinets(model):
        stage, _, slot = name.split(".")
        assert slot == "residual"
        found[stage] = found.get(stage, 0) + 1
    assert found == expected
    residuals = [m for n, m in model.named_modules() if n.endswith(".residual")]
    assert len(residuals) == 16  # 3 + 4 + 6 + 3 blocks; the others are plain additions
    assert sum(isinstance(m, PlainResidual) for m in residuals) == 16 - sum(expected.values())


def test_no_kitinet_without_kitinet_kwargs() -> None:
    model = MODELS.create("cifar_resnet18", kitinet_stages=[1, 2, 3, 4], **TINY)
    assert not _kitinets(model)


# --------------------------------------------------------------------------- check_input_size


@pytest.mark.parametrize(
    ("name", "stem", "size"),
    [
        ("cifar_resnet18", "cifar", (3, 32, 32)),
        ("cifar_resnet18", "cifar", (3, 17, 23)),
        ("cifar_resnet50", "cifar", (3, 28, 28)),
        ("cifar_resnet50", "imagenet", (3, 32, 32)),
    ],
)
def test_check_input_size_matches_a_real_forward(name: str, stem: str, size: tuple) -> None:
    model = MODELS.create(
        name, stem=stem, kitinet=replace(EAGER, collision_heads=1), kitinet_stages=[2, 3, 4], **TINY
    )
    seen: dict[str, int] = {}
    for module_name, module in _kitinets(model).items():
        module.register_forward_hook(
            lambda _m, args, _out, key=module_name: seen.__setitem__(key, args[0][0].numel())
        )
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, *size))
    report = check_input_size(model, size)
    assert {k: d for k, (d, _) in report.items()} == seen
    assert all(n == d for d, n in report.values())  # collision_heads 1: N = D


def test_check_input_size_full_width_cifar_last_stage() -> None:
    r18 = MODELS.create("cifar_resnet18", kitinet=replace(EAGER, collision_heads=16))
    assert set(check_input_size(r18, (3, 32, 32)).values()) == {(8192, 512)}  # 512 x 4 x 4
    r50 = MODELS.create("cifar_resnet50", kitinet=replace(EAGER, collision_heads=16))
    assert set(check_input_size(r50, (3, 32, 32)).values()) == {(32768, 2048)}  # 2048 x 4 x 4


def test_check_input_size_errors() -> None:
    # base width 4: the last stage of ResNet-18 is 32 x 4 x 4 = 512 features at 32x32
    model = MODELS.create("cifar_resnet18", kitinet=replace(EAGER, collision_heads=3), **TINY)
    with pytest.raises(ValueError, match=r"collision_heads=3 .*D=C\*H\*W=512.*allowed: 1, 2, 4, 8"):
        check_input_size(model, (3, 32, 32))
    ok = MODELS.create("cifar_resnet18", kitinet=replace(EAGER, collision_heads=4), **TINY)
    assert set(check_input_size(ok, (3, 32, 32)).values()) == {(512, 128)}
    with pytest.raises(ValueError, match=r"N=128 .*max_particles=64; use one of: 8, 16"):
        check_input_size(ok, (3, 32, 32), max_particles=64)
    with pytest.raises(ValueError, match="in_chans = 3"):
        check_input_size(ok, (1, 28, 28))
    assert check_input_size(MODELS.create("cifar_resnet18", **TINY), (3, 32, 32)) == {}


# --------------------------------------------------------------------------- KO Fig. 4 model


@pytest.mark.parametrize(("activation", "cls"), [("tanh", nn.Tanh), ("xtanh", XTanh)])
def test_fc_head_model(activation: str, cls: type) -> None:
    torch.manual_seed(0)
    model = MODELS.create("resnet18_fc_head", activation=activation)
    assert isinstance(model.act, cls)
    shapes = [(m.in_features, m.out_features) for m in (model.fc1, model.fc2, model.fc)]
    assert shapes == [(512, 1024), (1024, 1024), (1024, 10)]
    assert model.get_classifier() is model.fc
    names = [n for n, _ in model.named_children()]
    assert names[-4:] == ["fc1", "act", "fc2", "fc"]
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        act = torch.tanh if activation == "tanh" else lambda t: t * torch.tanh(t)
        expected = model.fc(act(model.fc2(act(model.fc1(features)))))
        assert torch.equal(model(x), expected)
    assert expected.shape == (2, 10)
    with pytest.raises(ConfigError, match="activation"):
        MODELS.create("resnet18_fc_head", activation="swish", base_width=4)


# --------------------------------------------------------------------------- FLOPs and timm


def test_count_mflops_exact_for_a_conv() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_mflops(conv, (3, 16, 16)) == pytest.approx(2 * 3 * 8 * 9 * 16 * 16 / 1e6)


def test_count_mflops_scales_with_input_and_restores_mode() -> None:
    model = MODELS.create("cifar_resnet18", **TINY).train()
    small, large = count_mflops(model, (3, 16, 16)), count_mflops(model, (3, 32, 32))
    assert small > 0
    # every conv scales with H*W (x4); only the tiny fc does not
    assert 3.95 < large / small <= 4.0
    assert all(m.training for m in model.modules())


def test_count_mflops_kitinet() -> None:
    vanilla, kiti = _twins("cifar_resnet18", EAGER, **TINY)
    kiti.eval()
    assert count_mflops(kiti, (3, 16, 16)) == count_mflops(vanilla, (3, 16, 16))  # eval: x + v
    assert count_mflops(kiti, (3, 16, 16), kitinet_train=True) > count_mflops(kiti, (3, 16, 16))
    assert not any(m.training for m in kiti.modules())


def test_timm_builder_offline() -> None:
    model = MODELS.create("timm_model", model_name="resnet18", num_classes=10)
    assert model.get_classifier().out_features == 10
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_timm_models_and_data_do_not_import_wandb() -> None:
    """timm imports wandb when it can; our timm imports hide it (experiments/core/timm.py)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import experiments.domains\n"
        "from experiments.core.registry import MODELS\n"
        "from experiments.vision.data import ClassificationLoss\n"
        "MODELS.create('timm_model', model_name='test_resnet', num_classes=3)\n"
        "ClassificationLoss(0.1, bce=True)\n"
        "assert 'timm' in sys.modules and 'wandb' not in sys.modules, 'wandb imported'\n"
        "import wandb  # still importable afterwards, for logger=wandb\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
