"""Tables from run directories: collect, aggregate over seeds, and set beside the papers' numbers.

The pipeline every renderer of :mod:`experiments.reports` reuses:

1. :func:`collect_runs` walks a directory for run directories (``summary.json`` + ``config.yaml``,
   as written by the runner; never W&B) and returns one DataFrame row per run: the resolved config
   flattened to dotted keys (``model.activation``, ``collision.name``, ``seed``) plus the summary's
   flat metric keys (``test_loss``, ``rho.hidden``, ``collision_rate.hidden``, ...).
2. :func:`aggregate` groups runs and gives mean, std (ddof=1) and n per metric.
3. :func:`format_ours` / :func:`ours_cell` write "mean ± std (n=k)"; a cell without runs is
   ``"missing"``, never 0. :func:`paper_value` / :func:`format_paper` read the paper's number from
   ``results/paper_tables.yaml`` (floats keep their printed text, e.g. ``79.70``).
4. :func:`provenance_header` + :func:`markdown_table` + :func:`write_markdown`: every rendered file
   starts with the command, git commit, seeds found and date that produced it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tabulate import tabulate

from experiments.core.io import git_commit

__all__ = [
    "MISSING",
    "NOT_APPLICABLE",
    "PAPER_TABLES_PATH",
    "REPO_ROOT",
    "PaperNumber",
    "aggregate",
    "collect_runs",
    "data_summary",
    "environment_summary",
    "find_run_dirs",
    "flatten",
    "format_number",
    "format_ours",
    "format_paper",
    "git_commit",
    "is_missing",
    "load_paper_tables",
    "load_run",
    "markdown_table",
    "mixed_config_keys",
    "ours_cell",
    "paper_value",
    "provenance_header",
    "recording_rendered_runs",
    "write_markdown",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PAPER_TABLES_PATH = REPO_ROOT / "results" / "paper_tables.yaml"
MISSING = "missing"
NOT_APPLICABLE = "—"
STATS = ("mean", "std", "n")
# Config keys that legitimately differ between the seeds of one table cell: seeds (also derived
# ones such as `dataset.seed: ${seed}`), output locations and logger settings.
_PER_RUN_KEYS = ("seed",)
_PER_RUN_PREFIXES = ("hydra.", "wandb.", "logger.", "paths.")
_PER_RUN_SUFFIXES = ("dir", "path", ".seed", "_seed")


# --------------------------------------------------------------------------- collecting runs


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys; lists become tuples (hashable, so groupable)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = tuple(value)
        else:
            flat[name] = value
    return flat


def find_run_dirs(root: str | os.PathLike[str]) -> list[Path]:
    """Every directory under ``root`` (itself included) holding ``summary.json`` and ``config.yaml``.

    Sorted, so tables and figures do not depend on the file system's listing order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory not found: {root}")
    found = [
        Path(directory)
        for directory, _, files in os.walk(root)
        if "summary.json" in files and "config.yaml" in files
    ]
    return sorted(found)


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(flattened config, full row) of one run directory; see :func:`load_run`."""
    config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    summary = flatten(json.loads((run_dir / "summary.json").read_text()))
    row = dict(config)
    for key, value in summary.items():
        if key in row and row[key] != value:
            raise ValueError(
                f"{run_dir}: {key!r} is {row[key]!r} in config.yaml but {value!r} in summary.json"
            )
        row[key] = value
    row["run_dir"] = str(run_dir)
    return config, row


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """One run as a flat dict: dotted config keys, then the summary's keys, then ``run_dir``.

    A key present in both files (e.g. ``seed``) must agree; a mismatch means the run directory is
    inconsistent and raises ValueError rather than being tabulated under the wrong cell.
    """
    return _read_run(Path(run_dir))[1]


def collect_runs(root: str | os.PathLike[str]) -> pd.DataFrame:
    """All runs under ``root`` as a DataFrame, one row per run directory.

    Columns: flattened config keys, summary keys and ``run_dir``. A key a run lacks is NaN/None in
    its row. ``df.attrs["config_columns"]`` lists the columns that came from config files and
    ``df.attrs["root"]`` the directory searched.
    """
    rows, config_columns = [], set()
    for run_dir in find_run_dirs(root):
        config, row = _read_run(run_dir)
        config_columns.update(config)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["config_columns"] = sorted(config_columns)
    df.attrs["root"] = str(root)
    return df


# --------------------------------------------------------------------------- aggregating


def aggregate(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count of each metric per group of runs.

    Args:
        df: runs, e.g. from :func:`collect_runs`.
        by: grouping columns (all must exist in ``df``).
        metrics: metric columns. A metric missing from ``df``, or NaN/non-numeric in a run, does
            not count for that run: ``n`` is the number of runs with a value.

    Returns:
        A DataFrame indexed by the ``by`` values (a MultiIndex, also for one key) with columns
        ``(metric, stat)`` for stat in ``mean``, ``std``, ``n``. ``std`` is NaN when n < 2 and
        ``mean`` is NaN when n = 0.
    """
    by = list(by)
    absent = [key for key in by if key not in df.columns]
    if absent:
        raise KeyError(f"grouping columns not in the runs: {absent}")
    keys, records = [], []
    if len(df):
        for key, group in df.groupby(by, dropna=False, sort=True):
            record: dict[tuple[str, str], float | int] = {}
            for metric in metrics:
                values = (
                    pd.to_numeric(group[metric], errors="coerce").dropna()
                    if metric in group
                    else pd.Series(dtype=float)
                )
                n = len(values)
                record[(metric, "mean")] = float(values.mean()) if n else math.nan
                record[(metric, "std")] = float(values.std(ddof=1)) if n > 1 else math.nan
                record[(metric, "n")] = n
            keys.append(key if isinstance(key, tuple) else (key,))
            records.append(record)
    index = pd.MultiIndex.from_tuples(keys, names=by) if keys else _empty_index(by)
    columns = pd.MultiIndex.from_tuples(
        [(metric, stat) for metric in metrics for stat in STATS], names=["metric", "stat"]
    )
    return pd.DataFrame(records, index=index, columns=columns)


