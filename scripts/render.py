"""Render a paper figure or table from run directories (never from W&B).

Usage (from the repository root)::

    python scripts/render.py ko-fig2    --runs multirun/ko_fig2    --out results/ko_fig2
    python scripts/render.py kitinet-fc --runs multirun/kitinet_fc --out results/kitinet_fc
    python scripts/render.py ko-table1 --runs multirun/ko_table1 --out results/ko_table1
    python scripts/render.py ko-fig3 --runs multirun/ko_table1 --out results/ko_table1
    python scripts/render.py ko-table45 --runs multirun/ko_table1 --out results/ko_table45
    python scripts/render.py kitinet-table3 --runs multirun/kitinet_table3 --out results/kitinet_table3
    python scripts/render.py ko-table2 --runs multirun/ko_table2 --out results/ko_table2

Each subcommand reads every run directory under ``--runs`` (``config.yaml`` + ``summary.json``,
plus ``weights_final.pt`` for heat maps), aggregates over seeds and writes ``README.md`` (and
figures) into ``--out``, with our numbers beside the paper's from ``results/paper_tables.yaml``.
To add a pipeline, write ``render_<name>(runs, out, command) -> list[Path]`` and register it in
``RENDERERS``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from experiments import tables
from experiments.logging import atomic_write
from kinetics.metrics import max_offdiag_abs_cos, plot_cosine_heatmap, rho

# KO Fig. 2: rows of the grid (config collision.name -> label) and columns (model.activation).
KO_COLLISIONS = {"none": "Adam", "soft": "+S.C.", "hard": "+H.C."}
KO_ACTIVATIONS = ("tanh", "xtanh", "sigmoid", "softplus", "relu")
# KITINet §5.7: activations in the paper's order, and their keys in the claim's `values`.
KITINET_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
KITINET_CLAIM = "synthetic_test_loss_reductions"
KITINET_CLAIM_KEYS = {
    "relu": "relu_test_loss_reduction_pct",
    "leaky_relu": "leakyrelu_test_loss_reduction_pct",
    "tanh": "tanh_test_loss_reduction_pct",
}
VANILLA, KITINET = "vanilla", "KITINet"


# --------------------------------------------------------------------------- run helpers


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _activation(value: Any) -> str:
    """Canonical activation name: lower case, ``leakyrelu`` / ``leaky-relu`` -> ``leaky_relu``."""
    name = "missing" if _is_missing(value) else str(value).lower().replace("-", "_")
    return "leaky_relu" if name == "leakyrelu" else name


def _collision(value: Any) -> str:
    """Canonical KO collision name; no collision (null, "none", "off") is ``"none"``."""
    name = "none" if _is_missing(value) else str(value).lower()
    return "none" if name in ("null", "off", "false", "adam", "") else name


def _watched_layer(run: pd.Series) -> str | None:
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


def _load_weight(run: pd.Series, layer: str) -> torch.Tensor | None:
    """The final weight of ``layer`` from the run's ``weights_final.pt`` (None if absent)."""
    path = Path(run["run_dir"]) / "weights_final.pt"
    if not path.is_file():
        return None
    weights = torch.load(path, map_location="cpu", weights_only=True)
    for key in (layer, f"{layer}.weight"):
        if key in weights:
            return weights[key]
    return None


def _watched_metrics(run: pd.Series) -> tuple[float, float]:
    """(max |cos|, rho) of the watched layer: from summary.json, else from weights_final.pt."""
    layer = _watched_layer(run)
    if layer is None:
        return math.nan, math.nan
    max_cos, rho_value = run.get(f"max_cos.{layer}"), run.get(f"rho.{layer}")
    if _is_missing(max_cos) or _is_missing(rho_value):
        weight = _load_weight(run, layer)
        if weight is not None:
            max_cos = max_offdiag_abs_cos(weight) if _is_missing(max_cos) else max_cos
            rho_value = rho(weight) if _is_missing(rho_value) else rho_value
    return (
        math.nan if _is_missing(max_cos) else float(max_cos),
        math.nan if _is_missing(rho_value) else float(rho_value),
    )


