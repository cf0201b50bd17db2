"""Speed and memory benchmarks of the kinetics core against SPEC §5 (``make bench``).

Six measurements, all on CPU with ``torch.set_num_threads(2)`` (``--threads`` to change):

1. KO soft / hard collision: the fast ``kinetics`` functions against the paper-literal ones of
   ``scripts/_literal.py`` (dense ``(N, N, d)`` tensors), time and peak extra memory.
2. ``kitinet_collision`` against the plain residual ``x + v``, forward and forward+backward.
3. Hard collision at an ImageNet head (N=1000, d=2048) when nearly every pair collides: the
   ≤ 64 MB extra-peak target.
4. One ResNet-18 training step with SGD against KineticOptimizer soft / hard on the head.
5. KITI-ResNet-18 (CIFAR stem, KITINet in the last stage) against ResNet-18: training step and
   eval forward (SPEC §5: ≤ 10% and 0%; eval outputs must be bitwise equal), plus the KITINet
   call alone on the inputs the network really gives it.
6. KO step overhead for CIFAR ResNet-18/34/50 x {SGD, +S.C., +H.C.}: time and peak memory, the
   analog of KO Tables 4-5.

Absolute times on a shared 2-core machine drift by several %, so variants that are compared are run
interleaved (round r starts with variant r mod k), repeated, and summarised by the median of the
per-round paired ratios; absolute medians are reported after the ratios. Writes
``<out>/bench.md`` and ``<out>/bench.json`` atomically.

The report records how many CPUs other processes used meanwhile: with 2 threads on this 2-core
machine any competing process makes every parallel op wait for a descheduled thread, so numbers
from a busy machine are flagged (run it idle, or with ``--threads 1``).

Usage: ``python scripts/bench.py --out results/bench [--quick] [--skip-e2e] [--threads N]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import functools
import gc
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _literal import hard_collision_literal, literal_peak_bytes, soft_collision_literal

from experiments.core.io import git_commit

REPO = Path(__file__).resolve().parent.parent
MB = 2**20


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class Config:
    """Sizes and repeat counts of one benchmark run (defaults: the full run of ``make bench``)."""

    # torch intra-op threads. The quick mode uses 1: on a loaded 2-core machine two OpenMP threads
    # wait for each other at every parallel op and small problems slow down up to ~100x.
    threads: int = 2
    collision_sizes: tuple[tuple[int, int], ...] = ((10, 512), (100, 512), (1000, 2048))
    collision_coef: float = 0.5
    # Typical distance |w_i - w_j| of the synthetic weights: 0.2 makes some pairs collide at
    # coll_coef 0.5 (seed 0: 51% at N=10, 8% at N=100, 4% at N=1000).
    collision_distance: float = 0.2
    repeats: int = 15
    warmup: int = 2
    sample_seconds: float = 0.05  # calls per timed sample are chosen so a sample lasts >= this
    literal_limit_bytes: int = 4 * 2**30
    kitinet_shape: tuple[int, int] = (128, 8192)
    kitinet_heads: tuple[int, ...] = (16, 64)
    kitinet_coef: float = 0.5
    # x ~ N(0, s^2) with s = spread / sqrt(2 heads), so the typical particle distance is ~spread.
    kitinet_spread: float = 0.4
    kitinet_repeats: int = 5
    hard_all_size: tuple[int, int] = (1000, 2048)
    # With near-coincident weights, coll_coef 0.05 accepts a part of the pairs and 1.0 all of them:
    # the peak must be the same (independent of the number K of accepted pairs). One call each: a
    # call with all ~500k pairs draws K*d = 1e9 random numbers (6 s here with 2 idle cores).
    hard_all_coefs: tuple[float, ...] = (0.05, 1.0)
    memory_budget_mb: float = 64.0
    rss_check: bool = True
    e2e_batch: int = 128
    e2e_image: int = 32
    e2e_classes: int = 100
    e2e_warmup: int = 10
    e2e_steps: int = 60
    e2e_coef: float = 0.5
    e2e_targets: tuple[tuple[str, float], ...] = (("soft", 1.01), ("hard", 1.02))
    # 5. KITI-ResNet-18 vs ResNet-18 (CIFAR stem, CIFAR-10 input). coll_coef 0.9 is the paper's
    # Table 3 setting (at init ~0.1% of the second block's pairs collide); 0.95 makes collisions
    # fire more (~1%).
    kiti_batch: int = 128
    kiti_image: int = 32
    kiti_classes: int = 10
    kiti_base_width: int = 64
    kiti_heads: int = 16
    kiti_coefs: tuple[float, ...] = (0.9, 0.95)
    kiti_warmup: int = 1
    kiti_rounds: int = 10
    kiti_target: float = 1.10
    kiti_eval_noise: float = 1.03
    # 6. KO step overhead, CIFAR-100 head: (model, batch). Smaller batches for the deeper nets keep
    # the section within a few minutes; the overhead ratio is what is compared.
    ko_models: tuple[tuple[str, int], ...] = (
        ("cifar_resnet18", 128),
        ("cifar_resnet34", 64),
        ("cifar_resnet50", 32),
    )
    ko_classes: int = 100
    ko_image: int = 32
    ko_base_width: int = 64
    ko_coef: float = 0.5
    ko_warmup: int = 1
    ko_rounds: int = 8

    @classmethod
    def quick(cls) -> Config:
        """Tiny sizes and repeats: proves the script works in seconds (used by tests/test_bench.py)."""
        return replace(
            cls(),
            threads=1,
            rss_check=False,
            collision_sizes=((10, 32), (40, 64)),
            repeats=3,
            warmup=1,
            sample_seconds=0.002,
            kitinet_shape=(4, 256),
            kitinet_heads=(4, 16),
            kitinet_repeats=2,
            hard_all_size=(60, 64),
            hard_all_coefs=(0.05, 1.0),
            e2e_batch=2,
            e2e_warmup=1,
            e2e_steps=2,
            kiti_batch=4,
            kiti_image=16,
            kiti_base_width=8,
            kiti_rounds=2,
            ko_models=(("cifar_resnet18", 4), ("cifar_resnet50", 2)),
            ko_image=16,
            ko_base_width=4,
            ko_rounds=2,
        )


# --------------------------------------------------------------------------------------------
# timing


def _time_calls(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def time_interleaved(
    fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int, sample_seconds: float
) -> dict[str, list[float]]:
    """Seconds per call of each variant: ``repeats`` samples each, variants interleaved.

    After ``warmup`` calls of every variant, each one gets a number of calls per sample so that a
    sample lasts about ``sample_seconds`` (timer resolution and call overhead then vanish). Round r
    runs the variants starting at index r mod k, so no variant always follows the same one.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    calls = {}
    for name in names:
        once = _time_calls(fns[name], 1)
        calls[name] = max(1, min(10_000, math.ceil(sample_seconds / max(once, 1e-7))))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_time_calls(fns[name], calls[name]))
    return samples


