"""Run one experiment (or a sweep with ``--multirun``) from the Hydra configs in ``configs/``.

    python run.py                                    # KO Fig. 2 setting, soft collision
    python run.py collision=hard model.activation=xtanh
    python run.py -m experiment=ko/fig2 seed=0,1,2   # the whole figure
    python run.py --cfg job                          # print the composed config

Each job writes metrics.jsonl, summary.json, config.yaml, weights_final.pt and heat maps to its
own directory (outputs/... or multirun/.../<job number>).
"""

from __future__ import annotations

import sys
import warnings

import hydra
from omegaconf import DictConfig

import experiments.core.config  # noqa: F401  (the groups' schema options, the name resolver)
from experiments.core.errors import ConfigError

# configs/hydra/launcher/submitit_slurm.yaml completes the plugin's config of the same name, so
# Hydra validates it against the plugin's schema: wanted, but Hydra warns that this is deprecated.
warnings.filterwarnings(
    "ignore", message=r"(?s)\s*.hydra/launcher/submitit_slurm. is validated against"
)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the final test loss (so sweepers can minimise it)."""
    # Imported here so `--help`, `--cfg` and tab completion stay fast.
    from experiments.runner import run

    try:
        return run(cfg)
    except ConfigError as err:
        # A configuration or data error is one sentence for the user, not a traceback; any
        # other exception keeps its traceback. SystemExit passes through Hydra's job runner.
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
