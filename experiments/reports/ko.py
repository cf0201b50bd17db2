"""KO renderers: Fig. 2 and Fig. 4 (condensation heat maps), Table 1 (CIFAR accuracy), Tables 4-5
(runtime and memory), Fig. 3 (curves) and Table 2 (ImageNet-1K).

Each ``render_*(runs, out, command) -> list[Path]`` reads the run directories under ``runs`` and
writes its files into ``out``; :data:`~experiments.core.registry.REPORTS` holds it under its
``scripts/render.py`` name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.core.io import atomic_write
from experiments.core.registry import REPORTS
from experiments.reports import common as tables
from experiments.reports.runs import (
    activation_name,
    cifar_runs,
    collect,
    collision_name,
    is_missing,
    load_weight,
    mixed_note,
    ordered,
    rate_cell,
    rate_columns,
    resnet_label,
    save_png,
    watched_layer,
    watched_metrics,
)
from kinetics.metrics import plot_cosine_heatmap

# KO Fig. 2: rows of the grid (config collision.name -> label) and columns (model.activation).
KO_COLLISIONS = {"none": "Adam", "soft": "+S.C.", "hard": "+H.C."}
KO_ACTIVATIONS = ("tanh", "xtanh", "sigmoid", "softplus", "relu")

# --------------------------------------------------------------------------- KO Fig. 2


def _ko_fig2_grid(
    df: pd.DataFrame, activations: list[str], path: Path, provenance: str, title: str
) -> None:
    """3 x len(activations) grid of reordered heat maps, the lowest seed of each cell."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.5 * len(activations) + 1.0, 7.5), layout="constrained")
    axes = fig.subplots(len(KO_COLLISIONS), len(activations), squeeze=False)
    for r, (collision, label) in enumerate(KO_COLLISIONS.items()):
        for c, activation in enumerate(activations):
            ax = axes[r][c]
            cell = df[(df["collision"] == collision) & (df["activation"] == activation)]
            weight, seed = None, None
            if len(cell):
                run = cell.sort_values("seed", na_position="last").iloc[0]
                layer = watched_layer(run)
                weight = load_weight(run, layer) if layer else None
                seed = run.get("seed")
            title = activation if r == 0 else None
            if weight is None:
                ax.text(0.5, 0.5, tables.MISSING, ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                if title:
                    ax.set_title(title)
            else:
                plot_cosine_heatmap(weight, ax=ax, colorbar=False, title=title)
                box = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.0}
                corner = {"ha": "right", "va": "bottom", "transform": ax.transAxes, "fontsize": 7}
                corner["bbox"] = box
                ax.text(0.98, 0.02, f"seed {seed}", **corner)
            ax.set_xlabel("neuron (reordered)" if r == len(KO_COLLISIONS) - 1 else "")
            ax.set_ylabel(f"{label}\nneuron (reordered)" if c == 0 else "")
    mappable = ScalarMappable(norm=Normalize(-1.0, 1.0), cmap="RdBu_r")
    fig.colorbar(mappable, ax=axes, label="cosine similarity", shrink=0.6)
    fig.suptitle(title)
    save_png(fig, path, provenance)


KO_FIG2_SETTING = """\
# KO Fig. 2: condensation of a two-layer network under Adam, +S.C. and +H.C.

Setting (SPEC §3): 5-50-1 MLP, 80 points x ~ U[-4, 2]^5, y = Σ_k 3.5 sin(5 x_k + 1),
init N(0, 0.005²), Adam, 100 epochs, collision settings as in each run's config. The heat maps show the
cosine similarity of the hidden neurons' input weights (the layer in `trainer.watch[0]`) at the end
of training, reordered with KO App. B.1's greedy clustering (threshold 0.6), for the lowest seed
of each cell."""

