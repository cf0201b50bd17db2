"""End-to-end runs: run.py under Hydra (single run, multirun, W&B offline) and run() in-process.

Subprocess runs use the real entry point; in-process runs (Hydra's compose API + ``run``) check
determinism, collision-rate logging and early failures quickly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import (
    REPO,
    compose_cfg,
    kill_and_resume,
    read_metrics,
    run_inprocess,
    run_py,
    without_times,
)
from omegaconf import OmegaConf
from torch import nn

from experiments.core.config import TrainerConfig
from experiments.core.errors import ConfigError
from experiments.core.loaders import TensorBatches, TensorTask
from experiments.engine.callbacks import CollisionRates, Condensation
from experiments.engine.loop import fit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bare_run_writes_every_file(tmp_path: Path) -> None:
    """The full default run (KO Fig. 2 setting, 100 epochs) through run.py and Hydra."""
    run_dir = tmp_path / "bare"
    # -X importtime lists every module the process imports: logger=none must not load wandb.
    # (A refused `import wandb` is listed too, so look for its submodules, which a real one loads.)
    output = run_py("-X", "importtime", "run.py", f"hydra.run.dir={run_dir}")
    assert "| timm" in output  # the listing is there
    assert not re.search(r"\|\s+wandb\.", output)

    records = read_metrics(run_dir)
    assert [r["epoch"] for r in records] == list(range(101))
    expected = {
        "epoch",
        "step",
        "train_loss",
        "test_loss",
        "lr",
        "epoch_time",
        "peak_memory_mb",
        "throughput",
        "flops_per_s",
        "rho.fc1",
        "max_cos.fc1",
        "collision_rate.fc1",
        "collision_alignment.fc1",
        "collision_norm_ratio.fc1",
        "nonfinite_skips.fc1",
    }
    assert all(set(r) == expected for r in records)
    last = records[-1]
    assert last["train_loss"] < records[1]["train_loss"]
    assert 0 <= last["rho.fc1"] <= 1
    assert 0 <= last["max_cos.fc1"] <= 1
    assert last["collision_rate.fc1"] is None  # soft collision has no acceptance step

    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("seed", "git_commit", "command", "wall_time", "test_loss", "rho.fc1"):
        assert key in summary
    assert summary["seed"] == 0
    assert summary["test_loss"] == last["test_loss"]
    assert "run.py" in summary["command"]
    # the run's identity beyond code and config: what its bits depend on
    env = summary["environment"]
    assert env["packages"]["torch"] == torch.__version__.split("+")[0]
    assert env["num_threads"] == torch.get_num_threads()
    assert env["device"] == "cpu"
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert summary["data_sha256"] == {}  # sin5d is made in memory from the config

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["name"] == "mlp"
    assert config["model"]["activation"] == "tanh"
    assert config["collision"]["name"] == "soft"
    assert config["paths"]["output_dir"] == str(run_dir)

    weights = torch.load(run_dir / "weights_final.pt", weights_only=True)
    assert set(weights) == {"fc1"}
    assert weights["fc1"].shape == (50, 5)
    assert (run_dir / "heatmap_fc1.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


def test_multirun_with_wandb_offline_gives_each_job_its_own_dir_and_run(tmp_path: Path) -> None:
    """A 2 x 2 sweep with logger=wandb: four job dirs, each with its own offline W&B run."""
    sweep = tmp_path / "sweep"
    env = {
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
    }
    run_py(
        "run.py",
        "--multirun",
        "collision.coll_coef=0.1,0.9",
        "seed=0,1",
        "trainer.epochs=3",
        "logger=wandb",
        f"hydra.sweep.dir={sweep}",
        env=env,
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        config = yaml.safe_load((job / "config.yaml").read_text())
        summary = json.loads((job / "summary.json").read_text())
        assert summary["seed"] == config["seed"]
        assert summary["epoch"] == 3
        seen.add((config["collision"]["coll_coef"], config["seed"]))
        offline = list((job / "wandb").glob("offline-run-*"))
        assert len(offline) == 1, f"{job}: {offline}"
        assert list(offline[0].glob("*.wandb"))
    assert seen == {(0.1, 0), (0.1, 1), (0.9, 0), (0.9, 1)}


def test_same_seed_gives_identical_metrics(tmp_path: Path) -> None:
    args = ("collision=hard", "trainer.epochs=15")
    run_inprocess(tmp_path / "a", *args, "seed=3")
    run_inprocess(tmp_path / "b", *args, "seed=3")
    run_inprocess(tmp_path / "c", *args, "seed=4")
    a, b, c = (without_times(read_metrics(tmp_path / d)) for d in "abc")
    assert a == b
    assert a != c
    rates = [r["collision_rate.fc1"] for r in a[1:]]
    assert all(r is not None and 0 <= r <= 1 for r in rates)
    assert max(rates) > 0  # hard collisions actually happened


def test_kitinet_fc_logs_a_collision_rate(tmp_path: Path) -> None:
    loss = run_inprocess(
        tmp_path,
        "model=kitinet_fc",
        "collision=kitinet",
        "trainer.epochs=3",
        "trainer.watch=[fc1,fc2]",
    )
    records = read_metrics(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert loss == pytest.approx(summary["test_loss"])
    assert records[0]["collision_rate.residual"] is None  # the initial model took no step
    for record in records[1:]:
        assert 0 < record["collision_rate.residual"] <= 1
        assert record["collision_rate.fc1"] is None  # fc1 is no collision site
    assert {"rho.fc1", "rho.fc2", "max_cos.fc2"} <= set(summary)
    assert (tmp_path / "heatmap_fc2.png").exists()


def test_bad_combination_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"collision_heads=3 does not divide"):
        run_inprocess(
            tmp_path, "model=kitinet_fc", "collision=kitinet", "collision.collision_heads=3"
        )
    assert not (tmp_path / "metrics.jsonl").exists()
    with pytest.raises(ConfigError, match=r"collision\.coll_coef=1\.5 is outside"):
        run_inprocess(tmp_path, "collision.coll_coef=1.5")
    assert not (tmp_path / "metrics.jsonl").exists()


def test_fit_with_dataloader_metrics_and_step_scheduler(tmp_path: Path) -> None:
    """fit() as a later trainer uses it: DataLoader batches, accuracy, per-step schedule."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)

    def accuracy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out.argmax(-1) == target).float().mean()

    task = TensorTask(
        x, y, x, y, nn.CrossEntropyLoss(), nn.CrossEntropyLoss(), metric_fns={"acc": accuracy}
    )
    result = fit(
        model,
        optimizer,
        task,
        loader,
        TensorBatches(x, y, batch_size=10, shuffle=False),
        TrainerConfig(epochs=5),
        device=torch.device("cpu"),
        scheduler=scheduler,
        scheduler_interval="step",
        callbacks=[CollisionRates(model, optimizer), Condensation({"0": model[0]})],
        run_dir=tmp_path,
    )
    records = read_metrics(tmp_path)[1:]  # after the initial model's record
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in records] == [4, 8, 12, 16, 20]
    assert result.final == records[-1]
    assert records[-1]["test_acc"] > 0.8
    # 4 steps per epoch, halved every 4 steps: the lr used in epoch e is 0.5 * 0.5**(e-1).
    assert [r["lr"] for r in records] == pytest.approx([0.5 * 0.5**e for e in range(5)])
    assert records[-1]["collision_rate.0"] is None


