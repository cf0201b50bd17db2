"""Section 7: a MiniLM-L6 sequence classifier's training step, AdamW vs KO vs KITINet (issue 11).

``BertForSequenceClassification`` at all-MiniLM-L6-v2's shape (6 layers x 384, 12 heads, FFN 1536,
vocabulary 30522, 2 labels) built from a transformers config with random weights, batches of random
token ids. One training step (forward, loss, backward, AdamW step, zero_grad) of each variant, all
from the same initial weights, timed in one interleaved run (each round in its own random order):

* ``vanilla``: AdamW alone;
* ``soft`` / ``hard``: KineticOptimizer on ``classifier`` (the mini-text runs' KO);
* ``kiti``: KITINet after self-attention in the final layer (``kinetics.hf.insert_kitinet``, the
  mini-text KITI row's settings), with the collision rate its module met at every step;
* ``kiti_pretrained``: only when the local copy of all-MiniLM-L6-v2 exists (``make text-data``):
  the same KITI model at the pretrained weights, whose collision rate is the one fine-tuning
  starts from. Dense compute does not depend on the weights' values, so its ratio to the random
  vanilla step isolates what the higher rate costs.

Plus a direct estimate of each overhead, since on a loaded machine the whole-step ratio spreads
by ~10% and cannot resolve 1-5%: the KO collision call alone on the head's real weight and gradient,
and the KITINet call alone (forward + backward) net of the ``x + v`` it replaces, on the inputs the
model gives its module, each as a fraction of the median vanilla step. Also the peak extra memory of
one step (profiler allocation events), and the eval forward of the KITI model against vanilla (time
ratio; logits bitwise equal, as KITINet in eval is exactly ``x + v``).
"""

from __future__ import annotations

import copy
import functools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.config import Config
from benchmarks.measure import data_dir, paired_ratio, repo_relative, summary, time_interleaved
from benchmarks.memory import profile_call

__all__ = ["MINILM_L6", "bench_text", "pretrained_dir"]

# all-MiniLM-L6-v2's architecture (its config.json), as a 2-label sequence classifier.
MINILM_L6: dict[str, int] = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "num_labels": 2,
}
_KO = ("soft", "hard")
_SITES = ("attn",)
_LAYERS = (-1,)


@dataclass
class _Setup:
    """One variant: its model, optimizer, batch stream, and the rates its KITINet modules met."""

    model: nn.Module
    optimizer: Any
    generator: torch.Generator
    kitinet: list[nn.Module] = field(default_factory=list)
    rates: list[Tensor] = field(default_factory=list)


def pretrained_dir(cfg: Config) -> Path | None:
    """The local all-MiniLM-L6-v2 under the data dir (``$KINETICS_DATA_DIR``, else ``data/``), or
    None when it is absent or not asked for."""
    if cfg.text_pretrained is None:
        return None
    path = data_dir() / cfg.text_pretrained
    return path if (path / "config.json").is_file() else None


def _random_model() -> nn.Module:
    """MiniLM-L6 classifier with random weights (seed 0), from a config alone: no download."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**MINILM_L6))


def _pretrained_model(path: Path) -> nn.Module:
    """all-MiniLM-L6-v2 from ``path`` with a new random 2-label head (seed 0)."""
    from experiments.text.models import hf_classifier

    torch.manual_seed(0)
    return hf_classifier(str(path), num_labels=MINILM_L6["num_labels"])


def _setup(cfg: Config, model: nn.Module, variant: str) -> _Setup:
    """``model`` in train mode with the variant's optimizer (and KITINet for the KITI ones)."""
    from kinetics import KineticOptimizer
    from kinetics.hf import insert_kitinet

    model.train()
    opt: Any = torch.optim.AdamW(
        model.parameters(), lr=cfg.text_lr, weight_decay=cfg.text_weight_decay
    )
    kitinet: list[nn.Module] = []
    if variant in _KO:
        coef = dict(cfg.text_ko_coefs)[variant]
        opt = KineticOptimizer(opt, {"classifier": model.classifier}, variant, coef, seed=0)
    elif variant.startswith("kiti"):
        kitinet = list(
            insert_kitinet(
                model,
                collision_heads=cfg.text_kiti_heads,
                coll_coef=cfg.text_kiti_coef,
                sites=_SITES,
                layers=list(_LAYERS),
            )
        )
    # Every variant draws the same sequence of batches: a fresh batch per step, so the model does
    # not memorise one batch (which would move its features, and the collision rate, step by step).
    return _Setup(model, opt, torch.Generator().manual_seed(1), kitinet)


