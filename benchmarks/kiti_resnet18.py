"""Section 5: KITI-ResNet-18 against ResNet-18 (CIFAR stem, KITINet in the last stage).

Training-step and eval-forward ratios to the plain network from the same initial weights (SPEC §5:
≤ 10 % and 0 %; eval outputs must be bitwise equal, as KITINet in eval is exactly ``x + v``), the
collision rates met while training, and the KITINet call alone on the inputs the network really
gives its last-stage blocks.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.measure import paired_ratio, sgd, summary, time_rounds, train_step

__all__ = ["bench_kiti_resnet"]


def _models(cfg: Config) -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """{"vanilla", "kiti_<coef>"...: model} with the same initial weights, and those weights."""
    from experiments.vision.models import cifar_resnet18
    from kinetics import KITINetConfig

    torch.manual_seed(0)
    kwargs = dict(num_classes=cfg.kiti_classes, base_width=cfg.kiti_base_width)
    vanilla = cifar_resnet18(**kwargs)
    initial = copy.deepcopy(vanilla.state_dict())
    models = {"vanilla": vanilla}
    for coef in cfg.kiti_coefs:
        kiti = cifar_resnet18(
            **kwargs, kitinet=KITINetConfig(collision_heads=cfg.kiti_heads, coll_coef=coef)
        )
        kiti.load_state_dict(initial)  # KITINet has no parameters: same weights
        models[f"kiti_{coef}"] = kiti
    return models, initial


@torch.no_grad()
def _eval(
    cfg: Config, models: dict[str, torch.nn.Module], eval_kiti: str, images: torch.Tensor
) -> tuple[bool, dict[str, list[float]]]:
    """Whether eval outputs of vanilla and ``eval_kiti`` are bitwise equal; eval forward seconds."""
    for model in models.values():
        model.eval()
    same = torch.equal(models["vanilla"](images), models[eval_kiti](images))

    def forward(model: torch.nn.Module) -> float:
        start = time.perf_counter()
        model(images)
        return time.perf_counter() - start

    samples = time_rounds(
        {name: functools.partial(forward, models[name]) for name in ("vanilla", eval_kiti)},
        warmup=cfg.kiti_warmup,
        rounds=cfg.kiti_rounds,
    )
    return same, samples


def _capture_block_inputs(
    model: torch.nn.Module, images: torch.Tensor, initial: dict[str, Any]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The (x, v) the train-mode ``model`` gives its last-stage KITINet calls, per block name."""
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    model.train()
    hooks = [
        block.residual.register_forward_hook(
            lambda mod, args, out, name=name: captured.__setitem__(
                name, (args[0].detach().clone(), args[1].detach().clone())
            )
        )
        for name, block in model.layer4.named_children()
    ]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    model.load_state_dict(initial)  # the capture pass moved its BN running stats
    return captured