def _empty_index(names: Sequence[str]) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([[] for _ in names], names=list(names))


def mixed_config_keys(df: pd.DataFrame, by: Sequence[str]) -> dict[tuple, list[str]]:
    """Config keys that vary *within* a group, i.e. runs that should not be averaged together.

    Seeds (``seed``, ``*.seed``, ``*_seed``), output paths and logger settings are expected to
    differ and are ignored.
    """
    by = list(by)
    config_columns = [
        column
        for column in df.attrs.get("config_columns", [])
        if column in df.columns
        and column not in by
        and column not in _PER_RUN_KEYS
        and not column.startswith(_PER_RUN_PREFIXES)
        and not column.endswith(_PER_RUN_SUFFIXES)
    ]
    mixed: dict[tuple, list[str]] = {}
    if not len(df):
        return mixed
    for key, group in df.groupby(by, dropna=False, sort=True):
        varying = [c for c in config_columns if group[c].astype(str).nunique(dropna=False) > 1]
        if varying:
            mixed[key if isinstance(key, tuple) else (key,)] = varying
    return mixed


# --------------------------------------------------------------------------- formatting


def format_number(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits; NaN/None is ``"missing"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}g}"


def format_ours(mean: float, std: float, n: int, *, digits: int = 4) -> str:
    """ "mean ± std (n=k)", rounded to the std's 2 significant digits; no runs is ``"missing"``.

    With one run (or a zero std) the mean keeps ``digits`` significant digits and std is "—"
    (respectively "0").
    """
    if not n or mean is None or math.isnan(mean):
        return MISSING
    if n < 2 or std is None or math.isnan(std):
        return f"{format_number(mean, digits)} ± {NOT_APPLICABLE} (n={n})"
    decimals = 1 - math.floor(math.log10(std)) if std > 0 else None
    if decimals is None or decimals > 6:  # zero or tiny spread: fixed decimals would be unreadable
        return f"{format_number(mean, digits)} ± {std:.2g} (n={n})"
    decimals = max(decimals, 0)
    mean_text = f"{mean:.{decimals}f}"
    if float(mean_text) == 0:
        mean_text = mean_text.lstrip("-")  # no "-0.0" from rounding noise
    return f"{mean_text} ± {std:.{decimals}f} (n={n})"


