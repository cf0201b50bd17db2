"""The ``mini-lm`` renderer: KITINet Tables 1-2 and KO Table 6 at CPU scale (`make mini-lm`),
validation perplexity and the Python FAQ's answer perplexity standing in for the papers'
benchmarks, with a sentence per claim. Runs as :mod:`experiments.reports.lm` reads them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from experiments.core.registry import REPORTS
from experiments.reports import common as tables
from experiments.reports.lm import (
    AVG,
    FAQ_TASK,
    GPT2_ROWS,
    KITINET_TABLE1,
    KO_TABLE6,
    RATE_NOTE,
    AccuracyTable,
    absolute_reductions,
    lm_runs,
    numeric_column,
    overheads,
    paper_cell,
    paper_quote,
    relative_reductions,
    runs_table,
    speed_cell,
    write_runs_json,
)
from experiments.reports.runs import (
    NOISE_RULE,
    Gain,
    claim_sentence,
    config_values,
    gain_cell,
    judge_gain,
    mixed_note,
    no_runs_note,
    save_png,
)

__all__ = ["render_mini_lm"]

# --------------------------------------------------------------------------- mini-lm

MINI_EXPERIMENTS = {
    "table1": "mini_lm_table1",
    "table2": "mini_lm_table2",
    "ko6": "mini_lm_ko_table6",
}
MINI_VARIANTS = {
    "table1": {"none": "vanilla", "kitinet": "KITI"},
    "table2": {"none": "continued vanilla", "kitinet": "continued KITI"},
    "ko6": {"none": "AdamW", "soft": "+S.C."},
}
MINI_BASE = "pretrained base"
SEE_TABLE1 = "n/a (Table 1 stand-in: trained and validated on Wikipedia)"
FAQ_METRIC = f"eval:{FAQ_TASK}:answer_ppl_token"
CURVES_PNG = "val_ppl_curves.png"


def _mini_runs(runs: Path) -> pd.DataFrame:
    """The mini-lm runs with ``part`` (table1 / table2 / ko6, from ``experiment_name``) and
    ``variant`` (the row's name); runs of other experiments are dropped."""
    df = lm_runs(runs)
    part_of = {name: part for part, name in MINI_EXPERIMENTS.items()}
    df["part"] = df["experiment_name"].map(lambda e: part_of.get(str(e)))
    df = df[df["part"].notna()].copy()
    df["variant"] = [
        MINI_VARIANTS[part].get(collision, collision)
        for part, collision in zip(df["part"], df["collision"], strict=True)
    ]
    return df


def _rows_of(df: pd.DataFrame, part: str, variant: str) -> pd.DataFrame:
    return df[(df["part"] == part) & (df["variant"] == variant)]


def _mean_curve(group: pd.DataFrame) -> pd.Series:
    """The validation perplexity at each evaluated step, mean over the group's runs."""
    points = [(s, p) for curve in group["curve"] for s, p in curve]
    if not points:
        return pd.Series(dtype=float)
    frame = pd.DataFrame(points, columns=["step", "ppl"])
    return frame.groupby("step")["ppl"].mean()


def _plot_curves(df: pd.DataFrame, path: Path, provenance: str) -> None:
    """Validation perplexity over steps, a panel per stand-in, a line per row (mean over seeds,
    thin lines: the seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("table1", "Table 1 stand-in: Wikipedia, from scratch"),
        ("table2", "Table 2 stand-in: Python docs, continued"),
        ("ko6", "KO Table 6 stand-in: tiny Qwen2"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4), squeeze=False)
    for ax, (part, title) in zip(axes[0], panels, strict=True):
        for index, variant in enumerate(MINI_VARIANTS[part].values()):
            group = _rows_of(df, part, variant)
            color = f"C{index}"
            for curve in group["curve"]:
                if curve:
                    ax.plot(*zip(*curve, strict=True), color=color, alpha=0.25, linewidth=0.8)
            mean = _mean_curve(group)
            if len(mean):
                ax.plot(mean.index, mean.values, color=color, label=f"{variant} (n={len(group)})")
        ax.set(title=title, xlabel="step", ylabel="validation perplexity", yscale="log")
        if ax.get_legend_handles_labels()[0]:  # no curve (no runs): no empty legend
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, provenance)
    plt.close(fig)


def _steps_to_target(df: pd.DataFrame, paper: Mapping[str, Any]) -> str:
    """KITINet's "20% fewer training steps", checked on the mean curves of the Table 1 stand-in:
    the first evaluated step at which KITI's mean validation perplexity is at most vanilla's
    final one."""
    vanilla, kiti = (_mean_curve(_rows_of(df, "table1", v)) for v in ("vanilla", "KITI"))
    claimed = tables.paper_value(
        "kitinet", "llm_fewer_training_steps", None, "fewer_training_steps_pct", tables=paper
    )
    theirs = f"the paper's ~{claimed}% fewer steps (KITINet §5.1)"
    if not len(vanilla) or not len(kiti):
        return f"Steps to vanilla's final validation perplexity: missing; {theirs} is not tested."
    target, last = float(vanilla.iloc[-1]), float(vanilla.index[-1])
    reached = kiti[kiti <= target]
    spacing = float(pd.Series(vanilla.index).diff().median()) if len(vanilla) > 1 else last
    resolution = f"evaluations every {spacing:g} steps: a resolution of {100 * spacing / last:.0f}%"
    if not len(reached):
        return (
            f"On the mean curves, KITI's validation perplexity never reached vanilla's final "
            f"{tables.format_number(target)} within {last:g} steps (KITI's best: "
            f"{tables.format_number(float(kiti.min()))}); {theirs} is not replicated at this scale."
        )
    step = float(reached.index[0])
    if step >= last:
        return (
            f"On the mean curves, KITI's validation perplexity reached vanilla's final "
            f"{tables.format_number(target)} only at the last evaluation (step {last:g}; "
            f"{resolution}): no saving in steps measurable; {theirs} is not replicated at this "
            "scale."
        )
    saving = 100.0 * (1.0 - step / last)
    size = "larger" if saving > float(claimed) else "smaller"
    return (
        f"On the mean curves, KITI's validation perplexity reached vanilla's final "
        f"{tables.format_number(target)} at step {step:g} of {last:g}: {saving:.0f}% fewer steps "
        f"({resolution}); same direction as {theirs}, {size} at this scale."
    )


class Comparison(NamedTuple):
    """Two rows of mini-lm compared on a perplexity, paired by seed."""

    key: str  # how the claims refer to it
    label: str
    metric: str
    base: tuple[str, str]  # (part, variant)
    other: tuple[str, str]


def _ppl_gain_rows(
    df: pd.DataFrame, comparisons: Sequence[Comparison]
) -> tuple[list[list[str]], dict[str, Gain]]:
    """Rows ``comparison | base − other | relative reduction (%) | verdict`` (paired by seed),
    and each comparison's gain (the relative reduction's) by key."""
    rows, gains = [], {}
    for comparison in comparisons:
        base, other = _rows_of(df, *comparison.base), _rows_of(df, *comparison.other)
        absolute = judge_gain(absolute_reductions(base, other, comparison.metric))
        relative = judge_gain(relative_reductions(base, other, comparison.metric))
        gains[comparison.key] = relative
        rows.append([comparison.label, gain_cell(absolute), gain_cell(relative), relative.verdict])
    return rows, gains


GAIN_HEADERS = ["comparison", "reduction (perplexity)", "relative reduction (%)", "verdict"]


def _mini_table(
    df: pd.DataFrame,
    rows: Sequence[tuple[str, str, str]],
    columns: Sequence[str],
    notes: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """:func:`runs_table` of mini-lm rows given as ``(label, part, variant)``."""
    groups = [(label, _rows_of(df, part, variant)) for label, part, variant in rows]
    names = {FAQ_METRIC: "FAQ answer perplexity"}
    return runs_table(groups, columns, names=names, notes=notes)


def _overhead_sentence(df: pd.DataFrame, part: str, paper_note: str) -> str:
    base_variant, other_variant = MINI_VARIANTS[part].values()
    base, other = _rows_of(df, part, base_variant), _rows_of(df, part, other_variant)
    overhead = judge_gain(overheads(base, other))
    speeds = [speed_cell(numeric_column(g, "tokens_per_s")) for g in (base, other)]
    if overhead.n == 0:
        return f"Throughput of {other_variant} vs {base_variant}: missing; {paper_note}."
    spread = f" ± {overhead.std:.1f}" if overhead.n > 1 else ""
    return (
        f"Throughput: {other_variant} {speeds[1]} tokens/s vs {base_variant} {speeds[0]}, "
        f"{overhead.mean:+.1f}{spread}% time per token over {overhead.n} "
        f"{'seed' if overhead.n == 1 else 'seeds'} (paired); "
        f"{paper_note}. Timed on 2 shared CPU cores with two jobs side by side: indicative only."
    )


def _paper_accuracy_tally(paper: Mapping[str, Any], spec: AccuracyTable) -> str:
    """The paper's treatment − baseline over its benchmark cells: wins and range, in points."""
    diffs = []
    for base, treated in spec.rows.values():
        for column in paper[spec.paper][spec.table]["columns"]:
            if column == AVG:
                continue
            a = paper_cell(tables.paper_value(spec.paper, spec.table, base, column, tables=paper))
            b = paper_cell(
                tables.paper_value(spec.paper, spec.table, treated, column, tables=paper)
            )
            if not math.isnan(a[0]) and not math.isnan(b[0]):
                diffs.append((b[0] - a[0]) * spec.paper_points)
    if not diffs:
        return "no cells"
    return (
        f"{spec.variants[1]} higher in {sum(d > 0 for d in diffs)} of {len(diffs)} cells, "
        f"{min(diffs):+.1f} to {max(diffs):+.1f} points"
    )


