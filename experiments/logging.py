"""Run-directory writers and the optional Weights & Biases logger.

Every run directory gets (written by the runner through these helpers):

* ``metrics.jsonl``: one JSON object per epoch, flat keys (``train_loss``, ``rho.fc1``, ...);
* ``config.yaml``: the resolved configuration;
* ``summary.json``: final metrics, seed, git commit, command line and wall time (written last, so
  its presence means the run finished);
* ``weights_final.pt`` and ``heatmap_<layer>.png`` for the watched layers.

JSON, YAML and ``.pt`` files are written atomically (temporary file + ``os.replace``), so a reader
never sees half a file. ``wandb`` is imported only by :class:`WandbLogger`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MetricsWriter",
    "NullLogger",
    "RunLogger",
    "WandbLogger",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "git_commit",
    "json_safe",
]


def atomic_write(path: Path, write: Any, mode: str = "wb") -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text), "w")


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (NaN/inf become null) atomically."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f), "wb")


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


def git_commit(directory: str | os.PathLike[str] | None = None) -> str:
    """HEAD's commit of the repository holding ``directory`` (default: this package).

    A tree with uncommitted changes to tracked files gets the suffix ``" (with uncommitted
    changes)"``, so a result is never attributed to a commit that did not produce it; outside a
    git checkout the answer is ``"unknown"``. Read-only: ``--no-optional-locks`` keeps
    ``git status`` from rewriting the index.
    """
    directory = Path(directory or Path(__file__).resolve().parent)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        dirty = False
    return f"{commit} (with uncommitted changes)" if dirty else commit


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