KO_FIG4_SETTING = """\
# KO Fig. 4: condensation of the first FC layer of a ResNet18 with a 1024-1024-10 head on CIFAR-10

Setting (SPEC §3, KO App. B.1): CIFAR ResNet18 whose classifier is fc1 (512 -> 1024) - act - fc2
(1024 -> 1024) - act - fc (1024 -> 10), tanh / xTanh in the FC layers, Adam lr 3e-8 (tanh) and
5e-6 (xTanh); collision on fc1 (as in KO Fig. 2, the layer the figure shows); the epoch count and
coll_coef are ours (the paper gives none, see configs/experiment/ko/fig4_*.yaml). The heat maps show
the cosine similarity of fc1's neurons (input weights) at the end of training, reordered with KO
App. B.1's greedy clustering (threshold 0.6), for the lowest seed of each cell."""


@REPORTS.register(name="ko-fig2")
def render_ko_fig2(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Fig. 2: heat-map grid + README with final max|cos|, rho and collision rates."""
    return _render_ko_condensation(
        runs,
        out,
        command,
        figure="Fig. 2",
        activations=KO_ACTIVATIONS,
        setting=KO_FIG2_SETTING,
        claim='"both the proposed hard collision and soft collision hinder the condensation of '
        'the weights"',
    )


@REPORTS.register(name="ko-fig4")
def render_ko_fig4(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Fig. 4: the same grid and tables for the ResNet18 FC head (tanh / xTanh)."""
    return _render_ko_condensation(
        runs,
        out,
        command,
        figure="Fig. 4",
        activations=("tanh", "xtanh"),
        setting=KO_FIG4_SETTING,
        claim='"both of the proposed collision methods slow down the original condensation"',
    )


def _render_ko_condensation(
    runs: Path,
    out: Path,
    command: str,
    *,
    figure: str,
    activations: Sequence[str],
    setting: str,
    claim: str,
) -> list[Path]:
    """Heat-map grid (activation x {Adam, +S.C., +H.C.}) + README with max|cos|, rho, rates."""
    df = collect(runs)
    for column in ("model.activation", "collision.name"):
        if column not in df:
            df[column] = None
    df["activation"] = df["model.activation"].map(activation_name)
    df["collision"] = df["collision.name"].map(collision_name)
    measured = [watched_metrics(run) for _, run in df.iterrows()]
    df["max_cos"] = [m for m, _ in measured]
    df["rho"] = [r for _, r in measured]
    rates = rate_columns(df)
    by = ["activation", "collision"]
    agg = tables.aggregate(df, by, ["max_cos", "rho", *rates])
    activations = ordered(df["activation"].unique(), activations)
    collisions = dict(KO_COLLISIONS)
    for extra in sorted(set(df["collision"]) - set(collisions)):
        collisions[extra] = extra

    out.mkdir(parents=True, exist_ok=True)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    stem = "ko_" + figure.lower().replace(". ", "").replace(" ", "")  # "Fig. 2" -> ko_fig2
    grid = out / f"{stem}_grid.png"
    title = (
        f"KO {figure}: input-weight cosine similarity of the watched layer (reordered, App. B.1)"
    )
    _ko_fig2_grid(df, activations, grid, header, title)

    rows = []
    for activation in activations:
        for collision, label in collisions.items():
            key = (activation, collision)
            rate_cells = []
            for rate in rates:
                cell = tables.ours_cell(agg, key, rate)
                if cell == tables.MISSING and collision == "none":
                    cell = "n/a (no collision)"
                elif cell == tables.MISSING and collision == "soft":
                    cell = "n/a (soft collision selects no pairs)"
                rate_cells.append(cell)
            max_cos = tables.ours_cell(agg, key, "max_cos")
            rows.append(
                [activation, label, max_cos, tables.ours_cell(agg, key, "rho"), *rate_cells]
            )
    rate_headers = [f"collision rate `{r.removeprefix('collision_rate.')}`" for r in rates]
    main_table = tables.markdown_table(
        ["activation", "optimizer", "max \\|cos\\| (ours)", "ρ (ours)", *rate_headers], rows
    )

    def mean(key: tuple[str, str], metric: str) -> float:
        return agg.loc[key, (metric, "mean")] if key in agg.index else math.nan

    direction_rows = []
    for activation in activations:
        cells = [activation]
        for collision in ("soft", "hard"):
            base, other = mean((activation, "none"), "rho"), mean((activation, collision), "rho")
            if math.isnan(base) or math.isnan(other):
                cells.append(tables.MISSING)
            else:
                word = "lower" if other < base else "not lower"
                cells.append(f"{base:.3f} → {other:.3f} ({word})")
        cells.append("lower (heat maps less condensed; no numbers)")
        direction_rows.append(cells)
    direction_table = tables.markdown_table(
        ["activation", "ρ: Adam → +S.C. (ours)", "ρ: Adam → +H.C. (ours)", f"paper ({figure})"],
        direction_rows,
    )
    body = f"""{setting}

**The paper gives no numbers for this figure** (KO {figure} is heat maps only): its claim is
qualitative:
{claim}.
Below, our final max |cos| (KO Fig. 3's "neuron similarity") and ρ (KITINet Def. I.1, mean |cos|
over neuron pairs) quantify it; cells are mean ± std over seeds (n = runs); "missing" = no run
produced that cell.

![KO {figure} grid]({grid.name})

## Final condensation of the watched layer

{main_table}

## Direction of the effect against the paper's claim

{direction_table}

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [grid, readme]


# --------------------------------------------------------------------------- KO Table 1

KO_TABLE1_ARCHS = ("ResNet18", "ResNet34", "ResNet50")
KO_TABLE1_VARIANTS = {"none": "SGD", "soft": "S.C.", "hard": "H.C."}


@REPORTS.register(name="ko-table1")
def render_ko_table1(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Table 1: CIFAR-10/100 top-1 (%) of ResNet18/34/50 x {SGD, +S.C., +H.C.} vs the paper."""
    df, columns = cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: resnet_label(name, ""))
    df["collision"] = df["collision.name"].map(collision_name)
    df["variant"] = df["collision"].map(lambda c: KO_TABLE1_VARIANTS.get(c, c))
    by = ["arch", "variant", "data"]
    agg = tables.aggregate(df, by, ["acc", "collision_rate"])
    archs = ordered(df["arch"].unique(), KO_TABLE1_ARCHS)
    variants = ordered(df["variant"].unique(), list(KO_TABLE1_VARIANTS.values()))
    collision_of = {label: name for name, label in KO_TABLE1_VARIANTS.items()}
    paper = tables.load_paper_tables()

    acc_rows, rate_rows = [], []
    for arch in archs:
        for variant in variants:
            row = f"{arch}+{variant}"
            acc_cells, rate_cells = [row], [row]
            for column in columns:
                key = (arch, variant, column)
                value = tables.paper_value("ko", "table1", row, column, tables=paper)
                acc_cells += [tables.ours_cell(agg, key, "acc"), tables.format_paper(value)]
                rate_cells.append(rate_cell(agg, key, collision_of.get(variant, variant)))
            acc_rows.append(acc_cells)
            rate_rows.append(rate_cells)
    acc_headers = ["model"] + [f"{c} {who}" for c in columns for who in ("(ours)", "(paper)")]
    acc_table = tables.markdown_table(acc_headers, acc_rows)
    rate_table = tables.markdown_table(["model", *columns], rate_rows)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KO Table 1: CIFAR-10/100 accuracy with soft and hard collision