def _paper_table2_reduction(paper: Mapping[str, Any], model: str = "gpt2") -> float | None:
    """The paper's mean relative reduction (%) of answer perplexity by KITI over its columns."""
    names = GPT2_ROWS[model]
    reductions = []
    for column in paper["kitinet"]["table2"]["columns"]:
        a, b = (
            paper_cell(tables.paper_value("kitinet", "table2", n, column, tables=paper))[0]
            for n in names
        )
        if a and not math.isnan(a) and not math.isnan(b):
            reductions.append(100.0 * (a - b) / a)
    return round(statistics.fmean(reductions), 2) if reductions else None


def _mini_claims(df: pd.DataFrame, paper: Mapping[str, Any], gains: Mapping[str, Gain]) -> str:
    """The papers' claims (quoted from paper_tables.yaml), each with generated sentences."""
    columns = " / ".join(paper["kitinet"]["table2"]["columns"])
    overhead = tables.paper_value(
        "ko", "llm_overhead", None, "computational_overhead_pct", tables=paper
    )
    items = [
        (
            ("kitinet", "llm_gains_majority"),
            [
                claim_sentence(
                    "KITI vs vanilla, mini GPT-2 from scratch (relative reduction of the final "
                    "validation perplexity)",
                    gains["kiti_t1"],
                    None,
                    "KITINet Table 1 prints lm-eval accuracy, not perplexity: there "
                    + _paper_accuracy_tally(paper, KITINET_TABLE1),
                    unit="%",
                )
            ],
        ),
        (
            ("kitinet", "llm_fewer_training_steps"),
            [
                _steps_to_target(df, paper),
                _overhead_sentence(
                    df, "table1", "KITINet gives no number for its overhead (fewer steps cover it)"
                ),
            ],
        ),
        (
            ("kitinet", "continued_pretraining_ppl"),
            [
                claim_sentence(
                    "continued KITI vs continued vanilla (relative reduction of the FAQ answer "
                    "perplexity)",
                    gains["kiti_t2"],
                    _paper_table2_reduction(paper),
                    f"KITINet Table 2, GPT2 small, mean relative reduction over {columns}",
                    unit="%",
                ),
                claim_sentence(
                    "continued KITI vs continued vanilla (relative reduction of the Python docs' "
                    "validation perplexity)",
                    gains["kiti_t2_val"],
                    None,
                    "Table 2 has answer perplexities only",
                    unit="%",
                ),
            ],
        ),
        (
            ("ko", "llm_avg_gain"),
            [
                claim_sentence(
                    "S.C. vs AdamW, mini Qwen2 from scratch (relative reduction of the final "
                    "validation perplexity)",
                    gains["sc_ko6"],
                    None,
                    "KO Table 6 prints lm-eval accuracy, not perplexity: there "
                    + _paper_accuracy_tally(paper, KO_TABLE6),
                    unit="%",
                )
            ],
        ),
        (
            ("ko", "llm_overhead"),
            [_overhead_sentence(df, "ko6", f"the paper's ~{overhead}% (KO App. B.3)")],
        ),
    ]
    blocks = []
    for (name, claim_id), sentences in items:
        bullets = "\n".join(f"- {sentence}" for sentence in sentences)
        blocks.append(f"{paper_quote(paper, name, claim_id)}\n\n{bullets}")
    return "\n\n".join(blocks)


