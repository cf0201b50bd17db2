"""Run-directory writers and the optional Weights & Biases logger.

Every run directory gets (written by the runner through these helpers):

* ``metrics.jsonl``: one JSON object per epoch, flat keys (``train_loss``, ``rho.fc1``, ...);
* ``config.yaml``: the resolved configuration;
* ``summary.json``: final metrics, seed, git commit, command line, wall time, ``environment``
  (package versions, device, CPU kernels, thread count) and ``data_sha256`` (the data files read)
  (written last, so its presence means the run finished);
* ``weights_final.pt`` and ``heatmap_<layer>.png`` for the watched layers.

JSON, YAML and ``.pt`` files are written atomically (temporary file + ``os.replace``), so a reader
never sees half a file. ``wandb`` is imported only by :class:`WandbLogger`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.core.io import atomic_write_text, json_safe

__all__ = [
    "MetricsWriter",
    "NullLogger",
    "RunLogger",
    "WandbLogger",
]


class MetricsWriter:
    """Appends one strict-JSON line per record to ``metrics.jsonl``.

    Opening it rewrites the file with ``initial`` records (none for a new run; the records up to
    the checkpoint for a resumed one, so lines of epochs that are about to be redone vanish).
    """

    def __init__(self, path: Path, initial: list[Mapping[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(json_safe(r), allow_nan=False) + "\n" for r in initial or []]
        atomic_write_text(self.path, "".join(lines))

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line and flush it to disk."""
        line = json.dumps(json_safe(record), allow_nan=False)
        with self.path.open("a") as f:
            f.write(line + "\n")


class RunLogger:
    """Interface of the external loggers: per-epoch metrics, images, and finishing the run."""

    def log_metrics(self, record: Mapping[str, Any], step: int) -> None:
        """Log one epoch's metrics."""

    def log_image(self, key: str, path: Path) -> None:
        """Log the image file at ``path`` under ``key``."""

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Record the final summary."""

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (one external run per Hydra job)."""

    @property
    def run_id(self) -> str | None:
        """The external run's id, saved in checkpoints so a resumed job continues that run."""
        return None


class NullLogger(RunLogger):
    """``logger=none``: the run directory is the only record."""


class WandbLogger(RunLogger):
    """``logger=wandb``: one W&B run per job, offline unless ``$WANDB_MODE`` says otherwise."""

    def __init__(
        self,
        *,
        project: str,
        name: str,
        group: str | None,
        tags: list[str],
        config: Mapping[str, Any],
        run_dir: Path,
        run_id: str | None = None,
    ) -> None:
        """``run_id``: continue that W&B run (a resumed job passes its checkpoint's id)."""
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            name=name,
            group=group,
            tags=list(tags) or None,
            config=dict(config),
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            # In a Hydra multirun all jobs share one process: close any run left open.
            reinit="finish_previous",
            id=run_id,
            resume="allow" if run_id else None,
        )

    def log_metrics(self, record: Mapping[str, Any], step: int) -> None:
        values = {
            k: v for k, v in record.items() if v is not None and not isinstance(v, str | bool)
        }
        self.run.log(values, step=step)

    def log_image(self, key: str, path: Path) -> None:
        self.run.log({key: self._wandb.Image(str(path))})

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        for key, value in summary.items():
            if value is not None:
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)

    @property
    def run_id(self) -> str | None:
        return str(self.run.id)
