"""Helpers on collected runs that several renderers share.

Canonical names of config values (activations, collision kinds), the watched layer's weights and
condensation metrics, the ``collision_rate.*`` columns, the CIFAR runs of KO Table 1 and
KITINet Table 3, and the paired gains over seeds with their verdict and generated claim sentence
(:class:`Gain`, :func:`paired_diffs`, :func:`judge_gain`, :func:`claim_sentence`). Everything reads
run directories only (``config.yaml``, ``summary.json``, ``weights_final.pt``); nothing here builds
a model or imports a domain.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch

from experiments.core.io import atomic_write
from experiments.reports import common as tables
from experiments.reports.common import is_missing
from kinetics.metrics import max_offdiag_abs_cos, rho

__all__ = [
    "CIFAR_COLUMNS",
    "NOISE_RULE",
    "Gain",
    "activation_name",
    "as_run",
    "cifar_runs",
    "claim_sentence",
    "collect",
    "collision_name",
    "config_values",
    "dataset_column",
    "format_signed",
    "gain_cell",
    "is_kitinet_run",
    "is_missing",
    "judge_gain",
    "load_weight",
    "mixed_note",
    "no_runs_note",
    "ordered",
    "paired_diffs",
    "paper_gain",
    "plain",
    "rate_cell",
    "rate_columns",
    "resnet_label",
    "save_png",
    "stats_cell",
    "watched_layer",
    "watched_metrics",
]

# --------------------------------------------------------------------------- run helpers


def activation_name(value: Any) -> str:
    """Canonical activation name: lower case, ``leakyrelu`` / ``leaky-relu`` -> ``leaky_relu``."""
    name = "missing" if is_missing(value) else str(value).lower().replace("-", "_")
    return "leaky_relu" if name == "leakyrelu" else name


def collision_name(value: Any) -> str:
    """Canonical KO collision name; no collision (null, "none", "off") is ``"none"``."""
    name = "none" if is_missing(value) else str(value).lower()
    return "none" if name in ("null", "off", "false", "adam", "") else name


def watched_layer(run: pd.Series) -> str | None:
    """The first entry of the run's ``trainer.watch`` list (the layer heat maps are drawn for)."""
    watch = run.get("trainer.watch")
    if isinstance(watch, str):
        return watch
    if isinstance(watch, Sequence) and len(watch):
        return str(watch[0])
    return None


def is_kitinet_run(run: pd.Series) -> bool:
    """Whether a run used the KITINet module: the config group ``collision=kitinet`` builds it.

    The model name says nothing (``kitinet_fc`` is also the vanilla network with plain additions
    under ``collision=none``).
    """
    return str(run.get("collision.name", "")).lower() == "kitinet"


def load_weight(run: pd.Series, layer: str) -> torch.Tensor | None:
    """The final weight of ``layer`` from the run's ``weights_final.pt`` (None if absent)."""
    path = Path(run["run_dir"]) / "weights_final.pt"
    if not path.is_file():
        return None
    weights = torch.load(path, map_location="cpu", weights_only=True)
    for key in (layer, f"{layer}.weight"):
        if key in weights:
            return weights[key]
    return None


def watched_metrics(run: pd.Series) -> tuple[float, float]:
    """(max |cos|, rho) of the watched layer: from summary.json, else from weights_final.pt."""
    layer = watched_layer(run)
    if layer is None:
        return math.nan, math.nan
    max_cos, rho_value = run.get(f"max_cos.{layer}"), run.get(f"rho.{layer}")
    if is_missing(max_cos) or is_missing(rho_value):
        weight = load_weight(run, layer)
        if weight is not None:
            max_cos = max_offdiag_abs_cos(weight) if is_missing(max_cos) else max_cos
            rho_value = rho(weight) if is_missing(rho_value) else rho_value
    return (
        math.nan if is_missing(max_cos) else float(max_cos),
        math.nan if is_missing(rho_value) else float(rho_value),
    )


