"""Section 8: language models at the mini-lm settings (issue 12): our training loop against a bare
PyTorch loop, KITI-GPT-2 against GPT-2, KO soft on a tiny Qwen2's last layer against AdamW.

Models and data are those of ``make mini-lm`` (configs/experiment/mini/lm_table1.yaml and
lm_ko_table6.yaml): GPT-2 4 layers x 256, 4 heads, 256 positions; a tiny Qwen2 4 x 256, 4 heads,
2 KV heads, FFN 1024; batches of 8 windows of 256 tokens of the mini Wikipedia text
(``data/lm/mini_wiki``, its 8,192-token BPE; when it is absent, random tokens of the same shape
and vocabulary), fp32 on the CPU, AdamW(lr 1e-3, betas (0.9, 0.95), weight decay 0.1), gradients
clipped to norm 1; no lr schedule. The variants of a comparison start from the same weights and
see the same batch sequence (train windows in a fixed random order) with the same dropout masks.

1. **Loop overhead**: N optimizer steps through :func:`experiments.engine.loop.fit` (with the
   callbacks a run gets, :func:`experiments.runner.build_callbacks`; progress off) against a bare
   loop written here (``zero_grad``, forward, loss, backward, ``clip_grad_norm_``, AdamW step, the
   order ``fit`` uses) on the same N batches, in shuffled interleaved rounds. Ours is timed by the
   loop's own Throughput record (its interval runs from after the initial evaluation to the last
   step; the bare runs get the same untimed eval forward first); ratio of tokens/s, target >=
   0.97. All loops end with bitwise equal weights (checked): they did the same work. For
   information, the bare loop with ``zero_grad`` after the optimizer step: the same arithmetic
   with the gradients freed at another point, measured a few % slower here. **Direct**: ours and the bare loop on a tiny
   GPT-2 whose step takes milliseconds; their per-step difference is the loop's bookkeeping, set
   against the bare GPT-2 step.
2. **KITI-GPT-2** (KITINet replacing the residual after attention in every block, collision_heads
   4, coll_coef 0.2, as mini-lm) against GPT-2: the training step ratio (target <= 1.05) and each site's
   collision rate over the timed steps; **direct**: the KITINet modules called alone (forward +
   backward) on the inputs the model gives them, net of the ``x + v`` they replace, over the
   vanilla step; the eval forward ratio (target 1.00, within a noise band) and whether the eval
   logits equal GPT-2's bit for bit at the same weights (KITINet in eval is exactly ``x + v``).
3. **KO soft** (coll_coef 0.1) on every weight matrix of the tiny Qwen2's last decoder layer
   (``select_modules(model, "last_block")``, a KineticOptimizer wrapping AdamW, as the runner
   builds it) against AdamW alone: the step ratio (target <= 1.02; KO App. B.3: ~3.3%) and the
   **direct** estimate, the optimizer's ``collide_gradients()`` alone on real gradients over the
   vanilla step.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.config import Config
from benchmarks.measure import (
    data_dir,
    paired_ratio,
    repo_relative,
    summary,
    time_interleaved,
    time_rounds,
)

__all__ = ["bench_lm", "lm_data_dir"]

CPU = torch.device("cpu")
_KITI_SITES = ("attn",)
_KO_MODULES = "last_block"
# The tiny GPT-2 of the loop's direct estimate: its step costs ~1 ms, so the loops' difference
# per step is their bookkeeping.
_TINY_GPT2 = {"n_layer": 1, "n_embd": 16, "n_head": 2}


# --------------------------------------------------------------------------------------------
# data, models, the step


@dataclass
class _Batches:
    """Batch k = ``size`` train windows of a fixed random order (cycled): the same sequence for
    every variant that asks for batch k."""

    windows: Any  # experiments.lm.data.TokenWindows
    order: Tensor
    size: int

    def __call__(self, k: int) -> tuple[Tensor, Tensor]:
        n = len(self.order)
        pairs = [self.windows[int(self.order[(k * self.size + i) % n])] for i in range(self.size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def lm_data_dir(cfg: Config) -> Path | None:
    """The prepared mini-lm token data under the data dir, or None when absent or not asked for."""
    if cfg.lm_data is None:
        return None
    path = data_dir() / cfg.lm_data
    return path if (path / "index.json").is_file() else None


def _data(cfg: Config, seq_len: int) -> Any:
    """The mini-lm data cut into ``seq_len`` windows (an ``LMData``, the runner's task), or random
    tokens of ``cfg.lm_vocab`` in the same form."""
    from experiments.lm.data import LMData, TokenWindows, lm_tokens

    path = lm_data_dir(cfg)
    if path is not None:
        return lm_tokens(str(path), seq_len=seq_len)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.lm_vocab, (cfg.lm_random_windows * seq_len + 1,), generator=gen)
    windows = TokenWindows(_InMemorySplit(tokens.numpy().astype(np.int64)), seq_len)
    return LMData(windows, windows, cfg.lm_vocab, 0, "random tokens", Path())


@dataclass
class _InMemorySplit:
    """Tokens in memory with the reading interface of :class:`experiments.lm.shards.TokenSplit`."""

    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    def window(self, start: int, length: int) -> np.ndarray:
        return self.tokens[start : start + length].copy()


def _batches(data: Any, size: int) -> _Batches:
    """The data's train windows in a fixed random order (seed 0), ``size`` per batch."""
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    return _Batches(data.train, order, size)


def _model(name: str, config: dict[str, Any], data: Any) -> nn.Module:
    """A causal LM of the registered architecture ``name`` with ``config``'s overrides and the
    data's vocabulary, random weights (seed 0), in train mode."""
    from experiments.lm.models import ARCHITECTURES, causal_lm

    torch.manual_seed(0)
    model = causal_lm(
        ARCHITECTURES[name], config=config, vocab_size=data.vocab_size, eos_id=data.eos_id
    )
    return model.train()


def _gpt2_config(cfg: Config) -> dict[str, Any]:
    """mini/lm_table1's GPT-2 shape."""
    return {
        "n_layer": cfg.lm_layers,
        "n_embd": cfg.lm_width,
        "n_head": cfg.lm_heads,
        "n_positions": cfg.lm_seq,
    }


def _qwen2_config(cfg: Config) -> dict[str, Any]:
    """mini/lm_ko_table6's tiny Qwen2 shape."""
    return {
        "num_hidden_layers": cfg.lm_layers,
        "hidden_size": cfg.lm_width,
        "num_attention_heads": cfg.lm_heads,
        "num_key_value_heads": cfg.lm_kv_heads,
        "intermediate_size": cfg.lm_qwen_ffn,
        "max_position_embeddings": cfg.lm_seq,
    }


def _adamw(cfg: Config, model: nn.Module) -> torch.optim.AdamW:
    """The mini-lm recipe's AdamW (one parameter group: the cost is the same)."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=cfg.lm_lr,
        betas=tuple(cfg.lm_betas),  # type: ignore[arg-type]
        weight_decay=cfg.lm_weight_decay,
    )


def _step(
    cfg: Config,
    model: nn.Module,
    optimizer: Any,
    inputs: Tensor,
    targets: Tensor,
    zero_grad_last: bool = False,
) -> None:
    """The bare training step: zero_grad, forward, loss, backward, clip, optimizer step (the
    order ``fit`` uses); ``zero_grad_last``: zero_grad after the step instead."""
    if not zero_grad_last:
        optimizer.zero_grad(set_to_none=True)
    logits = model(inputs).logits
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    nn.utils.clip_grad_norm_(model.parameters(), cfg.lm_grad_clip)
    optimizer.step()
    if zero_grad_last:
        optimizer.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------
# 1. loop overhead

# The loops compared: ours (fit), the bare loop, and for information the bare loop with
# zero_grad after the optimizer step (an order that changes how the allocator reuses memory).
_LOOPS = ("ours", "bare", "bare_zero_grad_last")


@dataclass
class _Loop:
    """One of the loops under comparison: its model, optimizer, batches and runs so far."""

    model: nn.Module
    optimizer: Any
    batches: _Batches
    steps: int
    runs: int = 0

    def next_batches(self) -> list[tuple[Tensor, Tensor]]:
        """Run r's ``steps`` batches; seeds the dropout masks alike for every loop's run r."""
        first = self.runs * self.steps
        self.runs += 1
        torch.manual_seed(self.runs)
        return [self.batches(first + i) for i in range(self.steps)]


@torch.no_grad()
def _eval_forward(model: nn.Module, inputs: Tensor) -> None:
    """One eval-mode forward (as an evaluation makes), back in train mode after."""
    model.eval()
    try:
        model(inputs)
    finally:
        model.train()


def _bare_run(cfg: Config, loop: _Loop, zero_grad_last: bool = False) -> float:
    """Seconds of ``loop.steps`` bare steps, after (untimed) the one-batch eval forward that
    ``fit``'s initial record makes before its timed interval: both start in the same state."""
    batches = loop.next_batches()
    _eval_forward(loop.model, batches[0][0])
    start = time.perf_counter()
    for inputs, targets in batches:
        _step(cfg, loop.model, loop.optimizer, inputs, targets, zero_grad_last)
    return time.perf_counter() - start


def _fit_run(cfg: Config, loop: _Loop, task: Any) -> float:
    """Seconds of ``loop.steps`` steps through ``fit``, from its Throughput record (the train
    interval only: the evaluations before and after on one batch are outside it)."""
    from experiments.core.config import TrainerConfig
    from experiments.engine.loop import fit
    from experiments.runner import build_callbacks

    batches = loop.next_batches()
    trainer = TrainerConfig(
        max_steps=loop.steps,
        unit="step",
        batch_size=len(batches[0][0]),
        grad_clip=cfg.lm_grad_clip,
        precision="fp32",
        progress=False,
        log_every=loop.steps,
        eval_every=loop.steps,
    )
    cost = {"units_per_sample": batches[0][0].shape[1]}  # no FLOP count: throughput alone
    callbacks = build_callbacks(loop.model, loop.optimizer, {}, CPU, cost, None)
    result = fit(
        loop.model,
        loop.optimizer,
        task,
        batches,
        batches[:1],
        trainer,
        device=CPU,
        callbacks=callbacks,
    )
    tokens = sum(targets.numel() for _, targets in batches)
    return tokens / result.final["throughput"]


def _time_loops(
    cfg: Config, model: nn.Module, data: Any, batch: int, steps: int, names: tuple[str, ...]
) -> dict[str, Any]:
    """Interleaved runs of the loops ``names``, each on its own copy of ``model``; whether they
    all end with bitwise equal weights."""
    loops = {
        name: _Loop(copy.deepcopy(model), None, _batches(data, batch), steps) for name in names
    }
    for loop in loops.values():
        loop.optimizer = _adamw(cfg, loop.model)
    runs: dict[str, Callable[[], float]] = {
        "ours": functools.partial(_fit_run, cfg, loops["ours"], data),
        "bare": functools.partial(_bare_run, cfg, loops["bare"]),
    }
    if "bare_zero_grad_last" in loops:
        runs["bare_zero_grad_last"] = functools.partial(
            _bare_run, cfg, loops["bare_zero_grad_last"], zero_grad_last=True
        )
    samples = time_rounds(runs, warmup=1, rounds=cfg.lm_loop_rounds, shuffle=True)
    reference = list(loops["ours"].model.parameters())
    same = all(
        torch.equal(a, b)
        for loop in loops.values()
        for a, b in zip(reference, loop.model.parameters(), strict=True)
    )
    return {"samples": samples, "same_weights": same}


def _tiny_overhead(cfg: Config, tiny_data: Any) -> dict[str, Any]:
    """The loops' per-step difference on the tiny GPT-2: the loop's bookkeeping."""
    config = {**_TINY_GPT2, "n_positions": cfg.lm_tiny_seq}
    model = _model("gpt2", config, tiny_data)
    timed = _time_loops(
        cfg, model, tiny_data, cfg.lm_tiny_batch, cfg.lm_tiny_steps, ("ours", "bare")
    )
    ours, bare = timed["samples"]["ours"], timed["samples"]["bare"]
    per_step = [(a - b) / cfg.lm_tiny_steps for a, b in zip(ours, bare, strict=True)]
    return {
        "config": config,
        "batch": cfg.lm_tiny_batch,
        "seq_len": cfg.lm_tiny_seq,
        "steps_per_run": cfg.lm_tiny_steps,
        "run_s": {name: summary(values) for name, values in timed["samples"].items()},
        "overhead_per_step_s": summary(per_step),
        "same_weights": timed["same_weights"],
    }


def _loop_overhead(cfg: Config, data: Any, tiny_data: Any) -> dict[str, Any]:
    """Tokens/s of ``fit`` and of the bare loops on the mini-lm GPT-2, the ratios, and the
    direct estimate from the tiny GPT-2."""
    tokens = cfg.lm_batch * cfg.lm_seq * cfg.lm_loop_steps
    model = _model("gpt2", _gpt2_config(cfg), data)
    gpt2 = _time_loops(cfg, model, data, cfg.lm_batch, cfg.lm_loop_steps, _LOOPS)
    samples = gpt2["samples"]
    tiny = _tiny_overhead(cfg, tiny_data)
    bare_step = statistics.median(samples["bare"]) / cfg.lm_loop_steps
    direct = 1.0 / (1.0 + tiny["overhead_per_step_s"]["median"] / bare_step)
    # tokens/s of a loop over the bare loop's = the bare loop's time over its time
    ratio = paired_ratio(samples["bare"], samples["ours"])
    return {
        "steps_per_run": cfg.lm_loop_steps,
        "rounds": cfg.lm_loop_rounds,
        "tokens_per_run": tokens,
        "run_s": {name: summary(values) for name, values in samples.items()},
        "tokens_per_s": {name: tokens / statistics.median(v) for name, v in samples.items()},
        "tokens_per_s_ratio": ratio,
        "zero_grad_last_ratio": paired_ratio(samples["bare"], samples["bare_zero_grad_last"]),
        "target": cfg.lm_loop_target,
        "within_target": ratio["median"] >= cfg.lm_loop_target,
        "same_weights": gpt2["same_weights"],
        "tiny": tiny,
        "direct_ratio": direct,
        "direct_within_target": direct >= cfg.lm_loop_target,
    }


# --------------------------------------------------------------------------------------------
# 2-3. a variant's training step (vanilla, KITI, KO)


@dataclass
class _Variant:
    """One variant of a step comparison: model, optimizer, batches, steps taken, and the
    collision rates its KITINet modules (by name) met at each step."""

    model: nn.Module
    optimizer: Any
    batches: _Batches
    steps: int = 0
    sites: dict[str, nn.Module] = field(default_factory=dict)
    rates: dict[str, list[Tensor]] = field(default_factory=dict)


def _variant_step(cfg: Config, variant: _Variant) -> None:
    """The next batch's bare step (dropout seeded by the step: the same masks in every variant);
    keeps the KITINet rates as 0-d tensors (no host sync inside the timed step)."""
    torch.manual_seed(variant.steps)
    inputs, targets = variant.batches(variant.steps)
    variant.steps += 1
    _step(cfg, variant.model, variant.optimizer, inputs, targets)
    for name, module in variant.sites.items():
        variant.rates.setdefault(name, []).append(module.last_collision_rate)
        module.last_collision_rate = None


def _time_steps(cfg: Config, variants: dict[str, _Variant]) -> dict[str, list[float]]:
    """Seconds per training step of each variant, one step per sample, shuffled rounds."""
    return time_interleaved(
        {name: functools.partial(_variant_step, cfg, v) for name, v in variants.items()},
        repeats=cfg.lm_rounds,
        warmup=cfg.lm_warmup,
        sample_seconds=0.0,
        shuffle=True,
    )


def _site_rates(rates: list[Tensor]) -> dict[str, float]:
    """Mean, min, max, first and last of one site's per-step collision rates."""
    values = [float(r) for r in rates]
    return {
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "first": values[0],
        "last": values[-1],
    }


# --------------------------------------------------------------------------------------------
# 2. KITI-GPT-2


def _kiti_model(cfg: Config, model: nn.Module) -> tuple[nn.Module, dict[str, nn.Module]]:
    """A copy of ``model`` with KITINet as the runner adds it (seeded streams), and its sites."""
    from experiments.core.hf_models import add_kitinet
    from kinetics import KITINetConfig
    from kinetics.kitinet import seed_kitinet

    kiti = copy.deepcopy(model)
    settings = KITINetConfig(collision_heads=cfg.lm_kiti_heads, coll_coef=cfg.lm_kiti_coef)
    add_kitinet(kiti, settings, _KITI_SITES, None)
    seed_kitinet(kiti, 0)
    sites = {n: m for n, m in kiti.named_modules() if hasattr(m, "last_collision_rate")}
    return kiti, sites


@torch.no_grad()
def _eval(cfg: Config, vanilla: nn.Module, kiti: nn.Module, inputs: Tensor) -> dict[str, Any]:
    """Eval logits of the two models bitwise equal?; interleaved eval forward times."""
    vanilla.eval()
    kiti.eval()
    try:
        same = torch.equal(vanilla(inputs).logits, kiti(inputs).logits)
        samples = time_interleaved(
            {
                "vanilla": functools.partial(vanilla, inputs),
                "kiti": functools.partial(kiti, inputs),
            },
            repeats=cfg.lm_eval_rounds,
            warmup=1,
            sample_seconds=cfg.sample_seconds,
            shuffle=True,
        )
    finally:
        vanilla.train()
        kiti.train()
    ratio = paired_ratio(samples["kiti"], samples["vanilla"])
    return {
        "eval_rounds": cfg.lm_eval_rounds,
        "eval_s": {name: summary(values) for name, values in samples.items()},
        "eval_ratio": ratio,
        "eval_target": 1.0,
        "eval_noise": cfg.lm_eval_noise,
        "eval_within_noise": ratio["median"] <= cfg.lm_eval_noise,
        "eval_bitwise_equal": same,
    }


def _capture(model: nn.Module, sites: dict[str, nn.Module], inputs: Tensor) -> dict[str, Any]:
    """The (x, v) each KITINet module gets in a train-mode forward of ``inputs``."""
    captured: dict[str, tuple[Tensor, Tensor]] = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            captured[name] = (args[0].detach().clone(), args[1].detach().clone())

        return keep

    hooks = [m.register_forward_hook(keeper(n)) for n, m in sites.items()]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def _kitinet_direct(
    cfg: Config, variant: _Variant, inputs: Tensor, step_s: float
) -> dict[str, Any]:
    """Each KITINet module called alone (forward + backward, train mode) on the inputs the model
    gives it, and ``x + v`` on all of them: the modules' sum minus the additions over the vanilla
    step ``step_s``."""
    captured = _capture(variant.model, variant.sites, inputs)
    pairs = {name: (x.requires_grad_(), v.requires_grad_()) for name, (x, v) in captured.items()}

    def call(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, v: Tensor) -> None:
        x.grad = v.grad = None
        out = fn(x, v)
        out.backward(torch.ones_like(out))

    def add_all() -> None:
        for x, v in pairs.values():
            call(torch.add, x, v)

    fns: dict[str, Callable[[], object]] = {
        name: functools.partial(call, module, *pairs[name])
        for name, module in variant.sites.items()
    }
    samples = time_interleaved(
        {**fns, "add": add_all},
        repeats=max(5, cfg.repeats),
        warmup=2,
        sample_seconds=cfg.sample_seconds,
        shuffle=True,
    )
    with torch.no_grad():  # each module's rate at these inputs
        for name, module in variant.sites.items():
            module(*pairs[name])
    rates = {name: float(m.last_collision_rate) for name, m in variant.sites.items()}
    for module in variant.sites.values():
        module.last_collision_rate = None
    kitinet = sum(statistics.median(samples[name]) for name in variant.sites)
    fraction = (kitinet - statistics.median(samples["add"])) / step_s
    return {
        "calls_s": {name: summary(values) for name, values in samples.items()},
        "call_collision_rates": rates,
        "collision_fraction_of_step": fraction,
        "direct_ratio": 1.0 + fraction,
    }


def _kiti(cfg: Config, data: Any) -> dict[str, Any]:
    """KITI-GPT-2 against GPT-2: eval (first, at equal weights), train steps, direct estimate."""
    vanilla = _model("gpt2", _gpt2_config(cfg), data)
    kiti, sites = _kiti_model(cfg, vanilla)
    batches = _batches(data, cfg.lm_batch)
    evaluation = _eval(cfg, vanilla, kiti, batches(10**6)[0])
    variants = {
        "vanilla": _Variant(vanilla, _adamw(cfg, vanilla), batches),
        "kiti": _Variant(kiti, _adamw(cfg, kiti), batches, sites=sites),
    }
    steps = _time_steps(cfg, variants)
    step_s = statistics.median(steps["vanilla"])
    direct = _kitinet_direct(cfg, variants["kiti"], batches(10**6 + 1)[0], step_s)
    ratio = paired_ratio(steps["kiti"], steps["vanilla"])
    target = dict(cfg.lm_targets)["kiti"]
    # The timed steps are each variant's last lm_rounds (one step per sample).
    rates = {name: _site_rates(r[-cfg.lm_rounds :]) for name, r in variants["kiti"].rates.items()}
    return {
        "collision_heads": cfg.lm_kiti_heads,
        "coll_coef": cfg.lm_kiti_coef,
        "sites": list(_KITI_SITES),
        "step_s": {name: summary(values) for name, values in steps.items()},
        "step_ratio": ratio,
        "target": target,
        "within_target": ratio["median"] <= target,
        "collision_rates": rates,
        "collision_rate_steps": cfg.lm_rounds,
        **direct,
        "direct_within_target": direct["direct_ratio"] <= target,
        **evaluation,
    }


# --------------------------------------------------------------------------------------------
# 3. KO soft on the tiny Qwen2's last layer


def _collision_direct(cfg: Config, variant: _Variant, step_s: float) -> dict[str, Any]:
    """``collide_gradients()`` alone on the KO layers' real (clipped) gradients, restored before
    every call, net of the restore, over the vanilla step ``step_s``."""
    optimizer = variant.optimizer
    inputs, targets = variant.batches(10**6)
    optimizer.zero_grad(set_to_none=True)  # the timed steps leave their gradients
    logits = variant.model(inputs).logits
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    nn.utils.clip_grad_norm_(variant.model.parameters(), cfg.lm_grad_clip)
    grads = [m.weight.grad for m in optimizer.layers.values()]
    saved = [g.clone() for g in grads]

    def restore() -> None:
        for grad, value in zip(grads, saved, strict=True):
            grad.copy_(value)

    def collide() -> None:
        restore()
        optimizer.collide_gradients()

    samples = time_interleaved(
        {"collide": collide, "restore": restore},
        repeats=max(5, cfg.repeats),
        warmup=2,
        sample_seconds=cfg.sample_seconds,
        shuffle=True,
    )
    optimizer.zero_grad(set_to_none=True)
    extra = statistics.median(samples["collide"]) - statistics.median(samples["restore"])
    return {
        "calls_s": {name: summary(values) for name, values in samples.items()},
        "collision_fraction_of_step": extra / step_s,
        "direct_ratio": 1.0 + extra / step_s,
    }


def _flops(model: nn.Module, layers: dict[str, nn.Module], inputs: Tensor) -> dict[str, float]:
    """FLOPs of the soft collisions (three (N, N, d) matrix products per layer of N neurons of d
    weights: the two cosine matrices and their product with the gradient) and of a training step
    (three forwards, torch's FlopCounterMode), and their ratio: the overhead at equal speed."""
    from experiments.engine.probe import model_cost
    from kinetics import neuron_view

    collision = 0.0
    for module in layers.values():
        n, d = neuron_view(module, module.weight).shape
        collision += 3 * 2 * n * n * d
    step = 3 * model_cost(model, inputs)["mflops"] * 1e6
    return {"collision_flops": collision, "step_flops": step, "flop_ratio": collision / step}


def _ko(cfg: Config, data: Any) -> dict[str, Any]:
    """KO soft on ``last_block`` of the tiny Qwen2 against AdamW alone."""
    from kinetics import KineticOptimizer, select_modules

    vanilla = _model("qwen2_0_5b", _qwen2_config(cfg), data)
    ko_model = copy.deepcopy(vanilla)
    layers = select_modules(ko_model, _KO_MODULES)
    optimizer = KineticOptimizer(_adamw(cfg, ko_model), layers, "soft", cfg.lm_ko_coef, seed=0)
    batches = _batches(data, cfg.lm_batch)
    variants = {
        "vanilla": _Variant(vanilla, _adamw(cfg, vanilla), batches),
        "soft": _Variant(ko_model, optimizer, batches),
    }
    steps = _time_steps(cfg, variants)
    direct = _collision_direct(cfg, variants["soft"], statistics.median(steps["vanilla"]))
    flops = _flops(vanilla, layers, batches(10**6)[0])
    ratio = paired_ratio(steps["soft"], steps["vanilla"])
    target = dict(cfg.lm_targets)["ko_soft"]
    return {
        "modules": _KO_MODULES,
        "layers": {name: list(m.weight.shape) for name, m in layers.items()},
        "coll_coef": cfg.lm_ko_coef,
        "step_s": {name: summary(values) for name, values in steps.items()},
        "step_ratio": ratio,
        "target": target,
        "within_target": ratio["median"] <= target,
        "paper_ratio": cfg.lm_ko_paper_ratio,
        **flops,
        **direct,
        "direct_within_target": direct["direct_ratio"] <= target,
    }


# --------------------------------------------------------------------------------------------
# the section


def _print(loop: dict[str, Any], kiti: dict[str, Any], ko: dict[str, Any]) -> None:
    """One progress line per comparison."""
    rate = ", ".join(
        f"{n.split('.')[2]}: {r['mean']:.2%}" for n, r in kiti["collision_rates"].items()
    )
    print(
        f"[lm] loop: ours {loop['tokens_per_s']['ours']:.0f} tok/s, bare "
        f"{loop['tokens_per_s']['bare']:.0f} tok/s, x{loop['tokens_per_s_ratio']['median']:.4f} "
        f"(direct x{loop['direct_ratio']:.4f}), same weights: {loop['same_weights']}",
        flush=True,
    )
    print(
        f"[lm] KITI-GPT-2 step x{kiti['step_ratio']['median']:.4f} (direct "
        f"x{kiti['direct_ratio']:.4f}; rates {rate}); eval x{kiti['eval_ratio']['median']:.4f}, "
        f"bitwise equal: {kiti['eval_bitwise_equal']}",
        flush=True,
    )
    print(
        f"[lm] Qwen2 KO soft step x{ko['step_ratio']['median']:.4f} (direct "
        f"x{ko['direct_ratio']:.5f})",
        flush=True,
    )


def bench_lm(cfg: Config) -> dict[str, Any]:
    """Loop overhead, KITI-GPT-2 and KO soft on the tiny Qwen2 at the mini-lm settings."""
    data = _data(cfg, cfg.lm_seq)
    loop = _loop_overhead(cfg, data, _data(cfg, cfg.lm_tiny_seq))
    kiti = _kiti(cfg, data)
    ko = _ko(cfg, data)
    _print(loop, kiti, ko)
    path = lm_data_dir(cfg)
    return {
        "data": "random tokens" if path is None else repo_relative(path),
        "vocab_size": data.vocab_size,
        "batch": cfg.lm_batch,
        "seq_len": cfg.lm_seq,
        "gpt2": _gpt2_config(cfg),
        "qwen2": _qwen2_config(cfg),
        "optimizer": {
            "name": "AdamW",
            "lr": cfg.lm_lr,
            "betas": list(cfg.lm_betas),
            "weight_decay": cfg.lm_weight_decay,
            "grad_clip": cfg.lm_grad_clip,
        },
        "warmup_rounds": cfg.lm_warmup,
        "rounds": cfg.lm_rounds,
        "loop": loop,
        "kiti": kiti,
        "ko": ko,
    }