@pytest.mark.parametrize(
    "setup",
    [
        # KITINet keys its draws by its call counter (checkpointed); mini-batches reshuffle every
        # epoch; cosine LR.
        ["model=kitinet_fc", "collision=kitinet", "scheduler=cosine"],
        # KO hard collision keys its draws by its collision counter (in its state_dict); SGD momentum.
        ["collision=hard", "optimizer=sgd", "optimizer.lr=0.05"],
        # timm's warm-up + cosine, updated after every optimizer step (the ImageNet recipes).
        [
            "scheduler=cosine",
            "scheduler.interval=step",
            "scheduler.warmup_epochs=2",
            "scheduler.warmup_lr=1e-5",
            "scheduler.eta_min=1e-5",
        ],
    ],
    ids=["kitinet", "ko_hard", "warmup_cosine_per_step"],
)
def test_killed_and_resumed_run_ends_with_the_uninterrupted_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: list[str]
) -> None:
    common = [*setup, "trainer.epochs=6", "trainer.batch_size=16", "trainer.checkpoint_every=1"]
    killed, resumed, whole = kill_and_resume(tmp_path, monkeypatch, common, kill_at=4)
    assert [r["epoch"] for r in killed] == [0, 1, 2, 3]  # epoch 4 ran but was never saved
    assert [r["epoch"] for r in resumed] == list(range(7))
    assert resumed == whole  # bitwise: JSON of floats