def ordered(found: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``preferred`` first (also when absent: they render as missing), then anything else found."""
    return list(preferred) + sorted(set(found) - set(preferred))


def collect(runs: Path) -> pd.DataFrame:
    """:func:`~experiments.reports.common.collect_runs` with ``seed`` and ``run_dir`` always
    columns; an absent or empty ``runs`` directory gives an empty frame.

    Every cell then renders as "missing". Whether such a table may be written at all (never over a
    result already in the output directory) is decided in one place,
    :func:`experiments.reports.render.render_report`, not here.
    """
    runs = Path(runs)
    df = tables.collect_runs(runs) if runs.is_dir() else pd.DataFrame()
    df.attrs.setdefault("config_columns", [])
    df.attrs["root"] = str(runs)
    for column in ("seed", "run_dir"):
        if column not in df:
            df[column] = pd.Series(None, index=df.index, dtype=object)
    return df


def config_values(df: pd.DataFrame, key: str) -> str:
    """The distinct values of config ``key`` over the runs, joined by " / " ("missing" if none).

    An integral float prints as the int it was in config.yaml: pandas turns an int column into
    floats when another run lacks the key (``n_layer 4``, not ``n_layer 4.0``)."""
    if key not in df or not len(df):
        return tables.MISSING
    integral = all(
        isinstance(v, float) and (is_missing(v) or v.is_integer()) for v in df[key]
    ) and str(df[key].dtype).startswith("float")
    values = []
    for value in df[key]:
        if is_missing(value):
            text = tables.MISSING
        elif integral:
            text = str(int(value))
        else:
            text = str(list(value) if isinstance(value, tuple) else value)
        if text not in values:
            values.append(text)
    return " / ".join(values)


def mixed_note(df: pd.DataFrame, by: Sequence[str]) -> str:
    """A warning paragraph listing the cells whose runs differ beyond the seed ("" if none)."""
    mixed = tables.mixed_config_keys(df, by)
    if not mixed:
        return ""
    lines = [
        "**Warning:** some cells average runs whose configs differ beyond the seed:",
        "",
        *(f"- {' / '.join(map(str, key))}: {', '.join(keys)}" for key, keys in mixed.items()),
    ]
    return "\n".join(lines) + "\n"


def as_run(df: pd.DataFrame, keys: Mapping[str, str]) -> str:
    """``label value(s); ...`` of config keys as the runs recorded them ("no runs" without)."""
    if not len(df):
        return "no runs"
    return "; ".join(f"{label} {config_values(df, key)}" for label, key in keys.items())


def no_runs_note(df: pd.DataFrame, runs: Path) -> str:
    """A paragraph saying that ``runs`` holds no run directories ("" when there are runs)."""
    if len(df):
        return ""
    return (
        f'**No run directories under `{runs}`**: every cell of ours is "missing".\n'
        "Run the Make target without `RENDER_ONLY=1` to fill them.\n"
    )


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON writes no numpy types)."""
    return value.item() if hasattr(value, "item") else value


def stats_cell(values: pd.Series, *, digits: int = 4) -> str:
    """``mean ± std (n=k)`` of ``values`` (already without NaN); "missing" when empty.

    The statistics module's exact sums give equal values a std of exactly 0 (pandas' leaves float
    noise such as 8.5e-18, which :func:`~experiments.reports.common.format_ours` would print)."""
    numbers = [float(v) for v in values]
    n = len(numbers)
    std = statistics.stdev(numbers) if n > 1 else math.nan
    mean = statistics.fmean(numbers) if n else math.nan
    return tables.format_ours(mean, std, n, digits=digits)


def rate_columns(df: pd.DataFrame) -> list[str]:
    """The ``collision_rate.*`` columns some run actually filled (watched layers that are no
    collision site log null and would only add columns of "missing")."""
    return sorted(c for c in df.columns if c.startswith("collision_rate.") and df[c].notna().any())


# --------------------------------------------------------------------------- CIFAR tables

# KO Table 1 and KITINet Table 3: data set names in the configs -> the papers' column names.
CIFAR_COLUMNS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def resnet_label(value: Any, sep: str) -> str:
    """``cifar_resnet34`` -> ``ResNet34`` (sep ``""``) or ``ResNet-34`` (sep ``"-"``)."""
    match = None if is_missing(value) else re.search(r"resnet(\d+)", str(value).lower())
    return f"ResNet{sep}{match.group(1)}" if match else str(value)


def dataset_column(value: Any) -> str:
    """``cifar10`` -> ``CIFAR10``: the papers' column name of a config's ``dataset.name``."""
    name = "missing" if is_missing(value) else str(value).lower()
    return CIFAR_COLUMNS.get(name, name)


def cifar_runs(runs: Path) -> tuple[pd.DataFrame, list[str]]:
    """Runs with ``data`` (paper column), ``acc`` (final test top-1 in %) and ``collision_rate``.

    ``collision_rate`` is the mean over the run's collision sites that logged a rate (the KO
    head under hard collision, every KITINet residual); NaN when none did.
    """
    df = collect(runs)
    for key in ("model.name", "dataset.name", "collision.name"):
        if key not in df:
            df[key] = None
    df["data"] = df["dataset.name"].map(dataset_column)
    top1 = df["test_top1"] if "test_top1" in df else pd.Series(math.nan, index=df.index)
    df["acc"] = 100.0 * pd.to_numeric(top1, errors="coerce")  # the runner logs a fraction
    rates = rate_columns(df)
    if rates:
        df["collision_rate"] = df[rates].apply(pd.to_numeric, errors="coerce").mean(axis=1)
    else:
        df["collision_rate"] = math.nan
    columns = ordered(df["data"].unique(), list(CIFAR_COLUMNS.values()))
    return df, columns


def rate_cell(agg: pd.DataFrame, key: tuple[str, ...], collision: str) -> str:
    """The ``collision_rate`` cell of ``key``; a missing one says why under no / soft collision."""
    cell = tables.ours_cell(agg, key, "collision_rate")
    if cell == tables.MISSING and collision == "none":
        return "n/a (no collision)"
    if cell == tables.MISSING and collision == "soft":
        return "n/a (soft collision selects no pairs)"
    return cell


def save_png(fig: Any, path: Path, provenance: str, *, dpi: int = 120) -> None:
    """Write a matplotlib figure to ``path`` atomically, the provenance in its PNG metadata."""
    atomic_write(
        path,
        lambda f: fig.savefig(f, format="png", dpi=dpi, metadata={"Description": provenance}),
        "wb",
    )


# --------------------------------------------------------------------------- gains and sentences

NOISE_RULE = (
    "A gain is **clear** when every seed's paired difference has the same sign and their mean is "
    "more than two standard errors (2 · std / √n) from 0; otherwise it is **within noise**. One "
    "seed gives no spread and no verdict."
)


class Gain(NamedTuple):
    """Paired differences (other − baseline, per seed run in both) and what they say."""

    mean: float
    std: float
    n: int
    verdict: str  # "clear gain", "clear loss", "within noise", "one seed", "missing"
    reason: str  # why, in words computed from the numbers

    @property
    def two_se(self) -> float:
        return 2.0 * self.std / math.sqrt(self.n) if self.n > 1 else math.nan


def paired_diffs(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> list[float]:
    """``other − base`` of ``metric`` for each seed present (with a value) in both, by seed."""
    a = base[base[metric].notna()].groupby("seed")[metric].mean()
    b = other[other[metric].notna()].groupby("seed")[metric].mean()
    both = sorted(a.index.intersection(b.index))
    return [float(b[s] - a[s]) for s in both]


def judge_gain(diffs: Sequence[float]) -> Gain:
    """The verdict on paired differences, by :data:`NOISE_RULE` (positive = a gain)."""
    n = len(diffs)
    if not n:
        return Gain(math.nan, math.nan, 0, "missing", "no seed was run in both rows")
    mean = statistics.fmean(diffs)
    if n == 1:
        return Gain(mean, math.nan, 1, "one seed", "one seed gives no spread")
    std = statistics.stdev(diffs)
    two_se = 2.0 * std / math.sqrt(n)
    same_sign = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    if same_sign and abs(mean) > two_se:
        verdict = "clear gain" if mean > 0 else "clear loss"
        every = "gains" if mean > 0 else "loses"
        return Gain(mean, std, n, verdict, f"every seed {every}, |mean| > 2 SE = {two_se:.2f}")
    if not any(diffs):
        reason = "no seed differs"
    elif not same_sign:
        up, down = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        ties = n - up - down
        reason = f"{up} of {n} seeds gain, {down} lose" + (f", {ties} tie" if ties else "")
    else:
        reason = f"|mean| ≤ 2 SE = {two_se:.2f}"
    return Gain(mean, std, n, "within noise", reason)


def format_signed(value: float) -> str:
    """A difference, signed, 2 decimals (rounding noise is "+0.00", not "-0.00")."""
    text = f"{value:+.2f}"
    return "+0.00" if text == "-0.00" else text


def gain_cell(gain: Gain) -> str:
    """``+0.30 ± 0.52 (n=3)``: the paired mean gain and its std; "missing" without."""
    if gain.n == 0:
        return tables.MISSING
    if gain.n == 1:
        return f"{format_signed(gain.mean)} ± {tables.NOT_APPLICABLE} (n=1)"
    return f"{format_signed(gain.mean)} ± {gain.std:.2f} (n={gain.n})"


def paper_gain(
    paper: Mapping[str, Any], name: str, table: str, base: str, row: str, column: str
) -> float | None:
    """The paper's ``row − base`` in ``column`` (None when either cell is absent)."""
    a = tables.paper_value(name, table, base, column, tables=paper)
    b = tables.paper_value(name, table, row, column, tables=paper)
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return None
    return round(float(b) - float(a), 6)


def claim_sentence(
    subject: str,
    gain: Gain,
    paper_gain: float | None,
    paper_where: str | None,
    *,
    unit: str = "points",
) -> str:
    """One sentence on a claim, every word chosen from the numbers.

    ``subject`` names the comparison ("S.C. vs AdamW on sentiment (final accuracy)"), ``gain``
    is ours (:func:`judge_gain`), ``paper_gain`` the paper's difference of the corresponding
    cells in ``unit`` (e.g. "points", or "%" for a relative change) and ``paper_where`` where it
    comes from (None: the paper has no such cell).
    """
    if gain.n == 0:
        ours = f"{subject}: missing ({gain.reason})"
    elif gain.n == 1:
        ours = f"{subject}: {format_signed(gain.mean)} {unit} from one seed: no spread, no verdict"
    else:
        ours = (
            f"{subject}: {format_signed(gain.mean)} ± {gain.std:.2f} {unit} over {gain.n} seeds "
            f"(paired by seed): {gain.verdict} ({gain.reason})"
        )
    if paper_gain is None:
        where = f" ({paper_where})" if paper_where else ""
        return f"{ours}; the paper has no number to compare{where}."
    theirs = f"the paper's {format_signed(paper_gain)} ({paper_where})"
    if gain.verdict in ("missing", "one seed"):
        return f"{ours}; {theirs} is not tested here."
    if gain.verdict == "within noise":
        if abs(paper_gain) < gain.two_se:
            return (
                f"{ours}; {theirs} is smaller than this run's resolution (2 SE = "
                f"{gain.two_se:.2f} {unit}): neither confirmed nor refuted at this scale."
            )
        return f"{ours}; {theirs} is not replicated at this scale."
    ours_sign = 1 if gain.verdict == "clear gain" else -1
    paper_sign = (paper_gain > 0) - (paper_gain < 0)
    if paper_sign == 0:
        return f"{ours}; the paper shows no difference ({paper_where})."
    if ours_sign == paper_sign:
        size = "larger" if abs(gain.mean) > abs(paper_gain) else "smaller"
        return f"{ours}; same sign as {theirs}, {size} in size at this scale."
    return f"{ours}; opposite to {theirs}."