def _setups(cfg: Config) -> dict[str, _Setup]:
    """Every variant, from one set of random initial weights (``kiti_pretrained``: the local
    pretrained copy, when there is one)."""
    base = _random_model()
    setups = {name: _setup(cfg, copy.deepcopy(base), name) for name in ("vanilla", *_KO, "kiti")}
    path = pretrained_dir(cfg)
    if path is not None:
        setups["kiti_pretrained"] = _setup(cfg, _pretrained_model(path), "kiti_pretrained")
    return setups


def _batch(cfg: Config, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random token ids (batch, seq) and labels; no padding, so no attention mask."""
    ids = torch.randint(
        0, MINILM_L6["vocab_size"], (cfg.text_batch, cfg.text_seq), generator=generator
    )
    labels = torch.randint(0, MINILM_L6["num_labels"], (cfg.text_batch,), generator=generator)
    return ids, labels


def _train_step(cfg: Config, setup: _Setup) -> None:
    """Forward, cross-entropy, backward, optimizer step, zero_grad; keeps the KITINet rates."""
    ids, labels = _batch(cfg, setup.generator)
    F.cross_entropy(setup.model(input_ids=ids).logits, labels).backward()
    setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    # The 0-d rate tensors, not floats: no host conversion inside the timed step.
    setup.rates.extend(m.last_collision_rate for m in setup.kitinet)


@torch.no_grad()
def _eval(cfg: Config, vanilla: nn.Module, kiti: nn.Module) -> tuple[bool, dict[str, list[float]]]:
    """Whether eval logits of ``vanilla`` and ``kiti`` are bitwise equal; eval forward seconds.

    Run before any training step: the two models must still hold the same weights."""
    ids, _ = _batch(cfg, torch.Generator().manual_seed(2))
    vanilla.eval()
    kiti.eval()
    try:
        same = torch.equal(vanilla(input_ids=ids).logits, kiti(input_ids=ids).logits)
        samples = time_interleaved(
            {
                "vanilla": functools.partial(vanilla, input_ids=ids),
                "kiti": functools.partial(kiti, input_ids=ids),
            },
            repeats=cfg.text_eval_rounds,
            warmup=1,
            sample_seconds=0.0,  # one forward per sample: a forward takes a second or more
            shuffle=True,
        )
    finally:
        vanilla.train()
        kiti.train()
    return same, samples


def _collision_calls(cfg: Config, setups: dict[str, _Setup]) -> dict[str, list[float]]:
    """Seconds of the KO collision alone on the head's real weight and gradient (one backward of
    the vanilla model on a fresh batch gives the gradient)."""
    from kinetics import hard_collision, soft_collision

    model = setups["vanilla"].model
    ids, labels = _batch(cfg, torch.Generator().manual_seed(3))
    F.cross_entropy(model(input_ids=ids).logits, labels).backward()
    weight = model.classifier.weight.detach()
    grad = model.classifier.weight.grad.detach().clone()
    model.zero_grad(set_to_none=True)
    coefs = dict(cfg.text_ko_coefs)
    gen = torch.Generator().manual_seed(0)
    fns: dict[str, Callable[[], object]] = {
        "soft": lambda: soft_collision(weight, grad, coefs["soft"]),
        "hard": lambda: hard_collision(weight, grad, coefs["hard"], generator=gen),
    }
    return time_interleaved(
        fns,
        repeats=max(5, cfg.repeats),
        warmup=3,
        sample_seconds=cfg.sample_seconds,
        shuffle=True,
    )


def _capture_kitinet_inputs(cfg: Config, setup: _Setup) -> tuple[Tensor, Tensor]:
    """The (x, v) the train-mode model gives its KITINet module on a fresh batch, as (S, D)."""
    captured: dict[str, Tensor] = {}

    def keep(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        captured["x"], captured["v"] = args[0].detach().clone(), args[1].detach().clone()

    hook = setup.kitinet[0].register_forward_hook(keep)
    try:
        ids, _ = _batch(cfg, torch.Generator().manual_seed(4))
        with torch.no_grad():
            setup.model(input_ids=ids)
    finally:
        hook.remove()
    width = captured["x"].shape[-1]  # one system per token, as the module collides them
    return captured["x"].reshape(-1, width), captured["v"].reshape(-1, width)


def _kitinet_calls(cfg: Config, setup: _Setup) -> dict[str, Any]:
    """The KITINet call alone (forward + backward) against ``x + v`` on the inputs the model gives
    its module: the whole-step ratio is too noisy here to resolve a few %."""
    from kinetics.kitinet import kitinet_collision_with_rate

    x, v = (t.requires_grad_() for t in _capture_kitinet_inputs(cfg, setup))
    ones = torch.ones_like(x)
    settings = {"collision_heads": cfg.text_kiti_heads, "coll_coef": cfg.text_kiti_coef}

    def call(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        x.grad = v.grad = None
        fn(x, v).backward(ones)

    samples = time_interleaved(
        {
            "kitinet": lambda: call(lambda a, b: kitinet_collision_with_rate(a, b, **settings)[0]),
            "add": lambda: call(torch.add),
        },
        repeats=max(5, cfg.repeats),
        warmup=2,
        sample_seconds=cfg.sample_seconds,
        shuffle=True,
    )
    with torch.no_grad():
        _, rate = kitinet_collision_with_rate(x, v, **settings)
    return {
        "shape": list(x.shape),
        "collision_rate": float(rate),
        "kitinet_s": summary(samples["kitinet"]),
        "add_s": summary(samples["add"]),
    }


def _direct(cfg: Config, setups: dict[str, _Setup], step_s: float) -> dict[str, dict[str, Any]]:
    """Per variant but vanilla, the collision alone timed on its real inputs, as a fraction of the
    median vanilla step ``step_s`` (KITINet: net of the ``x + v`` it replaces)."""
    direct: dict[str, dict[str, Any]] = {}
    ko = _collision_calls(cfg, setups)
    for name in _KO:
        direct[name] = {
            "collision_call_s": summary(ko[name]),
            "collision_fraction_of_step": statistics.median(ko[name]) / step_s,
        }
    for name, setup in setups.items():
        if setup.kitinet:
            call = _kitinet_calls(cfg, setup)
            extra = call["kitinet_s"]["median"] - call["add_s"]["median"]
            direct[name] = {"kitinet_call": call, "collision_fraction_of_step": extra / step_s}
    return direct


def _rate_record(rates: list[Tensor]) -> dict[str, Any]:
    """Mean, [min, max] and count of the per-step collision rates (accepted / candidate pairs)."""
    values = [float(r) for r in rates]
    return {
        "collision_rate": statistics.fmean(values),
        "collision_rate_range": [min(values), max(values)],
        "collision_rate_steps": len(values),
    }


def _variant_record(
    cfg: Config,
    name: str,
    setup: _Setup,
    steps: dict[str, list[float]],
    peaks: dict[str, int],
    direct: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Times, ratio to vanilla, verdicts, peak memory and what collided, for one variant."""
    ratio = paired_ratio(steps[name], steps["vanilla"])
    target = dict(cfg.text_targets).get("kiti" if name.startswith("kiti") else name)
    record: dict[str, Any] = {
        "step_s": summary(steps[name]),
        "step_ratio_to_vanilla": ratio,
        "target": target,
        "within_target": None if target is None else ratio["median"] <= target,
        "peak_bytes": peaks[name],
        "peak_ratio_to_vanilla": peaks[name] / max(peaks["vanilla"], 1),
    }
    if name in direct:
        record.update(direct[name])
        record["direct_ratio"] = 1.0 + record["collision_fraction_of_step"]
        record["direct_within_target"] = target is not None and record["direct_ratio"] <= target
    if name in _KO:
        record["coll_coef"] = dict(cfg.text_ko_coefs)[name]
        record["collision_rates"] = dict(getattr(setup.optimizer, "collision_rates", {}) or {})
    elif setup.kitinet:
        record.update(_rate_record(setup.rates))
        record["weights"] = "pretrained" if name == "kiti_pretrained" else "random"
    return record


