"""The generic renderer of any multirun: one row per combination of the swept config keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.core.registry import REPORTS
from experiments.reports import common as tables
from experiments.reports.runs import collect, rate_columns

# --------------------------------------------------------------------------- any sweep


def _swept_keys(df: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between runs, seeds and per-run paths excluded."""
    ignored = tables.mixed_config_keys(df.assign(_all=0), ["_all"])
    varying = ignored.get((0,), [])
    return [k for k in varying if not k.startswith("experiment_name")]


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
