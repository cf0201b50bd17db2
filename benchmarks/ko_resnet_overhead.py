"""Section 6: KO step overhead for CIFAR ResNet-18/34/50 x {SGD, +S.C., +H.C.} (KO Tables 4-5 analog).

CIFAR stem, CIFAR-100 head, KineticOptimizer on ``fc``: training-step time (median of per-round
paired ratios to SGD) and peak extra memory of one step (profiler allocation events).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.measure import paired_ratio, sgd, summary, time_rounds, train_step
from benchmarks.memory import profile_call

__all__ = ["bench_ko_resnets"]


def bench_ko_resnets(cfg: Config) -> list[dict[str, Any]]:
    """SGD vs KineticOptimizer soft / hard on the head: step time and peak memory ratios."""
    from experiments.vision import models as vision
    from kinetics import KineticOptimizer

    rows = []
    for model_name, batch in cfg.ko_models:
        torch.manual_seed(0)
        base = getattr(vision, model_name)(num_classes=cfg.ko_classes, base_width=cfg.ko_base_width)
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, cfg.ko_image, cfg.ko_image, generator=gen)
        labels = torch.randint(0, cfg.ko_classes, (batch,), generator=gen)
        setups: dict[str, tuple[torch.nn.Module, Any]] = {}
        for variant in ("sgd", "soft", "hard"):
            model = copy.deepcopy(base).train()
            opt: Any = sgd(model)
            if variant != "sgd":
                opt = KineticOptimizer(opt, {"fc": model.fc}, variant, cfg.ko_coef, seed=0)
            setups[variant] = (model, opt)
        steps = {
            name: functools.partial(train_step, model, opt, images, labels)
            for name, (model, opt) in setups.items()
        }
        samples = time_rounds(steps, warmup=cfg.ko_warmup, rounds=cfg.ko_rounds)
        # Peak extra memory of one step (profiler allocation events, see profile_call).
        peaks = {name: profile_call(fn)[0] for name, fn in steps.items()}
        row: dict[str, Any] = {
            "model": model_name,
            "batch": batch,
            "coll_coef": cfg.ko_coef,
            "variants": {},
        }
        for name in setups:
            row["variants"][name] = {
                "step_s": summary(samples[name]),
                "step_ratio_to_sgd": paired_ratio(samples[name], samples["sgd"]),
                "peak_bytes": peaks[name],
                "peak_ratio_to_sgd": peaks[name] / max(peaks["sgd"], 1),
                "collision_rates": dict(getattr(setups[name][1], "collision_rates", {}) or {}),
            }
        rows.append(row)
        print(
            f"[ko-resnets] {model_name} b{batch}: "
            + ", ".join(
                f"{k} x{v['step_ratio_to_sgd']['median']:.4f} time, x{v['peak_ratio_to_sgd']:.3f} mem"
                for k, v in row["variants"].items()
            ),
            flush=True,
        )
    return rows
