"""Peak extra memory of one call: torch-profiler allocation events, cross-checked by RSS.

:func:`profile_call` sums the profiler's signed allocation events over time (torch's CPU
allocator only); :func:`rss_peak_extra_bytes` measures the resident-set high-water mark of one call
in a fresh process, which also sees BLAS / oneDNN scratch and Python objects. The fresh process
runs this module: ``python -m benchmarks.memory SPEC [--threads N]`` prints one JSON line
(``scripts/bench.py --rss-probe SPEC`` does the same). :func:`validate_memory_method` reads a known
allocation with both.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.config import Config
from benchmarks.measure import MB

__all__ = [
    "peak_extra_bytes",
    "probe_main",
    "profile_call",
    "rss_peak_extra_bytes",
    "rss_probe",
    "validate_memory_method",
]

# The directory holding the ``benchmarks`` package: the probe process imports the same code.
_ROOT = Path(__file__).resolve().parent.parent


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


def rss_probe(spec: str) -> dict[str, float]:
    """Run inside a fresh process: peak RSS growth (MB) of one call, after a warm-up.

    ``spec`` is ``alloc:<MB>`` (one filled tensor of that size) or ``hard:<N>:<d>:<coll_coef>``
    (hard collision on the inputs of :mod:`benchmarks.hard_collision_memory`).
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
        from benchmarks.hard_collision_memory import hard_all_inputs
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
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "benchmarks.memory", spec, "--threads", str(threads)]
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


def probe_main(spec: str, threads: int | None) -> int:
    """Fresh-process side of :func:`rss_peak_extra_bytes`: print the probe's record as JSON."""
    torch.set_num_threads(threads or Config().threads)
    print(json.dumps(rss_probe(spec)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.memory SPEC [--threads N]``."""
    parser = argparse.ArgumentParser(description="peak RSS growth of one call (fresh process)")
    parser.add_argument("spec", help="alloc:<MB> or hard:<N>:<d>:<coll_coef>")
    parser.add_argument("--threads", type=int, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    return probe_main(args.spec, args.threads)


if __name__ == "__main__":
    sys.exit(main())
