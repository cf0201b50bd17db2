"""Text renderers: KO Table 3 (IMDB / Snips, BERTs x {AdamW, S.C., H.C.}), KITINet Table 5 (IMDb /
SNLI, BERTs x {vanilla, KITI}) and ``mini-text`` (both at CPU scale on offline stand-in data).

The papers do not say whether a cell is the final or the best epoch's accuracy, so every table
gives both: **final** = the last epoch's ``test_accuracy`` (``summary.json``), **best** = the
largest ``test_accuracy`` of the training epochs in ``metrics.jsonl`` (the initial, un-tuned
model's evaluation at epoch 0 excluded). The final one is the one set beside the paper's column
and used for every gain and sentence. Snips-like sets also log ``test_macro_f1``, shown at the
final epoch and at the best-accuracy epoch (the papers print none).

Each ``render_*(runs, out, command) -> list[Path]`` reads the run directories under ``runs`` and
writes its files into ``out``; :data:`~experiments.core.registry.REPORTS` holds it under its
``scripts/render.py`` name. Like every report, nothing here imports a domain: the data set of a
run is read from its config (``dataset.name``; a ``text_files`` set is named by its folder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.core.io import atomic_write_json
from experiments.core.registry import REPORTS
from experiments.reports import common as tables
from experiments.reports.runs import (
    NOISE_RULE,
    Gain,
    as_run,
    claim_sentence,
    collect,
    collision_name,
    config_values,
    format_signed,
    gain_cell,
    is_missing,
    judge_gain,
    mixed_note,
    no_runs_note,
    ordered,
    paired_diffs,
    paper_gain,
    plain,
    rate_columns,
    stats_cell,
)

__all__ = [
    "render_kitinet_table5",
    "render_ko_table3",
    "render_mini_text",
    "text_data_key",
    "text_runs",
]

# KO Table 3: config model.name -> the paper's model name; collision -> the row's suffix.
KO_TABLE3_MODELS = ("bert_base_cased", "bert_base_uncased", "distilbert_base_uncased")
KO_TABLE3_VARIANTS = {"none": "AdamW", "soft": "S.C.", "hard": "H.C."}
KO_TABLE3_DATA = {"imdb": "IMDB", "snips": "Snips"}
# KITINet Table 5: config model.name -> the paper's name; the vanilla rows cite BERT ([9]).
KITINET_TABLE5_MODELS = {"bert_base_cased": "Bert-cased", "bert_base_uncased": "Bert-uncased"}
KITINET_TABLE5_DATA = {"imdb": "IMDb", "snli": "SNLI"}
VANILLA, KITI = "vanilla", "KITI"
# mini-text: the stand-in data sets (their folder under data/text) -> task; rows by collision.
MINI_TEXT_TASKS = {"movie_snippets": "sentiment", "chatterbot_topics": "topics"}
MINI_TEXT_VARIANTS = {"none": "AdamW", "soft": "+S.C.", "hard": "+H.C.", "kitinet": "KITI"}
ACCURACY_NOTE = (
    '"final" = the last epoch\'s test accuracy; "best" = the largest test accuracy over the '
    "training epochs (epoch 0, the model before fine-tuning, excluded). The papers do not say "
    "which one they print: **the paper column is compared with the final one**, and every gain "
    "below uses the final one."
)


# --------------------------------------------------------------------------- runs


def text_data_key(run: Mapping[str, Any]) -> str:
    """The run's data set: ``dataset.name`` (``imdb``, ``snips``, ``snli``), or for a
    ``text_files`` set the folder of its train file (``movie_snippets``, ``chatterbot_topics``)."""
    name = run.get("dataset.name")
    if is_missing(name):
        return tables.MISSING
    name = str(name)
    train = run.get("dataset.train")
    if name == "text_files" and isinstance(train, str) and train:
        return Path(train).parent.name or name
    return name


def _history_stats(run_dir: Any, sites: Sequence[str]) -> dict[str, float]:
    """Best-epoch accuracy (and its epoch and macro-F1) and each site's collision rate over the
    training epochs (mean and max of the epoch means), from the run's ``metrics.jsonl``."""
    stats = dict.fromkeys(("best_test_accuracy", "best_epoch", "best_test_macro_f1"), math.nan)
    path = Path(str(run_dir)) / "metrics.jsonl"
    rates: dict[str, list[float]] = {site: [] for site in sites}
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            epoch = record.get("epoch")
            if not isinstance(epoch, int | float) or epoch <= 0:
                continue  # the initial record describes the model before training
            accuracy = record.get("test_accuracy")
            best = stats["best_test_accuracy"]
            if isinstance(accuracy, int | float) and (math.isnan(best) or accuracy > best):
                f1 = record.get("test_macro_f1")  # a tie keeps the earlier epoch
                stats["best_test_accuracy"] = float(accuracy)
                stats["best_epoch"] = float(epoch)
                stats["best_test_macro_f1"] = float(f1) if isinstance(f1, int | float) else math.nan
            for site in sites:
                value = record.get(site)
                if isinstance(value, int | float):
                    rates[site].append(float(value))
    for site, values in rates.items():
        stats[f"rate_mean:{site}"] = sum(values) / len(values) if values else math.nan
        stats[f"rate_max:{site}"] = max(values) if values else math.nan
    return stats


