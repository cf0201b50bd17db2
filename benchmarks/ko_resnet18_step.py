"""Section 4: one ResNet-18 training step with SGD against KineticOptimizer soft / hard on ``fc``.

torchvision ``resnet18(num_classes=100)``; the variants' steps rotate step by step. Three estimates
of the overhead: the whole-step ratio, the collision call timed alone on the head's real weight and
gradient, and the difference of median optimizer-step times (SPEC §5 targets: ≤ 1 % soft, ≤ 2 %
hard).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.config import Config
from benchmarks.measure import accepted_pairs, paired_ratio, summary, time_interleaved

__all__ = ["bench_e2e"]

_VARIANTS = ("sgd", "soft", "hard")


def _setups(cfg: Config) -> dict[str, tuple[torch.nn.Module, Any]]:
    """{variant: (model, optimizer)}: copies of one initial ResNet-18, KO on the head or not."""
    import torchvision

    from kinetics import KineticOptimizer

    torch.manual_seed(0)
    base = torchvision.models.resnet18(num_classes=cfg.e2e_classes)
    setups: dict[str, tuple[torch.nn.Module, Any]] = {}
    for name in _VARIANTS:
        model = copy.deepcopy(base).train()
        opt: Any = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        if name != "sgd":
            opt = KineticOptimizer(opt, {"fc": model.fc}, name, cfg.e2e_coef, seed=0)
        setups[name] = (model, opt)
    return setups


def _time_steps(
    cfg: Config,
    setups: dict[str, tuple[torch.nn.Module, Any]],
    images: torch.Tensor,
    labels: torch.Tensor,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Whole step, forward+backward and optimizer-step seconds of every timed step, per variant."""

    def step(name: str) -> tuple[float, float, float]:
        model, opt = setups[name]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        return t2 - t0, t1 - t0, t2 - t1

    names = list(setups)
    for _ in range(cfg.e2e_warmup):
        for name in names:
            step(name)
    steps: dict[str, list[float]] = {name: [] for name in names}
    fwd_bwd: dict[str, list[float]] = {name: [] for name in names}
    opt_step: dict[str, list[float]] = {name: [] for name in names}
    for r in range(cfg.e2e_steps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            total, fb, os_ = step(name)
            steps[name].append(total)
            fwd_bwd[name].append(fb)
            opt_step[name].append(os_)
    return steps, fwd_bwd, opt_step


def bench_e2e(cfg: Config) -> dict[str, Any]:
    """ResNet-18 (torchvision, num_classes=100) step: SGD vs KineticOptimizer soft / hard on fc."""
    from kinetics import hard_collision, soft_collision

    setups = _setups(cfg)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(cfg.e2e_batch, 3, cfg.e2e_image, cfg.e2e_image, generator=gen)
    labels = torch.randint(0, cfg.e2e_classes, (cfg.e2e_batch,), generator=gen)
    steps, fwd_bwd, opt_step = _time_steps(cfg, setups, images, labels)

    # The gradient edit alone, on the real head weight and gradient of the last step.
    fc = setups["hard"][0].fc
    weight, grad = fc.weight.detach(), fc.weight.grad.detach().clone()
    coll_gen = torch.Generator().manual_seed(0)
    direct = time_interleaved(
        {
            "soft": lambda: soft_collision(weight, grad, cfg.e2e_coef),
            "hard": lambda: hard_collision(weight, grad, cfg.e2e_coef, generator=coll_gen),
            # Worst case for this head: coll_coef 1 accepts every pair with a positive score.
            "hard_coef1": lambda: hard_collision(weight, grad, 1.0, generator=coll_gen),
        },
        repeats=max(5, cfg.repeats),
        warmup=3,
        sample_seconds=cfg.sample_seconds,
    )
    sgd_step = statistics.median(steps["sgd"])
    variants = {}
    for name in setups:
        record: dict[str, Any] = {
            "step_s": summary(steps[name]),
            "fwd_bwd_s": summary(fwd_bwd[name]),
            "opt_step_s": summary(opt_step[name]),
            "step_ratio_to_sgd": paired_ratio(steps[name], steps["sgd"]),
            "final_loss": float(F.cross_entropy(setups[name][0](images), labels).detach()),
        }
        if name != "sgd":
            call = statistics.median(direct[name])
            record["collision_call_s"] = summary(direct[name])
            record["collision_fraction_of_step"] = call / sgd_step
            record["opt_step_overhead_s"] = statistics.median(opt_step[name]) - statistics.median(
                opt_step["sgd"]
            )
            record["opt_step_overhead_fraction_of_step"] = record["opt_step_overhead_s"] / sgd_step
            record["collision_rates"] = dict(getattr(setups[name][1], "collision_rates", {}) or {})
        variants[name] = record
        print(
            f"[e2e] {name}: {record['step_s']['median'] * 1e3:.1f} ms/step, "
            f"x{record['step_ratio_to_sgd']['median']:.4f} of SGD",
            flush=True,
        )
    return {
        "model": f"torchvision resnet18(num_classes={cfg.e2e_classes})",
        "hard_worst_case": _worst_case(weight, grad, direct["hard_coef1"], sgd_step),
        "batch": cfg.e2e_batch,
        "image": cfg.e2e_image,
        "coll_coef": cfg.e2e_coef,
        "fc_shape": list(fc.weight.shape),
        "warmup_steps": cfg.e2e_warmup,
        "timed_steps": cfg.e2e_steps,
        "targets": dict(cfg.e2e_targets),
        "variants": variants,
    }


def _worst_case(
    weight: torch.Tensor, grad: torch.Tensor, samples: list[float], sgd_step: float
) -> dict[str, Any]:
    """Hard collision at coll_coef 1 on the head: accepted pairs and cost relative to the step."""
    accepted_coef1, pairs = accepted_pairs(weight[None], grad[None], 1.0)
    return {
        "coll_coef": 1.0,
        "accepted_pairs": accepted_coef1,
        "pairs": pairs,
        "collision_call_s": summary(samples),
        "collision_fraction_of_step": statistics.median(samples) / sgd_step,
    }