def summary(values: list[float]) -> dict[str, float]:
    """Median and quartiles of ``values``."""
    if len(values) == 1:
        return {"median": values[0], "p25": values[0], "p75": values[0]}
    q = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "p25": q[0], "p75": q[2]}


def paired_ratio(num: list[float], den: list[float]) -> dict[str, float]:
    """Summary of the per-round ratios num[r] / den[r] (drift common to a round cancels)."""
    return summary([a / b for a, b in zip(num, den, strict=True)])


# --------------------------------------------------------------------------------------------
# memory


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence the C++ profiler's start/stop chatter on file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_call(fn: Callable[[], object]) -> tuple[int, float]:
    """Peak extra bytes of CPU tensors while ``fn()`` runs, and the call's wall time in seconds.

    Method: ``torch.profiler`` with ``profile_memory=True`` records every allocation and free of
    torch's CPU allocator as a ``[memory]`` event with a signed byte count (frees are negative),
    also inside autograd's backward. Sorting the events by time and taking the running sum gives
    the memory held by tensors born during the call at every instant; its maximum is the peak
    extra memory, independent of what was allocated before (inputs) and of allocator caching.
    Tensors freed during the call that existed before it count negatively, as they should.
    It does not see memory outside torch's allocator (BLAS / oneDNN scratch, Python objects);
    the RSS cross-check (:func:`rss_peak_extra_bytes`) covers that for the key case.
    Validated in :func:`validate_memory_method`: a 100 MB tensor reads 100 MB.
    The time includes the profiler's per-op overhead (microseconds), so use it only for calls
    too slow to repeat.
    """
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    cpu = torch._C._autograd.DeviceType.CPU
    with _quiet_fd2(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        del result
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == cpu
    ]
    held = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        held += event.nbytes()
        peak = max(peak, held)
    return peak, seconds


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    """Peak of the bytes of CPU tensors allocated (and not yet freed) while ``fn()`` runs; see
    :func:`profile_call` for the method."""
    return profile_call(fn)[0]


def _proc_status_mb(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, flags=re.M)
    if match is None:
        raise RuntimeError(f"{key} not in /proc/self/status")
    return int(match.group(1)) / 1024


def _rss_probe(spec: str) -> dict[str, float]:
    """Run inside a fresh process: peak RSS growth (MB) of one call, after a warm-up.

    The kernel's resident high-water mark is reset through /proc/self/clear_refs ("5") after a
    warm-up, so lazily initialised thread pools and the warm-up itself do not count. Only touched
    pages count (torch.empty alone does not raise RSS).
    """
    kind, *args = spec.split(":")
    if kind == "alloc":
        size_mb = float(args[0])

        def call() -> object:
            return torch.ones(int(size_mb * MB) // 4)

        call()  # warm-up

    elif kind == "hard":
        from kinetics import hard_collision

        n, d, coef = int(args[0]), int(args[1]), float(args[2])
        weight, grad = hard_all_inputs(n, d)
        gen = torch.Generator().manual_seed(0)
        # Warm up (thread pools, kernels) on a small problem: the real call takes tens of seconds.
        hard_collision(weight[:50], grad[:50], coef, generator=gen)

        def call() -> object:
            return hard_collision(weight, grad, coef, generator=gen)

    else:
        raise ValueError(f"unknown probe {spec!r}")
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _proc_status_mb("VmRSS")
    out = call()
    peak = _proc_status_mb("VmHWM")
    del out
    return {"rss_extra_mb": peak - base, "baseline_rss_mb": base}


def rss_peak_extra_bytes(spec: str, threads: int) -> float | None:
    """Cross-check of :func:`peak_extra_bytes`: peak RSS growth of one call, in a fresh process.

    glibc is told to serve every block >= 64 KiB with its own mmap (MALLOC_MMAP_THRESHOLD_) so
    freed tensors go back to the kernel instead of staying resident in the heap, where a later
    allocation could reuse them unseen. Returns bytes, or None where /proc cannot be used.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-probe", spec]
    cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        print(f"rss probe {spec} failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["rss_extra_mb"] * MB


def validate_memory_method(cfg: Config) -> dict[str, Any]:
    """Both memory probes on a known allocation: one 100 MB tensor (filled, so RSS sees it)."""
    size_mb = 100.0
    record: dict[str, Any] = {
        "allocated_mb": size_mb,
        "profiler_mb": peak_extra_bytes(lambda: torch.ones(int(size_mb * MB) // 4)) / MB,
    }
    if cfg.rss_check:
        rss = rss_peak_extra_bytes(f"alloc:{size_mb}", cfg.threads)
        record["rss_mb"] = None if rss is None else rss / MB
    return record


# --------------------------------------------------------------------------------------------
# 1. soft / hard collision: fast vs paper-literal


def collision_inputs(n: int, d: int, distance: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Weight rows ~ N(0, s^2) with typical pair distance ``distance``; gradient rows N(0, 1)
    with log-normal row scales (real gradient rows differ in size, which spreads relative speeds).
    """
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, d, generator=gen) * (distance / math.sqrt(2 * d))
    scales = torch.exp(0.5 * torch.randn(n, 1, generator=gen))
    grad = torch.randn(n, d, generator=gen) * scales
    return weight, grad


