"""Run every benchmark section and write the report (what ``scripts/bench.py`` calls)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.fast_vs_literal import bench_collisions
from benchmarks.hard_collision_memory import bench_hard_all
from benchmarks.kiti_resnet18 import bench_kiti_resnet
from benchmarks.kitinet_op import bench_kitinet
from benchmarks.ko_resnet18_step import bench_e2e
from benchmarks.ko_resnet_overhead import bench_ko_resnets
from benchmarks.lm_training import bench_lm
from benchmarks.measure import cpu_seconds, machine_info
from benchmarks.memory import validate_memory_method
from benchmarks.report import write_report
from benchmarks.text_minilm import bench_text

__all__ = ["SECTIONS", "run"]

# (results key, section), in report order; the last five train networks (``--skip-e2e``).
SECTIONS: tuple[tuple[str, Callable[[Config], Any]], ...] = (
    ("collisions", bench_collisions),
    ("kitinet", bench_kitinet),
    ("hard_all", bench_hard_all),
    ("e2e", bench_e2e),
    ("kiti_resnet", bench_kiti_resnet),
    ("ko_resnets", bench_ko_resnets),
    ("text", bench_text),
    ("lm", bench_lm),
)
_NETWORK_SECTIONS = frozenset({"e2e", "kiti_resnet", "ko_resnets", "text", "lm"})


def run(
    cfg: Config,
    out: Path,
    *,
    quick: bool,
    skip_e2e: bool,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run every section (``only``: just these, by results key), write ``bench.json`` and
    ``bench.md`` into ``out``, return the results."""
    unknown = set(only or ()) - {key for key, _ in SECTIONS}
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; known: {[k for k, _ in SECTIONS]}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        results = _run_sections(cfg, quick=quick, skip_e2e=skip_e2e, only=only)
    finally:  # callers in the same process (the smoke test) keep their own setting
        torch.set_num_threads(previous_threads)
    write_report(results, out)
    return results


def _run_sections(
    cfg: Config, *, quick: bool, skip_e2e: bool, only: Sequence[str] | None
) -> dict[str, Any]:
    start = time.perf_counter()
    busy0, mine0 = cpu_seconds()
    results: dict[str, Any] = {"meta": machine_info(), "quick": quick, "config": asdict(cfg)}
    results["only"] = list(only) if only is not None else None
    results["memory_validation"] = validate_memory_method(cfg)
    sections = [
        (k, fn)
        for k, fn in SECTIONS
        if not (skip_e2e and k in _NETWORK_SECTIONS) and (only is None or k in only)
    ]
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
    busy1, mine1 = cpu_seconds()
    # Cores kept busy by other processes (and the hypervisor) while the benchmark ran.
    results["meta"]["other_processes_cores"] = (
        max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (results["runtime_s"])
    )
    return results
