"""The language-model renderers (experiments.reports.lm: KITINet Tables 1-2, KO Table 6, mini-lm)
on run directories written here in the runner's layout, with ``lm_eval.json`` files in the shape
:func:`experiments.lm.evaluation.evaluate_checkpoint` returns, and the runs mode of
``scripts/evaluate_lm.py`` with a stand-in for the evaluation (no model is loaded)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, render, render_cli, table_rows, write_run

from experiments.reports import common as tables
from experiments.reports.lm import relative_reductions, se_gain

GPT2_SITE = "collision_rate.transformer.h.{}.kitinet_attn"
MMLU_ETC = ("arc_challenge", "arc_easy", "hellaswag", "winogrande", "piqa", "openbookqa")


# --------------------------------------------------------------------------- fake runs


def task_result(**metrics: float) -> dict[str, Any]:
    """One task's entry of ``evaluate_checkpoint(...)["tasks"]``."""
    return {"kind": "task", **metrics, "n": 1000, "num_fewshot": 0, "version": 1.0}


def accuracy_result(acc: float, acc_norm: float | None = None, se: float = 0.01) -> dict:
    metrics = {"acc": acc, "acc_stderr": se}
    if acc_norm is not None:
        metrics.update({"acc_norm": acc_norm, "acc_norm_stderr": se})
    return task_result(**metrics)


def mmlu_result(acc: float, se: float = 0.0035) -> dict[str, Any]:
    """lm-eval's MMLU group: acc only, with the number of subjects."""
    return {
        "kind": "group",
        "acc": acc,
        "acc_stderr": se,
        "n": 14042,
        "num_fewshot": 0,
        "subtasks": 57,
    }


def answer_ppl_result(ppl: float) -> dict[str, Any]:
    return task_result(answer_ppl_token=ppl, answer_ppl_doc=ppl**20, answer_tokens=5000)


def write_lm_eval(run: Path, tasks: dict[str, dict[str, Any]]) -> None:
    """``run/lm_eval.json`` as ``scripts/evaluate_lm.py --runs`` writes it."""
    summary = {
        "checkpoint": str(run / "export"),
        "tasks": tasks,
        "num_fewshot": 0,
        "limit": None,
        "batch_size": 8,
        "device": "cpu",
        "dtype": "auto",
        "max_length": 256,
        "seeds": {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234},
        "versions": {"lm_eval": "0.4.13"},
        "command": "python scripts/evaluate_lm.py --runs x --tasks table1",
        "commit": "abc1234",
        "run_dir": str(run),
    }
    (run / "lm_eval.json").write_text(json.dumps(summary))


def lm_run(
    root: Path,
    experiment: str,
    *,
    seed: int,
    model: str,
    collision: str,
    curve: list[float],
    tasks: dict[str, dict[str, Any]] | None = None,
    rates: dict[str, list[float]] | None = None,
    alignment: float | None = None,
    tokens_per_s: float = 1000.0,
) -> Path:
    """An LM run: validation perplexity ``curve`` at steps 0, 25, 50, ... (the summary holds the
    last), a training record between evaluations with throughput and collision rates, and
    ``lm_eval.json`` when ``tasks`` is given."""
    records: list[dict[str, Any]] = []
    for index, ppl in enumerate(curve):
        step = 25 * index
        if index:
            record: dict[str, Any] = {"step": step - 10, "train_loss": 5.0, "test_perplexity": None}
            record["throughput"] = tokens_per_s * (0.2 if index == 1 else 1.0)  # start-up
            record.update({site: values[index - 1] for site, values in (rates or {}).items()})
            records.append(record)
        records.append({"step": step, "test_loss": math.log(ppl), "test_perplexity": ppl})
    summary: dict[str, Any] = {
        "test_loss": math.log(curve[-1]),
        "test_perplexity": curve[-1],
        "experiment_name": experiment,
        "wall_time": 60.0,
        **{site: values[-1] for site, values in (rates or {}).items()},
    }
    if alignment is not None:
        summary["collision_alignment.model.layers.3.mlp.down_proj"] = alignment
        summary["collision_alignment.model.layers.3.self_attn.q_proj"] = alignment
    config = {
        "experiment_name": experiment,
        "model": {"name": model, "config": {"n_layer": 4, "n_embd": 256}},
        "collision": {"name": collision, "coll_coef": 0.5, "collision_heads": 16},
        "dataset": {"name": "lm_tokens", "seq_len": 256},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "trainer": {"max_steps": 25 * (len(curve) - 1), "batch_size": 8, "watch": []},
    }
    run = write_run(
        root, f"{experiment}/{collision}_{seed}", seed=seed, summary=summary, extra_config=config
    )
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "export").mkdir()
    if tasks is not None:
        write_lm_eval(run, tasks)
    return run