Setting (SPEC §3): CIFAR ResNet18/34/50, SGD lr 0.1, momentum 0.9, wd 5e-4, batch 128, cosine
annealing over 200 epochs, pad-4 random crop + flip; S.C. / H.C. collide the gradient of the last
classifier layer (each run's `collision.coll_coef`; the paper gives none, see
`configs/experiment/ko/table1_*.yaml`).
Cells: final-epoch test top-1 accuracy in %, mean ± std over seeds (n = runs); the paper's cells
are "mean ± std" as printed. "missing" = no run produced that cell.

## Test accuracy (%)

{acc_table}

## Collision rate

Accepted / all pairs of the collided head, averaged over the final epoch's steps, then over seeds
(not in the paper; hard collision only: soft collision does not select pairs).

{rate_table}

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- KO Tables 4-5, Fig. 3

# The Table 1 runs are the runs of Tables 4-5 (runtime and peak memory) and Fig. 3 (curves).
KO_COST_TABLES = {
    "CIFAR10": ("table4", "RunTime", "Memory", "."),
    "CIFAR100": ("table5", "RunTime", "memory", ""),
}


def _history(run_dir: Any) -> list[dict[str, Any]]:
    """The run's per-epoch records (``metrics.jsonl``); [] when absent."""
    path = Path(str(run_dir)) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _costs(run_dir: Any) -> tuple[float, float]:
    """(training time in s = sum of the epochs' times, peak memory in MB over the epochs)."""
    epochs = [r for r in _history(run_dir) if r.get("epoch", 0) >= 1]
    times = [r["epoch_time"] for r in epochs if r.get("epoch_time") is not None]
    peaks = [r["peak_memory_mb"] for r in epochs if r.get("peak_memory_mb") is not None]
    return (sum(times) if times else math.nan, max(peaks) if peaks else math.nan)