def _ordered(found: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``preferred`` first (also when absent: they render as missing), then anything else found."""
    return list(preferred) + sorted(set(found) - set(preferred))


def _collect(runs: Path) -> pd.DataFrame:
    df = tables.collect_runs(runs)
    if not len(df):
        raise SystemExit(f"no run directories (config.yaml + summary.json) under {runs}")
    if "seed" not in df:
        df["seed"] = None
    return df


def _mixed_note(df: pd.DataFrame, by: Sequence[str]) -> str:
    mixed = tables.mixed_config_keys(df, by)
    if not mixed:
        return ""
    lines = [
        "**Warning:** some cells average runs whose configs differ beyond the seed:",
        "",
        *(f"- {' / '.join(map(str, key))}: {', '.join(keys)}" for key, keys in mixed.items()),
    ]
    return "\n".join(lines) + "\n"


def _rate_columns(df: pd.DataFrame) -> list[str]:
    """The ``collision_rate.*`` columns some run actually filled (watched layers that are no
    collision site log null and would only add columns of "missing")."""
    return sorted(c for c in df.columns if c.startswith("collision_rate.") and df[c].notna().any())


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
                layer = _watched_layer(run)
                weight = _load_weight(run, layer) if layer else None
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
    atomic_write(
        path,
        lambda f: fig.savefig(f, format="png", dpi=120, metadata={"Description": provenance}),
        "wb",
    )


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
coll_coef are ours (the paper gives none, see configs/experiment/ko_fig4_*.yaml). The heat maps show
the cosine similarity of fc1's neurons (input weights) at the end of training, reordered with KO
App. B.1's greedy clustering (threshold 0.6), for the lowest seed of each cell."""


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
    df = _collect(runs)
    for column in ("model.activation", "collision.name"):
        if column not in df:
            df[column] = None
    df["activation"] = df["model.activation"].map(_activation)
    df["collision"] = df["collision.name"].map(_collision)
    measured = [_watched_metrics(run) for _, run in df.iterrows()]
    df["max_cos"] = [m for m, _ in measured]
    df["rho"] = [r for _, r in measured]
    rates = _rate_columns(df)
    by = ["activation", "collision"]
    agg = tables.aggregate(df, by, ["max_cos", "rho", *rates])
    activations = _ordered(df["activation"].unique(), activations)
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
qualitative, {claim}. Below, our final max |cos| (KO Fig. 3's "neuron similarity") and ρ (KITINet Def. I.1,
mean |cos| over neuron pairs) quantify it; cells are mean ± std over seeds (n = runs);
"missing" = no run produced that cell.

![KO {figure} grid]({grid.name})

## Final condensation of the watched layer

{main_table}

## Direction of the effect against the paper's claim

{direction_table}

{_mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [grid, readme]


# --------------------------------------------------------------------------- KITINet §5.7


def _paired_relative_change(df: pd.DataFrame, activation: str) -> tuple[float, float, int]:
    """Mean, std and n of 100·(KITINet − vanilla)/vanilla test loss over seeds run in both."""
    cell = df[(df["activation"] == activation) & df["test_loss"].notna()]
    vanilla = cell[cell["variant"] == VANILLA].groupby("seed")["test_loss"].mean()
    kitinet = cell[cell["variant"] == KITINET].groupby("seed")["test_loss"].mean()
    both = vanilla.index.intersection(kitinet.index)
    change = 100.0 * (kitinet[both] - vanilla[both]) / vanilla[both]
    n = len(change)
    return (
        float(change.mean()) if n else math.nan,
        float(change.std(ddof=1)) if n > 1 else math.nan,
        n,
    )


def render_kitinet_fc(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet §5.7 FC network: test/train loss and test-loss change vs the paper's claim."""
    df = _collect(runs)
    if "model.activation" not in df:
        df["model.activation"] = None
    df["activation"] = df["model.activation"].map(_activation)
    df["variant"] = [KITINET if is_kitinet_run(run) else VANILLA for _, run in df.iterrows()]
    for metric in ("test_loss", "train_loss"):
        df[metric] = pd.to_numeric(df[metric], errors="coerce") if metric in df else math.nan
    rates = _rate_columns(df)
    by = ["activation", "variant"]
    agg = tables.aggregate(df, by, ["test_loss", "train_loss", *rates])
    activations = _ordered(df["activation"].unique(), KITINET_ACTIVATIONS)
    paper = tables.load_paper_tables()

    loss_rows = []
    for activation in activations:
        mean, std, n = _paired_relative_change(df, activation)
        key = KITINET_CLAIM_KEYS.get(activation)
        if key is None:
            paper_cell = f"{tables.NOT_APPLICABLE} (no number in the paper)"
        else:
            reduction = tables.paper_value("kitinet", KITINET_CLAIM, None, key, tables=paper)
            paper_cell = tables.MISSING if reduction is None else f"-{reduction}"
        loss_rows.append(
            [
                activation,
                tables.ours_cell(agg, (activation, VANILLA), "test_loss"),
                tables.ours_cell(agg, (activation, KITINET), "test_loss"),
                tables.format_ours(mean, std, n, digits=3),
                paper_cell,
            ]
        )
    loss_headers = [
        "activation",
        "test loss: vanilla (ours)",
        "test loss: KITINet (ours)",
        "test-loss change % (ours, paired by seed)",
        "test-loss change % (paper)",
    ]
    loss_table = tables.markdown_table(loss_headers, loss_rows)
    train_table = tables.markdown_table(
        ["activation", "train loss: vanilla (ours)", "train loss: KITINet (ours)", "paper"],
        [
            [
                activation,
                tables.ours_cell(agg, (activation, VANILLA), "train_loss"),
                tables.ours_cell(agg, (activation, KITINET), "train_loss"),
                f"{tables.NOT_APPLICABLE} (figures only)",
            ]
            for activation in activations
        ],
    )
    rate_section = "No run logged a `collision_rate.*` metric: **missing**."
    if rates:
        rate_table = tables.markdown_table(
            [
                "activation",
                *(f"`{r.removeprefix('collision_rate.')}` (KITINet runs)" for r in rates),
            ],
            [
                [activation, *(tables.ours_cell(agg, (activation, KITINET), r) for r in rates)]
                for activation in activations
            ],
        )
        rate_section = (
            "Accepted / all particle pairs of the KITINet module (not in the paper; logged because\n"
            "in high dimensions exp(-distance) is tiny and collisions may never fire).\n\n"
            + rate_table
        )
    claim = next(c for c in paper["kitinet"]["claims"] if c["id"] == KITINET_CLAIM)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KITINet §5.7: fully connected network, vanilla vs KITINet

Setting (SPEC §3): FC d_in-m-1 network with KITINet on the second layer, init N(0, m^-γ), γ = 4,
n = 80 training points, the sin target of KO Fig. 2; activations ReLU, LeakyReLU, Sigmoid, Tanh.
Cells are mean ± std over seeds (n = runs); "missing" = no run produced that cell.

The paper's only numbers for this experiment are in the prose (§5.7): "{claim["quote"]}"
A reduction of r % is written as a change of -r %. The paper gives no number for Sigmoid.
Our change is 100 · (KITINet − vanilla) / vanilla of the final test loss, computed per seed for
the seeds run in both variants, then averaged.

## Final test loss

{loss_table}

## Final train loss

{train_table}

## Collision rate

{rate_section}

{_mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- CIFAR tables

# KO Table 1 and KITINet Table 3: data set names in the configs -> the papers' column names.
CIFAR_COLUMNS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}
KO_TABLE1_ARCHS = ("ResNet18", "ResNet34", "ResNet50")
KO_TABLE1_VARIANTS = {"none": "SGD", "soft": "S.C.", "hard": "H.C."}
KITINET_TABLE3_ARCHS = ("ResNet-34", "ResNet-50", "ResNet-101", "ResNet-152")
KITI = "KITI"
# The KITINet module's arguments in the collision config (the runner passes the same ones).
_KITINET_KEYS = ("collision_heads", "coll_coef", "dt", "position_update", "mean_free_path")


def _resnet_label(value: Any, sep: str) -> str:
    """``cifar_resnet34`` -> ``ResNet34`` (sep ``""``) or ``ResNet-34`` (sep ``"-"``)."""
    match = None if _is_missing(value) else re.search(r"resnet(\d+)", str(value).lower())
    return f"ResNet{sep}{match.group(1)}" if match else str(value)


def _dataset_column(value: Any) -> str:
    """``cifar10`` -> ``CIFAR10``: the papers' column name of a config's ``dataset.name``."""
    name = "missing" if _is_missing(value) else str(value).lower()
    return CIFAR_COLUMNS.get(name, name)


def _cifar_runs(runs: Path) -> tuple[pd.DataFrame, list[str]]:
    """Runs with ``data`` (paper column), ``acc`` (final test top-1 in %) and ``collision_rate``.

    ``collision_rate`` is the mean over the run's collision sites that logged a rate (the KO
    head under hard collision, every KITINet residual); NaN when none did.
    """
    df = _collect(runs)
    for key in ("model.name", "dataset.name", "collision.name"):
        if key not in df:
            df[key] = None
    df["data"] = df["dataset.name"].map(_dataset_column)
    top1 = df["test_top1"] if "test_top1" in df else pd.Series(math.nan, index=df.index)
    df["acc"] = 100.0 * pd.to_numeric(top1, errors="coerce")  # the runner logs a fraction
    rates = _rate_columns(df)
    if rates:
        df["collision_rate"] = df[rates].apply(pd.to_numeric, errors="coerce").mean(axis=1)
    else:
        df["collision_rate"] = math.nan
    columns = _ordered(df["data"].unique(), list(CIFAR_COLUMNS.values()))
    return df, columns


def _rate_cell(agg: pd.DataFrame, key: tuple[str, ...], collision: str) -> str:
    cell = tables.ours_cell(agg, key, "collision_rate")
    if cell == tables.MISSING and collision == "none":
        return "n/a (no collision)"
    if cell == tables.MISSING and collision == "soft":
        return "n/a (soft collision selects no pairs)"
    return cell


def render_ko_table1(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Table 1: CIFAR-10/100 top-1 (%) of ResNet18/34/50 x {SGD, +S.C., +H.C.} vs the paper."""
    df, columns = _cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: _resnet_label(name, ""))
    df["collision"] = df["collision.name"].map(_collision)
    df["variant"] = df["collision"].map(lambda c: KO_TABLE1_VARIANTS.get(c, c))
    by = ["arch", "variant", "data"]
    agg = tables.aggregate(df, by, ["acc", "collision_rate"])
    archs = _ordered(df["arch"].unique(), KO_TABLE1_ARCHS)
    variants = _ordered(df["variant"].unique(), list(KO_TABLE1_VARIANTS.values()))
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
                rate_cells.append(_rate_cell(agg, key, collision_of.get(variant, variant)))
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
`configs/experiment/ko_table1_*.yaml`).
Cells: final-epoch test top-1 accuracy in %, mean ± std over seeds (n = runs); the paper's cells
are "mean ± std" as printed. "missing" = no run produced that cell.

## Test accuracy (%)

{acc_table}

## Collision rate

Accepted / all pairs of the collided head, averaged over the final epoch's steps, then over seeds
(not in the paper; hard collision only: soft collision does not select pairs).

{rate_table}

{_mixed_note(df, by)}"""
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


def render_ko_table45(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Tables 4-5: training time and peak memory of ResNet18/34/50 x {vanilla, S.C., H.C.}.

    Read from the KO Table 1 runs (the same training runs): time = sum of the epochs' times
    (training + test evaluation), memory = the largest per-epoch peak (CUDA allocator on a GPU,
    process RSS on CPU). Absolute numbers depend on the hardware, so each cell also gives the
    ratio to the vanilla run of the same model and data set, beside the paper's ratio.
    """
    df, columns = _cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: _resnet_label(name, ""))
    df["variant"] = df["collision.name"].map(_collision).map(lambda c: KO_TABLE1_VARIANTS.get(c, c))
    costs = df["run_dir"].map(_costs)
    df["runtime"] = costs.map(lambda c: c[0])
    df["memory"] = costs.map(lambda c: c[1])
    by = ["arch", "variant", "data"]
    agg = tables.aggregate(df, by, ["runtime", "memory"])
    archs = _ordered(df["arch"].unique(), KO_TABLE1_ARCHS)
    variants = list(KO_TABLE1_VARIANTS.values())
    paper = tables.load_paper_tables()

    def mean(key: tuple[str, ...], metric: str) -> float:
        if key not in agg.index:
            return math.nan
        return float(agg.loc[key, (metric, "mean")])

    sections = []
    for column in _ordered(columns, list(KO_COST_TABLES)):
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
            _mixed_note(df, by),
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


def render_ko_fig3(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Fig. 3: test accuracy and max|cos| of the head over epochs, from the KO Table 1 runs.

    One figure with a row per data set and two columns (top-1 in %, neuron similarity = max
    off-diagonal |cos| of the watched head); a line per model and variant, mean over seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df, columns = _cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: _resnet_label(name, ""))
    df["variant"] = df["collision.name"].map(_collision).map(lambda c: KO_TABLE1_VARIANTS.get(c, c))
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


def _mflops(run: pd.Series) -> tuple[float, float, float]:
    """(eval MFLOPs, train-mode MFLOPs, ImageNet-stem eval MMACs) of the run's model, 32x32.

    Built from the run's ``config.yaml`` (re-read: the DataFrame's columns lose int types where
    other runs lack a key) with batch 1 and :func:`count_mflops` (2 FLOPs per multiply-add). The
    train-mode count (KITI runs only, else NaN) adds the KITINet collisions' matrix products. The
    last number is the same network with the ImageNet stem, in multiply-adds: the KITINet paper's
    MFLOPs convention. NaNs when the model cannot be built.
    """
    from experiments.config import ConfigError
    from experiments.models import create_model
    from experiments.vision.models import count_mflops

    config = yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text()) or {}
    kwargs = dict(config.get("model") or {})
    name = kwargs.pop("name", None)
    dataset = str((config.get("dataset") or {}).get("name", "")).lower()
    if dataset in CIFAR_CLASSES:
        kwargs.setdefault("num_classes", CIFAR_CLASSES[dataset])  # the runner takes it from data
    collision = config.get("collision") or {}
    size = (3, 32, 32)
    try:
        torch.manual_seed(0)
        flops = count_mflops(create_model(name, **kwargs), size)
        train = math.nan
        if str(collision.get("name", "")).lower() == "kitinet":
            kitinet = {k: collision[k] for k in _KITINET_KEYS if k in collision}
            kitinet["generator"] = torch.Generator().manual_seed(0)
            model = create_model(name, **kwargs, kitinet=kitinet)
            train = count_mflops(model, size, kitinet_train=True)
        imagenet_macs = count_mflops(create_model(name, **{**kwargs, "stem": "imagenet"}), size) / 2
    except (ConfigError, KeyError, TypeError, ValueError):
        return math.nan, math.nan, math.nan
    return flops, train, imagenet_macs


def render_kitinet_table3(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 3: CIFAR-10/100 top-1 (%) of ResNet-34..152, vanilla vs KITI, and MFLOPs."""
    df, columns = _cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: _resnet_label(name, "-"))
    df["variant"] = [KITI if is_kitinet_run(run) else VANILLA for _, run in df.iterrows()]
    by = ["arch", "variant", "data"]
    agg = tables.aggregate(df, by, ["acc", "collision_rate"])
    archs = _ordered(df["arch"].unique(), KITINET_TABLE3_ARCHS)
    paper = tables.load_paper_tables()

    def paper_cell(row: str, column: str) -> str:
        return tables.format_paper(
            tables.paper_value("kitinet", "table3", row, column, tables=paper)
        )

    def cost_cells(arch: str, variant: str) -> list[str]:
        """Our two cost columns, from the first run of the row (CIFAR10 before CIFAR100)."""
        group = df[(df["arch"] == arch) & (df["variant"] == variant)]
        if not len(group):
            return [tables.MISSING, tables.MISSING]
        flops, train, imagenet_macs = _mflops(group.sort_values(["data", "seed"]).iloc[0])
        ours = tables.format_number(flops, 5)
        if not math.isnan(train):
            ours += f" (train: {tables.format_number(train, 5)})"
        return [tables.format_number(imagenet_macs, 4), ours]

    acc_rows, rate_rows = [], []
    for arch in archs:
        vanilla, dit, kiti = f"{arch} [15]", f"Dit-{arch} [24]", f"KITI-{arch}"
        for row, variant in ((vanilla, VANILLA), (kiti, KITI)):
            accuracy = [
                (tables.ours_cell(agg, (arch, variant, c), "acc"), paper_cell(row, c))
                for c in columns
            ]
            acc_rows.append(
                [
                    row,
                    *(cell for pair in accuracy for cell in pair),
                    paper_cell(row, "MFLOPs"),
                    *cost_cells(arch, variant),
                ]
            )
            collision = "kitinet" if variant == KITI else "none"
            rate_rows.append(
                [row, *(_rate_cell(agg, (arch, variant, c), collision) for c in columns)]
            )
        # Dit-ResNet is the paper's only: its row keeps the paper's numbers beside "not built".
        dit_cells = [cell for c in columns for cell in ("not built", paper_cell(dit, c))]
        acc_rows.insert(
            len(acc_rows) - 1,
            [dit, *dit_cells, paper_cell(dit, "MFLOPs"), "not built", "not built"],
        )
    acc_headers = [
        "model",
        *(f"{c} {who}" for c in columns for who in ("(ours)", "(paper)")),
        "MFLOPs (paper)",
        "MMACs, ImageNet stem (ours)",
        "MFLOPs, our CIFAR model (ours)",
    ]
    acc_table = tables.markdown_table(acc_headers, acc_rows)
    rate_table = tables.markdown_table(["model", *columns], rate_rows)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KITINet Table 3: CIFAR-10/100 accuracy of ResNets with and without KITINet

Setting (SPEC §3): CIFAR ResNet-34/50/101/152, SGD lr 0.1, momentum 0.9, wd 5e-4, batch 128,
lr x0.1 at epochs 80 and 120, 160 epochs, pad-4 random crop + flip; KITI-ResNet: KITINet replaces
the residual additions of the last stage (each run's `collision.collision_heads` /
`collision.coll_coef`; the paper gives neither, see `configs/experiment/kitinet_table3_*.yaml`).
Cells: final-epoch test top-1 accuracy in %, mean ± std over seeds (n = runs). The paper prints
CIFAR-10 as one number and CIFAR-100 as "acc (x)", shown as "acc ± x" (it never says what x is).
"missing" = no run produced that cell. Dit-ResNet (dendritic neurons, [24]) is not built: the paper
does not specify it enough (`experiments/vision/models.py`).

## Test accuracy (%) and cost

{acc_table}

**MFLOPs.** The paper's column matches the multiply-adds of the torchvision-style network (7x7
stride-2 stem + max-pool, "ImageNet stem") on a 32x32 input, not the CIFAR network it trains (3x3
stride-1 stem, no max-pool, about 16x the compute). So we give both, counted with
`experiments.vision.models.count_mflops` on the model built from the first run of each row
(eval mode, batch 1, 3x32x32): "MMACs, ImageNet stem" = multiply-adds in millions of the same
network with the ImageNet stem (the paper's convention); "MFLOPs, our CIFAR model" = FLOPs
(2 per multiply-add) of the network as trained. In eval mode KITINet is the plain addition and
costs nothing; "(train: ...)" adds the collisions' matrix products of a training forward.

## Collision rate

Accepted / all particle pairs of the KITINet modules, averaged over the final epoch's steps, over
the KITINet residuals of the run, then over seeds (not in the paper; logged because in high
dimensions exp(-distance) is small and collisions may rarely fire).

{rate_table}

{_mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- KITINet §5.7 ResNet18

RESNET18_RHO_CLAIM = "resnet18_conv1_condensation"


def render_kitinet_table7_resnet(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet §5.7: rho of every conv layer of ResNet18 vs KITI-ResNet18 on CIFAR-100.

    The paper has no table for it, only conv1's numbers in the text (0.235 -> 0.248); the other
    layers' paper cells are "not reported". Ours: the final rho (Def. I.2) of each watched layer,
    mean ± std over seeds, and the relative change of the means.
    """
    df = _collect(runs)
    if "collision.name" not in df:
        df["collision.name"] = None
    df["variant"] = df["collision.name"].map(
        lambda c: KITINET if _collision(c) == "kitinet" else VANILLA
    )
    layers = sorted(
        (c.removeprefix("rho.") for c in df.columns if c.startswith("rho.")),
        key=lambda name: (name != "conv1", name),
    )
    metrics = [f"rho.{layer}" for layer in layers]
    agg = tables.aggregate(df, ["variant"], metrics)
    paper = tables.load_paper_tables()
    paper_conv1 = {
        VANILLA: tables.paper_value(
            "kitinet", RESNET18_RHO_CLAIM, None, "resnet18_conv1_rho", tables=paper
        ),
        KITINET: tables.paper_value(
            "kitinet", RESNET18_RHO_CLAIM, None, "kitinet18_conv1_rho", tables=paper
        ),
    }

    def mean(variant: str, metric: str) -> float:
        return float(agg.loc[(variant,), (metric, "mean")]) if (variant,) in agg.index else math.nan

    rows = []
    for layer, metric in zip(layers, metrics, strict=True):
        base, kiti = mean(VANILLA, metric), mean(KITINET, metric)
        change = f"{100 * (kiti - base) / base:+.1f} %" if base and math.isfinite(kiti) else "—"
        if layer == "conv1":
            paper_cells = [tables.format_paper(paper_conv1[v]) for v in (VANILLA, KITINET)]
        else:
            paper_cells = ["not reported", "not reported"]
        rows.append(
            [
                layer,
                tables.ours_cell(agg, (VANILLA,), metric),
                tables.ours_cell(agg, (KITINET,), metric),
                change,
                *paper_cells,
            ]
        )
    table = tables.markdown_table(
        [
            "layer",
            "ResNet18 ρ (ours)",
            "KITI-ResNet18 ρ (ours)",
            "change (ours)",
            "ResNet18 ρ (paper)",
            "KITINet18 ρ (paper)",
        ],
        rows,
    )
    body = f"""# KITINet §5.7: condensation ρ of ResNet18's conv layers, vanilla vs KITINet

Setting: CIFAR-100, the KITINet Table 3 recipe (configs/experiment/kitinet_table7_resnet18_*.yaml).
ρ: KITINet Def. I.2 (mean |cos| between filters, per input channel) of each watched conv layer at
the end of training; ours are mean ± std over seeds (n = runs), "missing" = no run logged it.
The paper reports only conv1 in its text ("from 0.235 to 0.248, improved by 5.3%"; the other
layers "change minimally"); 1x1 shortcut convs compare scalars per channel, so their ρ is 1 by
definition.

{table}

{_mixed_note(df, ["variant"])}"""
    header = tables.provenance_header(command, df, runs_root=str(runs))
    return [tables.write_markdown(out / "README.md", header, body)]


# --------------------------------------------------------------------------- any sweep


def _swept_keys(df: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between runs, seeds and per-run paths excluded."""
    ignored = tables.mixed_config_keys(df.assign(_all=0), ["_all"])
    varying = ignored.get((0,), [])
    return [k for k in varying if not k.startswith("experiment_name")]


def render_sweep(runs: Path, out: Path, command: str) -> list[Path]:
    """Any multirun: one row per combination of the swept config keys, mean ± std over seeds.

    Metrics: final train/test loss, other test metrics (``test_top1``, ...), and every ``rho.*``,
    ``max_cos.*`` and filled
    ``collision_rate.*`` column. The swept keys are found from the runs, so this renders the
    KITINet §5.7 skip-network sweep as well as ``collision.coll_coef=...`` sweeps. There are no
    paper numbers here (none of these sweeps has a table in the papers).
    """
    df = _collect(runs)
    by = _swept_keys(df) or ["experiment_name"]
    metrics = [c for c in ("train_loss", "test_loss") if c in df.columns]
    metrics += sorted(c for c in df.columns if c.startswith("test_") and c != "test_loss")
    metrics += sorted(c for c in df.columns if c.startswith(("rho.", "max_cos.")))
    metrics += _rate_columns(df)
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
    arch = run.get("model.name") if _is_missing(arch) else arch
    arch_label = KO_TABLE2_ARCHS.get(str(arch).lower(), str(arch))
    collision = _collision(run.get("collision.name"))
    if collision in KO_TABLE2_COLLISIONS:
        return f"{arch_label}+{KO_TABLE2_COLLISIONS[collision]}"
    optimizer = str(run.get("optimizer.name", "missing")).lower()
    return f"{arch_label}+{KO_TABLE2_BASES.get(optimizer, optimizer)}"


def render_ko_table2(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Table 2: ImageNet-1K top-1 / top-5 (%) of ResNet50 + LAMB and ConvNeXt-T/S + AdamW, each
    with {none, S.C., H.C.}, beside the paper's cells."""
    df = _collect(runs)
    df["row"] = df.apply(_ko_table2_row, axis=1)
    for metric in KO_TABLE2_METRICS:
        values = df[metric] if metric in df else pd.Series(math.nan, index=df.index)
        df[metric] = 100.0 * pd.to_numeric(values, errors="coerce")  # the runner logs fractions
    rates = _rate_columns(df)
    df["collision_rate"] = (
        df[rates].apply(pd.to_numeric, errors="coerce").mean(axis=1) if rates else math.nan
    )
    by = ["row"]
    agg = tables.aggregate(df, by, [*KO_TABLE2_METRICS, "collision_rate"])
    paper = tables.load_paper_tables()
    rows = _ordered(df["row"].unique(), list(paper["ko"]["table2"]["rows"]))

    acc_rows, rate_rows = [], []
    for row in rows:
        cells = [row]
        for metric, column in KO_TABLE2_METRICS.items():
            value = tables.paper_value("ko", "table2", row, column, tables=paper)
            cells += [tables.ours_cell(agg, (row,), metric), tables.format_paper(value)]
        acc_rows.append(cells)
        variant = row.rsplit("+", 1)[-1]
        collision = {label: name for name, label in KO_TABLE2_COLLISIONS.items()}.get(variant)
        rate_rows.append([row, _rate_cell(agg, (row,), collision or "none")])
    headers = ["model"] + [
        f"{column} {who}" for column in KO_TABLE2_METRICS.values() for who in ("(ours)", "(paper)")
    ]
    acc_table = tables.markdown_table(headers, acc_rows)
    rate_table = tables.markdown_table(["model", "collision rate"], rate_rows)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KO Table 2: ImageNet-1K accuracy with soft and hard collision

Setting (SPEC §3, `configs/experiment/ko_table2_*.yaml`): timm ResNet50 with the "ResNet strikes
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

{_mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- CLI

RENDERERS: dict[str, Callable[[Path, Path, str], list[Path]]] = {
    "ko-fig2": render_ko_fig2,
    "kitinet-fc": render_kitinet_fc,
    "ko-fig4": render_ko_fig4,
    "ko-table1": render_ko_table1,
    "ko-table45": render_ko_table45,
    "ko-fig3": render_ko_fig3,
    "kitinet-table3": render_kitinet_table3,
    "kitinet-table7-resnet": render_kitinet_table7_resnet,
    "ko-table2": render_ko_table2,
    "sweep": render_sweep,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), render, print the files written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(RENDERERS), help="figure or table to render")
    parser.add_argument("--runs", type=Path, required=True, help="directory holding run dirs")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/render.py", *argv])
    for path in RENDERERS[args.target](args.runs, args.out, command):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