def test_resume_without_a_checkpoint_starts_fresh(tmp_path: Path) -> None:
    run_inprocess(tmp_path / "fresh", "trainer.epochs=3", "resume=auto")
    assert [r["epoch"] for r in read_metrics(tmp_path / "fresh")] == [0, 1, 2, 3]


def test_bad_resume_value_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resume='always' is unknown; allowed: false, auto"):
        run_inprocess(tmp_path / "bad", "resume=always")


# --------------------------------------------------------------------------- nothing lost


def test_a_run_dir_holding_a_run_is_refused_unless_overwrite(tmp_path: Path) -> None:
    run_inprocess(tmp_path, "trainer.epochs=2", "trainer.checkpoint_every=1")
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run \(metrics.jsonl, summary.json"):
        run_inprocess(tmp_path, "trainer.epochs=3")
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    run_inprocess(tmp_path, "trainer.epochs=1", "overwrite=true")
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1]
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # no stale checkpoint left


def test_resume_refuses_another_config_and_names_the_keys(tmp_path: Path) -> None:
    common = ["trainer.checkpoint_every=1", "collision=hard"]
    run_inprocess(tmp_path, *common, "trainer.epochs=2")
    with pytest.raises(ConfigError, match=r"at collision.coll_coef, model.hidden; a resumed run"):
        run_inprocess(
            tmp_path,
            *common,
            "trainer.epochs=3",
            "collision.coll_coef=0.2",
            "model.hidden=20",
            "resume=auto",
        )
    run_inprocess(tmp_path, *common, "trainer.epochs=3", "trainer.log_every=1", "resume=auto")
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1, 2, 3]


def test_resume_of_a_run_without_checkpoint_refuses(tmp_path: Path) -> None:
    run_inprocess(tmp_path, "trainer.epochs=2")
    with pytest.raises(ConfigError, match=r"no checkpoint \(trainer.checkpoint_every=0\)"):
        run_inprocess(tmp_path, "trainer.epochs=3", "resume=auto")
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1, 2]


def test_a_damaged_checkpoint_names_the_file(tmp_path: Path) -> None:
    run_inprocess(tmp_path, "trainer.epochs=2", "trainer.checkpoint_every=1")
    path = tmp_path / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=rf"checkpoint {re.escape(str(path))} is damaged"):
        run_inprocess(tmp_path, "trainer.epochs=3", "resume=auto")


def test_run_files_get_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run_inprocess(tmp_path, "trainer.epochs=1", "trainer.checkpoint_every=1")
    finally:
        os.umask(old)
    for name in ("config.yaml", "summary.json", "metrics.jsonl", "checkpoints/last.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_two_runs_started_in_the_same_second_get_their_own_dirs() -> None:
    raw = OmegaConf.to_container(compose_cfg(hydra_config=True).hydra, resolve=False)
    for value in (raw["run"]["dir"], raw["sweep"]["dir"]):
        assert value.endswith("%H-%M-%S_%f}"), value  # down to the microsecond


def test_a_config_error_is_one_line_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "run.py", "collision.coll_coef=1.5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CI": "1", "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: collision.coll_coef=1.5 is outside [0, 1]"
    )


def test_probe_kitinet_modes_scores_a_finished_run_both_ways(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = ["model=kitinet_fc", "collision=kitinet", "trainer.epochs=2"]
    run_inprocess(run_dir, *common, "trainer.checkpoint_every=1")
    summary = json.loads((run_dir / "summary.json").read_text())
    out = run_py("scripts/probe_kitinet_modes.py", "--run", str(run_dir))
    off = re.search(r"eval \(KITINet off\)\s+test_loss (\S+)", out)
    on = re.search(r"KITINet colliding\s+test_loss (\S+)", out)
    assert off and on, out
    # eval mode is how the run scored itself: the same number, to the printed digits
    assert float(off.group(1)) == pytest.approx(summary["test_loss"], rel=1e-5)
    rate = re.search(r"collision rate residual: (\S+)%", out)
    assert rate and 0 < float(rate.group(1)) <= 100, out
    assert float(on.group(1)) != float(off.group(1))  # some pairs collided: another loss

    # a run that kept no checkpoint: one line naming the missing file
    bare = tmp_path / "bare"
    run_inprocess(bare, *common)
    proc = subprocess.run(
        [sys.executable, "scripts/probe_kitinet_modes.py", "--run", str(bare)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "last.pt does not exist" in proc.stderr
