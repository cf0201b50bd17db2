"""The SLURM launcher config: `hydra/launcher=submitit_slurm` picks ours (configs/hydra/launcher/),
which is complete (every field of the plugin's schema) and instantiates the plugin's launcher."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/submitit_slurm' is validated")
def test_submitit_slurm_is_ours_and_complete() -> None:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher.timeout_min == 1440 and launcher.gpus_per_node == 1  # our values
    assert launcher.partition == "gpu"
    schema = {f.name for f in dataclasses.fields(SlurmQueueConf)}
    assert set(launcher) == schema  # nothing missing, nothing unknown to the plugin
    # The values type-check against the plugin's schema.
    OmegaConf.merge(OmegaConf.structured(SlurmQueueConf), OmegaConf.to_container(launcher))
    module, _, name = launcher._target_.rpartition(".")
    assert hasattr(__import__(module, fromlist=[name]), name)