def _time_training(
    cfg: Config, models: dict[str, torch.nn.Module], gen: torch.Generator, shape: tuple[int, ...]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Training-step seconds per variant over interleaved rounds, and the KITINet variants' mean
    collision rate of their layer4 blocks at every step."""
    # A fresh batch every step, the same sequence for every variant: on one repeated batch the
    # network memorises it within a few steps, its last-stage features bunch up and the collision
    # rate drifts far above a real training run's (0.05 % -> 7 % in 11 steps).
    batches = [
        (
            torch.randn(shape, generator=gen),
            torch.randint(0, cfg.kiti_classes, shape[:1], generator=gen),
        )
        for _ in range(cfg.kiti_warmup + cfg.kiti_rounds)
    ]
    steps: dict[str, Callable[[], float]] = {}
    for name, model in models.items():
        model.train()
        optimizer, taken = sgd(model), iter(batches)

        def step(model: torch.nn.Module = model, optimizer=optimizer, taken=taken) -> float:
            images, labels = next(taken)
            return train_step(model, optimizer, images, labels)

        steps[name] = step
    rates: dict[str, list[float]] = {name: [] for name in models if name != "vanilla"}

    def step_and_rate(name: str) -> float:
        seconds = steps[name]()
        if name in rates:
            per_block = [float(b.residual.last_collision_rate) for b in models[name].layer4]
            rates[name].append(statistics.fmean(per_block))
        return seconds

    samples = time_rounds(
        {name: functools.partial(step_and_rate, name) for name in models},
        warmup=cfg.kiti_warmup,
        rounds=cfg.kiti_rounds,
    )
    return samples, rates


def bench_kiti_resnet(cfg: Config) -> dict[str, Any]:
    """KITI-ResNet-18 vs ResNet-18: training step and eval forward ratios, collision rates."""
    from kinetics.kitinet import kitinet_collision_with_rate

    models, initial = _models(cfg)
    gen = torch.Generator().manual_seed(0)
    shape = (cfg.kiti_batch, 3, cfg.kiti_image, cfg.kiti_image)
    images = torch.randn(shape, generator=gen)

    # Eval first, from the common initial weights: KITINet in eval is x + v, bit for bit.
    eval_kiti = f"kiti_{cfg.kiti_coefs[0]}"
    same, eval_samples = _eval(cfg, models, eval_kiti, images)
    # The KITINet call alone, on the (x, v) the network gives its last-stage blocks.
    captured = _capture_block_inputs(models[eval_kiti], images, initial)
    samples, rates = _time_training(cfg, models, gen, shape)

    variants: dict[str, Any] = {}
    for name in models:
        record: dict[str, Any] = {
            "step_s": summary(samples[name]),
            "step_ratio_to_vanilla": paired_ratio(samples[name], samples["vanilla"]),
        }
        if name != "vanilla":
            record["coll_coef"] = float(name.split("_", 1)[1])
            record["collision_rate"] = statistics.fmean(rates[name])
            record["collision_rate_range"] = [min(rates[name]), max(rates[name])]
        variants[name] = record
        print(
            f"[kiti-resnet] {name}: {record['step_s']['median'] * 1e3:.0f} ms/step, "
            f"x{record['step_ratio_to_vanilla']['median']:.4f} of vanilla",
            flush=True,
        )

    calls = []
    for coef in cfg.kiti_coefs:
        for block, (x, v) in captured.items():
            calls.append(_kitinet_call_record(cfg, x, v, coef, block, kitinet_collision_with_rate))
    eval_ratio = paired_ratio(eval_samples[eval_kiti], eval_samples["vanilla"])
    print(f"[kiti-resnet] eval x{eval_ratio['median']:.4f}, bitwise equal: {same}", flush=True)
    return {
        "model": "cifar_resnet18 (CIFAR stem), KITINet in layer4",
        "batch": cfg.kiti_batch,
        "image": cfg.kiti_image,
        "base_width": cfg.kiti_base_width,
        "collision_heads": cfg.kiti_heads,
        "warmup_rounds": cfg.kiti_warmup,
        "rounds": cfg.kiti_rounds,
        "target": cfg.kiti_target,
        "eval_noise": cfg.kiti_eval_noise,
        "eval_model": eval_kiti,
        "eval_bitwise_equal": same,
        "eval_s": {name: summary(values) for name, values in eval_samples.items()},
        "eval_ratio": eval_ratio,
        "variants": variants,
        "calls": calls,
    }


def _kitinet_call_record(
    cfg: Config,
    x: torch.Tensor,
    v: torch.Tensor,
    coef: float,
    block: str,
    fn: Callable[..., tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, Any]:
    """Forward and forward+backward time of one KITINet call on captured block inputs."""
    x2 = x.reshape(x.shape[0], -1).requires_grad_()
    v2 = v.reshape(v.shape[0], -1).requires_grad_()
    grad = torch.ones_like(x2)

    def call(backward: bool) -> float:
        start = time.perf_counter()
        out, _ = fn(x2, v2, collision_heads=cfg.kiti_heads, coll_coef=coef)
        if backward:
            x2.grad = v2.grad = None
            out.backward(grad)
        return time.perf_counter() - start

    samples = time_rounds(
        {
            "forward": functools.partial(call, False),
            "forward+backward": functools.partial(call, True),
        },
        warmup=1,
        rounds=max(3, cfg.kiti_rounds),
    )
    with torch.no_grad():
        _, rate = fn(x2, v2, collision_heads=cfg.kiti_heads, coll_coef=coef)
    return {
        "block": f"layer4.{block}",
        "coll_coef": coef,
        "shape": list(x2.shape),
        "collision_rate": float(rate),
        "time_s": {name: summary(values) for name, values in samples.items()},
    }