def gpt2_tasks(shift: float) -> dict[str, dict[str, Any]]:
    """Table 1 suite results; ``shift`` is added to every accuracy."""
    tasks = {"mmlu": mmlu_result(0.25 + shift)}
    for index, task in enumerate(MMLU_ETC):
        tasks[task] = accuracy_result(0.30 + 0.05 * index + shift, 0.31 + 0.05 * index + shift)
    return tasks


# --------------------------------------------------------------------------- gains


def test_se_gain_and_relative_reductions() -> None:
    assert se_gain(25.0, 0.35, 26.0, 0.35).verdict == "clear gain"  # 1.0 > 2·0.495
    assert se_gain(25.0, 0.35, 25.5, 0.35).verdict == "within noise"
    assert se_gain(25.0, 0.35, 23.0, 0.35).verdict == "clear loss"
    assert se_gain(25.0, math.nan, 26.0, 0.35).verdict == "no SE"
    assert se_gain(math.nan, 0.3, 26.0, 0.35).verdict == "missing"
    import pandas as pd

    base = pd.DataFrame({"seed": [0, 1, 2], "ppl": [100.0, 200.0, math.nan]})
    other = pd.DataFrame({"seed": [0, 1, 2], "ppl": [90.0, 210.0, 50.0]})
    assert relative_reductions(base, other, "ppl") == pytest.approx([10.0, -5.0])


# --------------------------------------------------------------------------- KITINet Table 1


def _table1_fixture(runs: Path) -> None:
    sites = {GPT2_SITE.format(i): [0.3 + 0.1 * i, 0.2 + 0.1 * i, 0.25 + 0.1 * i] for i in range(2)}
    for variant, collision, shift in (("vanilla", "none", 0.0), ("kiti", "kitinet", 0.02)):
        lm_run(
            runs / f"kitinet_table1_gpt2_small_{variant}",
            f"kitinet_table1_gpt2_small_{variant}",
            seed=0,
            model="gpt2",
            collision=collision,
            curve=[50000.0, 30.0, 25.0, 20.0],
            tasks=gpt2_tasks(shift),
            rates=sites if collision == "kitinet" else None,
        )
    # a finished medium run not evaluated yet: its lm-eval cells are missing
    lm_run(
        runs / "kitinet_table1_gpt2_medium_vanilla",
        "kitinet_table1_gpt2_medium_vanilla",
        seed=0,
        model="gpt2_medium",
        collision="none",
        curve=[50000.0, 18.0],
    )


