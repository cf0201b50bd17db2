"""The runner on image data: the design's own example on generated CIFAR files, KITI-ResNet,
Fashion-MNIST, resume, and the early errors (one epoch each, tiny widths)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_vision import write_cifar10, write_fashion_mnist
from helpers import kill_and_resume, read_metrics, run_inprocess

from experiments.core.errors import ConfigError
from experiments.core.io import sha256_file

TINY = ["model.base_width=4", "trainer.batch_size=8", "trainer.epochs=2"]


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    write_cifar10(tmp_path / "data", n_per_batch=8, n_test=8)
    return tmp_path / "data"


def _cifar(root: Path) -> list[str]:
    return [f"dataset.root={root}", "dataset.download=false", "dataset.verify=false"]


def test_resnet18_with_soft_collision_trains_on_cifar10_by_default(
    tmp_path: Path, cifar_root: Path
) -> None:
    """`python run.py model=resnet18 collision=soft`, on fixture files and a tiny width."""
    run_inprocess(tmp_path / "run", "model=resnet18", "collision=soft", *_cifar(cifar_root), *TINY)
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    last = records[-1]
    assert 0.0 <= last["test_top1"] <= 1.0 and 0.0 <= last["test_top5"] <= 1.0
    assert last["rho.fc"] > 0 and last["max_cos.fc"] <= 1.0  # the collided head is watched


def test_kiti_resnet_logs_its_collision_rates(tmp_path: Path, cifar_root: Path) -> None:
    run_inprocess(
        tmp_path / "run",
        "model=resnet18",
        "collision=kitinet",
        "collision.collision_heads=8",
        "collision.mean_free_path=1e6",  # exp(-x_r / mfp) ~ 1: pairs surely collide
        *_cifar(cifar_root),
        *TINY,
    )
    last = read_metrics(tmp_path / "run")[-1]
    rates = {k: v for k, v in last.items() if k.startswith("collision_rate.layer4")}
    assert rates and all(0 < v <= 1 for v in rates.values())


def test_fashion_mnist_feeds_a_one_channel_resnet(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path / "fm", n_train=16, n_test=8)
    run_inprocess(
        tmp_path / "run",
        "model=resnet18",
        "dataset=fashion_mnist",
        f"dataset.root={tmp_path / 'fm'}",
        "collision=hard",
        *TINY,
    )
    assert read_metrics(tmp_path / "run")[-1]["collision_rate.fc"] is not None


def test_killed_image_run_resumes_to_the_uninterrupted_metrics(
    tmp_path: Path, cifar_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Augmentation (global RNG), loader order (per-epoch seeds) and KO draws all resume."""
    common = ["model=resnet18", "collision=hard", "collision.coll_coef=0.9", *_cifar(cifar_root)]
    common += [*TINY[:-1], "trainer.epochs=3", "trainer.checkpoint_every=1"]
    _, resumed, whole = kill_and_resume(tmp_path, monkeypatch, common, kill_at=2)
    assert resumed == whole


def test_full_batch_is_refused_for_image_data(tmp_path: Path, cifar_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.batch_size=null"):
        run_inprocess(
            tmp_path / "run", "model=resnet18", *_cifar(cifar_root), "trainer.batch_size=null"
        )


def test_synthetic_model_on_image_data_is_refused(tmp_path: Path, cifar_root: Path) -> None:
    with pytest.raises(ConfigError, match="model=mlp cannot take image data"):
        run_inprocess(
            tmp_path / "run", "dataset=cifar10", *_cifar(cifar_root), "trainer.batch_size=8"
        )


def test_kitinet_size_that_cannot_work_fails_before_anything_is_written(
    tmp_path: Path, cifar_root: Path
) -> None:
    """Issue 8's bug: image data never checked the model, so this failed mid-run after writing
    config.yaml and metrics.jsonl."""
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"collision_heads=7 does not divide"):
        run_inprocess(
            run_dir,
            "model=resnet18",
            "collision=kitinet",
            "collision.collision_heads=7",
            *_cifar(cifar_root),
            *TINY,
        )
    assert not run_dir.exists()


def test_summary_holds_the_model_cost(tmp_path: Path, cifar_root: Path) -> None:
    import json

    run_inprocess(
        tmp_path / "run",
        "model=resnet18",
        "collision=kitinet",
        "collision.collision_heads=8",
        *_cifar(cifar_root),
        *TINY,
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["num_params"] > 0
    assert summary["mflops_train"] > summary["mflops"] > 0  # the collisions' matrix products
    assert 0 < summary["mmacs_imagenet_stem"] < summary["mflops"] / 2  # a 4x smaller map
    batches = sorted((cifar_root / "cifar-10-batches-py").iterdir())
    assert summary["data_sha256"] == {
        f"cifar-10-batches-py/{f.name}": sha256_file(f) for f in batches if f.is_file()
    }
