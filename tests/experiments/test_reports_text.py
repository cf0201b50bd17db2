"""The text renderers (experiments.reports.text: KO Table 3, KITINet Table 5, mini-text) on run
directories written here in the runner's layout, some cells left missing on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import render, render_cli, table_rows, write_run

from experiments.reports.runs import claim_sentence, judge_gain
from experiments.reports.text import text_data_key

KITI_SITE = "collision_rate.bert.encoder.layer.11.attention.output.kitinet_attn"
MINI_KITI_SITE = "collision_rate.bert.encoder.layer.5.attention.output.kitinet_attn"


def text_run(
    root: Path,
    experiment: str,
    *,
    seed: int,
    model: str,
    collision: str,
    data: str,
    accuracy: list[float],
    macro_f1: list[float] | None = None,
    rates: dict[str, list[float]] | None = None,
) -> Path:
    """A text run: config as the runner resolves it, summary = the last epoch's record, and a
    ``metrics.jsonl`` with the initial record (epoch 0) and one record per epoch."""
    dataset: dict[str, Any] = {"name": data, "max_length": 64}
    if data in ("movie_snippets", "chatterbot_topics"):
        dataset = {"name": "text_files", "train": f"data/text/{data}/train.csv", "max_length": 64}
    records: list[dict[str, Any]] = [{"epoch": 0, "step": 0, "test_accuracy": 0.99}]
    for epoch, value in enumerate(accuracy, start=1):
        record: dict[str, Any] = {"epoch": epoch, "step": 10 * epoch, "test_accuracy": value}
        if macro_f1 is not None:
            record["test_macro_f1"] = macro_f1[epoch - 1]
        record.update({site: values[epoch - 1] for site, values in (rates or {}).items()})
        records.append(record)
    summary = {k: v for k, v in records[-1].items() if k not in ("epoch", "step")}
    summary.update({"experiment_name": experiment, "wall_time": 120.0})
    config = {
        "experiment_name": experiment,
        "model": {"name": model},
        "dataset": dataset,
        "collision": {"name": collision, "coll_coef": 0.5},
        "optimizer": {"name": "adamw", "lr": 2e-5},
    }
    name = f"{experiment}/{data}_{collision}_{seed}"
    run = write_run(root, name, seed=seed, summary=summary, extra_config=config)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


# --------------------------------------------------------------------------- gains and sentences


def test_judge_gain_verdicts() -> None:
    assert judge_gain([]).verdict == "missing"
    assert judge_gain([0.4]).verdict == "one seed"
    clear = judge_gain([0.6, 0.8, 1.0])
    assert clear.verdict == "clear gain" and clear.n == 3
    assert clear.mean == pytest.approx(0.8) and clear.std == pytest.approx(0.2)
    assert "every seed gains" in clear.reason
    assert judge_gain([-1.0, -1.5, -1.2]).verdict == "clear loss"
    mixed = judge_gain([0.5, -0.2, 0.6])
    assert mixed.verdict == "within noise" and mixed.reason == "2 of 3 seeds gain, 1 lose"
    # Same sign, but the mean is within 2 standard errors of 0: still noise.
    wide = judge_gain([0.1, 0.1, 3.0])
    assert wide.verdict == "within noise" and "2 SE" in wide.reason
    assert judge_gain([0.0, 0.0]).reason == "no seed differs"


def test_claim_sentence_wording_follows_the_numbers() -> None:
    where = "KO Table 3, IMDB, bert-base-uncased"
    subject = "S.C. vs AdamW on sentiment (final accuracy)"
    noise = claim_sentence(subject, judge_gain([0.5, -0.2, 0.6]), 0.61, where)
    assert noise.startswith(f"{subject}: +0.30 ± 0.44 points over 3 seeds (paired by seed)")
    assert "within noise" in noise
    assert noise.endswith(f"the paper's +0.61 ({where}) is not replicated at this scale.")
    gain = claim_sentence(subject, judge_gain([3.0, 3.5, 3.0]), 0.61, where)
    assert "clear gain" in gain and "same sign as the paper's +0.61" in gain
    assert gain.endswith("larger in size at this scale.")
    small = claim_sentence(subject, judge_gain([0.3, 0.4, 0.35]), 0.61, where)
    assert "smaller in size" in small
    loss = claim_sentence(subject, judge_gain([-1.0, -1.5, -1.2]), 0.17, where)
    assert "clear loss" in loss and loss.endswith(f"opposite to the paper's +0.17 ({where}).")
    # A paper gain smaller than our resolution is neither confirmed nor refuted.
    coarse = claim_sentence(subject, judge_gain([1.0, -2.0, 1.5]), 0.02, where)
    assert "neither confirmed nor refuted" in coarse
    assert "no verdict" in claim_sentence(subject, judge_gain([0.4]), 0.61, where)
    missing = claim_sentence(subject, judge_gain([]), 0.61, where)
    assert "missing" in missing and "is not tested here" in missing
    none = claim_sentence(subject, judge_gain([0.6, 0.8, 1.0]), None, "no such cell")
    assert none.endswith("the paper has no number to compare (no such cell).")


def test_text_data_key_names_a_text_files_set_by_its_folder() -> None:
    assert text_data_key({"dataset.name": "imdb"}) == "imdb"
    files = {"dataset.name": "text_files", "dataset.train": "/d/text/chatterbot_topics/train.csv"}
    assert text_data_key(files) == "chatterbot_topics"
    assert text_data_key({}) == "missing"


# --------------------------------------------------------------------------- KO Table 3


def _ko_table3_fixture(runs: Path) -> None:
    for seed in range(3):
        base = 0.930 + 0.002 * seed
        best = 0.950 + 0.002 * seed  # an earlier epoch beat the final one
        for variant, gain in (("adamw", 0.0), ("sc", 0.006 + 0.002 * seed)):
            text_run(
                runs,
                f"ko_table3_bert_base_uncased_{variant}",
                seed=seed,
                model="bert_base_uncased",
                collision="none" if variant == "adamw" else "soft",
                data="imdb",
                accuracy=[best + gain, base + gain],
            )
    for seed, (acc, f1) in enumerate([(0.97, 0.90), (0.98, 0.92)]):
        text_run(
            runs,
            "ko_table3_distilbert_base_uncased_hc",
            seed=seed,
            model="distilbert_base_uncased",
            collision="hard",
            data="snips",
            accuracy=[acc - 0.01, acc],
            macro_f1=[f1 + 0.01, f1],
            rates={
                "collision_rate.classifier": [0.2, 0.1],
                "collision_rate.pre_classifier": [0.0, 0.0],
            },
        )


def test_render_ko_table3_end_to_end(tmp_path: Path) -> None:
    _ko_table3_fixture(tmp_path / "runs")
    render("ko-table3", tmp_path / "runs", tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    assert text.startswith("> **Provenance**") and "seeds found: 0, 1, 2" in text
    acc = table_rows(text, "Test accuracy (%)")
    models = ("bert-base-cased", "bert-base-uncased", "distilbert-base-uncased")
    assert list(acc) == [f"{m}+{v}" for m in models for v in ("AdamW", "S.C.", "H.C.")]
    # columns: IMDB final, best, paper; Snips final, best, paper
    assert acc["bert-base-uncased+AdamW"] == [
        "93.20 ± 0.20 (n=3)",
        "95.20 ± 0.20 (n=3)",
        "93.59",
        "missing",
        "missing",
        "97.71",
    ]
    assert acc["bert-base-uncased+S.C."][:3] == [
        "94.00 ± 0.40 (n=3)",
        "96.00 ± 0.40 (n=3)",
        "94.20",
    ]
    assert acc["distilbert-base-uncased+H.C."] == [
        "missing",
        "missing",
        "93.24",
        "97.50 ± 0.71 (n=2)",
        "97.50 ± 0.71 (n=2)",
        "98.11",
    ]
    assert acc["bert-base-cased+AdamW"] == [
        "missing",
        "missing",
        "92.52",
        "missing",
        "missing",
        "98.14",
    ]
    assert "**the paper column is compared with the final one**" in text
    f1 = table_rows(text, "Macro-F1 (%)")
    assert f1["distilbert-base-uncased+H.C."] == ["91.0 ± 1.4 (n=2)", "91.0 ± 1.4 (n=2)"]
    assert f1["bert-base-uncased+AdamW"] == ["missing", "missing"]
    gains = table_rows(text, "Gain over AdamW (points of final accuracy)")
    assert gains["bert-base-uncased+S.C."][:3] == ["+0.80 ± 0.20 (n=3)", "+0.61", "clear gain"]
    assert gains["distilbert-base-uncased+H.C."][3:] == ["missing", "+0.40", "missing"]
    rates = _rows(text, "## Collision rate")
    assert rates == [
        [
            "distilbert-base-uncased+H.C. / Snips",
            "`classifier`",
            "0.1 ± 0 (n=2)",
            "0.15 ± 0 (n=2)",
            "0.2",
        ],
        [
            "distilbert-base-uncased+H.C. / Snips",
            "`pre_classifier`",
            "0 ± 0 (n=2)",
            "0 ± 0 (n=2)",
            "0",
        ],
    ]
    assert "single pair" in text and "`pre_classifier`" in text and "text_ko_adamw" in text
    assert "Warning" not in text


# --------------------------------------------------------------------------- KITINet Table 5


def test_render_kitinet_table5_end_to_end(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (vanilla, kiti) in enumerate([(0.91, 0.905), (0.92, 0.925)]):
        for variant, acc in (("vanilla", vanilla), ("kiti", kiti)):
            text_run(
                runs,
                f"kitinet_table5_bert_base_cased_{variant}",
                seed=seed,
                model="bert_base_cased",
                collision="kitinet" if variant == "kiti" else "none",
                data="imdb",
                accuracy=[acc],
                rates={KITI_SITE: [0.03]} if variant == "kiti" else None,
            )
    render("kitinet-table5", runs, tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    acc = table_rows(text, "Test accuracy (%)")
    assert list(acc) == [
        "Bert-cased [9]",
        "KITI-Bert-cased",
        "Bert-uncased [9]",
        "KITI-Bert-uncased",
    ]
    ours = "91.50 ± 0.71 (n=2)"
    assert acc["Bert-cased [9]"] == [ours, ours, "91.45", "missing", "missing", "89.28"]
    assert acc["KITI-Bert-uncased"] == [
        "missing",
        "missing",
        "94.53",
        "missing",
        "missing",
        "90.56",
    ]
    gains = table_rows(text, "Gain of KITI over vanilla (points of final accuracy)")
    assert gains["KITI-Bert-cased"][:3] == ["+0.00 ± 0.71 (n=2)", "+1.51", "within noise"]
    assert gains["KITI-Bert-cased"][3:] == ["missing", "+0.98", "missing"]
    rates = table_rows(text, "Collision rate")
    assert rates["KITI-Bert-cased / IMDb"][:2] == [
        "`bert.encoder.layer.11.attention.output.kitinet_attn`",
        "0.03 ± 0 (n=2)",
    ]
    assert "after self-attention in the final layer" in text


# --------------------------------------------------------------------------- mini-text


def _mini_fixture(runs: Path, sc_diffs: list[float], hc_diffs: list[float]) -> None:
    """AdamW / +S.C. / +H.C. / KITI on sentiment (1 epoch) and AdamW / +S.C. / +H.C. on topics
    (2 epochs); S.C. and H.C. differ from AdamW by the given points per seed."""
    for seed in range(3):
        base = 0.80 + 0.01 * seed
        rows = (("none", 0.0), ("soft", sc_diffs[seed]), ("hard", hc_diffs[seed]))
        for collision, diff in (*rows, ("kitinet", 0.1)):
            rates = None
            if collision == "hard":
                rates = {"collision_rate.classifier": [0.004]}
            if collision == "kitinet":
                rates = {MINI_KITI_SITE: [0.0]}
            suffix = "_kiti" if collision == "kitinet" else ""
            text_run(
                runs / f"mini_text_sentiment{suffix}",
                f"mini_text_sentiment{suffix}",
                seed=seed,
                model="minilm_l6",
                collision=collision,
                data="movie_snippets",
                accuracy=[base + diff / 100],
                rates=rates,
            )
        for collision, diff in rows:
            text_run(
                runs / "mini_text_topics",
                "mini_text_topics",
                seed=seed,
                model="minilm_l6",
                collision=collision,
                data="chatterbot_topics",
                accuracy=[0.75, 0.70 + diff / 100],
                macro_f1=[0.70, 0.60 + diff / 100],
            )


def _rows(text: str, heading: str) -> list[list[str]]:
    """Every row of the markdown table under the heading line ``heading`` (repeated first cells
    kept, unlike ``table_rows``)."""
    block = text.split(f"{heading}\n")[1].split("\n## ")[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines[2:]]


def _bullets(text: str) -> list[str]:
    section = text.split("## What the numbers say")[1].split("\n## ")[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def test_render_mini_text_tables_and_generated_sentences(tmp_path: Path) -> None:
    clear, noisy = tmp_path / "clear", tmp_path / "noisy"
    for root, sc, hc in (
        (clear, [3.0, 3.5, 3.0], [-1.0, -1.5, -1.2]),
        (noisy, [0.5, -0.2, 0.6], [-1.0, -1.5, -1.2]),
    ):
        _mini_fixture(root, sc, hc)
        render("mini-text", root, root.with_name(root.name + "_out"))
    text = (tmp_path / "clear_out" / "README.md").read_text()
    acc = table_rows(text, "Accuracy and macro-F1 (%)")
    assert list(acc) == ["AdamW", "+S.C.", "+H.C.", "KITI"]
    # sentiment final, best; topics final, best; topics macro-F1 final, at best epoch
    assert acc["AdamW"] == [
        "81.0 ± 1.0 (n=3)",
        "81.0 ± 1.0 (n=3)",
        "70 ± 0 (n=3)",
        "75 ± 0 (n=3)",
        "60 ± 0 (n=3)",
        "70 ± 0 (n=3)",
    ]
    assert acc["KITI"][2:] == ["missing"] * 4  # no topics KITI run
    context = table_rows(text, "The papers' corresponding rows (context only")
    assert context["+S.C."] == [
        "KO Table 3: bert-base-uncased+S.C.",
        "94.20 (IMDB)",
        "97.89 (Snips)",
    ]
    assert context["KITI"] == ["KITINet Table 5: KITI-Bert-uncased", "94.53 (IMDb)", "not in it"]
    assert "**not the same setting**" in text and "**SNLI has no offline data**" in text
    gains = table_rows(text, "Gain over AdamW (points, final)")
    assert gains["+S.C."][:2] == ["+3.17 ± 0.29 (n=3)", "clear gain"]
    assert gains["+H.C."][:2] == ["-1.23 ± 0.25 (n=3)", "clear loss"]

    clear_bullets = _bullets(text)
    noisy_bullets = _bullets((tmp_path / "noisy_out" / "README.md").read_text())
    sc = "S.C. vs AdamW on sentiment (final accuracy): "
    [clear_sc] = [b for b in clear_bullets if b.startswith(sc)]
    [noisy_sc] = [b for b in noisy_bullets if b.startswith(sc)]
    assert clear_sc.startswith(f"{sc}+3.17 ± 0.29 points over 3 seeds (paired by seed): clear gain")
    assert "same sign as the paper's +0.61 (KO Table 3, IMDB, bert-base-uncased)" in clear_sc
    assert noisy_sc.startswith(
        f"{sc}+0.30 ± 0.44 points over 3 seeds (paired by seed): within noise"
    )
    assert noisy_sc.endswith(
        "the paper's +0.61 (KO Table 3, IMDB, bert-base-uncased) is not replicated at this scale."
    )
    [hc] = [b for b in clear_bullets if b.startswith("H.C. vs AdamW on sentiment")]
    assert "clear loss" in hc and "opposite to the paper's +0.17" in hc
    assert "H.C.'s collision rate over training (`classifier`): mean 0.004" in hc
    [kiti] = [b for b in clear_bullets if b.startswith("KITI vs AdamW on sentiment")]
    assert "the paper's +1.11 (KITINet Table 5, IMDb, bert-base-uncased)" in kiti
    assert "No pair ever collided in KITI" in kiti
    [kiti_topics] = [b for b in clear_bullets if b.startswith("KITI vs AdamW on topics (final acc")]
    assert "missing" in kiti_topics and "KITINet Table 5 has IMDb and SNLI only" in kiti_topics
    assert any(b.startswith("S.C. vs AdamW on topics (final macro-F1)") for b in clear_bullets)

    rates = table_rows(text, "Collision rates that occurred")
    assert rates["+H.C. / sentiment"][:2] == ["`classifier`", "0.004 ± 0 (n=3)"]
    assert rates["KITI / sentiment"][1:] == ["0 ± 0 (n=3)", "0 ± 0 (n=3)", "0"]
    records = json.loads((tmp_path / "clear_out" / "runs.json").read_text())
    assert len(records) == 21 and {r["seed"] for r in records} == {0, 1, 2}
    assert "Warning" not in text


def test_render_only_keeps_a_committed_mini_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make RENDER_ONLY=1 mini-text` without multirun/: a committed results/mini_text/ stays."""
    out = tmp_path / "results" / "mini_text"
    out.mkdir(parents=True)
    (out / "README.md").write_text("committed\n")
    (out / "NOTES.md").write_text("notes\n")
    monkeypatch.chdir(tmp_path)
    code, stdout, err = render_cli(
        "mini-text", "--runs", "multirun/mini_text", "--out", "results/mini_text"
    )
    assert code == 0 and stdout == ""
    assert (out / "README.md").read_text() == "committed\n" and not (out / "runs.json").exists()
    assert "`make mini-text` (without RENDER_ONLY=1)" in err
