"""Smoke test of the ``benchmarks`` package (``make bench``): tiny sizes, few repeats, no timing
assertions.

Proves the benchmark runs end to end and writes its report, that its memory probes read a known
allocation correctly (in this process and in the fresh one they start), and that the paper-literal
baseline computes the same thing as the fast code.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import literal as _literal
from benchmarks.config import Config
from benchmarks.fast_vs_literal import collision_inputs
from benchmarks.kitinet_op import REGIMES, floor_flops, randn_directions
from benchmarks.measure import MB, repo_relative, time_interleaved
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
    _check_kitinet_section(results["kitinet"], Config.quick())
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
    _check_text_section(results["text"])
    _check_lm_section(results["lm"])
    report = (tmp_path / "bench.md").read_text()
    for number in range(1, 9):
        assert f"## {number}." in report
    assert "## Targets" in report
    assert "counter-based / randn directions" in report  # the stream target, per row
    assert "**Floor** of the selection" in report
    assert "KITI-ResNet-18 step / ResNet-18, coll_coef 0.9" in report
    assert "eval outputs bitwise equal" in report
    assert "MiniLM-L6 step, KITINet, last layer, attn / AdamW (collision rate" in report
    assert "MiniLM-L6 eval logits of KITI bitwise equal to vanilla | True" in report
    assert "LM loop: tokens/s of `fit` / bare loop" in report
    assert "KITI-GPT-2 eval logits bitwise equal to GPT-2 | True" in report
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


def _positive(stats: dict[str, float]) -> bool:
    return all(math.isfinite(v) and v > 0 for v in stats.values())


def _check_kitinet_section(rec: dict, cfg: Config) -> None:
    """Every (regime, heads, pass) row is there with finite positive ratios; the dense regime
    really collides; the floor is timed for every heads."""
    expected = {
        (regime, h, pass_)
        for regime in REGIMES
        for h in cfg.kitinet_heads
        for pass_ in ("forward", "forward+backward")
    }
    rows = {(r["regime"], r["collision_heads"], r["pass"]): r for r in rec["rows"]}
    assert set(rows) == expected and len(rec["rows"]) == len(expected)
    for (regime, h, pass_), row in rows.items():
        assert _positive(row["time_ratio_to_plain"]) and _positive(row["stream_ratio_to_randn"])
        assert ("time_ratio_to_floor" in row) == (pass_ == "forward")
        if pass_ == "forward":
            assert _positive(row["time_ratio_to_floor"])
        assert 0 <= row["accepted_pairs"] <= row["pairs"]
        assert row["collision_rate"] == pytest.approx(row["accepted_pairs"] / row["pairs"])
        assert row["peak_bytes"] > 0 and row["randn_peak_bytes"] > 0
        if regime == "dense":
            assert row["accepted_pairs"] > 0, (h, row)
    assert set(rec["plain"]) == {"forward", "forward+backward"}
    assert set(rec["floor"]) == {str(h) for h in cfg.kitinet_heads}
    for floor in rec["floor"].values():
        assert _positive(floor["time_s"]) and floor["matmul_flops"] > 0 and floor["exps"] > 0


def _check_text_section(rec: dict) -> None:
    """Every variant has its time, ratio to vanilla, verdict and peak memory, the others also their
    direct estimate (KO: the collision call; KITI: the KITINet call and the rates); the KITI eval
    logits equal vanilla's bit for bit."""
    from benchmarks.text_minilm import pretrained_dir

    expected = {"vanilla", "soft", "hard", "kiti"}
    if pretrained_dir(Config.quick()) is not None:  # the local all-MiniLM-L6-v2 (make text-data)
        expected.add("kiti_pretrained")
    assert set(rec["variants"]) == expected
    assert (rec["batch"], rec["seq_len"]) == (Config.quick().text_batch, Config.quick().text_seq)
    for name, var in rec["variants"].items():
        assert _positive(var["step_s"]) and _positive(var["step_ratio_to_vanilla"])
        assert var["peak_bytes"] > 0
        assert (var["target"] is None) == (name == "vanilla")
        assert var["within_target"] in (None, True, False)
        assert ("direct_ratio" in var) == (name != "vanilla")
        assert ("collision_call_s" in var) == (name in ("soft", "hard"))
        assert ("collision_rate" in var) == ("kitinet_call" in var) == name.startswith("kiti")
        if name.startswith("kiti"):
            low, high = var["collision_rate_range"]
            assert 0.0 <= low <= var["collision_rate"] <= high <= 1.0
            assert var["collision_rate_steps"] > 0
            call = var["kitinet_call"]
            assert _positive(call["kitinet_s"]) and _positive(call["add_s"])
            assert call["shape"] == [rec["batch"] * rec["seq_len"], 384]  # one system per token
            assert 0.0 <= call["collision_rate"] <= 1.0
    assert rec["variants"]["vanilla"]["step_ratio_to_vanilla"]["median"] == 1.0
    assert rec["targets"] == dict(Config().text_targets)
    assert _positive(rec["eval_ratio"]) and set(rec["eval_s"]) == {"vanilla", "kiti"}
    assert rec["eval_bitwise_equal"] is True  # eval KITINet is exactly x + v


