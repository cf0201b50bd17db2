"""Language-model renderers: KITINet Table 1 (GPT-2 small..XL pretrained from scratch, vanilla vs
KITI: lm-eval accuracy on MMLU, ARC-C/E, HellaSwag, WinoGrande), KITINet Table 2 (GPT-2 pretrained
further, vanilla vs KITI: perplexity of the correct answers of GSM8K, MATH, MathQA, OCW), KO Table 6
(Qwen2-0.5B / 1.5B, AdamW vs +S.C.: lm-eval accuracy on six benchmarks), and the reading of LM runs,
gains and cells that :mod:`experiments.reports.mini_lm` (the three at CPU scale) shares.

What a run directory gives: ``summary.json`` (the final ``test_loss`` / ``test_perplexity``, which
are the validation split's, ``collision_rate.<site>`` of each KITINet module and
``collision_alignment.<layer>`` of each KO-collided layer), ``metrics.jsonl`` (a record per logged
step: the validation perplexity at every evaluation, ``throughput`` in tokens/s, collision rates)
and ``lm_eval.json``, written by ``scripts/evaluate_lm.py --runs`` (the summary
:func:`experiments.lm.evaluation.evaluate_checkpoint` returns for the run's ``export/``). A run
without ``lm_eval.json`` has its lm-eval cells "missing".

The papers say neither the number of shots nor acc vs acc_norm: every benchmark runs zero-shot and
both are shown; **acc** is the one set beside the paper's number and used in every difference.
Only constants are imported from :mod:`experiments.lm.evaluation` (which task is which paper
column): it imports lm-eval lazily, so this module, like every report, builds no model and
registers no domain.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from experiments.core.io import atomic_write_json
from experiments.core.registry import REPORTS
from experiments.lm.evaluation import MINI_TASKS, PAPER_COLUMNS, TABLE2_METRIC
from experiments.reports import common as tables
from experiments.reports.runs import (
    NOISE_RULE,
    Gain,
    collect,
    collision_name,
    format_signed,
    gain_cell,
    is_missing,
    judge_gain,
    mixed_note,
    no_runs_note,
    ordered,
    plain,
    rate_columns,
    stats_cell,
)

__all__ = [
    "LM_EVAL_FILE",
    "SEGain",
    "absolute_reductions",
    "lm_runs",
    "numeric_column",
    "overheads",
    "paper_cell",
    "paper_quote",
    "relative_reductions",
    "render_kitinet_table1",
    "render_kitinet_table2",
    "render_ko_table6",
    "runs_table",
    "se_gain",
    "speed_cell",
    "write_runs_json",
]

LM_EVAL_FILE = "lm_eval.json"
FAQ_TASK = MINI_TASKS[0]
ACC_NOTE = (
    "The paper says neither the shots nor acc vs acc_norm: ours are zero-shot, both are shown, "
    "and **acc is the one set beside the paper's number** and used in every difference. lm-eval's "
    "standard errors (SE) are those of the benchmark's finite size."
)
SE_RULE = (
    "One run per row is the norm at this scale, so the noise of a difference is the benchmarks' "
    "finite size: a difference is **clear** when it exceeds two combined standard errors, "
    "2·√(SE_a² + SE_b²) (lm-eval's SEs; the paper's where it prints them), else **within "
    "noise**."
)


# --------------------------------------------------------------------------- runs


def _records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of the run's ``metrics.jsonl`` ([] without one)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _number(value: Any) -> float | None:
    """A finite float, or None (null, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def eval_scores(run_dir: Path) -> dict[str, float]:
    """``{"eval:<task>:<metric>": value}`` of the run's ``lm_eval.json`` ({} without one)."""
    path = run_dir / LM_EVAL_FILE
    if not path.is_file():
        return {}
    tasks = json.loads(path.read_text()).get("tasks", {})
    return {
        f"eval:{task}:{metric}": number
        for task, result in tasks.items()
        for metric, value in result.items()
        if metric not in ("n", "num_fewshot", "version", "subtasks")
        and (number := _number(value)) is not None
    }


def _history(run_dir: Path, sites: Sequence[str]) -> dict[str, Any]:
    """From ``metrics.jsonl``: the validation curve ``[(step, perplexity)]``, the median tokens/s
    over the logging intervals (the first one includes start-up, hence the median) and each
    collision site's mean rate over training."""
    curve, speeds = [], []
    rates: dict[str, list[float]] = {site: [] for site in sites}
    for record in _records(run_dir):
        step, ppl = _number(record.get("step")), _number(record.get("test_perplexity"))
        if step is not None and ppl is not None:
            curve.append((step, ppl))
        if (speed := _number(record.get("throughput"))) is not None and speed > 0:
            speeds.append(speed)
        for site in sites:
            if (rate := _number(record.get(site))) is not None:
                rates[site].append(rate)
    history: dict[str, Any] = {
        "curve": curve,
        "tokens_per_s": statistics.median(speeds) if speeds else math.nan,
    }
    for site, values in rates.items():
        history[f"rate_mean:{site}"] = statistics.fmean(values) if values else math.nan
    return history


def numeric_column(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(math.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce")


def lm_runs(runs: Path) -> pd.DataFrame:
    """Every run under ``runs`` with the columns the LM tables use.

    Added columns: ``model`` (``model.name``), ``collision`` (canonical ``collision.name``),
    ``ppl`` / ``val_loss`` (final validation perplexity / loss), ``eval:<task>:<metric>`` from
    ``lm_eval.json``, ``curve`` (``[(step, validation perplexity)]``), ``tokens_per_s`` (median
    over the logging intervals), per filled ``collision_rate.<site>`` its mean over training
    ``rate_mean:<...>``, and over the run's sites ``rate_sites`` (how many logged a rate),
    ``rate_mean`` (mean of the sites' means), ``rate_min`` / ``rate_max`` (their range) and
    ``rate_final`` (mean of the final rates); ``alignment``: the mean over the KO-collided layers of
    the final ``collision_alignment.<layer>``. An absent runs directory gives an empty frame.
    """
    df = collect(runs)
    attrs = dict(df.attrs)
    for column in ("model.name", "collision.name", "experiment_name"):
        if column not in df:
            df[column] = pd.Series(None, index=df.index, dtype=object)
    df["model"] = df["model.name"].map(lambda v: tables.MISSING if is_missing(v) else str(v))
    df["collision"] = df["collision.name"].map(collision_name)
    df["ppl"] = numeric_column(df, "test_perplexity")
    df["val_loss"] = numeric_column(df, "test_loss")
    sites = rate_columns(df)
    scores = [eval_scores(Path(str(run_dir))) for run_dir in df["run_dir"]]
    history = [_history(Path(str(run_dir)), sites) for run_dir in df["run_dir"]]
    added = {  # one concat, not a column at a time: an XL run has 48 sites and ~60 scores
        key: pd.Series([s.get(key, math.nan) for s in scores], index=df.index, dtype=float)
        for key in sorted({key for score in scores for key in score})
    }
    added["curve"] = pd.Series([h["curve"] for h in history], index=df.index, dtype=object)
    for key in ("tokens_per_s", *(f"rate_mean:{site}" for site in sites)):
        added[key] = pd.Series([h[key] for h in history], index=df.index, dtype=float)
    df = pd.concat([df, pd.DataFrame(added, index=df.index)], axis=1)
    df = pd.concat([df, _site_summary(df, sites)], axis=1)
    df.attrs.update(attrs)
    return df


def _site_summary(df: pd.DataFrame, sites: Sequence[str]) -> pd.DataFrame:
    """Per run, over its collision sites: ``rate_sites`` (how many logged a rate), ``rate_mean``
    (the mean of the sites' means over training), ``rate_min`` / ``rate_max`` (their range),
    ``rate_final`` (the mean of the final rates); and ``alignment``, the mean over the KO-collided
    layers of the final ``collision_alignment.<layer>``."""
    means = pd.DataFrame(
        {site: numeric_column(df, f"rate_mean:{site}") for site in sites}, index=df.index
    )
    finals = pd.DataFrame({site: numeric_column(df, site) for site in sites}, index=df.index)
    aligned = [c for c in df.columns if str(c).startswith("collision_alignment.")]
    alignment = pd.DataFrame({c: numeric_column(df, c) for c in aligned}, index=df.index)
    return pd.DataFrame(
        {
            "rate_sites": means.notna().sum(axis=1),
            "rate_mean": means.mean(axis=1),
            "rate_min": means.min(axis=1),
            "rate_max": means.max(axis=1),
            "rate_final": finals.mean(axis=1),
            "alignment": alignment.mean(axis=1),
        },
        index=df.index,
    )


# --------------------------------------------------------------------------- gains


class SEGain(NamedTuple):
    """A difference of two benchmark scores judged against their combined standard error."""

    diff: float
    two_se: float
    verdict: str  # "clear gain", "clear loss", "within noise", "no SE", "missing"


def se_gain(base: float, base_se: float, other: float, other_se: float) -> SEGain:
    """``other − base`` and its verdict by :data:`SE_RULE` (NaN/None: missing)."""
    if any(v is None or math.isnan(v) for v in (base, other)):
        return SEGain(math.nan, math.nan, "missing")
    diff = float(other) - float(base)
    if any(v is None or math.isnan(v) for v in (base_se, other_se)):
        return SEGain(diff, math.nan, "no SE")
    two_se = 2.0 * math.hypot(base_se, other_se)
    if abs(diff) > two_se:
        return SEGain(diff, two_se, "clear gain" if diff > 0 else "clear loss")
    return SEGain(diff, two_se, "within noise")


def se_gain_cell(gain: SEGain) -> str:
    """``+0.40 (2 SE 1.41): within noise``; "missing" without both scores."""
    if gain.verdict == "missing":
        return tables.MISSING
    if gain.verdict == "no SE":
        return f"{format_signed(gain.diff)} (no SE printed)"
    return f"{format_signed(gain.diff)} (2 SE {gain.two_se:.2f}): {gain.verdict}"


def _by_seed(df: pd.DataFrame, metric: str) -> pd.Series:
    values = numeric_column(df, metric)
    return values[values.notna()].groupby(df.loc[values.notna(), "seed"]).mean()


def relative_reductions(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> list[float]:
    """``100 · (base − other) / base`` of ``metric`` per seed run in both (a lower perplexity
    gives a positive number: a gain)."""
    a, b = _by_seed(base, metric), _by_seed(other, metric)
    return [100.0 * (a[s] - b[s]) / a[s] for s in sorted(a.index.intersection(b.index)) if a[s]]


def absolute_reductions(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> list[float]:
    a, b = _by_seed(base, metric), _by_seed(other, metric)
    return [float(a[s] - b[s]) for s in sorted(a.index.intersection(b.index))]


def overheads(base: pd.DataFrame, other: pd.DataFrame) -> list[float]:
    """Extra time per token of ``other`` over ``base`` in %, per seed run in both."""
    a, b = _by_seed(base, "tokens_per_s"), _by_seed(other, "tokens_per_s")
    return [100.0 * (a[s] / b[s] - 1.0) for s in sorted(a.index.intersection(b.index)) if b[s]]


def _tally(gains: Sequence[SEGain]) -> str:
    """``better in x of n cells (k clearly), worse in y (j clearly)`` over the cells with both
    rows; "clearly" only where standard errors allow a verdict."""
    done = [g for g in gains if g.verdict != "missing"]
    if not done:
        return "no cell has both rows"
    better = [g for g in done if g.diff > 0]
    worse = [g for g in done if g.diff < 0]
    if all(g.verdict == "no SE" for g in done):
        return f"better in {len(better)} of {len(done)} cells, worse in {len(worse)}"
    clear_better = sum(g.verdict == "clear gain" for g in better)
    clear_worse = sum(g.verdict == "clear loss" for g in worse)
    return (
        f"better in {len(better)} of {len(done)} cells ({clear_better} clearly), "
        f"worse in {len(worse)} ({clear_worse} clearly)"
    )


# --------------------------------------------------------------------------- shared cells


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def score_cell(group: pd.DataFrame, task: str, metric: str, *, scale: float, decimals: int) -> str:
    """An lm-eval score of a row: one run ``25.3 (SE 0.35)`` as the paper prints it, several
    ``25.3 ± 0.2 (n=3; SE 0.35)`` (SE: the mean of the runs'); "missing" without a run.

    A task that was evaluated but has no such metric (MMLU has no acc_norm) says so."""
    values = numeric_column(group, f"eval:{task}:{metric}").dropna() * scale
    if not len(values):
        if numeric_column(group, f"eval:{task}:acc").notna().any():
            return f"n/a ({task} has no {metric})"
        return tables.MISSING
    ses = numeric_column(group, f"eval:{task}:{metric}_stderr").dropna() * scale
    se = f"SE {ses.mean():.{decimals + 1}f}" if len(ses) else ""
    if len(values) == 1:
        return f"{values.iloc[0]:.{decimals}f}" + (f" ({se})" if se else "")
    spread = f"{values.mean():.{decimals}f} ± {values.std(ddof=1):.{decimals}f} (n={len(values)}"
    return spread + (f"; {se})" if se else ")")


def _rate_cell(group: pd.DataFrame, collision: str) -> str:
    """How often pairs collided over training: mean over sites (and seeds) and the sites' range."""
    sites = group[group["rate_sites"].fillna(0) > 0] if "rate_sites" in group else group.iloc[:0]
    if not len(sites):
        if not len(group):
            return tables.MISSING
        if collision == "soft":
            return "n/a (soft collision selects no pairs)"
        return "n/a (no collision)" if collision == "none" else tables.MISSING
    mean = stats_cell(sites["rate_mean"].dropna(), digits=3)
    low, high = sites["rate_min"].min(), sites["rate_max"].max()
    return (
        f"{mean}; {int(sites['rate_sites'].max())} sites, range "
        f"{tables.format_number(low, 3)}–{tables.format_number(high, 3)}"
    )


def speed_cell(values: pd.Series) -> str:
    """Tokens/s as whole numbers, ``mean ± std (n=k)`` ("missing" without a value)."""
    numbers = [float(v) for v in values.dropna()]
    if not numbers:
        return tables.MISSING
    mean = statistics.fmean(numbers)
    spread = f"{statistics.stdev(numbers):.0f}" if len(numbers) > 1 else tables.NOT_APPLICABLE
    return f"{mean:.0f} ± {spread} (n={len(numbers)})"


def _alignment_cell(group: pd.DataFrame) -> str:
    values = numeric_column(group, "alignment").dropna()
    return stats_cell(values, digits=3) if len(values) else tables.NOT_APPLICABLE


def _claim(paper: Mapping[str, Any], name: str, claim_id: str) -> Mapping[str, Any]:
    for claim in paper[name].get("claims", []):
        if claim.get("id") == claim_id:
            return claim
    raise KeyError(f"{name} has no claim {claim_id!r}")


def paper_quote(paper: Mapping[str, Any], name: str, claim_id: str) -> str:
    """The claim's quote and location as a markdown quote line (from paper_tables.yaml)."""
    claim = _claim(paper, name, claim_id)
    who = "KO" if name == "ko" else "KITINet"
    return f"> {who}, {claim.get('location', '?')}: “{claim.get('quote', '').strip()}”"


def _records_json(df: pd.DataFrame, keys: Sequence[str]) -> list[dict[str, Any]]:
    """One JSON-safe record per run: ``run_dir`` and ``keys`` (None where a run lacks one)."""
    records = []
    for _, run in df.sort_values("run_dir").iterrows():
        record: dict[str, Any] = {"run_dir": str(run["run_dir"])}
        for key in keys:
            value = run.get(key)
            record[key] = None if is_missing(value) else plain(value)
        records.append(record)
    return records


RUN_KEYS = (
    "experiment_name",
    "seed",
    "model.name",
    "collision.name",
    "collision.collision_heads",
    "collision.coll_coef",
    "val_loss",
    "ppl",
    "tokens_per_s",
    "rate_mean",
    "rate_min",
    "rate_max",
    "alignment",
    "wall_time",
    "git_commit",
)


def write_runs_json(out: Path, df: pd.DataFrame) -> Path:
    evals = sorted(c for c in df.columns if c.startswith("eval:"))
    path = out / "runs.json"
    atomic_write_json(path, _records_json(df, [*RUN_KEYS, *evals]))
    return path


# --------------------------------------------------------------------------- accuracy tables


@dataclass(frozen=True)
class AccuracyTable:
    """What KITINet Table 1 and KO Table 6 have in common: rows (baseline, treatment) per model,
    lm-eval accuracy columns, the paper's numbers in ``paper_tables.yaml``."""

    paper: str  # "kitinet" / "ko"
    table: str  # "table1" / "table6"
    tasks: Mapping[str, str]  # paper column -> lm-eval task
    rows: Mapping[str, tuple[str, str]]  # model.name -> the paper's (baseline, treatment) rows
    variants: tuple[str, str]  # our names of (baseline, treatment)
    treatment: str  # the treatment's collision.name
    scale: float  # our fraction -> the paper's unit
    decimals: int  # as the paper prints
    paper_points: float  # the paper's unit -> points (%)

    def variant(self, collision: str) -> str:
        if collision == self.treatment:
            return self.variants[1]
        return self.variants[0] if collision == "none" else collision

    def row_name(self, model: str, variant: str) -> str:
        pair = self.rows.get(model)
        if pair is None or variant not in self.variants:
            return f"{model}+{variant}"
        return pair[self.variants.index(variant)]


AVG = "Avg"


def _accuracy_runs(runs: Path, spec: AccuracyTable) -> pd.DataFrame:
    """:func:`lm_runs` with ``variant`` and the ``Avg`` column's ``eval:Avg:acc``: the mean of
    the table's benchmarks, as the paper's Avg, for runs that have all of them."""
    df = lm_runs(runs)
    df["variant"] = df["collision"].map(spec.variant)
    accs = pd.DataFrame(
        {task: numeric_column(df, f"eval:{task}:acc") for task in spec.tasks.values()}
    )
    df[f"eval:{AVG}:acc"] = accs.mean(axis=1).where(accs.notna().all(axis=1))
    return df


def paper_cell(value: Any) -> tuple[float, float]:
    """(mean, stderr) of a paper cell (NaN where it prints none)."""
    if isinstance(value, Mapping):
        return float(value.get("mean", math.nan)), float(value.get("stderr", math.nan))
    if isinstance(value, int | float):
        return float(value), math.nan
    return math.nan, math.nan


def _score_rows(
    spec: AccuracyTable, paper: Mapping[str, Any], name: str, group: pd.DataFrame
) -> tuple[list[str], list[str]]:
    """One table row's acc row (paper, ours per column) and acc_norm row (ours per column)."""
    acc, norm = [name], [name]
    for column in paper[spec.paper][spec.table]["columns"]:
        task = spec.tasks.get(column, column)
        value = tables.paper_value(spec.paper, spec.table, name, column, tables=paper)
        ours = score_cell(group, task, "acc", scale=spec.scale, decimals=spec.decimals)
        acc += [tables.format_paper(value), ours]
        if column != AVG:  # an average of acc only
            norm.append(
                score_cell(group, task, "acc_norm", scale=spec.scale, decimals=spec.decimals)
            )
    return acc, norm


def _accuracy_sections(df: pd.DataFrame, spec: AccuracyTable, paper: Mapping[str, Any]) -> str:
    """The accuracy tables (acc beside the paper, acc_norm), the differences and their tally."""
    columns = list(paper[spec.paper][spec.table]["columns"])
    task = {column: spec.tasks.get(column, column) for column in columns}
    models = ordered(df["model"].unique(), list(spec.rows))
    acc_rows, norm_rows, gain_rows = [], [], []
    ours_gains: list[SEGain] = []
    paper_gains: list[SEGain] = []
    for model in models:
        groups = [df[(df["model"] == model) & (df["variant"] == v)] for v in spec.variants]
        names = [spec.row_name(model, v) for v in spec.variants]
        for name, group in zip(names, groups, strict=True):
            acc, norm = _score_rows(spec, paper, name, group)
            acc_rows.append(acc)
            norm_rows.append(norm)
        gains = [names[1]]
        for column in columns:
            ours = _ours_gain(groups, task[column])
            theirs = _paper_gain(paper, spec, names, column)
            gains += [se_gain_cell(ours), se_gain_cell(theirs)]
            if column != AVG:
                ours_gains.append(ours)
                paper_gains.append(theirs)
        gain_rows.append(gains)
    acc_headers = ["row"] + [f"{c} {who}" for c in columns for who in ("(paper)", "(ours, acc)")]
    norm_headers = ["row"] + [c for c in columns if c != AVG]
    gain_headers = ["row"] + [f"{c} {who}" for c in columns for who in ("ours", "paper")]
    baseline, treatment = spec.variants
    unit = "%" if spec.scale == 100 else "fraction"
    return f"""## Accuracy ({unit}): the paper vs ours (acc)

{tables.markdown_table(acc_headers, acc_rows)}

## acc_norm (ours; the paper does not say whether it prints acc or acc_norm)

{tables.markdown_table(norm_headers, norm_rows)}

## {treatment} − {baseline} (points of accuracy)

Ours: the difference of the rows' mean acc; the paper's: of its two cells. {SE_RULE}

{tables.markdown_table(gain_headers, gain_rows)}

Over the benchmark cells ({AVG} excluded), {treatment} vs {baseline}: ours
{_tally(ours_gains)}; the paper's {_tally(paper_gains)}.
"""


def _ours_gain(groups: Sequence[pd.DataFrame], task: str) -> SEGain:
    """Treatment − baseline of a task's acc in points, with the rows' mean lm-eval SEs."""
    means = [_mean(numeric_column(g, f"eval:{task}:acc")) * 100 for g in groups]
    ses = [_mean(numeric_column(g, f"eval:{task}:acc_stderr")) * 100 for g in groups]
    return se_gain(means[0], ses[0], means[1], ses[1])


def _paper_gain(
    paper: Mapping[str, Any], spec: AccuracyTable, names: Sequence[str], column: str
) -> SEGain:
    cells = [
        paper_cell(tables.paper_value(spec.paper, spec.table, n, column, tables=paper))
        for n in names
    ]
    (a, a_se), (b, b_se) = [(m * spec.paper_points, s * spec.paper_points) for m, s in cells]
    return se_gain(a, a_se, b, b_se)


COLUMN_NAMES = {
    "val_loss": "final validation loss",
    "ppl": "final validation perplexity",
    "tokens_per_s": "tokens/s",
    "rate": "collision rate (mean over training and sites; range over sites)",
    "alignment": "KO gradient alignment",
}


def runs_table(
    rows: Sequence[tuple[str, pd.DataFrame]],
    columns: Sequence[str],
    *,
    names: Mapping[str, str] | None = None,
    notes: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """A markdown table with a row per ``(label, runs)`` and per column: ``rate``, ``alignment``,
    ``tokens_per_s`` or a numeric column as mean ± std over the runs. ``notes`` replaces the
    cell of ``(label, column)`` (a number that does not mean what the column says)."""
    body = []
    for label, group in rows:
        collision = str(group["collision"].iloc[0]) if len(group) else "none"
        cells = [label]
        for column in columns:
            if (label, column) in (notes or {}):
                cells.append((notes or {})[(label, column)])
            elif column == "rate":
                cells.append(_rate_cell(group, collision))
            elif column == "alignment":
                soft = collision == "soft"
                cells.append(_alignment_cell(group) if soft else tables.NOT_APPLICABLE)
            elif column == "tokens_per_s":
                cells.append(speed_cell(numeric_column(group, column)))
            else:
                cells.append(stats_cell(numeric_column(group, column).dropna()))
        body.append(cells)
    names = {**COLUMN_NAMES, **(names or {})}
    return tables.markdown_table(["row", *(names.get(c, c) for c in columns)], body)


TRAINING_NOTE = """Final validation loss and perplexity (`summary.json`), tokens/s (median over the
logging intervals of `metrics.jsonl`, per run), mean ± std over seeds. Not in the papers."""
RATE_NOTE = """Collision rate: accepted / all particle pairs of each KITINet module (site),
averaged over training, then over the sites; the range is that of the sites' means. A rate of 0
means nothing collided: that run trained as its baseline."""
ALIGNMENT_NOTE = """KO gradient alignment: <g_new, g> / |g|² of the collided layers' gradients
at the end of training, mean over the layers (1: the collision changed nothing; soft collision
selects no pairs, so it has no collision rate)."""


def _training_section(
    rows: Sequence[tuple[str, pd.DataFrame]], treatment: str, *, data: str = ""
) -> str:
    """The section on training: validation loss / perplexity (on ``data``), tokens/s, and the
    collision rates (KITINet) or KO's gradient alignment (soft collision) of the treatment."""
    soft = treatment == "soft"
    what, note = (
        ("KO gradient alignment", ALIGNMENT_NOTE) if soft else ("collision rates", RATE_NOTE)
    )
    table = runs_table(rows, ["val_loss", "ppl", "tokens_per_s", "alignment" if soft else "rate"])
    where = f" ({data})" if data else ""
    return f"""## Training: validation perplexity{where}, throughput, {what}

{TRAINING_NOTE} {note}

{table}"""


def _unplaced_note(df: pd.DataFrame, variants: Sequence[str]) -> str:
    """A paragraph on runs that are in no row (another collision than the table's), or ""."""
    other = df[~df["variant"].isin(list(variants))]
    if not len(other):
        return ""
    kinds = ", ".join(sorted({str(v) for v in other["variant"]}))
    return f"**Note:** {len(other)} run(s) with collision {kinds} are in no row of this table.\n"


def _accuracy_report(
    runs: Path, out: Path, command: str, spec: AccuracyTable, setting: str, claims: Sequence[str]
) -> list[Path]:
    """README.md + runs.json of an lm-eval accuracy table (KITINet Table 1, KO Table 6)."""
    df = _accuracy_runs(runs, spec)
    paper = tables.load_paper_tables()
    models = ordered(df["model"].unique(), list(spec.rows))
    training = [
        (spec.row_name(m, v), df[(df["model"] == m) & (df["variant"] == v)])
        for m in models
        for v in spec.variants
    ]
    quotes = "\n\n".join(paper_quote(paper, spec.paper, claim) for claim in claims)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""{setting}

{ACC_NOTE} A row's cell is one run as "acc (SE)", or over seeds "mean ± std (n=k; mean SE)";
"missing" = no run of that row, or its `{LM_EVAL_FILE}` lacks the task (`scripts/evaluate_lm.py
--runs` writes it).

{no_runs_note(df, runs)}
{_accuracy_sections(df, spec, paper)}
The paper's claims on this table:

{quotes}

{_training_section(training, spec.treatment)}

{_unplaced_note(df, spec.variants)}
{mixed_note(df, ["model", "variant"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme, write_runs_json(out, df)]


# --------------------------------------------------------------------------- KITINet Table 1

GPT2_ROWS = {
    "gpt2": ("GPT2 [37]", "KITI-GPT2"),
    "gpt2_medium": ("GPT2-medium [37]", "KITI-GPT2-med"),
    "gpt2_large": ("GPT2-large [37]", "KITI-GPT2-large"),
    "gpt2_xl": ("GPT2-xl [37]", "KITI-GPT2-xl"),
}
KITINET_TABLE1 = AccuracyTable(
    paper="kitinet",
    table="table1",
    tasks=PAPER_COLUMNS["kitinet_table1"],
    rows=GPT2_ROWS,
    variants=("vanilla", "KITI"),
    treatment="kitinet",
    scale=100.0,
    decimals=1,
    paper_points=1.0,
)
KITINET_TABLE1_SETTING = """\
# KITINet Table 1: GPT-2 pretrained from scratch, vanilla vs KITI (lm-eval accuracy)

Setting (SPEC §3;
`configs/experiment/kitinet/table1_gpt2_{small,medium,large,xl}_{vanilla,kiti}.yaml`, recipe
`configs/recipe/lm_pretrain_adamw.yaml`): GPT-2 small / medium / large / XL from random
weights on 30B tokens of FineWeb-Edu + MegaMath + OpenCoder (the mixture weights are ours), AdamW;
KITI rows replace the residual addition after attention in every block by KITINet
(collision_heads 12, coll_coef 0.5: ours, the paper gives neither). lm-eval 0.4.13, zero-shot:
MMLU (lm-eval's group score), ARC-Challenge, ARC-Easy, HellaSwag, WinoGrande (`make
table-kitinet-1` evaluates with the `table1` suite). GPU-scale: one run per row is expected."""


@REPORTS.register(name="kitinet-table1")
def render_kitinet_table1(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 1: lm-eval accuracy (%) of GPT-2 small..XL x {vanilla, KITI} vs the paper."""
    return _accuracy_report(
        runs, out, command, KITINET_TABLE1, KITINET_TABLE1_SETTING, ["llm_gains_majority"]
    )


# --------------------------------------------------------------------------- KO Table 6

KO_TABLE6 = AccuracyTable(
    paper="ko",
    table="table6",
    tasks=PAPER_COLUMNS["ko_table6"],
    rows={
        "qwen2_0_5b": ("Qwen2-0.5B", "Qwen2-0.5B-S.C."),
        "qwen2_1_5b": ("Qwen2-1.5B", "Qwen2-1.5B-S.C."),
    },
    variants=("AdamW", "+S.C."),
    treatment="soft",
    scale=1.0,
    decimals=3,
    paper_points=100.0,
)
KO_TABLE6_SETTING = """\
# KO Table 6: Qwen2 pretrained from scratch, AdamW vs +S.C. (lm-eval accuracy)

Setting (SPEC §3; `configs/experiment/ko/table6_qwen2_{0_5b,1_5b}_{adamw,sc}.yaml`, recipe
`configs/recipe/lm_pretrain_adamw.yaml`): Qwen2-0.5B on 50B and Qwen2-1.5B on 25B tokens of
FineWeb-Edu, AdamW, alone and with KO's soft collision (S.C.) on every weight matrix of the last
decoder layer (which matrices and coll_coef 0.1 are ours; the paper gives neither, nor a recipe).
lm-eval 0.4.13, zero-shot: PIQA, ARC-Challenge, ARC-Easy, HellaSwag, WinoGrande, OpenBookQA
(`make table-ko-6` evaluates with the `ko_table6` suite). Cells are fractions, as the paper prints
them; Avg is the mean of the six (ours: of runs with all six). GPU-scale: one run per row is
expected."""


@REPORTS.register(name="ko-table6")
def render_ko_table6(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Table 6: lm-eval accuracy of Qwen2-0.5B / 1.5B x {AdamW, +S.C.} vs the paper."""
    return _accuracy_report(
        runs,
        out,
        command,
        KO_TABLE6,
        KO_TABLE6_SETTING,
        ["llm_avg_gain", "llm_consistent_gain", "llm_overhead"],
    )


# --------------------------------------------------------------------------- KITINet Table 2

KITINET_TABLE2_SETTING = """\
# KITINet Table 2: GPT-2 pretrained further, vanilla vs KITI (answer perplexity)

Setting (SPEC §3; `configs/experiment/kitinet/table2_gpt2_{vanilla,kiti}.yaml`): the released
GPT-2 weights pretrained further on OpenWebMath, 30B tokens (~2 epochs of its ~14.7B), AdamW lr
1e-4 (ours); the KITI row with KITINet after attention in every block (our reading of the paper's
undefined "additional KITINet layer"; collision_heads 12, coll_coef 0.5, ours). Then the
perplexity of the correct answers given their questions (`make table-kitinet-2`: the `table2`
suite, our lm-eval tasks, `answer_ppl_token` = exp(−Σ log p(answer tokens) / answer tokens),
pooled over the benchmark). Our experiment files cover GPT-2 small; the other rows need
`model=gpt2_<size> model.pretrained=gpt2-<size>`. Lower is better."""


def _kitinet_table2_gain_rows(
    df: pd.DataFrame, paper: Mapping[str, Any], columns: Sequence[str], models: Sequence[str]
) -> tuple[list[list[str]], list[Gain], list[float]]:
    """Per model: KITI's relative reduction of each column's answer perplexity, ours (paired by
    seed) and the paper's; also every gain and paper reduction, for the tally."""
    rows, ours_all, theirs_all = [], [], []
    for model in models:
        base, kiti = (
            df[(df["model"] == model) & (df["variant"] == v)] for v in ("vanilla", "KITI")
        )
        names = KITINET_TABLE1.rows.get(model, (f"{model}+vanilla", f"{model}+KITI"))
        cells = [names[1]]
        for column in columns:
            metric = f"eval:{PAPER_COLUMNS['kitinet_table2'][column]}:{TABLE2_METRIC}"
            gain = judge_gain(relative_reductions(base, kiti, metric))
            a, b = (
                paper_cell(tables.paper_value("kitinet", "table2", n, column, tables=paper))[0]
                for n in names
            )
            theirs = 100.0 * (a - b) / a if a and not math.isnan(a) and not math.isnan(b) else None
            cells += [
                gain_cell(gain) + (f": {gain.verdict}" if gain.n > 1 else ""),
                tables.MISSING if theirs is None else format_signed(theirs),
            ]
            ours_all.append(gain)
            if theirs is not None:
                theirs_all.append(theirs)
        rows.append(cells)
    return rows, ours_all, theirs_all


@REPORTS.register(name="kitinet-table2")
def render_kitinet_table2(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 2: answer perplexity on GSM8K / MATH / MathQA / OCW, vanilla vs KITI."""
    df = lm_runs(runs)
    df["variant"] = df["collision"].map(KITINET_TABLE1.variant)
    paper = tables.load_paper_tables()
    columns = list(paper["kitinet"]["table2"]["columns"])
    models = ordered(df["model"].unique(), list(GPT2_ROWS))
    ppl_rows = []
    for model in models:
        for variant in KITINET_TABLE1.variants:
            name = KITINET_TABLE1.row_name(model, variant)
            group = df[(df["model"] == model) & (df["variant"] == variant)]
            cells = [name]
            for column in columns:
                metric = f"eval:{PAPER_COLUMNS['kitinet_table2'][column]}:{TABLE2_METRIC}"
                value = tables.paper_value("kitinet", "table2", name, column, tables=paper)
                cells += [
                    tables.format_paper(value),
                    stats_cell(numeric_column(group, metric).dropna()),
                ]
            ppl_rows.append(cells)
    gain_rows, ours, theirs = _kitinet_table2_gain_rows(df, paper, columns, models)
    judged = [g for g in ours if g.n > 1]
    tally_ours = (
        f"{sum(g.mean > 0 for g in ours if g.n)} of {sum(g.n > 0 for g in ours)} cells with both "
        f"rows have a lower KITI perplexity ({sum(g.verdict == 'clear gain' for g in judged)} "
        f"clearly, of {len(judged)} with 2+ seeds)"
    )
    tally_paper = f"{sum(t > 0 for t in theirs)} of {len(theirs)}"
    training = [
        (KITINET_TABLE1.row_name(m, v), df[(df["model"] == m) & (df["variant"] == v)])
        for m in models
        for v in KITINET_TABLE1.variants
    ]
    ppl_headers = ["row"] + [f"{c} {who}" for c in columns for who in ("(paper)", "(ours)")]
    gain_headers = ["row"] + [f"{c} {who}" for c in columns for who in ("ours", "paper")]
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""{KITINET_TABLE2_SETTING}

Cells: answer perplexity, ours mean ± std over seeds (n = runs); "missing" = no run of that row, or
its `{LM_EVAL_FILE}` lacks the benchmark.

{no_runs_note(df, runs)}
## Answer perplexity (lower is better)

{tables.markdown_table(ppl_headers, ppl_rows)}

## Relative reduction of answer perplexity by KITI (%)

100 · (vanilla − KITI) / vanilla: ours per seed run in both rows (paired by seed), then
mean ± std; the paper's from its two cells. Positive = KITI lower. {NOISE_RULE} Answer perplexity
has no standard error from lm-eval, so one seed per row gives no verdict.

{tables.markdown_table(gain_headers, gain_rows)}

Ours: {tally_ours}; the paper's: {tally_paper} cells lower with KITI.

{paper_quote(paper, "kitinet", "continued_pretraining_ppl")}

{_training_section(training, "kitinet", data="OpenWebMath")}

{_unplaced_note(df, KITINET_TABLE1.variants)}
{mixed_note(df, ["model", "variant"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme, write_runs_json(out, df)]
