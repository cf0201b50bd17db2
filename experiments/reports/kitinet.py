"""KITINet renderers: the §5.7 FC network (vanilla vs KITINet), Table 3 (CIFAR ResNets with their
cost) and the §5.7 ResNet18 condensation (ρ per conv layer).

Each ``render_*(runs, out, command) -> list[Path]`` reads the run directories under ``runs`` and
writes its files into ``out``; :data:`~experiments.core.registry.REPORTS` holds it under its
``scripts/render.py`` name. The KITINet PDE renderers are in :mod:`experiments.reports.pde`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from experiments.core.registry import REPORTS
from experiments.reports import common as tables
from experiments.reports.runs import (
    activation_name,
    cifar_runs,
    collect,
    collision_name,
    is_kitinet_run,
    is_missing,
    mixed_note,
    ordered,
    rate_cell,
    rate_columns,
    resnet_label,
)

# Variant labels: the vanilla network and the one with KITINet modules.
VANILLA, KITINET = "vanilla", "KITINet"
# KITINet §5.7: activations in the paper's order, and their keys in the claim's `values`.
KITINET_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
KITINET_CLAIM = "synthetic_test_loss_reductions"
KITINET_CLAIM_KEYS = {
    "relu": "relu_test_loss_reduction_pct",
    "leaky_relu": "leakyrelu_test_loss_reduction_pct",
    "tanh": "tanh_test_loss_reduction_pct",
}

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


@REPORTS.register(name="kitinet-fc")
def render_kitinet_fc(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet §5.7 FC network: test/train loss and test-loss change vs the paper's claim."""
    df = collect(runs)
    if "model.activation" not in df:
        df["model.activation"] = None
    df["activation"] = df["model.activation"].map(activation_name)
    df["variant"] = [KITINET if is_kitinet_run(run) else VANILLA for _, run in df.iterrows()]
    for metric in ("test_loss", "train_loss"):
        df[metric] = pd.to_numeric(df[metric], errors="coerce") if metric in df else math.nan
    rates = rate_columns(df)
    by = ["activation", "variant"]
    agg = tables.aggregate(df, by, ["test_loss", "train_loss", *rates])
    activations = ordered(df["activation"].unique(), KITINET_ACTIVATIONS)
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

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- KITINet Table 3

KITINET_TABLE3_ARCHS = ("ResNet-34", "ResNet-50", "ResNet-101", "ResNet-152")
KITI = "KITI"


def _summary_float(run: pd.Series, key: str) -> float:
    """The run's number ``key`` from its summary.json; NaN when the run lacks it."""
    value = run.get(key)
    if is_missing(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _costs(run: pd.Series) -> tuple[float, float, float]:
    """(eval MFLOPs, train-mode MFLOPs, ImageNet-stem eval MMACs) of the run's model, 3x32x32.

    The runner counts them when the run starts and writes them into summary.json: ``mflops``
    (FLOPs of one eval forward of one input, 2 per multiply-add), ``mflops_train`` (the same with
    the KITINet modules in training mode: KITINet runs only) and ``mmacs_imagenet_stem`` (the
    same network with the ImageNet stem, in multiply-adds: the KITINet paper's convention). A key
    the run lacks is NaN, i.e. a "missing" cell.
    """
    keys = ("mflops", "mflops_train", "mmacs_imagenet_stem")
    flops, train, imagenet_macs = (_summary_float(run, key) for key in keys)
    return flops, train, imagenet_macs


@REPORTS.register(name="kitinet-table3")
def render_kitinet_table3(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet Table 3: CIFAR-10/100 top-1 (%) of ResNet-34..152, vanilla vs KITI, and MFLOPs."""
    df, columns = cifar_runs(runs)
    df["arch"] = df["model.name"].map(lambda name: resnet_label(name, "-"))
    df["variant"] = [KITI if is_kitinet_run(run) else VANILLA for _, run in df.iterrows()]
    by = ["arch", "variant", "data"]
    agg = tables.aggregate(df, by, ["acc", "collision_rate"])
    archs = ordered(df["arch"].unique(), KITINET_TABLE3_ARCHS)
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
        flops, train, imagenet_macs = _costs(group.sort_values(["data", "seed"]).iloc[0])
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
                [row, *(rate_cell(agg, (arch, variant, c), collision) for c in columns)]
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
`collision.coll_coef`; the paper gives neither, see `configs/experiment/kitinet/table3_*.yaml`).
Cells: final-epoch test top-1 accuracy in %, mean ± std over seeds (n = runs). The paper prints
CIFAR-10 as one number and CIFAR-100 as "acc (x)", shown as "acc ± x" (it never says what x is).
"missing" = no run produced that cell. Dit-ResNet (dendritic neurons, [24]) is not built: the paper
does not specify it enough (`experiments/vision/models.py`).

## Test accuracy (%) and cost

{acc_table}

**MFLOPs.** The paper's column matches the multiply-adds of the torchvision-style network (7x7
stride-2 stem + max-pool, "ImageNet stem") on a 32x32 input, not the CIFAR network it trains (3x3
stride-1 stem, no max-pool, about 16x the compute). So we give both, as the runner counted them
for the first run of each row (its summary.json; torch's FLOP counter, eval mode, one 3x32x32
test image): "MMACs, ImageNet stem" = multiply-adds in millions of the same
network with the ImageNet stem (the paper's convention); "MFLOPs, our CIFAR model" = FLOPs
(2 per multiply-add) of the network as trained. In eval mode KITINet is the plain addition and
costs nothing; "(train: ...)" adds the collisions' matrix products of a training forward.

## Collision rate

Accepted / all particle pairs of the KITINet modules, averaged over the final epoch's steps, over
the KITINet residuals of the run, then over seeds (not in the paper; logged because in high
dimensions exp(-distance) is small and collisions may rarely fire).

{rate_table}

{mixed_note(df, by)}"""
    readme = tables.write_markdown(out / "README.md", header, body)
    return [readme]


# --------------------------------------------------------------------------- KITINet §5.7 ResNet18

RESNET18_RHO_CLAIM = "resnet18_conv1_condensation"


@REPORTS.register(name="kitinet-table7-resnet")
def render_kitinet_table7_resnet(runs: Path, out: Path, command: str) -> list[Path]:
    """KITINet §5.7: rho of every conv layer of ResNet18 vs KITI-ResNet18 on CIFAR-100.

    The paper has no table for it, only conv1's numbers in the text (0.235 -> 0.248); the other
    layers' paper cells are "not reported". Ours: the final rho (Def. I.2) of each watched layer,
    mean ± std over seeds, and the relative change of the means.
    """
    df = collect(runs)
    if "collision.name" not in df:
        df["collision.name"] = None
    df["variant"] = df["collision.name"].map(
        lambda c: KITINET if collision_name(c) == "kitinet" else VANILLA
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

Setting: CIFAR-100, the KITINet Table 3 recipe (configs/experiment/kitinet/table7_resnet18_*.yaml).
ρ: KITINet Def. I.2 (mean |cos| between filters, per input channel) of each watched conv layer at
the end of training; ours are mean ± std over seeds (n = runs), "missing" = no run logged it.
The paper reports only conv1 in its text ("from 0.235 to 0.248, improved by 5.3%"; the other
layers "change minimally"); 1x1 shortcut convs compare scalars per channel, so their ρ is 1 by
definition.

{table}

{mixed_note(df, ["variant"])}"""
    header = tables.provenance_header(command, df, runs_root=str(runs))
    return [tables.write_markdown(out / "README.md", header, body)]
