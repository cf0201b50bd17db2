"""Render a paper figure or table from run directories (never from W&B).

Usage (from the repository root)::

    python scripts/render.py ko-fig2    --runs multirun/ko_fig2    --out results/ko_fig2
    python scripts/render.py kitinet-fc --runs multirun/kitinet_fc --out results/kitinet_fc

Each subcommand reads every run directory under ``--runs`` (``config.yaml`` + ``summary.json``,
plus ``weights_final.pt`` for heat maps), aggregates over seeds and writes ``README.md`` (and
figures) into ``--out``, with our numbers beside the paper's from ``results/paper_tables.yaml``.
To add a pipeline, write ``render_<name>(runs, out, command) -> list[Path]`` and register it in
``RENDERERS``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from experiments import tables
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


def _ko_fig2_grid(df: pd.DataFrame, activations: list[str], path: Path, provenance: str) -> None:
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
    fig.suptitle("KO Fig. 2: hidden-neuron input-weight cosine similarity (reordered, App. B.1)")
    fig.savefig(path, dpi=120, metadata={"Description": provenance})


def render_ko_fig2(runs: Path, out: Path, command: str) -> list[Path]:
    """KO Fig. 2: heat-map grid + README with final max|cos|, rho and collision rates."""
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
    activations = _ordered(df["activation"].unique(), KO_ACTIVATIONS)
    collisions = dict(KO_COLLISIONS)
    for extra in sorted(set(df["collision"]) - set(collisions)):
        collisions[extra] = extra

    out.mkdir(parents=True, exist_ok=True)
    header = tables.provenance_header(command, df, runs_root=str(runs))
    grid = out / "ko_fig2_grid.png"
    _ko_fig2_grid(df, activations, grid, header)

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
        ["activation", "ρ: Adam → +S.C. (ours)", "ρ: Adam → +H.C. (ours)", "paper (Fig. 2)"],
        direction_rows,
    )
    body = f"""# KO Fig. 2: condensation of a two-layer network under Adam, +S.C. and +H.C.

Setting (SPEC §3): 5-50-1 MLP, 80 points x ~ U[-4, 2]^5, y = Σ_k 3.5 sin(5 x_k + 1),
init N(0, 0.005²), Adam, 100 epochs, collision settings as in each run's config. The heat maps show the
cosine similarity of the hidden neurons' input weights (the layer in `trainer.watch[0]`) at the end
of training, reordered with KO App. B.1's greedy clustering (threshold 0.6), for the lowest seed
of each cell.

**The paper gives no numbers for this figure** (KO Fig. 2 is heat maps only): its claim is
qualitative, "both the proposed hard collision and soft collision hinder the condensation of the
weights". Below, our final max |cos| (KO Fig. 3's "neuron similarity") and ρ (KITINet Def. I.1,
mean |cos| over neuron pairs) quantify it; cells are mean ± std over seeds (n = runs);
"missing" = no run produced that cell.

![KO Fig. 2 grid](ko_fig2_grid.png)

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


# --------------------------------------------------------------------------- any sweep


def _swept_keys(df: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between runs, seeds and per-run paths excluded."""
    ignored = tables.mixed_config_keys(df.assign(_all=0), ["_all"])
    varying = ignored.get((0,), [])
    return [k for k in varying if not k.startswith("experiment_name")]


def render_sweep(runs: Path, out: Path, command: str) -> list[Path]:
    """Any multirun: one row per combination of the swept config keys, mean ± std over seeds.

    Metrics: final train/test loss and every ``rho.*``, ``max_cos.*`` and filled
    ``collision_rate.*`` column. The swept keys are found from the runs, so this renders the
    KITINet §5.7 skip-network sweep as well as ``collision.coll_coef=...`` sweeps. There are no
    paper numbers here (none of these sweeps has a table in the papers).
    """
    df = _collect(runs)
    by = _swept_keys(df) or ["experiment_name"]
    metrics = [c for c in ("train_loss", "test_loss") if c in df.columns]
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


# --------------------------------------------------------------------------- CLI

RENDERERS: dict[str, Callable[[Path, Path, str], list[Path]]] = {
    "ko-fig2": render_ko_fig2,
    "kitinet-fc": render_kitinet_fc,
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
