"""Helpers on collected runs that several renderers share.

Canonical names of config values (activations, collision kinds), the watched layer's weights and
condensation metrics, the ``collision_rate.*`` columns, and the CIFAR runs of KO Table 1 and
KITINet Table 3. Everything reads run directories only (``config.yaml``, ``summary.json``,
``weights_final.pt``); nothing here builds a model or imports a domain.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from experiments.core.io import atomic_write
from experiments.reports import common as tables
from kinetics.metrics import max_offdiag_abs_cos, rho

__all__ = [
    "CIFAR_COLUMNS",
    "activation_name",
    "cifar_runs",
    "collect",
    "collision_name",
    "config_values",
    "dataset_column",
    "is_kitinet_run",
    "is_missing",
    "load_weight",
    "mixed_note",
    "ordered",
    "rate_cell",
    "rate_columns",
    "resnet_label",
    "save_png",
    "watched_layer",
    "watched_metrics",
]

# --------------------------------------------------------------------------- run helpers


def is_missing(value: Any) -> bool:
    """None or a float NaN (what pandas leaves where a run lacks a key)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


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
    """The distinct values of config ``key`` over the runs, joined by " / " ("missing" if none)."""
    if key not in df or not len(df):
        return tables.MISSING
    values = []
    for value in df[key]:
        text = (
            tables.MISSING
            if is_missing(value)
            else str(list(value) if isinstance(value, tuple) else value)
        )
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