def _architecture(df: pd.DataFrame) -> str:
    """``n_layer 4, n_embd 256, ...``: the runs' ``model.config`` overrides ("the model's own"
    without any)."""
    keys = [c for c in df.attrs.get("config_columns", []) if c.startswith("model.config.")]
    keys = [c for c in keys if c in df and df[c].notna().any()]
    if not keys:
        return "its own architecture"
    return ", ".join(
        f"{key.removeprefix('model.config.')} {config_values(df, key)}" for key in keys
    )


def _mini_settings(df: pd.DataFrame) -> str:
    """The values the runs recorded, per stand-in (the configs when there are no runs)."""
    lines = []
    for part, experiment in MINI_EXPERIMENTS.items():
        runs_of = df[df["part"] == part]
        if not len(runs_of):
            lines.append(
                f"- **{experiment}**: no runs (values in "
                f"`configs/experiment/mini/{experiment.removeprefix('mini_')}.yaml`)."
            )
            continue
        collided = runs_of[runs_of["collision"] != "none"]
        kiti = collided[collided["collision"] == "kitinet"]
        heads = (  # KITINet's particles per token; KO has no such parameter
            f", collision_heads {config_values(kiti, 'collision.collision_heads')}"
            if len(kiti)
            else ""
        )
        lines.append(
            f"- **{experiment}**: model {config_values(runs_of, 'model.name')} "
            f"({_architecture(runs_of)}), data "
            f"{config_values(runs_of, 'dataset.name')} (sequences of "
            f"{config_values(runs_of, 'dataset.seq_len')} tokens), "
            f"{config_values(runs_of, 'trainer.max_steps')} steps of batch "
            f"{config_values(runs_of, 'trainer.batch_size')}, "
            f"{config_values(runs_of, 'optimizer.name')} "
            f"lr {config_values(runs_of, 'optimizer.lr')}; collision "
            f"{config_values(collided, 'collision.name')}: coll_coef "
            f"{config_values(collided, 'collision.coll_coef')}{heads}."
        )
    return "\n".join(lines)


