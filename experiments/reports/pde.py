"""KITINet PDE renderers: Table 4 (FNO vs KITI-FNO), Table 6 (position update on / off), Table 7
(ρ per FNO layer), Fig. 2 / Fig. 6 (one knob swept) and ``mini-pde`` (Table 4 and Fig. 2(a) at CPU
scale).

Every PDE target writes its rows into one runs root; each renderer picks its rows there by
``experiment_name``. Each ``render_*(runs, out, command) -> list[Path]`` writes its files into
``out``; :data:`~experiments.core.registry.REPORTS` holds it under its ``scripts/render.py`` name.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from experiments.core.io import atomic_write_json
from experiments.core.registry import REPORTS
from experiments.reports import common as tables
from experiments.reports.runs import (
    config_values,
    is_kitinet_run,
    is_missing,
    mixed_note,
    ordered,
    rate_columns,
    save_png,
)

# Config dataset.name -> (Table 4 "Problem", Table 6 "Equation", name in figures); paper order.
PDE_PROBLEMS: dict[str, tuple[str, str | None, str]] = {
    "burgers": ("Burgers' Equ.", "Burgers'", "Burgers"),
    "navier_stokes": ("NS Equation", "NS", "Navier-Stokes"),
    "heat": ("Heat Equation", "Heat", "Heat"),
    "airfoil": ("Airfoil*", None, "Airfoil"),
}
PDE_RMSE_PROBLEMS = ("airfoil",)  # Table 4's footnote: the Airfoil cells are RMSE, not MSE
PDE_CLAIM = "pde_error_reductions"
PDE_CLAIM_KEYS = {
    "burgers": "burgers_reduction_pct",
    "navier_stokes": "ns_reduction_pct",
    "heat": "heat_reduction_pct",
    "airfoil": "airfoil_rmse_reduction_pct",
}
# Which runs of a runs root make which table (by experiment_name, a full regex match). Every PDE
# target writes its rows into one root (multirun/kitinet_pde/<row>), so rows can be shared:
# Table 6's "update" rows are Table 4's KITI rows, Fig. 2's baselines Table 4's vanilla rows.
PDE_TABLE4_RUNS = r"kitinet_table4_.*|mini_pde"
PDE_TABLE6_NOPOS_RUNS = r"kitinet_table6_.*"
PDE_TABLE7_RUNS = r"kitinet_table7_.*"
TABLE6_MECHANISMS = ("non-update", "update")


class Fig2Panel(NamedTuple):
    """One panel of KITINet Fig. 2 / Fig. 6: KITI-FNO test MSE against one swept knob."""

    figure: str
    data: str
    knob: str  # config column, e.g. "collision.collision_heads"
    runs: str  # experiment_name regex of the sweep's runs (KITI runs only are used)
    baseline: str  # experiment_name regex of the vanilla runs drawn as the dashed line
    expected: tuple[float, ...]  # values the experiment file sweeps (missing ones show)
    log2: bool = False


FIG2_PANELS = (
    Fig2Panel(
        "Fig. 2(a)",
        "burgers",
        "collision.collision_heads",
        r"kitinet_fig2a_burgers",
        r"kitinet_table4_burgers_fno",
        (32, 64, 128, 256, 512, 1024),
        log2=True,
    ),
    Fig2Panel(
        "Fig. 2(b)",
        "heat",
        "collision.coll_coef",
        r"kitinet_fig2b_heat",
        r"kitinet_table4_heat_fno",
        tuple(k / 10 for k in range(1, 10)),
    ),
    Fig2Panel(
        "Fig. 6",
        "navier_stokes",
        "collision.coll_coef",
        r"kitinet_fig2b_ns",
        r"kitinet_table4_ns_fno",
        tuple(k / 10 for k in range(1, 10)),
    ),
)
MINI_PDE_PANEL = Fig2Panel(
    "Fig. 2(a), CPU scale",
    "burgers",
    "collision.collision_heads",
    r"mini_pde|mini_pde_heads",
    r"mini_pde",
    (32, 64, 128, 256),
    log2=True,
)


def _natural_key(text: str) -> list[Any]:
    """Sort key that puts ``layers.10`` after ``layers.9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(math.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce")


def _pde_runs(runs: Path) -> pd.DataFrame:
    """Every run under ``runs`` with the PDE columns the renderers use.

    A missing or empty ``runs`` directory gives an empty frame: every cell then renders as
    "missing" (with ``RENDER_ONLY=1`` before any run, the paper columns are still shown).
    Columns added: ``data`` (dataset name), ``kiti`` (collision=kitinet), ``mechanism``
    ("update" / "non-update", KITI runs), ``mse`` / ``rel_l2`` / ``rmse`` (final test metrics;
    RMSE as the root of the test MSE, exact for any test batching), ``error`` (Table 4's cell:
    RMSE for Airfoil, else MSE) and ``collision_rate`` (mean over the run's KITINet modules).
    """
    df = tables.collect_runs(runs) if runs.is_dir() else pd.DataFrame()
    attrs = dict(df.attrs)
    for column in ("experiment_name", "dataset.name", "collision.name", "seed", "run_dir"):
        if column not in df:
            df[column] = pd.Series(None, index=df.index, dtype=object)
    df["data"] = df["dataset.name"].map(lambda v: tables.MISSING if is_missing(v) else str(v))
    df["kiti"] = pd.Series(
        [is_kitinet_run(run) for _, run in df.iterrows()], index=df.index, dtype=bool
    )
    update = df.get("collision.position_update", pd.Series(True, index=df.index))
    df["mechanism"] = [
        ("non-update" if value is False else "update") if kiti else None
        for kiti, value in zip(df["kiti"], update.where(update.notna(), True), strict=True)
    ]
    df["mse"], df["rel_l2"] = _numeric(df, "test_mse"), _numeric(df, "test_rel_l2")
    df["rmse"] = df["mse"].pow(0.5).fillna(_numeric(df, "test_rmse"))
    mesh = df["data"].isin(PDE_RMSE_PROBLEMS)
    df.loc[mesh, "rmse"] = _numeric(df, "test_rmse")[mesh]
    df["error"] = df["rmse"].where(df["data"].isin(PDE_RMSE_PROBLEMS), df["mse"])
    df["train_loss"] = _numeric(df, "train_loss")
    rates = rate_columns(df)
    df["collision_rate"] = (
        df[rates].apply(pd.to_numeric, errors="coerce").mean(axis=1) if rates else math.nan
    )
    df.attrs.update(attrs)
    return df


def _select(df: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """The runs whose ``experiment_name`` fully matches ``pattern`` (attrs kept)."""
    names = df["experiment_name"].astype(str)
    selected = df[names.str.fullmatch(pattern)].copy()
    selected.attrs = dict(df.attrs)
    return selected


def _pde_problems(df: pd.DataFrame, preferred: Sequence[str] = tuple(PDE_PROBLEMS)) -> list[str]:
    found = [d for d in df["data"].unique() if d != tables.MISSING]
    return ordered(found, preferred)


def _operator_labels(data: str) -> tuple[str, str]:
    """The paper's (vanilla, KITI) model labels of a problem's rows."""
    return ("OFormer [22]", "KITI-OFormer") if data == "airfoil" else ("FNO [23]", "KITI-FNO")


def _paired_reduction(df: pd.DataFrame, data: str, metric: str) -> tuple[float, float, int]:
    """Mean, std and n of 100·(vanilla − KITI)/vanilla of ``metric`` over seeds run in both."""
    cell = df[(df["data"] == data) & df[metric].notna()]
    vanilla = cell[~cell["kiti"]].groupby("seed")[metric].mean()
    kiti = cell[cell["kiti"]].groupby("seed")[metric].mean()
    both = vanilla.index.intersection(kiti.index)
    change = 100.0 * (vanilla[both] - kiti[both]) / vanilla[both]
    n = len(change)
    return (
        float(change.mean()) if n else math.nan,
        float(change.std(ddof=1)) if n > 1 else math.nan,
        n,
    )


def _table4_section(df: pd.DataFrame, problems: Sequence[str], paper: dict[str, Any]) -> str:
    """Table 4's rows (ours beside the paper's) and the relative error reductions."""
    agg = tables.aggregate(df, ["data", "kiti"], ["error", "rel_l2"])
    rows, reduction_rows = [], []
    for data in problems:
        problem = PDE_PROBLEMS.get(data, (data, None, data))[0]
        labels = _operator_labels(data)
        metric = "RMSE" if data in PDE_RMSE_PROBLEMS else "MSE"
        for kiti, label in zip((False, True), labels, strict=True):
            value = tables.paper_value(
                "kitinet", "table4", f"{problem} / {label}", "MSE", tables=paper
            )
            rows.append(
                [
                    problem,
                    label,
                    metric,
                    tables.ours_cell(agg, (data, kiti), "error"),
                    tables.format_paper(value),
                    tables.ours_cell(agg, (data, kiti), "rel_l2"),
                ]
            )
        mean, std, n = _paired_reduction(df, data, "error")
        means = [
            agg.loc[(data, k), ("error", "mean")] if (data, k) in agg.index else math.nan
            for k in (False, True)
        ]
        of_means = 100.0 * (means[0] - means[1]) / means[0] if means[0] else math.nan
        claim_key = PDE_CLAIM_KEYS.get(data)
        claimed = (
            tables.paper_value("kitinet", PDE_CLAIM, None, claim_key, tables=paper)
            if claim_key
            else None
        )
        reduction_rows.append(
            [
                problem,
                metric,
                tables.format_ours(mean, std, n, digits=3),
                tables.format_number(of_means, 3),
                tables.format_paper(claimed),
            ]
        )
    table = tables.markdown_table(
        ["Problem", "Model", "metric", "error (ours)", "error (paper)", "rel. L2 (ours)"], rows
    )
    reductions = tables.markdown_table(
        [
            "Problem",
            "metric",
            "reduction % (ours, paired by seed)",
            "reduction % of the means (ours)",
            "reduction % (paper, §5.4)",
        ],
        reduction_rows,
    )
    return f"""## Test error

{table}

## Error reduction by KITINet

100 · (vanilla − KITI) / vanilla of the final test error: per seed for the seeds run in both
variants, then mean ± std; and of the means over seeds. The paper's numbers are its §5.4 prose,
which matches its Table 4.

{reductions}
"""


def _rate_history(run_dir: str, sites: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``{site: (mean, max)}`` of a run's per-epoch collision rates (epochs >= 1, from
    ``metrics.jsonl``); NaNs when the file or the values are absent."""
    path = Path(run_dir) / "metrics.jsonl"
    values: dict[str, list[float]] = {site: [] for site in sites}
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            for site in sites:
                value = record.get(site)
                if record.get("epoch", 0) and isinstance(value, int | float):
                    values[site].append(float(value))
    return {
        site: (sum(v) / len(v), max(v)) if v else (math.nan, math.nan) for site, v in values.items()
    }


def _rate_section(df: pd.DataFrame, label_of: Callable[[pd.Series], str]) -> str:
    """Per KITINet module: the final epoch's rate, the mean and the max over epochs, over seeds."""
    kiti = df[df["kiti"]].copy()
    sites = sorted(rate_columns(kiti), key=_natural_key) if len(kiti) else []
    if not sites:
        return (
            "No KITINet run logged a `collision_rate.*` metric: **missing** (no KITI run yet, or "
            "runs from before the rate was logged)."
        )
    kiti["row"] = [label_of(run) for _, run in kiti.iterrows()]
    long_rows = []
    for row_label, group in kiti.groupby("row", sort=False):
        histories = [_rate_history(run["run_dir"], sites) for _, run in group.iterrows()]
        for site in sites:
            final = pd.to_numeric(group[site], errors="coerce").dropna()
            if not len(final):
                continue
            means = pd.Series([h[site][0] for h in histories]).dropna()
            peaks = pd.Series([h[site][1] for h in histories]).dropna()
            long_rows.append(
                [
                    row_label,
                    f"`{site.removeprefix('collision_rate.')}`",
                    tables.format_ours(
                        final.mean(), final.std(ddof=1) if len(final) > 1 else math.nan, len(final)
                    ),
                    tables.format_ours(
                        means.mean(), means.std(ddof=1) if len(means) > 1 else math.nan, len(means)
                    ),
                    tables.format_number(peaks.max() if len(peaks) else math.nan),
                ]
            )
    table = tables.markdown_table(
        ["row", "KITINet module", "final epoch", "mean over epochs", "max over epochs"], long_rows
    )
    return f"""Accepted / all particle pairs per KITINet module (one per Fourier layer), averaged over each
epoch's steps; "final epoch" and "mean over epochs" are then mean ± std over seeds, "max" is the
largest epoch mean of any seed. Not in the paper; logged because in high dimensions
exp(-distance) is small and collisions may rarely fire (a rate of 0 means KITINet acted as the
plain addition in that layer).

{table}
"""


def _pde_row_label(run: pd.Series) -> str:
    data = str(run["data"])
    problem = PDE_PROBLEMS.get(data, (data, None, data))[0]
    label = _operator_labels(data)[1]
    mechanism = run.get("mechanism")
    return f"{problem} / {label}" + (" (non-update)" if mechanism == "non-update" else "")


def _no_runs_note(df: pd.DataFrame, runs: Path) -> str:
    if len(df):
        return ""
    return (
        f'**No run directories under `{runs}`**: every cell of ours is "missing".\n'
        "Run the Make target without `RENDER_ONLY=1` to fill them.\n"
    )


@REPORTS.register(name="kitinet-table4")
def render_kitinet_table4(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 4: FNO / KITI-FNO test MSE on Burgers, NS, Heat (and OFormer on Airfoil)."""
    df = _select(_pde_runs(runs), PDE_TABLE4_RUNS)
    paper = tables.load_paper_tables()
    problems = _pde_problems(df)
    section = _table4_section(df, problems, paper)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KITINet Table 4: neural operators with and without KITINet

Setting (KITINet §5.4, SPEC §3; `configs/experiment/kitinet/table4_*.yaml`): FNO with Adam lr 1e-3,
batch 20, 1000 epochs (our choices where the paper is silent: wd 1e-4, lr x0.5 every 100 epochs);
Burgers: FNO-1D (modes 16, width 64), 1000 / 100 samples at 1024 points; NS and Heat: FNO-2D
(modes 12, width 20), steps 1-10 -> 11-20, 1000 / 200 samples, trained at 32x32 and tested at
64x64. KITI-FNO: KITINet in every Fourier layer (1x1-conv output = x, spectral-conv output = v),
with each run's `collision.collision_heads` / `collision.coll_coef` (the paper gives neither).
Training loss: relative L2. Cells: final-epoch test error, mean ± std over seeds (n = runs); the
paper prints one number per cell. "missing" = no run produced that cell. Airfoil (OFormer) cells
are RMSE, as the paper's footnote says.

{_no_runs_note(df, runs)}
{section}
## Collision rate per layer

{_rate_section(df, _pde_row_label)}

{mixed_note(df, ["data", "kiti"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


@REPORTS.register(name="kitinet-table6")
def render_kitinet_table6(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 6: KITI-FNO with and without the position update (test MSE)."""
    all_runs = _pde_runs(runs)
    nopos = _select(all_runs, PDE_TABLE6_NOPOS_RUNS)
    update = _select(all_runs, PDE_TABLE4_RUNS)
    df = pd.concat([nopos, update[update["kiti"]]], ignore_index=True)
    df.attrs = dict(all_runs.attrs)
    df = df[df["kiti"]] if len(df) else df
    agg = tables.aggregate(df, ["data", "mechanism"], ["mse", "collision_rate"])
    paper = tables.load_paper_tables()
    problems = [d for d in _pde_problems(df) if PDE_PROBLEMS.get(d, (0, None))[1]]
    rows, verdicts = [], []
    for data in problems:
        equation = PDE_PROBLEMS[data][1]
        for mechanism in TABLE6_MECHANISMS:
            value = tables.paper_value(
                "kitinet", "table6", f"{equation} / {mechanism}", "MSE", tables=paper
            )
            rows.append(
                [
                    equation,
                    mechanism,
                    tables.ours_cell(agg, (data, mechanism), "mse"),
                    tables.format_paper(value),
                    tables.ours_cell(agg, (data, mechanism), "collision_rate"),
                ]
            )
        means = [
            agg.loc[(data, m), ("mse", "mean")] if (data, m) in agg.index else math.nan
            for m in TABLE6_MECHANISMS
        ]
        ours = (
            tables.MISSING
            if any(math.isnan(m) for m in means)
            else ("yes" if means[1] < means[0] else "no")
        )
        verdicts.append([equation, ours, "yes"])
    table = tables.markdown_table(
        ["Equation", "Mechanism", "MSE (ours)", "MSE (paper)", "collision rate (ours)"], rows
    )
    verdict = tables.markdown_table(
        ["Equation", "update beats non-update (ours, means)", "(paper)"], verdicts
    )
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KITINet Table 6: position update on / off in KITI-FNO

Setting: as KITINet Table 4 (`results/kitinet_table4/`). "update" = KITINet's collision-averaged
position x* (x' = x* + dt v', the default; these are Table 4's KITI-FNO runs,
`kitinet_table4_*_kiti`), "non-update" = x' = x + dt v' (`kitinet_table6_*_nopos`), all else
identical. Cells: final-epoch test MSE, mean ± std over seeds (n = runs); the collision rate is the
final epoch's, averaged over the Fourier layers. "missing" = no run produced that cell.

{_no_runs_note(df, runs)}
## Test MSE

{table}

## Direction of the effect

{verdict}

## Collision rate per layer

{_rate_section(df, _pde_row_label)}

{mixed_note(df, ["data", "mechanism"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


def _fig2_points(df: pd.DataFrame, panel: Fig2Panel) -> tuple[pd.DataFrame, list[float], Any]:
    """(aggregate over the knob's values, the values in order, the baseline's aggregate row)."""
    points = _select(df, panel.runs)
    points = points[points["kiti"] & (points["data"] == panel.data)].copy()
    points["x"] = _numeric(points, panel.knob)
    metrics = ["mse", "rel_l2", "train_loss", "collision_rate"]
    agg = tables.aggregate(points, ["x"], metrics)
    found = [float(x) for x in points["x"].dropna().unique()]
    values = sorted(set(map(float, panel.expected)) | set(found))
    base = _select(df, panel.baseline)
    base = base[~base["kiti"] & (base["data"] == panel.data)].assign(all=0)
    base_agg = tables.aggregate(base, ["all"], ["mse"])
    return agg, values, base_agg


def _fig2_x_label(panel: Fig2Panel, x: float) -> str:
    return f"{int(x)}" if panel.log2 else f"{x:g}"


def _fig2_figure(
    df: pd.DataFrame, panels: Sequence[Fig2Panel], path: Path, provenance: str
) -> None:
    """One subplot per panel: KITI-FNO test MSE (mean ± std) vs the knob; vanilla FNO dashed,
    with its ± std band over seeds."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        agg, values, base = _fig2_points(df, panel)
        xs, means, stds = [], [], []
        for x in values:
            key = (x,)
            if key in agg.index and agg.loc[key, ("mse", "n")] > 0:
                xs.append(x)
                means.append(agg.loc[key, ("mse", "mean")])
                std = agg.loc[key, ("mse", "std")]
                stds.append(0.0 if math.isnan(std) else std)
        if xs:
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label="KITI-FNO")
        else:
            ax.text(0.5, 0.5, tables.MISSING, ha="center", va="center", transform=ax.transAxes)
        if (0,) in base.index and base.loc[(0,), ("mse", "n")] > 0:
            mean, std = base.loc[(0,), ("mse", "mean")], base.loc[(0,), ("mse", "std")]
            ax.axhline(mean, color="tab:red", linestyle="--", label="FNO (± std band)")
            if not math.isnan(std):
                ax.axhspan(mean - std, mean + std, color="tab:red", alpha=0.12)
        if panel.log2:
            ax.set_xscale("log", base=2)
            ax.set_xlim(min(values) / 1.5, max(values) * 1.5)
        else:
            ax.set_xlim(min(values) - 0.05, max(values) + 0.05)
        ax.set_xticks(values, [_fig2_x_label(panel, x) for x in values], fontsize=8)
        ax.set_xlabel(panel.knob.removeprefix("collision."))
        ax.set_ylabel("test MSE")
        ax.set_title(f"{panel.figure}: {PDE_PROBLEMS.get(panel.data, ('', '', panel.data))[2]}")
        if xs:
            ax.legend(fontsize=8)
    save_png(fig, path, provenance)


def _fig2_tables(df: pd.DataFrame, panels: Sequence[Fig2Panel]) -> str:
    sections = []
    for panel in panels:
        agg, values, base = _fig2_points(df, panel)
        rows = [
            [
                _fig2_x_label(panel, x),
                *(
                    tables.ours_cell(agg, (x,), m)
                    for m in ("mse", "rel_l2", "train_loss", "collision_rate")
                ),
            ]
            for x in values
        ]
        knob = panel.knob.removeprefix("collision.")
        table = tables.markdown_table(
            [
                knob,
                "test MSE",
                "test rel. L2",
                "train loss (rel. L2, with collisions)",
                "collision rate (mean over layers)",
            ],
            rows,
        )
        baseline = tables.ours_cell(base, (0,), "mse")
        name = PDE_PROBLEMS.get(panel.data, ("", "", panel.data))[2]
        sections.append(
            f"### {panel.figure}: {knob} on {name}\n\nVanilla FNO (dashed line, runs "
            f"`{panel.baseline}`): test MSE {baseline}.\n\n{table}\n"
        )
    return "\n".join(sections)


@REPORTS.register(name="kitinet-fig2")
def render_kitinet_fig2(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Fig. 2(a) (collision_heads, Burgers), 2(b) (coll_coef, Heat), Fig. 6 (NS)."""
    df = _pde_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    figure = out / "kitinet_fig2.png"
    _fig2_figure(df, FIG2_PANELS, figure, header)
    body = f"""# KITINet Fig. 2 and Fig. 6: KITI-FNO against collision_heads and coll_coef

Setting: as KITINet Table 4 (`results/kitinet_table4/`), one knob swept at a time
(`configs/experiment/kitinet/fig2*.yaml`): collision_heads on Burgers (coll_coef fixed),
coll_coef 0.1-0.9 on Heat (Fig. 2(b)) and NS (Fig. 6; collision_heads fixed). The dashed line is
vanilla FNO (Table 4's FNO runs). Cells: final-epoch metrics, mean ± std over seeds (n = runs);
"missing" = no run. **The paper gives these figures as plots only**: there are no numbers to set
beside ours. Its collision_heads axis runs 1..1024; values below 32 (N = 65536 / h > 2048
particles per sample) are refused by `dataset.max_particles` (see the experiment file).

{_no_runs_note(df, runs)}
![KITINet Fig. 2](kitinet_fig2.png)

{_fig2_tables(df, FIG2_PANELS)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [figure, readme]


@REPORTS.register(name="kitinet-table7")
def render_kitinet_table7(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 7: rho per FNO layer on NS (spectral conv "conv{i}", 1x1 skip "linear{i}")."""
    df = _select(_pde_runs(runs), PDE_TABLE7_RUNS)
    df["variant"] = df["kiti"].map({True: "KITI-FNO", False: "FNO"})
    layers = sorted(
        {int(m.group(1)) for c in df.columns if (m := re.fullmatch(r"rho\.layers\.(\d+)\.\w+", c))}
    ) or [0, 1, 2, 3]
    columns = {f"conv{i}": f"rho.layers.{i}.spectral" for i in layers}
    columns.update({f"linear{i}": f"rho.layers.{i}.skip" for i in layers})
    agg = tables.aggregate(df, ["variant"], list(columns.values()))
    paper = tables.load_paper_tables()
    rows, means = [], {}
    for variant in ("FNO", "KITI-FNO"):
        ours, theirs = [f"{variant} (ours)"], [f"{variant} (paper)"]
        for name, metric in columns.items():
            ours.append(tables.ours_cell(agg, (variant,), metric, digits=3))
            value = tables.paper_value("kitinet", "table7", variant, name, tables=paper)
            theirs.append(tables.NOT_APPLICABLE if value is None else tables.format_paper(value))
            key = (variant,)
            means[(variant, name, "ours")] = (
                agg.loc[key, (metric, "mean")] if key in agg.index else math.nan
            )
            means[(variant, name, "paper")] = math.nan if value is None else float(value)
        rows += [ours, theirs]
    direction = []
    for who in ("ours", "paper"):
        cells, up, count = [f"KITI-FNO > FNO ({who})"], 0, 0
        for name in columns:
            a, b = means[("FNO", name, who)], means[("KITI-FNO", name, who)]
            if math.isnan(a) or math.isnan(b):
                cells.append(tables.NOT_APPLICABLE if who == "paper" else tables.MISSING)
            else:
                count += 1
                up += b > a
                cells.append("yes" if b > a else "no")
        direction.append([*cells, f"{up} of {count}" if count else tables.MISSING])
    table = tables.markdown_table(["layer", *columns], rows)
    direction_table = tables.markdown_table(["", *columns, "layers"], direction)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KITINet Table 7: condensation ρ per FNO layer on Navier-Stokes

Setting: as KITINet Table 4's NS rows (`configs/experiment/kitinet/table7_ns.yaml`: FNO and
KITI-FNO in one sweep, every Fourier layer watched). ρ (KITINet Def. I.1 / I.2,
`kinetics.metrics.rho`) of the final weights: **conv{{i}}** = Fourier layer i's spectral conv
(`layers.{{i}}.spectral`, weight (out, in, modes, modes, 2): Def. I.2 with the kept complex modes
as the kernel, i.e. per input channel the cosine of the (Re, Im) vectors of two output channels,
Re⟨a, b⟩ / |a||b|); **linear{{i}}** = its 1x1 conv, the "linear transformation" of App. E.1
(`layers.{{i}}.skip`, weight (out, in): Def. I.1). This mapping is our reading: the paper prints
conv0-2 and linear0-2 for a 4-layer FNO and says nothing about the complex weights; its cells for
layer 3 are "—". Cells: mean ± std over seeds (n = runs); "missing" = no run.

{_no_runs_note(df, runs)}
## ρ per layer

{table}

## Direction: does KITINet increase ρ?

The paper: "the degree of condensation increased among most layers" (5 of its 6 columns).

{direction_table}

{mixed_note(df, ["variant"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# Per-run keys of a committed runs.json (small: no histories, no weights).
_RUN_SUMMARY_KEYS = (
    "experiment_name",
    "seed",
    "collision.name",
    "collision.collision_heads",
    "collision.coll_coef",
    "test_mse",
    "test_rel_l2",
    "test_rmse",
    "train_loss",
    "wall_time",
    "git_commit",
)


def _run_summaries(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One small record per run (config keys, final metrics, collision rates), sorted by dir."""
    records = []
    for _, run in df.sort_values("run_dir").iterrows():
        record = {"run_dir": str(run["run_dir"])}
        keys = [*_RUN_SUMMARY_KEYS, *sorted(rate_columns(df), key=_natural_key)]
        for key in keys:
            value = run.get(key)
            record[key] = None if is_missing(value) else value
        if not run["kiti"]:
            record = {k: v for k, v in record.items() if not k.startswith("collision_rate.")}
        records.append(record)
    return records


@REPORTS.register(name="mini-pde")
def render_mini_pde(runs: Path, out: Path, command: str) -> list[Path]:
    """`make mini-pde`: CPU-scale Table 4 (Burgers, FNO vs KITI-FNO) + a collision_heads sweep."""
    df = _pde_runs(runs)
    table4 = _select(df, r"mini_pde")
    paper = tables.load_paper_tables()
    out.mkdir(parents=True, exist_ok=True)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    figure = out / "mini_pde_heads.png"
    _fig2_figure(df, [MINI_PDE_PANEL], figure, header)
    wall = pd.to_numeric(df.get("wall_time", pd.Series(dtype=float)), errors="coerce").sum()

    def used(key: str, frame: pd.DataFrame = table4) -> str:
        """The value(s) of a config key in the runs ("missing" without runs)."""
        return config_values(frame, key)

    kiti = table4[table4["kiti"]]
    setting = "\n".join(
        [
            "- data: Burgers' equation (the paper's generator: nu = 0.1, u0 ~ N(0, "
            f"625(-Δ+25I)^-2), solved at 8192 points) at **{used('dataset.train_resolution')} "
            f"points**, {used('dataset.n_train')} train / {used('dataset.n_test')} test samples;",
            f"- model: FNO-1D, width {used('model.width')}, modes {used('model.modes')}, "
            f"{used('model.n_layers')} layers;",
            f"- training: Adam lr {used('optimizer.lr')}, wd {used('optimizer.weight_decay')}, "
            f"lr x{used('scheduler.gamma')} after epochs {used('scheduler.milestones')}, batch "
            f"{used('trainer.batch_size')}, **{used('trainer.epochs')} epochs**, relative-L2 loss;",
            "- KITI-FNO: KITINet in every Fourier layer, coll_coef "
            f"{used('collision.coll_coef', kiti)}, collision_heads "
            f"{used('collision.collision_heads', kiti)} (= width: one particle per grid point).",
        ]
    )
    body = f"""# mini-pde: KITINet Table 4 (Burgers) and Fig. 2(a) at CPU scale

Setting (`configs/experiment/mini/pde.yaml`, `mini/pde_heads.yaml`; values read from the runs):

{setting}

The paper's setting is 1000 samples at 1024 points, width 64, 1000 epochs: its columns are shown
for reference, not as a target at this scale. Cells: mean ± std over seeds (n = runs). Sum of the
runs' wall times: {tables.format_number(wall / 60.0, 3)} min (data generation not included).

{_no_runs_note(df, runs)}
{_table4_section(table4, ["burgers"], paper)}
## Collision rate per layer (KITI-FNO)

{_rate_section(table4, _pde_row_label)}

## collision_heads sweep (Fig. 2(a) at CPU scale)

collision_heads h gives N = width x points / h particles of h dimensions per sample; the smallest
h is the KITI-FNO row above (all seeds), the others ran with one seed (`mini_pde_heads`).

![collision_heads sweep](mini_pde_heads.png)

{_fig2_tables(df, [MINI_PDE_PANEL])}

{mixed_note(table4, ["data", "kiti"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    summary = out / "runs.json"
    atomic_write_json(summary, _run_summaries(df))
    return [figure, readme, summary]