def _check_lm_section(rec: dict) -> None:
    """Loop overhead (both loops' tokens/s, ratio, direct estimate, equal weights), KITI-GPT-2
    (step ratio, per-block rates, direct estimate, eval ratio, bitwise eval logits) and KO soft on
    the tiny Qwen2's last layer (step ratio, direct estimate) are all there."""
    cfg = Config.quick()
    assert (rec["batch"], rec["seq_len"]) == (cfg.lm_batch, cfg.lm_seq)
    loop = rec["loop"]
    assert (
        set(loop["tokens_per_s"]) == set(loop["run_s"]) == {"ours", "bare", "bare_zero_grad_last"}
    )
    assert all(math.isfinite(v) and v > 0 for v in loop["tokens_per_s"].values())
    assert _positive(loop["tokens_per_s_ratio"]) and math.isfinite(loop["direct_ratio"])
    assert loop["target"] == Config().lm_loop_target
    assert loop["within_target"] in (True, False) and loop["direct_within_target"] in (True, False)
    assert loop["same_weights"] is True and loop["tiny"]["same_weights"] is True  # the same work
    assert _positive(loop["zero_grad_last_ratio"])
    kiti = rec["kiti"]
    assert _positive(kiti["step_ratio"]) and kiti["target"] == dict(Config().lm_targets)["kiti"]
    blocks = [f"transformer.h.{i}.kitinet_attn" for i in range(cfg.lm_layers)]
    assert list(kiti["collision_rates"]) == blocks == list(kiti["call_collision_rates"])
    for rates in kiti["collision_rates"].values():
        assert 0.0 <= rates["min"] <= rates["mean"] <= rates["max"] <= 1.0
    assert kiti["collision_rate_steps"] == cfg.lm_rounds
    assert math.isfinite(kiti["direct_ratio"]) and set(kiti["calls_s"]) == {*blocks, "add"}
    assert _positive(kiti["eval_ratio"]) and set(kiti["eval_s"]) == {"vanilla", "kiti"}
    assert kiti["eval_bitwise_equal"] is True  # eval KITINet is exactly x + v
    ko = rec["ko"]
    assert len(ko["layers"]) == 7  # q, k, v, o, gate, up, down of the last decoder layer
    assert all(name.startswith(f"model.layers.{cfg.lm_layers - 1}.") for name in ko["layers"])
    assert _positive(ko["step_ratio"]) and math.isfinite(ko["direct_ratio"])
    assert 0.0 < ko["flop_ratio"] == ko["collision_flops"] / ko["step_flops"]
    assert ko["target"] == dict(Config().lm_targets)["ko_soft"]