def ours_cell(agg: pd.DataFrame, key: Any, metric: str, *, digits: int = 4) -> str:
    """The formatted cell of group ``key`` (a tuple of the ``by`` values) for ``metric``."""
    key = key if isinstance(key, tuple) else (key,)
    if key not in agg.index or (metric, "n") not in agg.columns:
        return MISSING
    row = agg.loc[key]
    if isinstance(row, pd.DataFrame):  # several rows with one key cannot come from aggregate()
        raise ValueError(f"duplicate group {key} in the aggregate")
    return format_ours(
        row[(metric, "mean")], row[(metric, "std")], int(row[(metric, "n")]), digits=digits
    )


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells are written exactly as given (no number parsing)."""
    return tabulate(
        [[str(cell) for cell in row] for row in rows],
        headers=list(headers),
        tablefmt="github",
        disable_numparse=True,
    )


# --------------------------------------------------------------------------- paper numbers


class PaperNumber(float):
    """A float from ``paper_tables.yaml`` that prints as written there (``79.70``, not ``79.7``)."""

    text: str

    def __new__(cls, value: float, text: str) -> PaperNumber:
        number = super().__new__(cls, value)
        number.text = text
        return number

    def __str__(self) -> str:
        return self.text

    def __format__(self, spec: str) -> str:
        return self.text if not spec else super().__format__(spec)


class _PaperLoader(yaml.SafeLoader):
    """Safe YAML loader that keeps each float's printed text."""


def _construct_paper_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> PaperNumber:
    return PaperNumber(loader.construct_yaml_float(node), str(node.value))


_PaperLoader.add_constructor("tag:yaml.org,2002:float", _construct_paper_float)


def load_paper_tables(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The papers' numbers (default: the repository's ``results/paper_tables.yaml``)."""
    with open(path or PAPER_TABLES_PATH, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_PaperLoader)  # a SafeLoader subclass: safe


def paper_value(
    paper: str,
    table: str,
    row: str | None,
    column: str,
    *,
    tables: Mapping[str, Any] | None = None,
) -> Any:
    """The paper's value for a table cell, or for a claim's number.

    Args:
        paper: ``"ko"`` or ``"kitinet"``.
        table: a table id (``"table1"``) or a claim id (``"synthetic_test_loss_reductions"``).
        row: the table's row name as printed; must be ``None`` for a claim.
        column: the column name, or the key in the claim's ``values``.
        tables: the loaded yaml (default: :func:`load_paper_tables`).

    Returns:
        The value (a number, a ``{mean, std}`` / ``{mean, stderr}`` dict or a string), or ``None``
        when the paper has no such row or column.

    Raises:
        KeyError: unknown paper, table or claim id: a typo in the renderer, not a missing cell.
    """
    tables = load_paper_tables() if tables is None else tables
    if paper not in tables:
        raise KeyError(f"unknown paper {paper!r}; known: {sorted(tables)}")
    section = tables[paper]
    if table != "claims" and table in section:
        if row is None:
            raise ValueError(f"{paper}.{table} is a table: give a row")
        cells = section[table].get("rows", {}).get(row)
        return cells.get(column) if isinstance(cells, Mapping) else None
    for claim in section.get("claims", []):
        if claim.get("id") == table:
            if row is not None:
                raise ValueError(f"{paper} claim {table!r} has no rows; pass row=None")
            return (claim.get("values") or {}).get(column)
    raise KeyError(f"{paper} has no table or claim {table!r}")


def format_paper(value: Any) -> str:
    """A paper value as printed: ``None`` is ``"missing"``; ``{mean, std}`` is "mean ± std"."""
    if value is None:
        return MISSING
    if isinstance(value, Mapping):
        if "std" in value:
            return f"{value['mean']} ± {value['std']}"
        if "stderr" in value:
            return f"{value['mean']} (SE {value['stderr']})"
        return f"{value.get('mean', MISSING)}"
    return str(value)


# --------------------------------------------------------------------------- provenance


def is_missing(value: Any) -> bool:
    """None or a float NaN (what pandas leaves where a run lacks a key)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    unique = {v for v in values if not is_missing(v)}
    return sorted(unique, key=lambda v: (str(type(v)), v))


_RENDERED_RUNS: ContextVar[list[int] | None] = ContextVar("rendered_runs", default=None)


@contextmanager
def recording_rendered_runs() -> Iterator[list[int]]:
    """Within the block, every :func:`provenance_header` appends to the yielded list the number
    of runs its file is rendered from.

    A renderer states the runs a file comes from in that file's header, so this is how
    :func:`experiments.reports.render.render_report` learns whether a renderer found any run
    (also when it selects its rows from a shared runs root) without a second contract.
    """
    counts: list[int] = []
    token = _RENDERED_RUNS.set(counts)
    try:
        yield counts
    finally:
        _RENDERED_RUNS.reset(token)


