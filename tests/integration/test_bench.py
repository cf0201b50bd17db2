"""Smoke test of the ``benchmarks`` package (``make bench``): tiny sizes, few repeats, no timing
assertions.

Proves the benchmark runs end to end and writes its report, that its memory probes read a known
allocation correctly (in this process and in the fresh one they start), and that the paper-literal
baseline computes the same thing as the fast code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import literal as _literal
from benchmarks.config import Config
from benchmarks.fast_vs_literal import collision_inputs
from benchmarks.measure import MB
from benchmarks.memory import peak_extra_bytes, rss_peak_extra_bytes
from benchmarks.runner import run
from kinetics import soft_collision
from kinetics.dsmc import collide

REPO = Path(__file__).resolve().parents[2]


def test_peak_extra_bytes_reads_a_known_allocation() -> None:
    size = 8 * MB
    peak = peak_extra_bytes(lambda: torch.ones(size // 4))
    assert abs(peak - size) <= 0.01 * size

    # Two live tensors peak at twice the size, even though one is freed before the call ends.
    def two() -> torch.Tensor:
        a = torch.ones(size // 4)
        b = a * 2
        del a
        return b

    assert abs(peak_extra_bytes(two) - 2 * size) <= 0.02 * size


def test_rss_probe_in_a_fresh_process() -> None:
    # What the benchmark runs: `python -m benchmarks.memory alloc:64 --threads 1`. Only in a fresh
    # process: inside a pytest worker the heap may hand the 64 MB back from freed, resident pages
    # (seen once: 0 MB extra), which is why the probe never runs in-process.
    extra = rss_peak_extra_bytes("alloc:64", threads=1)
    assert extra is not None and 63.0 < extra / MB < 70.0


def test_bench_script_keeps_its_rss_probe_flag() -> None:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    cmd = [sys.executable, str(REPO / "scripts" / "bench.py"), "--rss-probe", "alloc:8"]
    cmd += ["--threads", "1"]
    proc = subprocess.run(
        cmd, env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout.strip().splitlines()[-1])) == {
        "rss_extra_mb",
        "baseline_rss_mb",
    }


def test_literal_soft_matches_fast() -> None:
    gen = torch.Generator().manual_seed(0)
    w, g = torch.randn(12, 7, generator=gen), torch.randn(12, 7, generator=gen)
    g[3] = 0.0  # a zero row has cosine 0 in both
    torch.testing.assert_close(
        _literal.soft_collision_literal(w, g, 0.7), soft_collision(w, g, 0.7), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("coef", [0.5, 1.0])
def test_literal_hard_matches_fast_with_same_directions(coef: float) -> None:
    w, g = collision_inputs(15, 6, distance=0.2, seed=3)
    result = collide(w[None], g[None], coef)
    k = int(result.num_accepted.sum())
    assert 0 < k and (coef == 1.0 or k < result.num_pairs)  # coef 0.5: some pairs, not all
    dirs = torch.nn.functional.normalize(torch.randn(k, 6, generator=torch.Generator()), dim=-1)
    fast = collide(w[None], g[None], coef, directions=dirs).v_new[0]
    literal = _literal.hard_collision_literal(w, g, coef, directions=dirs)
    torch.testing.assert_close(literal, fast, atol=1e-5, rtol=1e-5)
    # Momentum (sum of gradient rows) is conserved by both.
    torch.testing.assert_close(literal.sum(0), g.sum(0), atol=1e-4, rtol=1e-5)


def test_quick_run_writes_report(tmp_path: Path) -> None:
    returned = run(Config.quick(), tmp_path, quick=True, skip_e2e=False)
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["errors"] == {} and returned["errors"] == {}
    assert results["quick"] is True
    assert abs(results["memory_validation"]["profiler_mb"] - 100.0) < 1.0
    assert {r["kind"] for r in results["collisions"]} == {"soft", "hard"}
    assert all("speedup" in r for r in results["collisions"])  # tiny sizes: literal never skipped
    assert {r["pass"] for r in results["kitinet"]} == {"forward", "forward+backward"}
    hard_all = results["hard_all"]
    assert hard_all[-1]["accepted_pairs"] == hard_all[-1]["pairs"]  # coll_coef 1: all collide
    assert set(results["e2e"]["variants"]) == {"sgd", "soft", "hard"}
    kiti = results["kiti_resnet"]
    assert set(kiti["variants"]) == {"vanilla", "kiti_0.9", "kiti_0.95"}
    assert kiti["eval_bitwise_equal"] is True  # eval KITINet is exactly x + v
    assert {c["block"] for c in kiti["calls"]} == {"layer4.0", "layer4.1"}
    assert all(
        0.0 <= v["collision_rate"] <= 1.0 for k, v in kiti["variants"].items() if k != "vanilla"
    )
    ko = results["ko_resnets"]
    assert [r["model"] for r in ko] == ["cifar_resnet18", "cifar_resnet50"]
    for row in ko:
        assert set(row["variants"]) == {"sgd", "soft", "hard"}
        assert row["variants"]["sgd"]["peak_ratio_to_sgd"] == 1.0
        assert all(v["peak_bytes"] > 0 for v in row["variants"].values())
    report = (tmp_path / "bench.md").read_text()
    for heading in ("## Targets", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6."):
        assert heading in report
    assert "KITI-ResNet-18 step / ResNet-18, coll_coef 0.9" in report
    assert "eval outputs bitwise equal" in report
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_literal_memory_estimate_bounds_the_measured_peak(kind: str) -> None:
    n, d = 40, 64
    w, g = collision_inputs(n, d, distance=0.2)
    fn = _literal.soft_collision_literal if kind == "soft" else _literal.hard_collision_literal
    peak = peak_extra_bytes(lambda: fn(w, g, 0.5))
    estimate = _literal.literal_peak_bytes(kind, n, d)
    assert estimate / 2 < peak <= estimate  # the literal code really is O(N^2 d), and bounded


def test_literal_memory_estimate_skips_imagenet_head() -> None:
    limit = Config().literal_limit_bytes
    assert _literal.literal_peak_bytes("hard", 1000, 2048) > limit
    assert _literal.literal_peak_bytes("soft", 100, 512) < limit
