"""Helpers shared by the test modules: composing configs and running the runner in-process.

Test modules import from here (never from one another); pytest fixtures live in conftest.py.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import experiments.core.config  # noqa: F401  (registers the schema options Hydra composes)
from experiments.engine.callbacks import Callback, LoopState

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
MEASURED = (
    "epoch_time",
    "interval_time",
    "peak_memory_mb",
    "throughput",
    "flops_per_s",
    "mfu",
)  # machine measurements, not results


def compose_cfg(*overrides: str, hydra_config: bool = False) -> DictConfig:
    """The composed top-level config with ``overrides``, as a Hydra job sees it.

    Hydra's job state (``HydraConfig``: the chosen experiment names the run) is set as ``run.py``
    would set it; ``hydra_config`` keeps the ``hydra`` section in the returned config.
    """
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    if not hydra_config:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


def run_inprocess(out_dir: Path, *overrides: str) -> float:
    """Compose the config with ``overrides`` and call ``run`` with ``out_dir`` as the run dir."""
    from experiments.runner import run

    cfg = compose_cfg(*overrides, f"paths.output_dir={out_dir}", "trainer.progress=false")
    return run(cfg)


def run_py(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``python *args`` from the repository root; return stderr+stdout, fail loudly."""
    full_env = {
        **os.environ,
        "CI": "1",
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stderr + proc.stdout
    assert proc.returncode == 0, output[-5000:]
    return output


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``run_dir/metrics.jsonl``."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_times(records: list[dict]) -> list[dict]:
    """Records without the machine measurements (times, memory, throughput)."""
    return [{k: v for k, v in r.items() if k not in MEASURED} for r in records]


class _Killed(Exception):
    """Stands in for a job killed mid-epoch."""


def kill_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: list[str], *, kill_at: int
) -> tuple[list[dict], list[dict], list[dict]]:
    """Run ``overrides`` uninterrupted in ``whole/``; run it again in ``killed/``, killed at the
    end of epoch ``kill_at`` (after its record, before its checkpoint), then continue it there with
    ``resume=auto``. Returns the killed run's records before the resume, then the resumed and the
    uninterrupted records without machine measurements (times, memory)."""

    import experiments.runner as runner

    run_inprocess(tmp_path / "whole", *overrides)
    real_fit = runner.fit

    class Kill(Callback):
        def on_record(self, state: LoopState, record: dict) -> None:
            if record["epoch"] == kill_at:
                raise _Killed

    monkeypatch.setattr(
        runner, "fit", lambda *a, **k: real_fit(*a, **{**k, "callbacks": [*k["callbacks"], Kill()]})
    )
    with pytest.raises(_Killed):
        run_inprocess(tmp_path / "killed", *overrides)
    monkeypatch.setattr(runner, "fit", real_fit)
    killed = read_metrics(tmp_path / "killed")
    checkpoint = torch.load(
        tmp_path / "killed" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True
    )
    assert checkpoint["epoch"] == kill_at - 1
    run_inprocess(tmp_path / "killed", *overrides, "resume=auto")
    resumed = without_times(read_metrics(tmp_path / "killed"))
    return killed, resumed, without_times(read_metrics(tmp_path / "whole"))


def write_run(
    root: Path,
    name: str,
    *,
    seed: int,
    summary: dict[str, Any],
    activation: str = "tanh",
    collision: str = "none",
    model: str = "mlp",
    weights: dict[str, torch.Tensor] | None = None,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """A run directory in the runner's layout: config.yaml, summary.json, metrics.jsonl, weights."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "seed": seed,
        "model": {"name": model, "activation": activation},
        "collision": {"name": collision, "coll_coef": 0.5},
        "trainer": {"watch": ["hidden"], "epochs": 3},
        "paths": {"output_dir": str(run)},
        **(extra_config or {}),
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    full_summary = {"seed": seed, "git_commit": "abc1234", "command": "python run.py", **summary}
    (run / "summary.json").write_text(json.dumps(full_summary))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "train_loss": 1.0}) + "\n")
    if weights is not None:
        torch.save(weights, run / "weights_final.pt")
    return run


def table_rows(text: str, section: str) -> dict[str, list[str]]:
    """``{first cell: cells}`` of the markdown table under the heading ``## {section}``."""
    block = text.split(f"## {section}")[1].split("\n## ")[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in block.splitlines()
        if line.startswith("|")
    ]
    return {row[0]: row[1:] for row in rows[2:]}


def render(name: str, runs: Path, out: Path) -> list[Path]:
    """Run the renderer ``name`` of :data:`~experiments.core.registry.REPORTS` on ``runs`` into
    ``out``, with the command line ``scripts/render.py`` would record; return the files written."""
    import experiments.reports.all  # noqa: F401  (registers every renderer)
    from experiments.core.registry import REPORTS

    args = [name, "--runs", str(runs), "--out", str(out)]
    return REPORTS.get(name)(runs, out, shlex.join(["python", "scripts/render.py", *args]))


def render_cli(*argv: str) -> tuple[int, str, str]:
    """``scripts/render.py *argv`` in this process: (exit status, stdout, stderr).

    The script is loaded from its file (``scripts/`` is no package); a ``SystemExit`` (argparse)
    gives its code. Paths in ``argv`` are relative to the current directory, as for the CLI.
    """
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("render_cli", REPO / "scripts" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = module.main(list(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, stdout.getvalue(), stderr.getvalue()


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_torchrun(*args: str, timeout: float = 600) -> None:
    """``run.py *args`` on 2 gloo ranks of one thread each, offline; fails with the output's tail."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "run.py",
        *args,
    ]
    env = {
        **os.environ,
        "CI": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
