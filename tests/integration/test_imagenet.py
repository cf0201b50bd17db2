"""KO Table 2 end to end at toy scale: an ImageFolder tree of JPEGs through the row's real experiment
config (timm pipeline, LAMB, warm-up + cosine per step, KO hard collision on the head) with a tiny
timm model, and the ko-table2 renderer on fake run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures_vision import write_image_folder
from helpers import read_metrics, render, run_inprocess, table_rows, write_run

REPO = Path(__file__).resolve().parents[2]
CLASSES = tuple(f"n0{i:07d}" for i in range(6))  # 6 classes: top-5 is not trivially 1


def test_ko_table2_row_trains_on_an_image_folder(tmp_path: Path) -> None:
    """experiment=ko/table2_resnet50_hc (RSB: RandAugment, Mixup/CutMix, BCE, LAMB, warm-up +
    cosine per optimizer step, hard collision on `fc`) with timm's test_resnet on 32x32 JPEGs."""
    root = write_image_folder(tmp_path / "imagenet", CLASSES, n_train=4, n_val=2, size=(32, 32))
    run_dir = tmp_path / "run"
    epochs, batch = 2, 8
    steps = len(CLASSES) * 4 // batch  # drop_last with Mixup: 3 updates per epoch
    run_inprocess(
        run_dir,
        "experiment=ko/table2_resnet50_hc",
        "model.model_name=test_resnet",
        f"dataset.root={root}",
        "dataset.input_size=32",
        f"trainer.epochs={epochs}",
        f"trainer.batch_size={batch}",
        "scheduler.warmup_epochs=1",
        "trainer.num_workers=0",
        "trainer.device=cpu",
        "trainer.eval_every=1",
        "collision.mean_free_path=1e6",  # exp(-x_r / mfp) ~ 1: pairs surely collide
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0.0 <= summary["test_top1"] <= summary["test_top5"] <= 1.0
    assert 0.0 < summary["collision_rate.fc"] <= 1.0
    assert summary["rho.fc"] > 0

    # Warm-up from 1e-4 over epoch 1, then cosine from 5e-3 to 1e-6 over the 2 epochs (timm's
    # warmup_prefix=false), updated after each of the 6 optimizer steps; `lr` is an epoch's first.
    lr, start, floor, total = 5e-3, 1e-4, 1e-6, epochs * steps
    records = read_metrics(run_dir)
    assert [r["lr"] for r in records] == pytest.approx(
        [start, start, floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * steps / total))]
    )
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["scheduler"]["ticks"] == total  # stepped per update, not per epoch
    groups = checkpoint["optimizer"]["param_groups"]
    assert len(groups) == 2  # LAMB without weight decay on biases / norms: both are scheduled
    assert [g["lr"] for g in groups] == pytest.approx([floor, floor])


def _imagenet_run(
    root: Path, name: str, *, seed: int, model_name: str, collision: str, optimizer: str, **metrics
) -> None:
    config: dict[str, Any] = {
        "model": {"name": "timm_model", "model_name": model_name},
        "collision": {"name": collision, "coll_coef": 0.7},
        "optimizer": {"name": optimizer},
        "dataset": {"name": "imagenet"},
    }
    write_run(root, name, seed=seed, summary=metrics, extra_config=config)


def test_render_ko_table2_with_a_missing_cell(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (top1, top5) in enumerate([(0.79, 0.94), (0.80, 0.95)]):
        _imagenet_run(
            runs, f"lamb{seed}", seed=seed, model_name="resnet50", collision="none",
            optimizer="lamb", test_top1=top1, test_top5=top5,
        )  # fmt: skip
    _imagenet_run(
        runs, "hc0", seed=0, model_name="resnet50", collision="hard", optimizer="lamb",
        test_top1=0.7998, test_top5=0.9461, **{"collision_rate.fc": 0.25},
    )  # fmt: skip
    _imagenet_run(
        runs, "tiny_sc", seed=0, model_name="convnext_tiny", collision="soft", optimizer="adamw",
        test_top1=0.8234, test_top5=None,  # a run that logged no top-5
    )  # fmt: skip
    out = tmp_path / "out"
    render("ko-table2", runs, out)
    text = (out / "README.md").read_text()
    assert text.startswith("> **Provenance**")
    acc = table_rows(text, "Accuracy (%)")
    models = ("ResNet50", "ConvNext_Tiny", "ConvNext_Small")
    bases = {"ResNet50": "Lamb", "ConvNext_Tiny": "AdamW", "ConvNext_Small": "AdamW"}
    assert list(acc) == [f"{m}+{v}" for m in models for v in (bases[m], "S.C.", "H.C.")]
    assert acc["ResNet50+Lamb"] == ["79.50 ± 0.71 (n=2)", "79.70", "94.50 ± 0.71 (n=2)", "94.53"]
    assert acc["ResNet50+H.C."] == ["79.98 ± — (n=1)", "79.98", "94.61 ± — (n=1)", "94.61"]
    assert acc["ConvNext_Tiny+S.C."] == ["82.34 ± — (n=1)", "82.34", "missing", "96.07"]
    assert acc["ConvNext_Small+AdamW"] == ["missing", "82.83", "missing", "96.29"]  # never 0
    rates = table_rows(text, "Collision rate")
    assert rates["ResNet50+H.C."] == ["0.25 ± — (n=1)"]
    assert rates["ResNet50+Lamb"] == ["n/a (no collision)"]
    assert rates["ConvNext_Small+H.C."] == ["missing"]