def test_render_kitinet_table1(tmp_path: Path) -> None:
    _table1_fixture(tmp_path / "runs")
    written = render("kitinet-table1", tmp_path / "runs", tmp_path / "out")
    assert [p.name for p in written] == ["README.md", "runs.json"]
    text = (tmp_path / "out" / "README.md").read_text()
    paper = tables.load_paper_tables()
    acc = table_rows(text, "Accuracy (%): the paper vs ours (acc)")
    rows = ["GPT2 [37]", "KITI-GPT2", "GPT2-medium [37]", "KITI-GPT2-med"]
    rows += ["GPT2-large [37]", "KITI-GPT2-large", "GPT2-xl [37]", "KITI-GPT2-xl"]
    assert list(acc) == rows
    for row in rows:  # every paper cell is the yaml's, as printed there
        expected = [
            tables.format_paper(tables.paper_value("kitinet", "table1", row, column, tables=paper))
            for column in ("MMLU", "ARC_C", "ARC_E", "HellaSwag", "WinoGrande")
        ]
        assert acc[row][0::2] == expected
    assert acc["GPT2 [37]"][0] == "24.9 (SE 0.35)"
    # ours: one run, acc in % with lm-eval's SE, as the paper prints its cells
    assert acc["GPT2 [37]"][1::2] == [
        "25.0 (SE 0.35)",
        "30.0 (SE 1.00)",
        "35.0 (SE 1.00)",
        "40.0 (SE 1.00)",
        "45.0 (SE 1.00)",
    ]
    assert acc["GPT2-medium [37]"][1::2] == ["missing"] * 5  # run, but no lm_eval.json yet
    assert acc["KITI-GPT2-xl"][1::2] == ["missing"] * 5  # no run
    norm = table_rows(text, "acc_norm (ours; the paper does not say whether it prints acc or")
    assert norm["GPT2 [37]"][0] == "n/a (mmlu has no acc_norm)"
    assert norm["KITI-GPT2"][1] == "33.0 (SE 1.00)"
    assert "**acc is the one set beside the paper's number**" in text
    gains = table_rows(text, "KITI − vanilla (points of accuracy)")
    # MMLU +2.00 vs 2·√2·0.35 = 0.99: clear; ARC-C +2.00 vs 2·√2·1.00 = 2.83: within noise
    assert gains["KITI-GPT2"][0] == "+2.00 (2 SE 0.99): clear gain"
    assert gains["KITI-GPT2"][1] == "+0.20 (2 SE 0.99): within noise"  # the paper's, from yaml
    assert gains["KITI-GPT2"][2:4] == [
        "+2.00 (2 SE 2.83): within noise",
        "+0.80 (2 SE 3.14): within noise",
    ]
    assert gains["KITI-GPT2-med"][0] == "missing"
    assert "ours\nbetter in 5 of 5 cells (1 clearly), worse in 0 (0 clearly)" in text
    assert "the paper's better in 19 of 20 cells (0 clearly), worse in 1 (0 clearly)" in text
    training = table_rows(text, "Training: validation perplexity, throughput, collision rates")
    assert training["GPT2 [37]"][1:] == [
        "20 ± — (n=1)",
        "1000 ± — (n=1)",  # the median tokens/s: the slow first interval is ignored
        "n/a (no collision)",
    ]
    # KITI: sites' means 0.25 and 0.35 -> 0.3 over sites; range 0.25-0.35
    assert training["KITI-GPT2"][3] == "0.3 ± — (n=1); 2 sites, range 0.25–0.35"
    assert training["KITI-GPT2-xl"][:3] == ["missing"] * 3
    assert "llm_gains_majority" not in text and "consistent performance gains" in text
    records = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert len(records) == 3 and records[0]["eval:mmlu:acc"] in (0.25, 0.27, None)


