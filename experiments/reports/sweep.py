"""The generic renderer of any multirun: one row per combination of the swept config keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.core.registry import REPORTS
from experiments.reports import common as tables
from experiments.reports.runs import collect, rate_columns

# --------------------------------------------------------------------------- any sweep


def _swept_keys(df: pd.DataFrame) -> list[str]:
    """The config keys the sweep varied: of the keys whose values differ between runs (seeds and
    per-run paths excluded), those its command lines named (``model.kitinet_layers=1``, or
    ``collision=soft`` for ``collision.name``) and any other key they do not determine.

    Switching a config group changes many keys at once (``collision=kitinet`` brings ``dt`` and
    ``collision_heads``); those follow from ``collision.name`` and get no column of their own.
    """
    mixed = tables.mixed_config_keys(df.assign(_all=0), ["_all"])
    varying = [k for k in mixed.get((0,), []) if not k.startswith("experiment_name")]
    named = _overridden_keys(df)
    # named keys first, then the ones with the most distinct values (they determine the most)
    order = sorted(varying, key=lambda k: (k not in named, -_distinct(df, [k]), k))
    kept: list[str] = []
    for key in order:
        if not kept or _distinct(df, [*kept, key]) > _distinct(df, kept):
            kept.append(key)
    return sorted(kept)


def _distinct(df: pd.DataFrame, keys: list[str]) -> int:
    return len(df[keys].astype(str).drop_duplicates())


def _overridden_keys(df: pd.DataFrame) -> set[str]:
    """The config keys the runs' command-line overrides set (a group's choice sets
    ``<group>.name``)."""
    keys: set[str] = set()
    for overrides in df.get("overrides", pd.Series(dtype=object)).dropna():
        for item in overrides if isinstance(overrides, (list, tuple)) else ():
            key = str(item).split("=", 1)[0].lstrip("+~")
            keys.add(key if "." in key else f"{key}.name")
    return keys


@REPORTS.register(name="sweep")
def render_sweep(runs: Path, out: Path, command: str) -> list[Path]:
    """Any multirun: one row per combination of the swept config keys, mean ± std over seeds.

    Metrics: final train/test loss, other test metrics (``test_top1``, ...), and every ``rho.*``,
    ``max_cos.*`` and filled
    ``collision_rate.*`` column. The swept keys are found from the runs, so this renders the
    KITINet §5.7 skip-network sweep as well as ``collision.coll_coef=...`` sweeps. There are no
    paper numbers here (none of these sweeps has a table in the papers).
    """
    df = collect(runs)
    if "experiment_name" not in df:  # no runs (or runs without the key): one "missing" group
        df["experiment_name"] = pd.Series(None, index=df.index, dtype=object)
    by = _swept_keys(df) or ["experiment_name"]
    metrics = [c for c in ("train_loss", "test_loss") if c in df.columns]
    metrics += sorted(c for c in df.columns if c.startswith("test_") and c != "test_loss")
    metrics += sorted(c for c in df.columns if c.startswith(("rho.", "max_cos.")))
    metrics += rate_columns(df)
    agg = tables.aggregate(df, by, metrics)
    rows = []
    for key in agg.index:
        key = key if isinstance(key, tuple) else (key,)
        rows.append([*key, *(tables.ours_cell(agg, key, m) for m in metrics)])
    body = "\n".join(
        [
            f"# Sweep over {', '.join(f'`{k}`' for k in by)}",
            "",
            'Final-epoch metrics, mean ± std over seeds (n = runs); "missing" = no run logged it.',
            "",
            tables.markdown_table([*by, *metrics], rows),
        ]
    )
    path = tables.write_markdown(out / "README.md", tables.provenance_header(command, df), body)
    return [path]