def _percent(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(math.nan, index=df.index, dtype=float)
    return 100.0 * pd.to_numeric(df[column], errors="coerce")


def text_runs(runs: Path) -> pd.DataFrame:
    """Every run under ``runs`` with the columns the text tables use.

    Added columns: ``data`` (:func:`text_data_key`), ``model`` (``model.name``), ``collision``
    (canonical ``collision.name``), ``acc`` / ``f1`` (final test accuracy / macro-F1 in %),
    ``best_test_accuracy`` / ``best_epoch`` / ``best_test_macro_f1`` (the best-accuracy epoch of
    ``metrics.jsonl`` and its macro-F1, fractions as logged) with ``best_acc`` / ``best_f1`` in %,
    and per filled ``collision_rate.<site>`` column ``rate_mean:<...>`` and
    ``rate_max:<...>`` (mean and max of the epoch means over training). An absent runs
    directory gives an empty frame (every cell "missing").
    """
    df = collect(runs)
    attrs = dict(df.attrs)
    for column in ("dataset.name", "model.name", "collision.name", "experiment_name"):
        if column not in df:
            df[column] = pd.Series(None, index=df.index, dtype=object)
    df["data"] = pd.Series([text_data_key(run) for _, run in df.iterrows()], index=df.index)
    df["model"] = df["model.name"].map(lambda v: tables.MISSING if is_missing(v) else str(v))
    df["collision"] = df["collision.name"].map(collision_name)
    df["acc"] = _percent(df, "test_accuracy")
    df["f1"] = _percent(df, "test_macro_f1")
    sites = rate_columns(df)
    stats = [_history_stats(run_dir, sites) for run_dir in df["run_dir"]]
    keys = ["best_test_accuracy", "best_epoch", "best_test_macro_f1"]
    keys += [f"rate_{kind}:{site}" for site in sites for kind in ("mean", "max")]
    for key in keys:
        df[key] = pd.Series([s[key] for s in stats], index=df.index, dtype=float)
    df["best_acc"] = _percent(df, "best_test_accuracy")
    df["best_f1"] = _percent(df, "best_test_macro_f1")
    df.attrs.update(attrs)
    return df


# --------------------------------------------------------------------------- shared sections


def _rate_rows(df: pd.DataFrame, by: Sequence[str], label: Mapping[tuple, str]) -> list[list[str]]:
    """Per (row, site) with a logged rate: final epoch, mean and max over training, over seeds;
    rows in the order of ``label`` (the tables' order), then any other group."""
    rows = []
    sites = rate_columns(df)
    groups = {
        key if isinstance(key, tuple) else (key,): group
        for key, group in df.groupby(list(by), sort=True)
    }
    for key in ordered(list(groups), list(label)):
        group = groups.get(key)
        if group is None:
            continue
        for site in sites:
            final = pd.to_numeric(group[site], errors="coerce").dropna()
            if not len(final):
                continue
            means = group[f"rate_mean:{site}"].dropna()
            peaks = group[f"rate_max:{site}"].dropna()
            rows.append(
                [
                    label.get(key, " / ".join(map(str, key))),
                    f"`{site.removeprefix('collision_rate.')}`",
                    stats_cell(final),
                    stats_cell(means),
                    tables.format_number(peaks.max() if len(peaks) else math.nan),
                ]
            )
    return rows


RATE_HEADERS = ["row", "module", "final epoch", "mean over epochs", "max over epochs"]
RATE_NOTE = """Accepted / all pairs per collision site, averaged over each epoch's steps: KO's hard collision
of the head's neurons (one site per collided Linear), KITINet's particles of each module. "final
epoch" and "mean over epochs" are mean ± std over seeds, "max" the largest epoch mean of any seed.
Not in the papers. A rate of 0 means nothing collided: that run trained as its baseline. Rows
without a rate (AdamW / vanilla, S.C.: soft collision selects no pairs) are not listed."""


def _rate_section(df: pd.DataFrame, by: Sequence[str], label: Mapping[tuple, str]) -> str:
    rows = _rate_rows(df, by, label)
    if not rows:
        return "No run logged a `collision_rate.*` metric: **missing** (no H.C. or KITI run yet)."
    return f"{RATE_NOTE}\n\n{tables.markdown_table(RATE_HEADERS, rows)}"


# --------------------------------------------------------------------------- KO Table 3


def _ko_label(model: str) -> str:
    """``bert_base_cased`` -> ``bert-base-cased``: the paper's "Pretrained Model" names."""
    return model.replace("_", "-")


KO_TABLE3_SETTING = """\
# KO Table 3: text classification with soft and hard collision on the classification head

Setting (SPEC §3; `configs/experiment/ko/table3_*.yaml`): bert-base-cased, bert-base-uncased and
distilbert-base-uncased fine-tuned on IMDB and Snips with AdamW, alone and with KO's soft (S.C.)
or hard (H.C.) collision on the classification head. The paper gives the optimizer and "10 epochs"
and nothing else; our choices are in `configs/recipe/text_ko_adamw.yaml` (lr 2e-5, weight decay
0.01 without biases and norms, batch 32, linear decay after a 10 % linear warm-up, per step),
`configs/dataset/{imdb,snips}.yaml` (IMDB: 512 tokens, truncated on the right; Snips: the copy
`AutoIntent/snips`, its own train / test split, 64 tokens) and the experiment files (coll_coef
S.C. 0.1, H.C. 0.7)."""

KO_TABLE3_NOTES = """\
- **The head.** BERT's KO head is `classifier` (its pooler is pretrained: part of the encoder).
  On IMDB it has 2 output neurons: KO's collision acts on **a single pair** (the H.C. rate of a
  step is 0 or 1). DistilBERT has no pretrained pooler: its head is `pre_classifier` (768 -> 768,
  initialised with the classifier) + `classifier`, and KO collides both
  (`configs/model/distilbert_base_uncased.yaml`).
- Snips logs macro-F1 too (the paper prints accuracy only)."""


# Config values each GPU table states as the runs recorded them.
KO_TABLE3_AS_RUN = {
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "epochs": "trainer.epochs",
    "batch": "trainer.batch_size",
    "coll_coef": "collision.coll_coef",
}


@REPORTS.register(name="ko-table3")
def render_ko_table3(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Table 3: IMDB / Snips accuracy (%) of three BERTs x {AdamW, +S.C., +H.C.} vs the paper."""
    df = text_runs(runs)
    df["variant"] = df["collision"].map(lambda c: KO_TABLE3_VARIANTS.get(c, c))
    by = ["model", "variant", "data"]
    agg = tables.aggregate(df, by, ["acc", "best_acc", "f1", "best_f1", "best_epoch"])
    models = ordered(df["model"].unique(), KO_TABLE3_MODELS)
    variants = ordered(df["variant"].unique(), list(KO_TABLE3_VARIANTS.values()))
    data = ordered(df["data"].unique(), list(KO_TABLE3_DATA))
    column = {d: KO_TABLE3_DATA.get(d, d) for d in data}
    paper = tables.load_paper_tables()
    baseline = KO_TABLE3_VARIANTS["none"]
    # Snips logs macro-F1; any other data set whose runs logged it gets the columns too.
    f1_data = [d for d in data if d == "snips" or df.loc[df["data"] == d, "f1"].notna().any()]

    acc_rows, f1_rows, gain_rows = [], [], []
    for model in models:
        for variant in variants:
            row = f"{_ko_label(model)}+{variant}"
            cells, f1_cells, gains = [row], [row], [row]
            for d in data:
                key = (model, variant, d)
                value = tables.paper_value("ko", "table3", row, column[d], tables=paper)
                cells += [
                    tables.ours_cell(agg, key, "acc"),
                    tables.ours_cell(agg, key, "best_acc"),
                    tables.format_paper(value),
                ]
                if variant != baseline:
                    base = df[(df["model"] == model) & (df["variant"] == baseline)]
                    other = df[(df["model"] == model) & (df["variant"] == variant)]
                    gain = judge_gain(
                        paired_diffs(base[base["data"] == d], other[other["data"] == d], "acc")
                    )
                    theirs = paper_gain(
                        paper, "ko", "table3", f"{_ko_label(model)}+{baseline}", row, column[d]
                    )
                    gains += [
                        gain_cell(gain),
                        tables.MISSING if theirs is None else format_signed(theirs),
                        gain.verdict,
                    ]
            acc_rows.append(cells)
            if variant != baseline:
                gain_rows.append(gains)
            for d in f1_data:
                key = (model, variant, d)
                f1_cells += [
                    tables.ours_cell(agg, key, "f1"),
                    tables.ours_cell(agg, key, "best_f1"),
                ]
            f1_rows.append(f1_cells)
    acc_headers = ["model"] + [
        f"{column[d]} {who}" for d in data for who in ("final (ours)", "best (ours)", "(paper)")
    ]
    f1_headers = ["model"] + [
        f"{column[d]} macro-F1 {who}" for d in f1_data for who in ("final", "at best epoch")
    ]
    gain_headers = ["model"] + [
        f"{column[d]} {who}" for d in data for who in ("gain (ours)", "gain (paper)", "verdict")
    ]
    labels = {
        (m, v, d): f"{_ko_label(m)}+{v} / {column.get(d, d)}"
        for m in models
        for v in variants
        for d in data
    }
    settings_as_run = as_run(df, KO_TABLE3_AS_RUN)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""{KO_TABLE3_SETTING}
Values as run: {settings_as_run}.

Cells: test accuracy in %, mean ± std over seeds (n = runs); the paper prints one number per cell.
{ACCURACY_NOTE} "missing" = no run produced that cell.

{KO_TABLE3_NOTES}

{no_runs_note(df, runs)}
## Test accuracy (%)

{tables.markdown_table(acc_headers, acc_rows)}

## Macro-F1 (%)

Not in the paper. "at best epoch" = at the epoch of the best test accuracy.

{tables.markdown_table(f1_headers, f1_rows)}

## Gain over AdamW (points of final accuracy)

Ours: the difference to the AdamW row of the same model and data set, per seed run in both, then
mean ± std; the paper's: the difference of its two cells. {NOISE_RULE}

{tables.markdown_table(gain_headers, gain_rows)}

## Collision rate

{_rate_section(df, by, labels)}

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- KITINet Table 5


def _kitinet_row(model: str, variant: str) -> str:
    """The paper's row name: ``Bert-cased [9]`` / ``KITI-Bert-cased`` (other models: their name)."""
    name = KITINET_TABLE5_MODELS.get(model)
    if name is None:
        return model if variant == VANILLA else f"KITI-{model}"
    return f"{name} [9]" if variant == VANILLA else f"KITI-{name}"


KITINET_TABLE5_SETTING = """\
# KITINet Table 5: text classification with and without KITINet in BERT's final layer

Setting (SPEC §3; `configs/experiment/kitinet/table5_*.yaml`, recipe
`configs/recipe/text_kitinet_adam.yaml`): bert-base-cased / bert-base-uncased fine-tuned on IMDb
and SNLI with Adam lr 2e-5, batch 32, 40 epochs (the paper's); ours where it is silent: linear
decay after a 10 % linear warm-up (per step), no weight decay, IMDb 512 tokens, SNLI 128 tokens as
sentence pairs (pairs without a gold label dropped). KITI rows: KITINet replaces the residual
addition **after self-attention in the final layer** (`kitinet_sites: [attn]`,
`kitinet_layers: [-1]` in `configs/model/bert_base_*.yaml`; the paper says "in the final layer"
and not which residual), collision_heads 4 (192 particles of 4 dimensions per token) and coll_coef
0.9 (the paper gives neither: after BERT's LayerNorm a feature is ~1, and particles of more
dimensions are too far apart to collide)."""


@REPORTS.register(name="kitinet-table5")
def render_kitinet_table5(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 5: IMDb / SNLI accuracy (%) of BERT-cased/uncased, vanilla vs KITI."""
    df = text_runs(runs)
    df["variant"] = df["collision"].map(lambda c: KITI if c == "kitinet" else VANILLA)
    by = ["model", "variant", "data"]
    agg = tables.aggregate(df, by, ["acc", "best_acc", "best_epoch"])
    models = ordered(df["model"].unique(), list(KITINET_TABLE5_MODELS))
    data = ordered(df["data"].unique(), list(KITINET_TABLE5_DATA))
    column = {d: KITINET_TABLE5_DATA.get(d, d) for d in data}
    paper = tables.load_paper_tables()

    acc_rows, gain_rows = [], []
    for model in models:
        for variant in (VANILLA, KITI):
            row = _kitinet_row(model, variant)
            cells = [row]
            for d in data:
                key = (model, variant, d)
                value = tables.paper_value("kitinet", "table5", row, column[d], tables=paper)
                cells += [
                    tables.ours_cell(agg, key, "acc"),
                    tables.ours_cell(agg, key, "best_acc"),
                    tables.format_paper(value),
                ]
            acc_rows.append(cells)
        gains = [_kitinet_row(model, KITI)]
        for d in data:
            cell = df[(df["model"] == model) & (df["data"] == d)]
            gain = judge_gain(
                paired_diffs(cell[cell["variant"] == VANILLA], cell[cell["variant"] == KITI], "acc")
            )
            theirs = paper_gain(
                paper,
                "kitinet",
                "table5",
                _kitinet_row(model, VANILLA),
                _kitinet_row(model, KITI),
                column[d],
            )
            gains += [
                gain_cell(gain),
                tables.MISSING if theirs is None else format_signed(theirs),
                gain.verdict,
            ]
        gain_rows.append(gains)
    acc_headers = ["model"] + [
        f"{column[d]} {who}" for d in data for who in ("final (ours)", "best (ours)", "(paper)")
    ]
    gain_headers = ["model"] + [
        f"{column[d]} {who}" for d in data for who in ("gain (ours)", "gain (paper)", "verdict")
    ]
    labels = {
        (m, v, d): f"{_kitinet_row(m, v)} / {column.get(d, d)}"
        for m in models
        for v in (VANILLA, KITI)
        for d in data
    }
    settings_as_run = as_run(
        df, {**KO_TABLE3_AS_RUN, "collision_heads": "collision.collision_heads"}
    )
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""{KITINET_TABLE5_SETTING}
Values as run: {settings_as_run}.

Cells: test accuracy in %, mean ± std over seeds (n = runs); the paper prints one number per cell.
{ACCURACY_NOTE} "missing" = no run produced that cell. SNLI and IMDb come from the Hugging Face
hub (cached in `<data_dir>/hf_cache`): these rows need network access once, and a GPU.

{no_runs_note(df, runs)}
## Test accuracy (%)

{tables.markdown_table(acc_headers, acc_rows)}

## Gain of KITI over vanilla (points of final accuracy)

Ours: KITI − vanilla of the same model and data set, per seed run in both, then mean ± std; the
paper's: the difference of its two cells. {NOISE_RULE}

{tables.markdown_table(gain_headers, gain_rows)}

## Collision rate

{_rate_section(df, by, labels)}

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- mini-text

# (row, task) -> the paper's corresponding cells: (paper, table, baseline row, row, column, where).
MINI_TEXT_PAPER: dict[tuple[str, str], tuple[str, str, str, str, str, str]] = {
    ("+S.C.", "sentiment"): (
        "ko",
        "table3",
        "bert-base-uncased+AdamW",
        "bert-base-uncased+S.C.",
        "IMDB",
        "KO Table 3, IMDB, bert-base-uncased",
    ),
    ("+H.C.", "sentiment"): (
        "ko",
        "table3",
        "bert-base-uncased+AdamW",
        "bert-base-uncased+H.C.",
        "IMDB",
        "KO Table 3, IMDB, bert-base-uncased",
    ),
    ("+S.C.", "topics"): (
        "ko",
        "table3",
        "bert-base-uncased+AdamW",
        "bert-base-uncased+S.C.",
        "Snips",
        "KO Table 3, Snips, bert-base-uncased",
    ),
    ("+H.C.", "topics"): (
        "ko",
        "table3",
        "bert-base-uncased+AdamW",
        "bert-base-uncased+H.C.",
        "Snips",
        "KO Table 3, Snips, bert-base-uncased",
    ),
    ("KITI", "sentiment"): (
        "kitinet",
        "table5",
        "Bert-uncased [9]",
        "KITI-Bert-uncased",
        "IMDb",
        "KITINet Table 5, IMDb, bert-base-uncased",
    ),
}
# The papers' rows shown as context: (our row, paper, table, paper row, {our task: paper column}).
MINI_TEXT_CONTEXT = (
    ("AdamW", "ko", "table3", "bert-base-uncased+AdamW", {"sentiment": "IMDB", "topics": "Snips"}),
    ("AdamW", "kitinet", "table5", "Bert-uncased [9]", {"sentiment": "IMDb", "topics": None}),
    ("+S.C.", "ko", "table3", "bert-base-uncased+S.C.", {"sentiment": "IMDB", "topics": "Snips"}),
    ("+H.C.", "ko", "table3", "bert-base-uncased+H.C.", {"sentiment": "IMDB", "topics": "Snips"}),
    ("KITI", "kitinet", "table5", "KITI-Bert-uncased", {"sentiment": "IMDb", "topics": None}),
)
MINI_TEXT_TASK_DATA = {"sentiment": "movie-review snippets", "topics": "chatterbot topics"}
_MINI_RUN_KEYS = (
    "experiment_name",
    "seed",
    "data",
    "collision.name",
    "collision.coll_coef",
    "collision.collision_heads",
    "test_accuracy",
    "test_macro_f1",
    "best_test_accuracy",
    "best_test_macro_f1",
    "best_epoch",
    "wall_time",
    "git_commit",
)


def _mini_runs(runs: Path) -> pd.DataFrame:
    df = text_runs(runs)
    df["task"] = df["data"].map(lambda d: MINI_TEXT_TASKS.get(d, d))
    df["variant"] = df["collision"].map(lambda c: MINI_TEXT_VARIANTS.get(c, c))
    return df


def _mini_rate_summary(df: pd.DataFrame, task: str, variant: str) -> str:
    """How often pairs collided in a row over training ("" when the row logs no rate)."""
    cell = df[(df["task"] == task) & (df["variant"] == variant)]
    sites = [s for s in rate_columns(cell) if cell[f"rate_max:{s}"].notna().any()]
    if not sites:
        return ""
    means = pd.concat([cell[f"rate_mean:{s}"] for s in sites]).dropna()
    peak = max(float(cell[f"rate_max:{s}"].max()) for s in sites)
    names = ", ".join(f"`{s.removeprefix('collision_rate.')}`" for s in sites)
    if peak == 0:
        return f" No pair ever collided in {variant} ({names}): it trained as AdamW."
    return (
        f" {variant}'s collision rate over training ({names}): mean "
        f"{tables.format_number(means.mean(), 3)}, largest epoch mean "
        f"{tables.format_number(peak, 3)}."
    )


def _mini_gain(df: pd.DataFrame, task: str, variant: str, metric: str) -> Gain:
    cell = df[df["task"] == task]
    base = cell[cell["variant"] == MINI_TEXT_VARIANTS["none"]]
    return judge_gain(paired_diffs(base, cell[cell["variant"] == variant], metric))


def _mini_claims(df: pd.DataFrame, paper: Mapping[str, Any], variants: Sequence[str]) -> str:
    """The generated sentences, one per (row, task, metric) against AdamW."""
    lines = []
    for variant in variants:
        if variant == MINI_TEXT_VARIANTS["none"]:
            continue
        for task, metric, what in (
            ("sentiment", "acc", "final accuracy"),
            ("topics", "acc", "final accuracy"),
            ("topics", "f1", "final macro-F1"),
        ):
            gain = _mini_gain(df, task, variant, metric)
            source = MINI_TEXT_PAPER.get((variant, task)) if metric == "acc" else None
            if source is not None:
                name, table, base, row, column, where = source
                theirs = paper_gain(paper, name, table, base, row, column)
            else:
                theirs = None
                where = (
                    "the papers print no macro-F1"
                    if metric == "f1"
                    else "KITINet Table 5 has IMDb and SNLI only"
                )
            subject = f"{variant.lstrip('+')} vs AdamW on {task} ({what})"
            sentence = claim_sentence(subject, gain, theirs, where)
            if metric == "acc":  # once per task: how often the variant's pairs collided
                sentence += _mini_rate_summary(df, task, variant)
            lines.append(f"- {sentence}")
    return "\n".join(lines)


@REPORTS.register(name="mini-text")
def render_mini_text(runs: Path, out: Path, command: str) -> list[Path]:
    """`make mini-text`: KO Table 3 / KITINet Table 5 at CPU scale on offline stand-in data
    (MiniLM-L6; sentiment and topics x {AdamW, +S.C., +H.C., KITI}), with a generated sentence
    per claim."""
    df = _mini_runs(runs)
    by = ["task", "variant"]
    agg = tables.aggregate(df, by, ["acc", "best_acc", "f1", "best_f1", "best_epoch"])
    variants = ordered(df["variant"].unique(), list(MINI_TEXT_VARIANTS.values()))
    tasks = ordered(df["task"].unique(), list(MINI_TEXT_TASKS.values()))
    paper = tables.load_paper_tables()

    acc_rows, gain_rows = [], []
    for variant in variants:
        cells = [variant]
        gains = [variant]
        for task in tasks:
            key = (task, variant)
            cells += [tables.ours_cell(agg, key, "acc"), tables.ours_cell(agg, key, "best_acc")]
            if task == "topics":
                cells += [tables.ours_cell(agg, key, "f1"), tables.ours_cell(agg, key, "best_f1")]
            if variant != MINI_TEXT_VARIANTS["none"]:
                for metric in ("acc", "f1") if task == "topics" else ("acc",):
                    gain = _mini_gain(df, task, variant, metric)
                    gains += [gain_cell(gain), gain.verdict]
        acc_rows.append(cells)
        if variant != MINI_TEXT_VARIANTS["none"]:
            gain_rows.append(gains)
    acc_headers, gain_headers = ["row"], ["row"]
    for task in tasks:
        acc_headers += [f"{task} accuracy, final", f"{task} accuracy, best epoch"]
        gain_headers += [f"{task} accuracy gain", "verdict"]
        if task == "topics":
            acc_headers += ["topics macro-F1, final", "topics macro-F1, at best epoch"]
            gain_headers += ["topics macro-F1 gain", "verdict"]

    context_rows = []
    for variant, name, table, row, columns in MINI_TEXT_CONTEXT:
        cells = [variant, f"{'KO' if name == 'ko' else 'KITINet'} Table {table[-1]}: {row}"]
        for task in ("sentiment", "topics"):
            column = columns.get(task)
            value = tables.paper_value(name, table, row, column, tables=paper) if column else None
            cells.append(f"{tables.format_paper(value)} ({column})" if column else "not in it")
        context_rows.append(cells)
    context_headers = ["row here", "paper row", "↔ sentiment (IMDB)", "↔ topics (Snips)"]

    labels = {(t, v): f"{v} / {t}" for t in tasks for v in variants}
    wall = pd.to_numeric(df.get("wall_time", pd.Series(dtype=float)), errors="coerce")
    wall_minutes = (
        f"{tables.format_number(wall.sum() / 60.0, 3)} min"
        if wall.notna().any()
        else tables.MISSING
    )
    settings = []
    for task in tasks:
        runs_of = df[df["task"] == task]
        kiti = runs_of[runs_of["collision"] == "kitinet"]
        hard = runs_of[runs_of["collision"] == "hard"]
        soft = runs_of[runs_of["collision"] == "soft"]
        if not len(runs_of):
            settings.append(
                f"- **{task}** ({MINI_TEXT_TASK_DATA.get(task, task)}): no runs (the values are "
                f"in `configs/experiment/mini/text_{task}*.yaml`)."
            )
            continue
        settings.append(
            f"- **{task}** ({MINI_TEXT_TASK_DATA.get(task, task)}; `dataset.train` "
            f"{config_values(runs_of, 'dataset.train')}): train limit "
            f"{config_values(runs_of, 'dataset.train_limit')}, max length "
            f"{config_values(runs_of, 'dataset.max_length')} tokens; model "
            f"{config_values(runs_of, 'model.name')}; {config_values(runs_of, 'optimizer.name')} "
            f"lr {config_values(runs_of, 'optimizer.lr')}, wd "
            f"{config_values(runs_of, 'optimizer.weight_decay')}, "
            f"{config_values(runs_of, 'scheduler.name')} schedule, batch "
            f"{config_values(runs_of, 'trainer.batch_size')}, "
            f"**{config_values(runs_of, 'trainer.epochs')} epoch(s)**; coll_coef S.C. "
            f"{config_values(soft, 'collision.coll_coef')}, H.C. "
            f"{config_values(hard, 'collision.coll_coef')}; KITI: collision_heads "
            f"{config_values(kiti, 'collision.collision_heads')}, coll_coef "
            f"{config_values(kiti, 'collision.coll_coef')}, sites "
            f"{config_values(kiti, 'model.kitinet_sites')} of layers "
            f"{config_values(kiti, 'model.kitinet_layers')}."
        )
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# mini-text: KO Table 3 and KITINet Table 5 at CPU scale

The papers fine-tune BERT-base on IMDB / Snips / SNLI for 10 (KO) or 40 (KITINet) epochs on a GPU.
This is the same comparison sized for 2 CPU cores on data that ships offline (`make text-data`):
all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT with bert-base-uncased's vocabulary) fine-tuned on
**sentiment** (rated movie-review snippets, IMDB's stand-in) and **topics** (chatterbot-corpus
utterances in 7 categories, Snips' stand-in), each with AdamW, +S.C., +H.C. (KO on the classifier
head) and KITI (KITINet after self-attention in the final layer, with the same AdamW). Values as
run (`configs/experiment/mini/text_*.yaml`):

{chr(10).join(settings)}

**SNLI has no offline data**: KITINet Table 5's SNLI column has no CPU-scale counterpart here and
stays GPU-only (`make table-kitinet-5`, which downloads it once). Cells: mean ± std over seeds
(n = runs), in %. {ACCURACY_NOTE} Sum of the runs' wall times:
{wall_minutes}.

{no_runs_note(df, runs)}
## Accuracy and macro-F1 (%)

{tables.markdown_table(acc_headers, acc_rows)}

## The papers' corresponding rows (context only: another model, data and recipe)

bert-base-uncased, the model MiniLM-L6 stands in for; KITINet's baseline is Adam without weight
decay, ours is AdamW for every row. These are **not the same setting** and not a target at this
scale.

{tables.markdown_table(context_headers, context_rows)}

## Gain over AdamW (points, final)

Per seed run in both rows (paired by seed), then mean ± std. {NOISE_RULE}

{tables.markdown_table(gain_headers, gain_rows)}

## What the numbers say

Generated from the numbers above (final accuracy / macro-F1, paired by seed; the rule as above);
the papers' differences are those of their corresponding cells.

{_mini_claims(df, paper, variants)}

## Collision rates that occurred

{_rate_section(df, by, labels)}

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    summary = out / "runs.json"
    records = []
    for _, run in df.sort_values("run_dir").iterrows():
        record: dict[str, Any] = {"run_dir": str(run["run_dir"])}
        for key in (*_MINI_RUN_KEYS, *rate_columns(df)):
            value = run.get(key)
            record[key] = None if is_missing(value) else plain(value)
        records.append(record)
    atomic_write_json(summary, records)
    return [readme, summary]