def test_paper_numbers_are_read_from_paper_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change a number in a copy of paper_tables.yaml: the rendered paper column follows it."""
    copy = tmp_path / "paper_tables.yaml"
    text = tables.PAPER_TABLES_PATH.read_text()
    row = "KITI-GPT2-xl:"
    assert yaml.safe_load(text)["kitinet"]["table1"]["rows"]["KITI-GPT2-xl"]["MMLU"]["mean"] == 27.2
    copy.write_text(text.replace(row, row, 1).replace("27.2", "99.9", 1))
    monkeypatch.setattr(tables, "PAPER_TABLES_PATH", copy)
    render("kitinet-table1", tmp_path / "runs", tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    acc = table_rows(readme, "Accuracy (%): the paper vs ours (acc)")
    assert acc["KITI-GPT2-xl"][0] == "99.9 (SE 0.37)"


# --------------------------------------------------------------------------- KITINet Table 2


def test_render_kitinet_table2(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    columns = ("gsm8k", "math", "mathqa", "ocw")
    for seed in range(3):
        for variant, collision, factor in (("vanilla", "none", 1.0), ("kiti", "kitinet", 0.95)):
            tasks = {
                f"kinetics_{name}_answer_ppl": answer_ppl_result((10.0 + i + seed) * factor)
                for i, name in enumerate(columns)
            }
            if collision == "kitinet" and seed == 2:
                del tasks["kinetics_ocw_answer_ppl"]  # evaluated without OCW: one seed fewer
            lm_run(
                runs / f"kitinet_table2_gpt2_{variant}",
                f"kitinet_table2_gpt2_{variant}",
                seed=seed,
                model="gpt2",
                collision=collision,
                curve=[20.0, 8.0],
                tasks=tasks,
            )
    render("kitinet-table2", runs, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    ppl = table_rows(text, "Answer perplexity (lower is better)")
    assert len(ppl) == 8
    assert ppl["GPT2 [37]"][0::2] == ["17.34", "12.35", "31.24", "7.34"]  # yaml
    assert ppl["GPT2 [37]"][1] == "11.0 ± 1.0 (n=3)"
    assert ppl["KITI-GPT2"][7] == "12.82 ± 0.67 (n=2)"  # seeds 0 and 1: (13, 14) · 0.95
    assert ppl["GPT2-medium [37]"][1::2] == ["missing"] * 4
    gains = table_rows(text, "Relative reduction of answer perplexity by KITI (%)")
    # every seed 5 % lower: no spread, so the mean is clear of 2 SE = 0
    assert gains["KITI-GPT2"][0].startswith("+5.00 ± 0.00 (n=3)")
    assert gains["KITI-GPT2"][1] == "+0.29"  # (17.34 - 17.29) / 17.34
    assert gains["KITI-GPT2"][6].startswith("+5.00 ± 0.00 (n=2)")
    assert gains["KITI-GPT2-med"][0] == "missing"
    assert "the paper's: 15 of 16 cells lower with KITI" in text


def test_kitinet_table2_one_seed_gives_no_verdict(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for variant, collision, ppl in (("vanilla", "none", 10.0), ("kiti", "kitinet", 9.0)):
        lm_run(
            runs / variant,
            f"kitinet_table2_gpt2_{variant}",
            seed=0,
            model="gpt2",
            collision=collision,
            curve=[20.0, 8.0],
            tasks={"kinetics_gsm8k_answer_ppl": answer_ppl_result(ppl)},
        )
    render("kitinet-table2", runs, tmp_path / "out")
    gains = table_rows((tmp_path / "out" / "README.md").read_text(), "Relative reduction")
    assert gains["KITI-GPT2"][0] == "+10.00 ± — (n=1)"


# --------------------------------------------------------------------------- KO Table 6


def test_render_ko_table6(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for variant, collision, shift in (("adamw", "none", 0.0), ("sc", "soft", 0.05)):
        tasks = {
            task: accuracy_result(0.40 + shift, 0.42 + shift, se=0.01)
            for task in ("piqa", "arc_challenge", "arc_easy", "hellaswag", "winogrande")
        }
        if variant == "sc":  # OBQA not evaluated: no Avg for this row
            tasks.pop("winogrande")
        tasks["openbookqa"] = accuracy_result(0.30 + shift, 0.32 + shift, se=0.02)
        lm_run(
            runs / variant,
            f"ko_table6_qwen2_0_5b_{variant}",
            seed=0,
            model="qwen2_0_5b",
            collision=collision,
            curve=[20000.0, 40.0],
            alignment=0.98 if collision == "soft" else None,
        )
        write_lm_eval(runs / variant / f"ko_table6_qwen2_0_5b_{variant}" / f"{collision}_0", tasks)
    render("ko-table6", runs, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    acc = table_rows(text, "Accuracy (fraction): the paper vs ours (acc)")
    assert list(acc) == ["Qwen2-0.5B", "Qwen2-0.5B-S.C.", "Qwen2-1.5B", "Qwen2-1.5B-S.C."]
    # paper, ours for PIQA, ARC_C, ARC_E, HellaSwag, WinoGrande, OBQA, Avg
    assert acc["Qwen2-0.5B"][0::2] == [
        "0.575",
        "0.227",
        "0.371",
        "0.273",
        "0.498",
        "0.246",
        "0.365",
    ]
    assert acc["Qwen2-0.5B"][1] == "0.400 (SE 0.0100)"
    assert acc["Qwen2-0.5B"][13] == f"{(5 * 0.40 + 0.30) / 6:.3f}"  # Avg: no SE
    assert acc["Qwen2-0.5B-S.C."][9] == "missing"  # WinoGrande not evaluated
    assert acc["Qwen2-0.5B-S.C."][13] == "missing"  # so no Avg
    assert acc["Qwen2-1.5B"][1::2] == ["missing"] * 7
    gains = table_rows(text, "+S.C. − AdamW (points of accuracy)")
    assert gains["Qwen2-0.5B-S.C."][0] == "+5.00 (2 SE 2.83): clear gain"
    assert gains["Qwen2-0.5B-S.C."][1] == "+0.70 (no SE printed)"  # (0.582 - 0.575) in points
    assert gains["Qwen2-0.5B-S.C."][10] == "+5.00 (2 SE 5.66): within noise"  # OBQA
    training = table_rows(text, "Training: validation perplexity, throughput, KO gradient")
    # S.C. selects no pairs (no rate column); the gradient alignment of its collided layers
    assert training["Qwen2-0.5B-S.C."][3] == "0.98 ± — (n=1)"
    assert training["Qwen2-0.5B"][3] == "—" and "collision rate (mean" not in text
    assert "average absolute improvement" in text  # the claim, quoted from the yaml


# --------------------------------------------------------------------------- mini-lm


def _mini_fixture(runs: Path, kiti_final: list[float], sc_final: list[float]) -> None:
    """Three seeds of the three mini-lm experiments, in `make mini-lm`'s layout; vanilla's final
    validation perplexity is 100 + seed, KITI's and S.C.'s as given."""
    faq = {"none": 40.0, "kitinet": 36.0}
    for seed in range(3):
        base = 100.0 + seed
        for collision, final in (("none", base), ("kitinet", kiti_final[seed])):
            # KITI is 4 above its final one evaluation (25 steps) before the end, vanilla 29
            before = final + (4.0 if collision == "kitinet" else 29.0)
            lm_run(
                runs / "mini_lm_table1",
                "mini_lm_table1",
                seed=seed,
                model="gpt2",
                collision=collision,
                curve=[8000.0, 400.0, 200.0, before, final],
                tasks={"kinetics_faq_answer_ppl": answer_ppl_result(60.0 + seed)},
                rates={
                    GPT2_SITE.format(0): [0.1, 0.1, 0.1, 0.1],
                    GPT2_SITE.format(1): [0.0, 0.0, 0.0, 0.0],
                }
                if collision == "kitinet"
                else None,
                tokens_per_s=900.0 if collision == "kitinet" else 1000.0,
            )
            lm_run(
                runs / "mini_lm_table2",
                "mini_lm_table2",
                seed=seed,
                model="gpt2",
                collision=collision,
                curve=[60.0, 30.0, 20.0],
                tasks={"kinetics_faq_answer_ppl": answer_ppl_result(faq[collision] + seed)},
            )
        for collision, final in (("none", base), ("soft", sc_final[seed])):
            lm_run(
                runs / "mini_lm_ko_table6",
                "mini_lm_ko_table6",
                seed=seed,
                model="qwen2_0_5b",
                collision=collision,
                curve=[8000.0, 300.0, final],
                alignment=0.97 + 0.01 * seed if collision == "soft" else None,
                tokens_per_s=950.0 if collision == "soft" else 1000.0,
            )


def _bullets(text: str, heading: str) -> list[str]:
    section = text.split(f"## {heading}")[1].split("\n## ")[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def test_render_mini_lm_sections_and_sentences(tmp_path: Path) -> None:
    clear, noisy = tmp_path / "clear", tmp_path / "noisy"
    _mini_fixture(clear, kiti_final=[95.0, 96.0, 97.0], sc_final=[99.0, 101.0, 103.0])
    _mini_fixture(noisy, kiti_final=[99.0, 102.0, 101.0], sc_final=[101.0, 102.0, 103.0])
    for root in (clear, noisy):
        written = render("mini-lm", root, root.with_name(root.name + "_out"))
        assert [p.name for p in written] == ["README.md", "runs.json", "val_ppl_curves.png"]
    out = tmp_path / "clear_out"
    assert (out / "val_ppl_curves.png").read_bytes()[:4] == b"\x89PNG"
    text = (out / "README.md").read_text()
    assert text.startswith("> **Provenance**") and "seeds found: 0, 1, 2" in text

    t1 = table_rows(text, "Table 1 stand-in: pretraining from scratch, vanilla vs KITI")
    assert t1["vanilla"][0] == "101.0 ± 1.0 (n=3)" and t1["KITI"][0] == "96.0 ± 1.0 (n=3)"
    assert t1["KITI"][2] == "900 ± 0 (n=3)"  # median tokens/s: the slow start-up is ignored
    kiti_gain = t1["KITI vs vanilla (final validation perplexity)"]
    assert kiti_gain[:1] == ["+5.00 ± 0.00 (n=3)"] and kiti_gain[2] == "clear gain"
    assert "![validation perplexity curves](val_ppl_curves.png)" in text

    t2 = table_rows(text, "Table 2 stand-in: continued pretraining on the Python docs")
    assert t2["pretrained base (= Table 1 stand-in's vanilla)"][:2] == [
        "61.0 ± 1.0 (n=3)",
        "n/a (Table 1 stand-in: trained and validated on Wikipedia)",
    ]
    assert t2["continued KITI"][0] == "37.0 ± 1.0 (n=3)"
    assert t2["continued vanilla vs pretrained base (FAQ answer perplexity)"][2] == "clear gain"
    assert t2["continued KITI vs continued vanilla (FAQ answer perplexity)"][2] == "clear gain"
    ko = table_rows(text, "KO Table 6 stand-in: tiny Qwen2, AdamW vs +S.C.")
    assert ko["+S.C."][3] == "0.980 ± 0.010 (n=3)" and ko["AdamW"][3] == "—"
    assert ko["+S.C. vs AdamW (final validation perplexity)"][2] == "within noise"

    rates = table_rows(text, "Collision rates that occurred")
    assert rates["KITI (Table 1 stand-in)"] == ["0.05 ± 0 (n=3); 2 sites, range 0–0.1"]
    assert rates["continued KITI (Table 2 stand-in)"] == ["missing"]  # no rate logged

    claims = _bullets(text, "The papers' claims and what our numbers say")
    [t1_claim] = [c for c in claims if c.startswith("KITI vs vanilla, mini GPT-2")]
    assert "clear gain" in t1_claim and "19 of 20 cells" in t1_claim
    [steps] = [c for c in claims if c.startswith("On the mean curves")]
    # KITI's mean curve is at 100 at step 75, vanilla's final is 101: 25 % fewer steps
    assert "reached vanilla's final 101 at step 75 of 100: 25% fewer steps" in steps
    assert "same direction as the paper's ~20% fewer steps (KITINet §5.1), larger" in steps
    [t2_claim] = [
        c
        for c in claims
        if c.startswith("continued KITI vs continued vanilla (relative reduction of the FAQ")
    ]
    # the paper's mean relative reduction over the four benchmarks of GPT2 small, from the yaml
    assert "the paper's +1.54 (KITINet Table 2, GPT2 small" in t2_claim
    assert "same sign as" in t2_claim and "larger in size" in t2_claim
    [overhead] = [c for c in claims if c.startswith("Throughput: +S.C.")]
    assert "+5.3 ± 0.0% time per token over 3 seeds (paired)" in overhead
    assert "the paper's ~3.3% (KO App. B.3)" in overhead
    assert "“" in text and "consistently outperforms the baseline" not in text

    noisy_text = (tmp_path / "noisy_out" / "README.md").read_text()
    noisy_claims = _bullets(noisy_text, "The papers' claims and what our numbers say")
    [noisy_t1] = [c for c in noisy_claims if c.startswith("KITI vs vanilla, mini GPT-2")]
    assert "within noise (2 of 3 seeds gain, 1 lose)" in noisy_t1
    [noisy_steps] = [c for c in noisy_claims if c.startswith("On the mean curves")]
    assert "only at the last evaluation (step 100" in noisy_steps
    assert "is not replicated at this scale" in noisy_steps
    [noisy_sc] = [c for c in noisy_claims if c.startswith("S.C. vs AdamW")]
    assert "clear loss" in noisy_sc  # every seed's S.C. perplexity is higher

    records = json.loads((out / "runs.json").read_text())
    assert len(records) == 18 and {r["experiment_name"] for r in records} == {
        "mini_lm_table1",
        "mini_lm_table2",
        "mini_lm_ko_table6",
    }
    assert "Warning" not in text


def test_render_mini_lm_without_runs_says_missing(tmp_path: Path) -> None:
    render("mini-lm", tmp_path / "absent", tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    assert "runs: **none**" in text
    t1 = table_rows(text, "Table 1 stand-in: pretraining from scratch, vanilla vs KITI")
    assert t1["vanilla"] == ["missing"] * 3
    assert t1["KITI vs vanilla (final validation perplexity)"][2] == "missing"
    assert "not tested" in text


def test_render_only_keeps_a_committed_mini_lm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make RENDER_ONLY=1 mini-lm` without multirun/: a committed results/mini_lm/ stays."""
    out = tmp_path / "results" / "mini_lm"
    out.mkdir(parents=True)
    (out / "README.md").write_text("committed\n")
    monkeypatch.chdir(tmp_path)
    code, stdout, err = render_cli(
        "mini-lm", "--runs", "multirun/mini_lm", "--out", "results/mini_lm"
    )
    assert code == 0 and stdout == ""
    assert (out / "README.md").read_text() == "committed\n" and not (out / "runs.json").exists()
    assert "`make mini-lm` (without RENDER_ONLY=1)" in err