MINI_INTRO = """\
# mini-lm: KITINet Tables 1-2 and KO Table 6 at CPU scale

The papers pretrain GPT-2 (up to XL) and Qwen2 (0.5B / 1.5B) on 25-50B tokens on GPUs and score
them with lm-eval benchmarks. This is the same comparison sized for 2 CPU cores on text that ships
offline (`make mini-lm-data`): lm-eval's benchmarks cannot be had offline and a model this small
would score at chance on them, so **validation perplexity** stands in for Tables 1 and 6, and the
**answer perplexity of the Python FAQ's question/answer pairs** (lm-eval task
`kinetics_faq_answer_ppl`, held out of the continued pretraining) stands in for Table 2's GSM8K /
MATH / MathQA / OCW. Values as run:"""


@REPORTS.register(name="mini-lm")
def render_mini_lm(runs: Path, out: Path, command: str) -> list[Path]:
    """`make mini-lm`: KITINet Tables 1-2 and KO Table 6 at CPU scale (perplexities stand in for
    the benchmarks), with a generated sentence per claim and the validation curves."""
    df = _mini_runs(runs)
    paper = tables.load_paper_tables()
    header = tables.provenance_header(command, df, runs_root=str(runs))
    _plot_curves(df, out / CURVES_PNG, header)
    # The pretrained base of Table 2 is Table 1's vanilla row (its export, FAQ-evaluated too).
    base = ("table1", "vanilla")
    continued, kiti = ("table2", "continued vanilla"), ("table2", "continued KITI")
    rows, gains = _ppl_gain_rows(
        df,
        [
            Comparison(
                "kiti_t1",
                "KITI vs vanilla (final validation perplexity)",
                "ppl",
                base,
                ("table1", "KITI"),
            ),
            Comparison(
                "base_t2",
                "continued vanilla vs pretrained base (FAQ answer perplexity)",
                FAQ_METRIC,
                base,
                continued,
            ),
            Comparison(
                "kiti_t2",
                "continued KITI vs continued vanilla (FAQ answer perplexity)",
                FAQ_METRIC,
                continued,
                kiti,
            ),
            Comparison(
                "kiti_t2_val",
                "continued KITI vs continued vanilla (Python-docs validation perplexity)",
                "ppl",
                continued,
                kiti,
            ),
            Comparison(
                "sc_ko6",
                "+S.C. vs AdamW (final validation perplexity)",
                "ppl",
                ("ko6", "AdamW"),
                ("ko6", "+S.C."),
            ),
        ],
    )
    t1_gain, t2_gains, ko_gain = rows[:1], rows[1:4], rows[4:]
    t1 = [("vanilla", "table1", "vanilla"), ("KITI", "table1", "KITI")]
    t2 = [
        (f"{MINI_BASE} (= Table 1 stand-in's vanilla)", "table1", "vanilla"),
        ("continued vanilla", "table2", "continued vanilla"),
        ("continued KITI", "table2", "continued KITI"),
    ]
    # the base's own validation perplexity and speed are Wikipedia's, not the docs'
    base_notes = {(t2[0][0], column): SEE_TABLE1 for column in ("ppl", "tokens_per_s")}
    ko6 = [("AdamW", "ko6", "AdamW"), ("+S.C.", "ko6", "+S.C.")]
    rates = [
        ("KITI (Table 1 stand-in)", "table1", "KITI"),
        ("continued KITI (Table 2 stand-in)", "table2", "continued KITI"),
    ]
    body = f"""{MINI_INTRO}

{_mini_settings(df)}

Cells: mean ± std over seeds (n = runs); "missing" = no run. Differences are paired by seed.
{NOISE_RULE} Verdicts are on the relative reduction (positive = lower perplexity).

{no_runs_note(df, runs)}
## Table 1 stand-in: pretraining from scratch, vanilla vs KITI

A small GPT-2 (sizes as run, above) on the mini Wikipedia text; KITI replaces the residual
addition after attention in every block by KITINet. Validation perplexity on Wikipedia's held-out
split.

{_mini_table(df, t1, ["ppl", "val_loss", "tokens_per_s"])}

{tables.markdown_table(GAIN_HEADERS, t1_gain)}

![validation perplexity curves]({CURVES_PNG})

Curves: validation perplexity at every evaluation (`metrics.jsonl`), thick = mean over seeds,
thin = each seed; one panel per stand-in.

## Table 2 stand-in: continued pretraining on the Python docs

The vanilla model of the Table 1 stand-in (same seed) pretrained further on the Python
documentation without its FAQ, vanilla and KITI; then the perplexity of the FAQ's answers given
their questions. The pretrained base is scored on the same FAQ; its validation perplexity is
Wikipedia's (Table 1 stand-in), not the docs'.

{_mini_table(df, t2, [FAQ_METRIC, "ppl", "tokens_per_s"], base_notes)}

{tables.markdown_table(GAIN_HEADERS, t2_gains)}

## KO Table 6 stand-in: tiny Qwen2, AdamW vs +S.C.

A small Qwen2 (sizes as run, above) on the mini Wikipedia text, AdamW alone and with KO's soft
collision on every weight matrix of the last decoder layer. KO gradient alignment: <g_new, g> / |g|² of the
collided layers at the end of training, mean over layers (1: unchanged).

{_mini_table(df, ko6, ["ppl", "val_loss", "tokens_per_s", "alignment"])}

{tables.markdown_table(GAIN_HEADERS, ko_gain)}

## Collision rates that occurred

{RATE_NOTE} From `metrics.jsonl`; not in the papers.

{_mini_table(df, rates, ["rate"])}

## The papers' claims and what our numbers say

Quoted from `paper_tables.yaml`; each sentence is generated from the numbers above. The settings
differ (model size, data, tokens, metric), so a claim is tested in direction, not in size.

{_mini_claims(df, paper, gains)}

{mixed_note(df, ["part", "variant"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme, write_runs_json(out, df), out / CURVES_PNG]