def test_randn_directions_swaps_the_source_and_restores_it() -> None:
    from kinetics import _pairs
    from kinetics.kitinet import kitinet_collision_with_rate

    gen = torch.Generator().manual_seed(0)
    x = (0.05 * torch.randn(6, 64, generator=gen)).requires_grad_()
    v = torch.randn(6, 64, generator=gen).requires_grad_()
    original = _pairs._Directions.block

    def collide() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, rate = kitinet_collision_with_rate(x, v, collision_heads=4, coll_coef=0.5)
        x.grad = v.grad = None
        out.backward(torch.ones_like(out))
        return out.detach(), v.grad.clone(), rate

    counter, _, rate = collide()
    assert rate > 0
    with randn_directions():
        assert _pairs._Directions.block is not original
        randn, grad_randn, _ = collide()
        again, grad_again, _ = collide()
    assert _pairs._Directions.block is original
    assert not torch.equal(randn, counter)  # the directions did come from elsewhere
    # A function of the stream key, like the counter-based stream: calls with the same key (and
    # forward and backward of one call) draw the same directions.
    assert torch.equal(randn, again) and torch.equal(grad_randn, grad_again)
    # Outside the context the counter-based stream is back.
    out_counter, _ = kitinet_collision_with_rate(x, v, collision_heads=4, coll_coef=0.5)
    assert torch.equal(out_counter.detach(), counter)


def test_time_interleaved_shuffles_rounds_reproducibly() -> None:
    def orders() -> list[list[str]]:
        seen: list[str] = []
        fns = {name: functools.partial(seen.append, name) for name in "abcdef"}
        samples = time_interleaved(fns, repeats=8, warmup=0, sample_seconds=0.0, shuffle=True)
        assert all(len(v) == 8 for v in samples.values())
        calls = seen[len(fns) :]  # after the one call per variant that sizes the samples
        return [calls[i : i + len(fns)] for i in range(0, len(calls), len(fns))]

    rounds = orders()
    assert len(rounds) == 8 and all(sorted(r) == list("abcdef") for r in rounds)
    # Not the fixed cyclic order: some variant is preceded by different ones in different rounds.
    predecessors = {(r[i - 1], r[i]) for r in rounds for i in range(1, len(r))}
    assert len(predecessors) > 2 * len(rounds[0])
    assert orders() == rounds  # seeded


def test_floor_flops_formula() -> None:
    # Two Gram matmuls of (N, d+2) x (d+2, N) per system, one exp per candidate pair.
    assert floor_flops(2048, 64, 12) == (2 * 2 * 2048 * 64 * 64 * 14, 2048 * 64 * 63 // 2)


def test_only_runs_the_named_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import runner

    ran = []
    fake = (("kitinet", lambda cfg: ran.append("kitinet") or {}), ("hard_all", ran.append))
    monkeypatch.setattr(runner, "SECTIONS", fake)
    monkeypatch.setattr(runner, "validate_memory_method", lambda cfg: {"fake": True})
    monkeypatch.setattr(runner, "write_report", lambda results, out: None)
    results = runner.run(Config.quick(), tmp_path, quick=True, skip_e2e=True, only=["kitinet"])
    assert ran == ["kitinet"] and "hard_all" not in results and results["only"] == ["kitinet"]
    with pytest.raises(ValueError, match="unknown sections"):
        runner.run(Config.quick(), tmp_path, quick=True, skip_e2e=True, only=["nope"])


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


def test_lm_section_runs_on_random_tokens_without_the_data() -> None:
    """A fresh clone has no data/lm/mini_wiki: the section falls back to random tokens."""
    import dataclasses

    from benchmarks.lm_training import bench_lm

    rec = bench_lm(dataclasses.replace(Config.quick(), lm_data=None))
    assert rec["data"] == "random tokens"
    _check_lm_section(rec)


def test_reports_show_paths_inside_the_repository_relative_to_it(tmp_path: Path) -> None:
    # the same on every checkout (a worktree, a clone elsewhere); other paths as given
    assert repo_relative(REPO / "data" / "lm" / "mini_wiki") == "data/lm/mini_wiki"
    assert repo_relative(tmp_path / "lm") == str(tmp_path / "lm")