def provenance_header(command: str, runs: pd.DataFrame, *, runs_root: str | None = None) -> str:
    """The markdown block every rendered file starts with.

    It names the commands that made the runs (``command`` column) and the one that rendered
    them, the repository commit the renderer ran at, the seeds and the commits
    recorded by the runs themselves (``seed`` / ``git_commit`` or ``commit`` columns), and the
    date (UTC). Without runs it says so: every cell of ours is then "missing".
    """
    counts = _RENDERED_RUNS.get()
    if counts is not None:
        counts.append(len(runs))
    seeds = _sorted_unique(runs["seed"]) if "seed" in runs else []
    # The runner writes `git_commit`; `commit` is accepted too.
    recorded = [runs[c] for c in ("git_commit", "commit") if c in runs]
    run_commits = _sorted_unique(v for column in recorded for v in column)
    run_commands = _sorted_unique(runs["command"]) if "command" in runs else []
    root = runs_root or runs.attrs.get("root", "?")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "> **Provenance** (generated file: edit the renderer, not this file)",
        "> - runs made by: "
        + (", ".join(f"`{c}`" for c in run_commands) if run_commands else MISSING),
        f"> - rendered by: `{command}`",
        f"> - git commit: `{git_commit()}`",
        (
            f"> - runs: {len(runs)} run directories under `{root}`; seeds found: "
            + (", ".join(str(s) for s in seeds) if seeds else MISSING)
            if len(runs)
            else f"> - runs: **none**: no run directories under `{root}`, so every cell of ours "
            'is "missing" (run the Make target without `RENDER_ONLY=1` to fill them)'
        ),
        "> - commits recorded by the runs: "
        + (", ".join(f"`{c}`" for c in run_commits) if run_commits else MISSING),
        "> - environments recorded by the runs: " + environment_summary(runs),
        "> - data read by the runs (sha256): " + data_summary(runs),
        f"> - date: {date}",
    ]
    return "\n".join(lines) + "\n"


# environment keys of summary.json named in provenance headers, with their labels
_ENVIRONMENT_FACTS = (
    ("environment.packages.torch", "torch"),
    ("environment.device", "device"),
    ("environment.cpu", "cpu"),
    ("environment.cpu_capability", "kernels"),
    ("environment.num_threads", "threads"),
    ("environment.variables.MKL_CBWR", "MKL_CBWR"),
)


def environment_summary(runs: pd.DataFrame) -> str:
    """The distinct environments the runs recorded (torch, device, CPU, kernels, threads), with
    how many runs had each; "missing" for runs made before runs recorded them."""
    columns = [(c, label) for c, label in _ENVIRONMENT_FACTS if c in runs]
    if not columns or not len(runs):
        return MISSING
    combos: dict[str, int] = {}
    for _, run in runs.iterrows():
        facts = [f"{label} {_plain(run[c])}" for c, label in columns if not is_missing(run[c])]
        key = ", ".join(facts) if facts else "not recorded"
        combos[key] = combos.get(key, 0) + 1
    return "; ".join(f"{key} ({n} runs)" for key, n in sorted(combos.items()))


def _plain(value: Any) -> Any:
    # pandas turns an int column with gaps into floats
    return int(value) if isinstance(value, float) and value.is_integer() else value


def data_summary(runs: pd.DataFrame) -> str:
    """Each data file the runs read with its sha256 (first 16 hex digits). Where the runs of
    several experiments read different files of one name (each data set's ``train.csv``), each
    digest names its experiments; a file read with different contents by runs of *one*
    experiment is marked **differs between runs**."""
    prefix = "data_sha256."
    columns = sorted(c for c in runs if c.startswith(prefix))
    if not columns:
        return "none (data made in memory)" if "environment.device" in runs else MISSING
    experiments = (
        runs["experiment_name"] if "experiment_name" in runs else pd.Series("", runs.index)
    )
    parts = []
    for column in columns:
        seen = runs[column].map(lambda v: None if is_missing(v) else v)
        digests = _sorted_unique(seen)
        users = {d: _sorted_unique(experiments[seen == d].astype(str)) for d in digests}
        mixed = any(seen[experiments == e].nunique() > 1 for e in experiments.unique())
        named = len(digests) > 1 and not mixed
        cells = [f"`{d[:16]}`" + (f" ({', '.join(users[d])})" if named else "") for d in digests]
        mark = " **differs between runs**" if mixed else ""
        parts.append(f"`{column.removeprefix(prefix)}` " + " / ".join(cells) + mark)
    return ", ".join(parts)


def write_markdown(path: str | os.PathLike[str], header: str, body: str) -> Path:
    """Write ``header`` (from :func:`provenance_header`), a blank line and ``body`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header.rstrip("\n") + "\n\n" + body.strip("\n") + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader never sees half a table
    return path