def _accepted_pairs(x: torch.Tensor, v: torch.Tensor, coef: float) -> tuple[int, int]:
    """Accepted and candidate pairs of systems x, v of shape (S, N, d) (selection only)."""
    from kinetics.dsmc import collision_mask

    accepted = int(collision_mask(x, v, coef).sum())
    s, n = x.shape[0], x.shape[1]
    return accepted, s * n * (n - 1) // 2


def bench_collisions(cfg: Config) -> list[dict[str, Any]]:
    """Fast vs literal soft and hard collision: median time and peak extra memory per size."""
    rows = []
    for n, d in cfg.collision_sizes:
        weight, grad = collision_inputs(n, d, cfg.collision_distance)
        accepted, pairs = _accepted_pairs(weight[None], grad[None], cfg.collision_coef)
        coef = cfg.collision_coef
        variants = _collision_variants(weight, grad, coef, torch.Generator().manual_seed(1))
        for kind, fns in variants.items():
            estimate = literal_peak_bytes(kind, n, d)
            row: dict[str, Any] = {
                "kind": kind,
                "N": n,
                "d": d,
                "coll_coef": coef,
                "accepted_pairs": accepted if kind == "hard" else None,
                "pairs": pairs,
                "literal_estimated_bytes": estimate,
                "note": "",
            }
            if estimate > cfg.literal_limit_bytes:
                fns = {"fast": fns["fast"]}
                row["note"] = (
                    f"literal skipped: needs ~{estimate / 2**30:.0f} GB "
                    f"(> {cfg.literal_limit_bytes / 2**30:.0f} GB limit)"
                )
            samples = time_interleaved(
                fns, repeats=cfg.repeats, warmup=cfg.warmup, sample_seconds=cfg.sample_seconds
            )
            row["time_s"] = {name: summary(values) for name, values in samples.items()}
            row["peak_bytes"] = {name: peak_extra_bytes(fn) for name, fn in fns.items()}
            if "literal" in fns:
                row["speedup"] = paired_ratio(samples["literal"], samples["fast"])
                row["memory_ratio"] = row["peak_bytes"]["literal"] / max(
                    row["peak_bytes"]["fast"], 1
                )
            rows.append(row)
            print(f"[collision] {kind} N={n} d={d}: {_fmt_row(row)}", flush=True)
    return rows


def _collision_variants(
    weight: torch.Tensor, grad: torch.Tensor, coef: float, gen: torch.Generator
) -> dict[str, dict[str, Callable[[], object]]]:
    """{kind: {"fast" | "literal": call}} on fixed inputs."""
    from kinetics import hard_collision, soft_collision

    return {
        "soft": {
            "fast": lambda: soft_collision(weight, grad, coef),
            "literal": lambda: soft_collision_literal(weight, grad, coef),
        },
        "hard": {
            "fast": lambda: hard_collision(weight, grad, coef, generator=gen),
            "literal": lambda: hard_collision_literal(weight, grad, coef, generator=gen),
        },
    }