# --------------------------------------------------------------------------- evaluate_lm --runs


def load_evaluate_cli() -> Any:
    spec = importlib.util.spec_from_file_location("evaluate_lm", REPO / "scripts/evaluate_lm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_runs_skips_evaluated_and_unfinished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "multirun"
    fresh = lm_run(root, "mini_lm_table1", seed=0, model="gpt2", collision="none", curve=[9.0])
    done = lm_run(
        root,
        "mini_lm_table1",
        seed=1,
        model="gpt2",
        collision="none",
        curve=[9.0],
        tasks={"kinetics_faq_answer_ppl": answer_ppl_result(5.0)},
    )
    unfinished = lm_run(root, "mini_lm_table1", seed=2, model="gpt2", collision="none", curve=[9.0])
    (unfinished / "summary.json").unlink()
    no_export = lm_run(root, "mini_lm_table1", seed=3, model="gpt2", collision="none", curve=[9.0])
    shutil.rmtree(no_export / "export")
    (fresh / ".hydra").mkdir()
    (fresh / ".hydra" / "config.yaml").write_text("seed: 0\n")  # Hydra's copy: not a run
    before = (done / "lm_eval.json").read_bytes()

    cli = load_evaluate_cli()
    calls: list[tuple[Path, list[str], dict[str, Any]]] = []

    def fake_evaluate(path: Path, tasks: list[str], **kwargs: Any) -> dict[str, Any]:
        calls.append((Path(path), list(tasks), kwargs))
        return {
            "checkpoint": str(path),
            "tasks": {"kinetics_faq_answer_ppl": answer_ppl_result(7.5)},
        }

    monkeypatch.setattr(cli.evaluation, "evaluate_checkpoint", fake_evaluate)
    argv = ["--runs", str(root), "--tasks", "mini", "--faq-qa", str(tmp_path / "faq.jsonl")]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [call[0] for call in calls] == [fresh / "export"]
    assert calls[0][1] == ["mini"] and calls[0][2]["metadata"] == {
        "faq_qa": str(tmp_path / "faq.jsonl")
    }
    assert lines == [
        f"{fresh}: evaluated -> lm_eval.json (kinetics_faq_answer_ppl: answer_ppl_token 7.5, "
        f"answer_ppl_doc {7.5**20:.4g})",
        f"{done}: skipped: lm_eval.json exists",
        f"{unfinished}: skipped: not finished (no summary.json)",
        f"{no_export}: skipped: no export/ (the runner exports language models only)",
        f"evaluated 1 of 4 run directories under {root}",
    ]
    written = json.loads((fresh / "lm_eval.json").read_text())
    assert written["tasks"]["kinetics_faq_answer_ppl"]["answer_ppl_token"] == 7.5
    assert written["run_dir"] == str(fresh) and written["command"].startswith(
        "python scripts/evaluate_lm.py --runs"
    )
    assert (done / "lm_eval.json").read_bytes() == before

    # again: nothing left to evaluate; a file lacking requested tasks is named, never replaced
    calls.clear()
    assert cli.main(["--runs", str(root), "--tasks", "mini", "table2"]) == 0
    out = capsys.readouterr().out
    assert calls == [] and "evaluated 0 of 4" in out
    assert "it lacks kinetics_gsm8k_answer_ppl" in out and "delete it to evaluate again" in out
    assert (done / "lm_eval.json").read_bytes() == before


def test_evaluate_runs_never_overwrites_and_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = load_evaluate_cli()
    target = tmp_path / "lm_eval.json"
    assert cli.write_new_json(target, {"a": 1}) is True
    assert cli.write_new_json(target, {"a": 2}) is False
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["lm_eval.json"]  # no staged file left

    assert cli.main(["--runs", str(tmp_path / "absent"), "--tasks", "mini"]) == 0
    assert "no run directories under" in capsys.readouterr().err
    for argv in (
        ["--runs", str(tmp_path), "--tasks", "mini", "--out", str(target)],
        ["--checkpoint", str(tmp_path), "--tasks", "mini"],
        ["--checkpoint", str(tmp_path), "--runs", str(tmp_path), "--tasks", "mini"],
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
