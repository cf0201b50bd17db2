"""Render a paper figure or table from run directories (never from W&B).

Usage (from the repository root)::

    python scripts/render.py ko-fig2    --runs multirun/ko_fig2    --out results/ko_fig2
    python scripts/render.py kitinet-fc --runs multirun/kitinet_fc --out results/kitinet_fc
    python scripts/render.py ko-table1 --runs multirun/ko_table1 --out results/ko_table1
    python scripts/render.py ko-fig3 --runs multirun/ko_table1 --out results/ko_table1
    python scripts/render.py ko-table45 --runs multirun/ko_table1 --out results/ko_table45
    python scripts/render.py kitinet-table3 --runs multirun/kitinet_table3 --out results/kitinet_table3
    python scripts/render.py ko-table2 --runs multirun/ko_table2 --out results/ko_table2
    python scripts/render.py kitinet-table4 --runs multirun/kitinet_pde --out results/kitinet_table4
    python scripts/render.py kitinet-table6 --runs multirun/kitinet_pde --out results/kitinet_table6
    python scripts/render.py kitinet-table7 --runs multirun/kitinet_pde --out results/kitinet_table7
    python scripts/render.py kitinet-fig2 --runs multirun/kitinet_pde --out results/kitinet_fig2
    python scripts/render.py mini-pde --runs multirun/mini_pde --out results/mini_pde

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
from typing import Any, NamedTuple

import pandas as pd
import torch
import yaml

from experiments.core.io import atomic_write, atomic_write_json
from experiments.reports import common as tables
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
    from experiments.core.errors import ConfigError
    from experiments.core.registry import MODELS
    from experiments.vision.models import count_mflops
    from kinetics import KITINetConfig

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
        flops = count_mflops(MODELS.create(name, **kwargs), size)
        train = math.nan
        if str(collision.get("name", "")).lower() == "kitinet":
            kitinet = KITINetConfig(
                **{k: collision[k] for k in _KITINET_KEYS if k in collision},
                generator=torch.Generator().manual_seed(0),
            )
            model = MODELS.create(name, **kwargs, kitinet=kitinet)
            train = count_mflops(model, size, kitinet_train=True)
        imagenet_macs = (
            count_mflops(MODELS.create(name, **{**kwargs, "stem": "imagenet"}), size) / 2
        )
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


# --------------------------------------------------------------------------- KITINet PDE

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
    df["data"] = df["dataset.name"].map(lambda v: tables.MISSING if _is_missing(v) else str(v))
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
    rates = _rate_columns(df)
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
    return _ordered(found, preferred)


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
    import json

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
    sites = sorted(_rate_columns(kiti), key=_natural_key) if len(kiti) else []
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


def render_kitinet_table4(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 4: FNO / KITI-FNO test MSE on Burgers, NS, Heat (and OFormer on Airfoil)."""
    df = _select(_pde_runs(runs), PDE_TABLE4_RUNS)
    paper = tables.load_paper_tables()
    problems = _pde_problems(df)
    section = _table4_section(df, problems, paper)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    body = f"""# KITINet Table 4: neural operators with and without KITINet

Setting (KITINet §5.4, SPEC §3; `configs/experiment/kitinet_table4_*.yaml`): FNO with Adam lr 1e-3,
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

{_mixed_note(df, ["data", "kiti"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


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

{_mixed_note(df, ["data", "mechanism"])}"""
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
    atomic_write(
        path,
        lambda f: fig.savefig(f, format="png", dpi=120, metadata={"Description": provenance}),
        "wb",
    )


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


def render_kitinet_fig2(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Fig. 2(a) (collision_heads, Burgers), 2(b) (coll_coef, Heat), Fig. 6 (NS)."""
    df = _pde_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    figure = out / "kitinet_fig2.png"
    _fig2_figure(df, FIG2_PANELS, figure, header)
    body = f"""# KITINet Fig. 2 and Fig. 6: KITI-FNO against collision_heads and coll_coef

Setting: as KITINet Table 4 (`results/kitinet_table4/`), one knob swept at a time
(`configs/experiment/kitinet_fig2*.yaml`): collision_heads on Burgers (coll_coef fixed),
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

Setting: as KITINet Table 4's NS rows (`configs/experiment/kitinet_table7_ns.yaml`: FNO and
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

{_mixed_note(df, ["variant"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


def _config_values(df: pd.DataFrame, key: str) -> str:
    """The distinct values of config ``key`` over the runs, joined by " / " ("missing" if none)."""
    if key not in df or not len(df):
        return tables.MISSING
    values = []
    for value in df[key]:
        text = (
            tables.MISSING
            if _is_missing(value)
            else str(list(value) if isinstance(value, tuple) else value)
        )
        if text not in values:
            values.append(text)
    return " / ".join(values)


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
        keys = [*_RUN_SUMMARY_KEYS, *sorted(_rate_columns(df), key=_natural_key)]
        for key in keys:
            value = run.get(key)
            record[key] = None if _is_missing(value) else value
        if not run["kiti"]:
            record = {k: v for k, v in record.items() if not k.startswith("collision_rate.")}
        records.append(record)
    return records


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
        return _config_values(frame, key)

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

Setting (`configs/experiment/mini_pde.yaml`, `mini_pde_heads.yaml`; values read from the runs):

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

{_mixed_note(table4, ["data", "kiti"])}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    summary = out / "runs.json"
    atomic_write_json(summary, _run_summaries(df))
    return [figure, readme, summary]


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
    "kitinet-table4": render_kitinet_table4,
    "kitinet-table6": render_kitinet_table6,
    "kitinet-table7": render_kitinet_table7,
    "kitinet-fig2": render_kitinet_fig2,
    "mini-pde": render_mini_pde,
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