def _fmt_row(row: dict[str, Any]) -> str:
    parts = [f"{k} {v['median'] * 1e3:.3f} ms" for k, v in row["time_s"].items()]
    parts += [f"{k} {v / MB:.2f} MB" for k, v in row["peak_bytes"].items()]
    if "speedup" in row:
        parts.append(f"speedup x{row['speedup']['median']:.1f}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# 2. KITINet collision vs plain residual


def bench_kitinet(cfg: Config) -> list[dict[str, Any]]:
    """kitinet_collision vs x + v at (S, D): forward and forward+backward time and peak memory."""
    from kinetics import kitinet_collision

    s, dim = cfg.kitinet_shape
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(s, dim, generator=gen).requires_grad_()
    xs = {
        h: (torch.randn(s, dim, generator=gen) * (cfg.kitinet_spread / math.sqrt(2 * h)))
        .detach()
        .requires_grad_()
        for h in cfg.kitinet_heads
    }
    grad_out = torch.randn(s, dim, generator=gen)
    coll_gen = torch.Generator().manual_seed(1)
    x_plain = xs[cfg.kitinet_heads[0]]

    def forward(name: str) -> torch.Tensor:
        if name == "plain":
            return x_plain + v
        h = int(name[1:])
        return kitinet_collision(
            xs[h], v, collision_heads=h, coll_coef=cfg.kitinet_coef, generator=coll_gen
        )

    def fwd_bwd(name: str) -> None:
        for leaf in (v, *xs.values()):
            leaf.grad = None
        forward(name).backward(grad_out)

    names = ["plain", *(f"h{h}" for h in cfg.kitinet_heads)]
    rows = []
    for label, runner in (("forward", forward), ("forward+backward", fwd_bwd)):
        fns = {name: functools.partial(runner, name) for name in names}
        samples = time_interleaved(
            fns, repeats=cfg.kitinet_repeats, warmup=1, sample_seconds=cfg.sample_seconds
        )
        for name in names:
            peak = peak_extra_bytes(fns[name])
            row: dict[str, Any] = {
                "variant": name,
                "pass": label,
                "S": s,
                "D": dim,
                "time_s": summary(samples[name]),
                "time_ratio_to_plain": paired_ratio(samples[name], samples["plain"]),
                "peak_bytes": peak,
            }
            if name != "plain":
                h = int(name[1:])
                n = dim // h
                with torch.no_grad():
                    x3 = xs[h].reshape(s, h, n).transpose(1, 2)
                    v3 = v.reshape(s, h, n).transpose(1, 2)
                    accepted, pairs = _accepted_pairs(x3, v3, cfg.kitinet_coef)
                row.update(collision_heads=h, N=n, accepted_pairs=accepted, pairs=pairs)
            rows.append(row)
            print(
                f"[kitinet] {label} {name}: {row['time_s']['median'] * 1e3:.1f} ms, "
                f"x{row['time_ratio_to_plain']['median']:.1f} of plain, {peak / MB:.1f} MB",
                flush=True,
            )
        for leaf in (v, *xs.values()):
            leaf.grad = None
    return rows


# --------------------------------------------------------------------------------------------
# 3. hard collision when (nearly) every pair collides


def hard_all_inputs(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Near-coincident weight rows (exp(-|w_i - w_j|) ~ 1) and N(0, 1) gradient rows: with
    coll_coef near 1 every pair passes the threshold."""
    gen = torch.Generator().manual_seed(seed)
    weight = 1e-4 * torch.randn(n, d, generator=gen)
    grad = torch.randn(n, d, generator=gen)
    return weight, grad


def bench_hard_all(cfg: Config) -> list[dict[str, Any]]:
    """Accepted pairs, time and peak extra memory of hard collision for several coll_coef."""
    from kinetics import hard_collision

    n, d = cfg.hard_all_size
    weight, grad = hard_all_inputs(n, d)
    gen = torch.Generator().manual_seed(0)
    rows = []
    hard_collision(weight[:50], grad[:50], 1.0, generator=gen)  # warm-up on a small problem
    for coef in cfg.hard_all_coefs:
        accepted, pairs = _accepted_pairs(weight[None], grad[None], coef)
        peak, seconds = profile_call(
            functools.partial(hard_collision, weight, grad, coef, generator=gen)
        )
        row: dict[str, Any] = {
            "N": n,
            "d": d,
            "coll_coef": coef,
            "accepted_pairs": accepted,
            "pairs": pairs,
            "time_s": seconds,
            "peak_bytes": peak,
            "budget_mb": cfg.memory_budget_mb,
            "naive_directions_bytes": accepted * d * 4,
        }
        if cfg.rss_check and coef == max(cfg.hard_all_coefs):
            row["rss_peak_bytes"] = rss_peak_extra_bytes(f"hard:{n}:{d}:{coef}", cfg.threads)
        rows.append(row)
        print(
            f"[hard-all] coef {coef}: {accepted}/{pairs} pairs, "
            f"{seconds:.2f} s, {peak / MB:.1f} MB",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------------------------
# 4. end to end: ResNet-18 training step


def bench_e2e(cfg: Config) -> dict[str, Any]:
    """ResNet-18 (torchvision, num_classes=100) step: SGD vs KineticOptimizer soft / hard on fc."""
    import torchvision

    from kinetics import KineticOptimizer, hard_collision, soft_collision

    torch.manual_seed(0)
    base = torchvision.models.resnet18(num_classes=cfg.e2e_classes)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(cfg.e2e_batch, 3, cfg.e2e_image, cfg.e2e_image, generator=gen)
    labels = torch.randint(0, cfg.e2e_classes, (cfg.e2e_batch,), generator=gen)

    setups: dict[str, tuple[torch.nn.Module, Any]] = {}
    for name in ("sgd", "soft", "hard"):
        model = copy.deepcopy(base).train()
        opt: Any = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        if name != "sgd":
            opt = KineticOptimizer(opt, {"fc": model.fc}, name, cfg.e2e_coef, seed=0)
        setups[name] = (model, opt)

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
    for name in names:
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
    accepted_coef1, pairs = _accepted_pairs(weight[None], grad[None], 1.0)
    worst = {
        "coll_coef": 1.0,
        "accepted_pairs": accepted_coef1,
        "pairs": pairs,
        "collision_call_s": summary(direct["hard_coef1"]),
        "collision_fraction_of_step": statistics.median(direct["hard_coef1"]) / sgd_step,
    }
    return {
        "model": f"torchvision resnet18(num_classes={cfg.e2e_classes})",
        "hard_worst_case": worst,
        "batch": cfg.e2e_batch,
        "image": cfg.e2e_image,
        "coll_coef": cfg.e2e_coef,
        "fc_shape": list(fc.weight.shape),
        "warmup_steps": cfg.e2e_warmup,
        "timed_steps": cfg.e2e_steps,
        "targets": dict(cfg.e2e_targets),
        "variants": variants,
    }


# --------------------------------------------------------------------------------------------
# 5. KITI-ResNet-18 vs ResNet-18


def _train_step(
    model: torch.nn.Module, opt: Any, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """One SGD training step (zero_grad, forward, cross-entropy, backward, step); seconds."""
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    opt.step()
    return time.perf_counter() - start


def _rounds(
    fns: dict[str, Callable[[], float]], *, warmup: int, rounds: int
) -> dict[str, list[float]]:
    """Seconds per call of each variant over ``rounds`` interleaved rounds (round r starts with
    variant r mod k), after ``warmup`` rounds; each ``fn`` returns its own duration."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(fns[name]())
    return samples


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def bench_kiti_resnet(cfg: Config) -> dict[str, Any]:
    """KITI-ResNet-18 vs ResNet-18: training step and eval forward ratios, collision rates."""
    from experiments.vision.models import cifar_resnet18
    from kinetics import KITINetConfig
    from kinetics.kitinet import kitinet_collision_with_rate

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
    gen = torch.Generator().manual_seed(0)
    shape = (cfg.kiti_batch, 3, cfg.kiti_image, cfg.kiti_image)
    images = torch.randn(shape, generator=gen)

    # Eval first, from the common initial weights: KITINet in eval is x + v, bit for bit.
    eval_kiti = f"kiti_{cfg.kiti_coefs[0]}"
    with torch.no_grad():
        for model in models.values():
            model.eval()
        same = torch.equal(models["vanilla"](images), models[eval_kiti](images))

        def forward(model: torch.nn.Module) -> float:
            start = time.perf_counter()
            model(images)
            return time.perf_counter() - start

        eval_samples = _rounds(
            {name: functools.partial(forward, models[name]) for name in ("vanilla", eval_kiti)},
            warmup=cfg.kiti_warmup,
            rounds=cfg.kiti_rounds,
        )

    # The KITINet call alone, on the (x, v) the network gives its last-stage blocks.
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    kiti0 = models[eval_kiti].train()
    hooks = [
        block.residual.register_forward_hook(
            lambda mod, args, out, name=name: captured.__setitem__(
                name, (args[0].detach().clone(), args[1].detach().clone())
            )
        )
        for name, block in kiti0.layer4.named_children()
    ]
    with torch.no_grad():
        kiti0(images)
    for hook in hooks:
        hook.remove()
    kiti0.load_state_dict(initial)  # the capture pass moved its BN running stats

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
        optimizer, taken = _sgd(model), iter(batches)

        def step(model: torch.nn.Module = model, optimizer=optimizer, taken=taken) -> float:
            images, labels = next(taken)
            return _train_step(model, optimizer, images, labels)

        steps[name] = step
    rates: dict[str, list[float]] = {name: [] for name in models if name != "vanilla"}

    def step_and_rate(name: str) -> float:
        seconds = steps[name]()
        if name in rates:
            per_block = [float(b.residual.last_collision_rate) for b in models[name].layer4]
            rates[name].append(statistics.fmean(per_block))
        return seconds

    samples = _rounds(
        {name: functools.partial(step_and_rate, name) for name in models},
        warmup=cfg.kiti_warmup,
        rounds=cfg.kiti_rounds,
    )
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
    gen = torch.Generator().manual_seed(0)

    def call(backward: bool) -> float:
        start = time.perf_counter()
        out, _ = fn(x2, v2, collision_heads=cfg.kiti_heads, coll_coef=coef, generator=gen)
        if backward:
            x2.grad = v2.grad = None
            out.backward(grad)
        return time.perf_counter() - start

    samples = _rounds(
        {
            "forward": functools.partial(call, False),
            "forward+backward": functools.partial(call, True),
        },
        warmup=1,
        rounds=max(3, cfg.kiti_rounds),
    )
    with torch.no_grad():
        _, rate = fn(x2, v2, collision_heads=cfg.kiti_heads, coll_coef=coef, generator=gen)
    return {
        "block": f"layer4.{block}",
        "coll_coef": coef,
        "shape": list(x2.shape),
        "collision_rate": float(rate),
        "time_s": {name: summary(values) for name, values in samples.items()},
    }


# --------------------------------------------------------------------------------------------
# 6. KO step overhead for CIFAR ResNet-18/34/50 (KO Tables 4-5 analog)


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
            opt: Any = _sgd(model)
            if variant != "sgd":
                opt = KineticOptimizer(opt, {"fc": model.fc}, variant, cfg.ko_coef, seed=0)
            setups[variant] = (model, opt)
        steps = {
            name: functools.partial(_train_step, model, opt, images, labels)
            for name, (model, opt) in setups.items()
        }
        samples = _rounds(steps, warmup=cfg.ko_warmup, rounds=cfg.ko_rounds)
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


# --------------------------------------------------------------------------------------------
# report


def machine_info() -> dict[str, Any]:
    """Torch / CPU / git facts that make the numbers interpretable."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else cpu
    mem_gb = None
    with contextlib.suppress(OSError, AttributeError):
        kb = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)
        mem_gb = round(int(kb) / 2**20, 1)
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpus_available": len(os.sched_getaffinity(0)),
        "mem_total_gb": mem_gb,
        "load_average_1_5_15min_at_start": list(os.getloadavg()),
        "git_commit": git_commit(REPO),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine incl. VM steal, CPU seconds of this process tree)."""
    import resource

    busy = float("nan")
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    mine = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        mine += usage.ru_utime + usage.ru_stime
    return busy, mine


def _load(values: list[float] | None) -> str:
    return "n/a" if not values else "/".join(f"{v:.1f}" for v in values)


def _load_warning(meta: dict[str, Any], threads: int) -> list[str]:
    """A loud note when other processes competed for the cores during a multi-threaded run."""
    others = meta.get("other_processes_cores", 0.0)
    if not others > 0.2 + meta["cpus_available"] - threads:  # NaN-safe
        return []
    head = (
        f"**Warning: other processes kept {others:.2f} of the {meta['cpus_available']} CPUs busy "
        "on average during the run.** "
    )
    if threads == 1:
        body = "Absolute times are inflated; the interleaved ratios remain usable."
    else:
        body = (
            f"With {threads} torch threads every parallel op waits for a descheduled OpenMP "
            "thread, which slows small ops by up to ~100x and makes absolute times meaningless; "
            "rerun on an idle machine, or with `--threads 1` for usable ratios."
        )
    return [head + body, ""]


def _pf(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def _mb(nbytes: float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / MB:.2f}"


def _iqr(stats: dict[str, float], digits: int = 3) -> str:
    return f"{stats['median']:.{digits}f} [{stats['p25']:.{digits}f}, {stats['p75']:.{digits}f}]"


def render_markdown(results: dict[str, Any]) -> str:
    """The human-readable report: machine facts, then one table per section, ratios first."""
    meta = results["meta"]
    out = [
        "# kinetics benchmark (SPEC §5)",
        "",
        f"- date (UTC): {meta['date']}; total runtime: {results['runtime_s']:.0f} s"
        + (" (quick mode)" if results["quick"] else ""),
        f"- command: `{meta['command']}`",
        f"- git commit: {meta['git_commit']}",
        f"- torch {meta['torch']}, torch.set_num_threads({results['config']['threads']}); "
        f"Python {meta['python']}",
        f"- CPU: {meta['cpu_model']} ({meta['cpus_available']} available), "
        f"RAM {meta['mem_total_gb']} GB; {meta['platform']}",
        "- CPUs used by other processes during the run: {:.2f} on average; load average "
        "(1/5/15 min) at start {}, at end {}".format(
            meta.get("other_processes_cores", float("nan")),
            _load(meta["load_average_1_5_15min_at_start"]),
            _load(meta.get("load_average_1_5_15min_at_end")),
        ),
        "",
        *_load_warning(meta, results["config"]["threads"]),
        "Ratios are medians of per-round paired ratios over interleaved runs, "
        "[p25, p75] in brackets. Peak extra memory is the peak of bytes held by CPU tensors "
        "allocated during the call (torch profiler allocation events), outputs included.",
        "",
    ]
    val = results["memory_validation"]
    out += [
        f"Memory method check: a {val['allocated_mb']:.0f} MB tensor reads "
        f"{val['profiler_mb']:.2f} MB (profiler)"
        + (f", {val['rss_mb']:.2f} MB (RSS high-water, fresh process)" if val.get("rss_mb") else "")
        + ".",
        "",
    ]
    out += _render_targets(results)
    if results.get("collisions"):
        out += _render_collisions(results["collisions"])
    if results.get("kitinet"):
        out += _render_kitinet(results["kitinet"])
    if results.get("hard_all"):
        out += _render_hard_all(results["hard_all"])
    if results.get("e2e"):
        out += _render_e2e(results["e2e"])
    if results.get("kiti_resnet"):
        out += _render_kiti_resnet(results["kiti_resnet"])
    if results.get("ko_resnets"):
        out += _render_ko_resnets(results["ko_resnets"])
    if results.get("errors"):
        out += ["## Errors", ""] + [f"- {k}: `{v}`" for k, v in results["errors"].items()] + [""]
    return "\n".join(out)


def _render_targets(results: dict[str, Any]) -> list[str]:
    lines = ["## Targets", ""]
    if results["quick"]:
        lines += ["Quick mode: tiny sizes, so these verdicts say nothing about the targets.", ""]
    lines += [
        "| target | measured | limit | result |",
        "|---|---|---|---|",
    ]
    e2e = results.get("e2e")
    if e2e:
        for name, limit in e2e["targets"].items():
            rec = e2e["variants"][name]
            ratio = rec["step_ratio_to_sgd"]["median"]
            direct = 1.0 + rec["collision_fraction_of_step"]
            lines.append(
                f"| ResNet-18 step, {name} / SGD (whole step, noisy) | {ratio:.4f} | "
                f"≤ {limit} | {_pf(ratio <= limit)} |"
            )
            lines.append(
                f"| ResNet-18 step, {name} / SGD (1 + collision call / step) | {direct:.4f} | "
                f"≤ {limit} | {_pf(direct <= limit)} |"
            )
    kiti = results.get("kiti_resnet")
    if kiti:
        first = next(name for name in kiti["variants"] if name != "vanilla")
        for name, rec in kiti["variants"].items():
            if name == "vanilla":
                continue
            ratio = rec["step_ratio_to_vanilla"]["median"]
            note = "" if name == first else " (no target: heavier collisions, information)"
            lines.append(
                f"| KITI-ResNet-18 step / ResNet-18, coll_coef {rec['coll_coef']} "
                f"(collision rate {rec['collision_rate']:.3%}){note} | {ratio:.4f} | "
                f"≤ {kiti['target']} | {_pf(ratio <= kiti['target'])} |"
            )
        ratio = kiti["eval_ratio"]["median"]
        lines.append(
            f"| KITI-ResNet-18 eval forward / ResNet-18 (noise band) | {ratio:.4f} | "
            f"≤ {kiti['eval_noise']} | {_pf(ratio <= kiti['eval_noise'])} |"
        )
        lines.append(
            f"| KITI-ResNet-18 eval outputs bitwise equal to ResNet-18 | "
            f"{kiti['eval_bitwise_equal']} | True | {_pf(kiti['eval_bitwise_equal'])} |"
        )
    for row in results.get("hard_all") or []:
        peak = row["peak_bytes"] / MB
        lines.append(
            f"| hard collision N={row['N']} d={row['d']} coll_coef={row['coll_coef']} "
            f"({row['accepted_pairs']}/{row['pairs']} pairs): peak extra MB | {peak:.2f} | "
            f"≤ {row['budget_mb']:.0f} | {_pf(peak <= row['budget_mb'])} |"
        )
        if row.get("rss_peak_bytes") is not None:
            rss = row["rss_peak_bytes"] / MB
            lines.append(
                f"| same, coll_coef={row['coll_coef']}, RSS cross-check MB | {rss:.2f} | "
                f"≤ {row['budget_mb']:.0f} | {_pf(rss <= row['budget_mb'])} |"
            )
    return [*lines, ""]


def _render_collisions(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## 1. Soft / hard collision: fast (kinetics) vs paper-literal (N, N, d) tensors",
        "",
        "| kind | N | d | speedup literal/fast | memory literal/fast | fast ms | literal ms "
        "| fast peak MB | literal peak MB | accepted pairs | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t = row["time_s"]
        peaks = row["peak_bytes"]
        speed = _iqr(row["speedup"], 1) if "speedup" in row else "—"
        memr = f"{row['memory_ratio']:.0f}" if "memory_ratio" in row else "—"
        lit_ms = _ms(t["literal"]["median"]) if "literal" in t else "—"
        acc = "—" if row["accepted_pairs"] is None else f"{row['accepted_pairs']}/{row['pairs']}"
        lines.append(
            f"| {row['kind']} | {row['N']} | {row['d']} | {speed} | {memr} | "
            f"{_ms(t['fast']['median'])} | {lit_ms} | {_mb(peaks['fast'])} | "
            f"{_mb(peaks.get('literal'))} | {acc} | {row['note']} |"
        )
    return [*lines, ""]


def _render_kitinet(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## 2. kitinet_collision vs plain x + v",
        "",
        "| pass | variant | time ratio to x+v | ms | peak extra MB | peak ratio to x+v "
        "| accepted pairs (rate) |",
        "|---|---|---|---|---|---|---|",
    ]
    plain_peak = {r["pass"]: r["peak_bytes"] for r in rows if r["variant"] == "plain"}
    for row in rows:
        if "pairs" in row:
            acc = (
                f"{row['accepted_pairs']}/{row['pairs']} "
                f"({row['accepted_pairs'] / max(row['pairs'], 1):.1%})"
            )
            label = f"heads={row['collision_heads']} (N={row['N']})"
        else:
            acc, label = "—", "x + v"
        peak_ratio = row["peak_bytes"] / max(plain_peak[row["pass"]], 1)
        lines.append(
            f"| {row['pass']} | {label} | {_iqr(row['time_ratio_to_plain'], 1)} | "
            f"{_ms(row['time_s']['median'])} | {_mb(row['peak_bytes'])} | {peak_ratio:.1f} | {acc} |"
        )
    s, d = rows[0]["S"], rows[0]["D"]
    return [*lines, "", f"(S, D) = ({s}, {d}); no SPEC target for the op alone.", ""]


def _render_hard_all(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## 3. Hard collision when nearly every pair collides",
        "",
        "| coll_coef | accepted / pairs | peak extra MB | RSS cross-check MB | limit MB | result "
        "| time s (1 run) | unchunked directions would need MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        peak = row["peak_bytes"] / MB
        lines.append(
            f"| {row['coll_coef']} | {row['accepted_pairs']}/{row['pairs']} | {peak:.2f} | "
            f"{_mb(row.get('rss_peak_bytes'))} | {row['budget_mb']:.0f} | "
            f"{_pf(peak <= row['budget_mb'])} | {row['time_s']:.2f} | "
            f"{row['naive_directions_bytes'] / MB:.0f} |"
        )
    n, d = rows[0]["N"], rows[0]["d"]
    return [*lines, "", f"(N, d) = ({n}, {d}); weight rows 1e-4·N(0,1), gradient rows N(0,1).", ""]


def _render_e2e(e2e: dict[str, Any]) -> list[str]:
    lines = [
        f"## 4. End to end: {e2e['model']}, batch {e2e['batch']}, {e2e['image']}x{e2e['image']}, "
        f"SGD(lr 0.1, momentum 0.9, wd 5e-4); KO on fc {tuple(e2e['fc_shape'])}, "
        f"coll_coef {e2e['coll_coef']}",
        "",
        f"{e2e['warmup_steps']} warm-up then {e2e['timed_steps']} timed steps per variant, "
        "rotating variants step by step. Three estimates of the overhead: the whole-step ratio "
        "(noise of a few %), the collision call timed alone on the head's real weight and "
        "gradient (precise; excludes the wrapper), and the difference of median optimizer-step "
        "times (includes the wrapper, noisier).",
        "",
        "| variant | step ratio to SGD | 1 + collision/step | 1 + Δopt.step/step | target "
        "| result (ratio / direct) | step ms | fwd+bwd ms | opt.step ms | collision call ms "
        "| collision rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rec in e2e["variants"].items():
        limit = e2e["targets"].get(name)
        ratio = rec["step_ratio_to_sgd"]["median"]
        if name == "sgd":
            direct_s, opt_s, call, verdict, target = "—", "—", "—", "—", "—"
        else:
            direct = 1.0 + rec["collision_fraction_of_step"]
            direct_s = f"{direct:.4f}"
            opt_s = f"{1.0 + rec['opt_step_overhead_fraction_of_step']:.4f}"
            call = _ms(rec["collision_call_s"]["median"])
            verdict = f"{_pf(ratio <= limit)} / {_pf(direct <= limit)}"
            target = f"≤ {limit}"
        rates = rec.get("collision_rates") or {}
        rate = ", ".join(f"{k}: {v:.1%}" for k, v in rates.items()) or "—"
        lines.append(
            f"| {name} | {_iqr(rec['step_ratio_to_sgd'], 4)} | {direct_s} | {opt_s} | {target} | "
            f"{verdict} | "
            f"{_ms(rec['step_s']['median'])} | {_ms(rec['fwd_bwd_s']['median'])} | "
            f"{_ms(rec['opt_step_s']['median'])} | {call} | {rate} |"
        )
    worst = e2e.get("hard_worst_case")
    if worst:
        lines += [
            "",
            f"Worst case, no target: hard collision at coll_coef {worst['coll_coef']} on the same "
            f"head and gradient ({worst['accepted_pairs']}/{worst['pairs']} pairs collide) takes "
            f"{_ms(worst['collision_call_s']['median'])} ms = "
            f"{worst['collision_fraction_of_step']:.2%} of the SGD step.",
        ]
    return [*lines, ""]


def _render_kiti_resnet(rec: dict[str, Any]) -> list[str]:
    lines = [
        f"## 5. KITI-ResNet-18 vs ResNet-18: {rec['model']}, batch {rec['batch']}, "
        f"{rec['image']}x{rec['image']}, base width {rec['base_width']}, collision_heads "
        f"{rec['collision_heads']}, SGD(lr 0.1, momentum 0.9, wd 5e-4)",
        "",
        f"{rec['warmup_rounds']} warm-up then {rec['rounds']} rounds, variants rotating step by "
        "step; same initial weights (KITINet has no parameters), a fresh random batch per step "
        "(the same sequence for every variant). "
        "Collision rate: accepted / candidate pairs of the two KITINet blocks, mean [min, max] "
        "over the timed steps; it drifts as the network trains (cost grows with the accepted "
        "pairs: K random directions and per-pair updates).",
        "",
        "| variant | step ratio to vanilla | target | result | step ms | collision rate |",
        "|---|---|---|---|---|---|",
    ]
    first = True
    for name, var in rec["variants"].items():
        ratio = var["step_ratio_to_vanilla"]
        if name == "vanilla":
            target, verdict, rate = "—", "—", "—"
        else:
            target = f"≤ {rec['target']}" if first else "(information)"
            verdict = _pf(ratio["median"] <= rec["target"])
            low, high = var["collision_rate_range"]
            rate = f"{var['collision_rate']:.3%} [{low:.3%}, {high:.3%}]"
            first = False
        label = name if name == "vanilla" else f"KITI coll_coef {var['coll_coef']}"
        lines.append(
            f"| {label} | {_iqr(ratio, 4)} | {target} | {verdict} | "
            f"{_ms(var['step_s']['median'])} | {rate} |"
        )
    eval_ms = {k: _ms(v["median"]) for k, v in rec["eval_s"].items()}
    lines += [
        "",
        f"Eval forward ({rec['eval_model']} vs vanilla, no_grad): ratio "
        f"{_iqr(rec['eval_ratio'], 4)} (ms: {eval_ms}); outputs bitwise equal: "
        f"**{rec['eval_bitwise_equal']}**.",
        "",
        "The KITINet call alone on the inputs the network gives its last-stage blocks "
        "(random CIFAR-shaped batch, initial weights):",
        "",
        "| block | coll_coef | (S, D) | collision rate | forward ms | forward+backward ms |",
        "|---|---|---|---|---|---|",
    ]
    for call in rec["calls"]:
        t = call["time_s"]
        lines.append(
            f"| {call['block']} | {call['coll_coef']} | {tuple(call['shape'])} | "
            f"{call['collision_rate']:.4%} | {_ms(t['forward']['median'])} | "
            f"{_ms(t['forward+backward']['median'])} |"
        )
    return [*lines, ""]


def _paper_ko_ratio(depth: str, variant: str, column: str) -> float | None:
    """KO Table 5 (CIFAR-100) ratio of ``variant`` ("S.C" / "H.C") to vanilla, or None."""
    try:
        from experiments.reports.common import paper_value

        base = paper_value("ko", "table5", f"Vanilla Resnet{depth}", column)
        other = paper_value("ko", "table5", f"Resnet{depth}+{variant}", column)
        return float(other) / float(base)
    except (KeyError, OSError, TypeError, ValueError, ImportError):
        return None


def _render_ko_resnets(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## 6. KO step overhead: CIFAR ResNet-18/34/50 x {SGD, +S.C., +H.C.} (KO Tables 4-5 analog)",
        "",
        f"CIFAR stem, CIFAR-100 head (KO on `fc`, coll_coef {rows[0]['coll_coef']}), "
        "SGD(lr 0.1, momentum 0.9, wd 5e-4), one random batch. Time: median of "
        "per-round paired ratios over interleaved steps. Memory: peak extra bytes of CPU tensors "
        "during one step (torch profiler allocation events, as in sections 1-3), ratio to SGD. "
        "Paper: KO Table 5 (CIFAR-100, whole runs on GPU) ratios to vanilla.",
        "",
        "| model | batch | variant | step ratio to SGD | paper runtime ratio | peak MB "
        "| peak ratio to SGD | paper memory ratio | step ms | collision rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        depth = re.sub(r"\D", "", row["model"])
        for name, var in row["variants"].items():
            paper = {"soft": "S.C", "hard": "H.C"}.get(name)
            p_time = _paper_ko_ratio(depth, paper, "RunTime") if paper else None
            p_mem = _paper_ko_ratio(depth, paper, "memory") if paper else None
            rates = ", ".join(f"{k}: {v:.1%}" for k, v in var["collision_rates"].items()) or "—"
            lines.append(
                f"| {row['model']} | {row['batch']} | {name} | "
                f"{_iqr(var['step_ratio_to_sgd'], 4)} | "
                f"{'—' if p_time is None else f'{p_time:.4f}'} | {_mb(var['peak_bytes'])} | "
                f"{var['peak_ratio_to_sgd']:.4f} | {'—' if p_mem is None else f'{p_mem:.4f}'} | "
                f"{_ms(var['step_s']['median'])} | {rates} |"
            )
    lines += [
        "",
        "KO Table 5 prints 5176 MB for ResNet50+S.C. against 11576 MB for vanilla and H.C. (likely "
        "a typo, see paper_tables.yaml), hence its memory ratio below 1.",
    ]
    return [*lines, ""]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(cfg: Config, out: Path, *, quick: bool, skip_e2e: bool) -> dict[str, Any]:
    """Run every section, write ``bench.json`` and ``bench.md`` into ``out``, return the results."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        results = _run_sections(cfg, quick=quick, skip_e2e=skip_e2e)
    finally:  # callers in the same process (the smoke test) keep their own setting
        torch.set_num_threads(previous_threads)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "bench.json", json.dumps(results, indent=2) + "\n")
    _write_atomic(out / "bench.md", render_markdown(results))
    return results


def _run_sections(cfg: Config, *, quick: bool, skip_e2e: bool) -> dict[str, Any]:
    start = time.perf_counter()
    busy0, mine0 = _cpu_seconds()
    results: dict[str, Any] = {"meta": machine_info(), "quick": quick, "config": asdict(cfg)}
    results["memory_validation"] = validate_memory_method(cfg)
    sections: list[tuple[str, Callable[[Config], Any]]] = [
        ("collisions", bench_collisions),
        ("kitinet", bench_kitinet),
        ("hard_all", bench_hard_all),
    ]
    if not skip_e2e:
        sections.append(("e2e", bench_e2e))
        sections.append(("kiti_resnet", bench_kiti_resnet))
        sections.append(("ko_resnets", bench_ko_resnets))
    errors = {}
    results["section_runtime_s"] = {}
    for name, fn in sections:
        section_start = time.perf_counter()
        try:
            results[name] = fn(cfg)
        except Exception as exc:  # one broken section must not lose the others' numbers
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"[{name}] FAILED: {errors[name]}", file=sys.stderr, flush=True)
        results["section_runtime_s"][name] = time.perf_counter() - section_start
    results["errors"] = errors
    results["runtime_s"] = time.perf_counter() - start
    results["meta"]["load_average_1_5_15min_at_end"] = list(os.getloadavg())
    busy1, mine1 = _cpu_seconds()
    # Cores kept busy by other processes (and the hypervisor) while the benchmark ran.
    results["meta"]["other_processes_cores"] = (
        max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (results["runtime_s"])
    )
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 1 if a section failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument(
        "--skip-e2e", action="store_true", help="skip the network steps (sections 4-6)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default 2; quick mode 1); see the report's note"
    )
    parser.add_argument("--rss-probe", help=argparse.SUPPRESS)  # internal: fresh-process probe
    args = parser.parse_args(argv)
    if args.rss_probe:
        torch.set_num_threads(args.threads or Config().threads)
        print(json.dumps(_rss_probe(args.rss_probe)))
        return 0
    cfg = Config.quick() if args.quick else Config()
    if args.threads:
        cfg = replace(cfg, threads=args.threads)
    results = run(cfg, args.out, quick=args.quick, skip_e2e=args.skip_e2e)
    print(f"wrote {args.out}/bench.md and bench.json in {results['runtime_s']:.0f} s")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