def bench_text(cfg: Config) -> dict[str, Any]:
    """MiniLM-L6 classifier step: AdamW vs KO soft / hard on the head vs KITINet in the last layer;
    eval forward and logits of KITI vs vanilla."""
    setups = _setups(cfg)
    # Eval first, while vanilla and kiti still share their initial weights.
    same, eval_samples = _eval(cfg, setups["vanilla"].model, setups["kiti"].model)
    steps = time_interleaved(
        {name: functools.partial(_train_step, cfg, setup) for name, setup in setups.items()},
        repeats=cfg.text_rounds,
        warmup=cfg.text_warmup,
        sample_seconds=0.0,  # one step per sample: a step takes seconds
        shuffle=True,
    )
    # Peak extra memory of one more step each (after timing: the profiler slows every op).
    peaks = {
        name: profile_call(functools.partial(_train_step, cfg, setup))[0]
        for name, setup in setups.items()
    }
    direct = _direct(cfg, setups, statistics.median(steps["vanilla"]))
    variants = {
        name: _variant_record(cfg, name, setup, steps, peaks, direct)
        for name, setup in setups.items()
    }
    for name, rec in variants.items():
        rate = f", collision rate {rec['collision_rate']:.3%}" if "collision_rate" in rec else ""
        alone = f" (direct x{rec['direct_ratio']:.4f})" if "direct_ratio" in rec else ""
        print(
            f"[text] {name}: {rec['step_s']['median'] * 1e3:.0f} ms/step, "
            f"x{rec['step_ratio_to_vanilla']['median']:.4f} of vanilla{alone}{rate}",
            flush=True,
        )
    eval_ratio = paired_ratio(eval_samples["kiti"], eval_samples["vanilla"])
    print(f"[text] eval x{eval_ratio['median']:.4f}, bitwise equal: {same}", flush=True)
    return {
        "model": "BertForSequenceClassification, all-MiniLM-L6-v2 shape, random weights",
        "architecture": dict(MINILM_L6),
        "batch": cfg.text_batch,
        "seq_len": cfg.text_seq,
        "optimizer": {"name": "AdamW", "lr": cfg.text_lr, "weight_decay": cfg.text_weight_decay},
        "kitinet": {
            "collision_heads": cfg.text_kiti_heads,
            "coll_coef": cfg.text_kiti_coef,
            "sites": list(_SITES),
            "layers": list(_LAYERS),
        },
        "pretrained": None
        if "kiti_pretrained" not in setups
        else repo_relative(pretrained_dir(cfg)),
        "warmup_rounds": cfg.text_warmup,
        "rounds": cfg.text_rounds,
        "targets": dict(cfg.text_targets),
        "variants": variants,
        "eval_rounds": cfg.text_eval_rounds,
        "eval_target": 1.0,
        "eval_noise": cfg.text_eval_noise,
        "eval_s": {name: summary(values) for name, values in eval_samples.items()},
        "eval_ratio": eval_ratio,
        "eval_within_noise": eval_ratio["median"] <= cfg.text_eval_noise,
        "eval_bitwise_equal": same,
    }