def _ko_cost_row(arch: str, variant: str, period: str) -> str:
    """The paper's row name: "Vanilla Resnet18", "Resnet18+S.C." (Table 4) / "Resnet18+S.C" (5)."""
    name = arch.replace("ResNet", "Resnet")
    if variant == KO_TABLE1_VARIANTS["none"]:
        return f"Vanilla {name}"
    return f"{name}+{variant.rstrip('.')}{period}"


def _ratio(value: float, base: float) -> str:
    if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return tables.MISSING
    return f"x{value / base:.3f}"


@REPORTS.register(name="ko-table45")
def render_ko_table45(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Tables 4-5: training time and peak memory of ResNet18/34/50 x {vanilla, S.C., H.C.}.

    Read from the KO Table 1 runs (the same training runs): time = sum of the epochs' times
    (training + test evaluation), memory = the largest per-epoch peak (CUDA allocator on a GPU,
    process RSS on CPU). Absolute numbers depend on the hardware, so each cell also gives the
    ratio to the vanilla run of the same model and data set, beside the paper's ratio.
    """
    df, columns = cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: resnet_label(name, ""))
    df["variant"] = (
        df["collision.name"].map(collision_name).map(lambda c: KO_TABLE1_VARIANTS.get(c, c))
    )
    costs = df["run_dir"].map(_costs)
    df["runtime"] = costs.map(lambda c: c[0])
    df["memory"] = costs.map(lambda c: c[1])
    by = ["arch", "variant", "data"]
    agg = tables.aggregate(df, by, ["runtime", "memory"])
    archs = ordered(df["arch"].unique(), KO_TABLE1_ARCHS)
    variants = list(KO_TABLE1_VARIANTS.values())
    paper = tables.load_paper_tables()

    def mean(key: tuple[str, ...], metric: str) -> float:
        if key not in agg.index:
            return math.nan
        return float(agg.loc[key, (metric, "mean")])

    sections = []
    for column in ordered(columns, list(KO_COST_TABLES)):
        if column not in KO_COST_TABLES:
            continue
        table, time_col, mem_col, period = KO_COST_TABLES[column]
        rows = []
        for arch in archs:
            base_key = (arch, variants[0], column)
            base_paper = _ko_cost_row(arch, variants[0], period)
            paper_base_time = tables.paper_value("ko", table, base_paper, time_col, tables=paper)
            for variant in variants:
                key = (arch, variant, column)
                row = _ko_cost_row(arch, variant, period)
                p_time = tables.paper_value("ko", table, row, time_col, tables=paper)
                p_mem = tables.paper_value("ko", table, row, mem_col, tables=paper)
                p_ratio = (
                    _ratio(float(p_time), float(paper_base_time))
                    if p_time is not None and paper_base_time is not None
                    else tables.MISSING
                )
                rows.append(
                    [
                        row,
                        tables.ours_cell(agg, key, "runtime"),
                        _ratio(mean(key, "runtime"), mean(base_key, "runtime")),
                        tables.format_paper(p_time),
                        p_ratio,
                        tables.ours_cell(agg, key, "memory"),
                        tables.format_paper(p_mem),
                    ]
                )
        headers = [
            "model",
            "time s (ours)",
            "vs vanilla (ours)",
            "RunTime s (paper)",
            "vs vanilla (paper)",
            "peak MB (ours)",
            "Memory MB (paper)",
        ]
        number = table[-1]
        sections.append(f"## KO Table {number}: {column}\n\n{tables.markdown_table(headers, rows)}")
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = "\n\n".join(
        [
            "# KO Tables 4-5: training time and peak memory, vanilla vs S.C. vs H.C.",
            "Read from the KO Table 1 runs (`make table-ko-1`). Time: the sum of the epochs' "
            "times (training + test evaluation; the paper's RunTime is most likely the whole "
            "run). Memory: the largest per-epoch peak, the CUDA allocator's on a GPU and the "
            "process's RSS on CPU (the paper's tool is not stated). Hardware differs from the "
            "paper's, so compare the ratios to vanilla. Ours: mean ± std over seeds (n = runs); "
            '"missing" = no run produced the cell. Note the paper\'s own anomaly: in Table 5 '
            "Resnet50+S.C. uses 5176 MB while vanilla and H.C. use 11576 MB.",
            *sections,
            "Step-level overheads measured side by side on one machine are in "
            "`results/bench/bench.md` (`make bench`).",
            mixed_note(df, by),
        ]
    )
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


def _curves(df: pd.DataFrame, metric: str) -> dict[tuple[str, str, str], pd.Series]:
    """Mean over seeds of ``metric`` per epoch, per (data, arch, variant)."""
    curves: dict[tuple[str, str, str], pd.Series] = {}
    for key, group in df.groupby(["data", "arch", "variant"], dropna=False):
        series = []
        for run_dir in group["run_dir"]:
            records = [r for r in _history(run_dir) if r.get(metric) is not None]
            if records:
                series.append(pd.Series({r["epoch"]: r[metric] for r in records}))
        if series:
            curves[key] = pd.concat(series, axis=1).mean(axis=1).sort_index()
    return curves


@REPORTS.register(name="ko-fig3")
def render_ko_fig3(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Fig. 3: test accuracy and max|cos| of the head over epochs, from the KO Table 1 runs.

    One figure with a row per data set and two columns (top-1 in %, neuron similarity = max
    off-diagonal |cos| of the watched head); a line per model and variant, mean over seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df, columns = cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: resnet_label(name, ""))
    df["variant"] = (
        df["collision.name"].map(collision_name).map(lambda c: KO_TABLE1_VARIANTS.get(c, c))
    )
    cos_keys = sorted(c for c in df.columns if c.startswith("max_cos."))
    cos_metric = cos_keys[0] if cos_keys else "max_cos.fc"
    accuracy = _curves(df, "test_top1")
    similarity = _curves(df, cos_metric)
    styles = {"SGD": "-", "S.C.": "--", "H.C.": ":"}
    fig, axes = plt.subplots(len(columns), 2, figsize=(10, 3.2 * len(columns)), squeeze=False)
    for row, column in enumerate(columns):
        for key, curve in accuracy.items():
            if key[0] == column:
                axes[row][0].plot(
                    curve.index,
                    100 * curve.values,
                    styles.get(key[2], "-."),
                    label=f"{key[1]}+{key[2]}",
                )
        for key, curve in similarity.items():
            if key[0] == column:
                axes[row][1].plot(
                    curve.index, curve.values, styles.get(key[2], "-."), label=f"{key[1]}+{key[2]}"
                )
        axes[row][0].set(title=f"{column}: test top-1", xlabel="epoch", ylabel="%")
        axes[row][1].set(title=f"{column}: {cos_metric}", xlabel="epoch", ylabel="max |cos|")
        if axes[row][0].get_legend_handles_labels()[0]:  # no curve (no runs): no empty legend
            axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    png = out / "ko_fig3.png"
    atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=110), "wb")
    plt.close(fig)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = (
        "# KO Fig. 3: test accuracy and neuron similarity over training\n\n"
        f"From the KO Table 1 runs; lines are means over seeds. Neuron similarity: `{cos_metric}` "
        "(max off-diagonal |cos| between the head's neurons, SPEC §1.6).\n\n![KO Fig. 3](ko_fig3.png)\n"
    )
    return [tables.write_markdown(out / "FIG3.md", header, body), png]


# --------------------------------------------------------------------------- KO Table 2

# timm architectures (config model.model_name) and base optimizers -> the paper's row names.
KO_TABLE2_ARCHS = {
    "resnet50": "ResNet50",
    "convnext_tiny": "ConvNext_Tiny",
    "convnext_small": "ConvNext_Small",
}
KO_TABLE2_BASES = {"lamb": "Lamb", "adamw": "AdamW"}
KO_TABLE2_COLLISIONS = {"soft": "S.C.", "hard": "H.C."}
# Our metric (summary key, a fraction) -> the paper's column.
KO_TABLE2_METRICS = {"test_top1": "T-1 ACC.(%)", "test_top5": "T-5 ACC.(%)"}


def _ko_table2_row(run: pd.Series) -> str:
    """``ResNet50+Lamb`` / ``ConvNext_Tiny+S.C.``: the paper's row name of a run."""
    arch = run.get("model.model_name")
    arch = run.get("model.name") if is_missing(arch) else arch
    arch_label = KO_TABLE2_ARCHS.get(str(arch).lower(), str(arch))
    collision = collision_name(run.get("collision.name"))
    if collision in KO_TABLE2_COLLISIONS:
        return f"{arch_label}+{KO_TABLE2_COLLISIONS[collision]}"
    optimizer = str(run.get("optimizer.name", "missing")).lower()
    return f"{arch_label}+{KO_TABLE2_BASES.get(optimizer, optimizer)}"


@REPORTS.register(name="ko-table2")
def render_ko_table2(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Table 2: ImageNet-1K top-1 / top-5 (%) of ResNet50 + LAMB and ConvNeXt-T/S + AdamW, each
    with {none, S.C., H.C.}, beside the paper's cells."""
    df = collect(runs)
    df["row"] = df.apply(_ko_table2_row, axis=1)
    for metric in KO_TABLE2_METRICS:
        values = df[metric] if metric in df else pd.Series(math.nan, index=df.index)
        df[metric] = 100.0 * pd.to_numeric(values, errors="coerce")  # the runner logs fractions
    rates = rate_columns(df)
    df["collision_rate"] = (
        df[rates].apply(pd.to_numeric, errors="coerce").mean(axis=1) if rates else math.nan
    )
    by = ["row"]
    agg = tables.aggregate(df, by, [*KO_TABLE2_METRICS, "collision_rate"])
    paper = tables.load_paper_tables()
    rows = ordered(df["row"].unique(), list(paper["ko"]["table2"]["rows"]))

    acc_rows, rate_rows = [], []
    for row in rows:
        cells = [row]
        for metric, column in KO_TABLE2_METRICS.items():
            value = tables.paper_value("ko", "table2", row, column, tables=paper)
            cells += [tables.ours_cell(agg, (row,), metric), tables.format_paper(value)]
        acc_rows.append(cells)
        variant = row.rsplit("+", 1)[-1]
        collision = {label: name for name, label in KO_TABLE2_COLLISIONS.items()}.get(variant)
        rate_rows.append([row, rate_cell(agg, (row,), collision or "none")])
    headers = ["model"] + [
        f"{column} {who}" for column in KO_TABLE2_METRICS.values() for who in ("(ours)", "(paper)")
    ]
    acc_table = tables.markdown_table(headers, acc_rows)
    rate_table = tables.markdown_table(["model", "collision rate"], rate_rows)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KO Table 2: ImageNet-1K accuracy with soft and hard collision

Setting (SPEC §3, `configs/experiment/ko/table2_*.yaml`): timm ResNet50 with the "ResNet strikes
back" A2 recipe (LAMB, BCE, RandAugment, Mixup / CutMix, 300 epochs) and ConvNeXt-T/S with the
ConvNeXt recipe (AdamW, 300 epochs); 224 px; S.C. / H.C. collide the gradient of the classifier
(each run's `collision.coll_coef`; the paper gives none).
Cells: final-epoch validation top-1 / top-5 accuracy in %, mean ± std over seeds (n = runs); the
paper prints one number per cell. "missing" = no run produced that cell.

## Accuracy (%)

{acc_table}

## Collision rate

Accepted / all pairs of the collided classifier, averaged over the final epoch's steps, then over
seeds (not in the paper; hard collision only: soft collision does not select pairs).

{rate_table}

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]
