"""Checkpoints: everything a killed run needs to continue bit-identically, as plain containers.

A checkpoint holds only dicts, lists, numbers and tensors, so it loads with
``torch.load(weights_only=True)``: the model, the optimizer (a KineticOptimizer's generator
included), the scheduler and grad scaler, every RNG state (Python, NumPy, torch CPU/CUDA) and the
KITINet modules' call counters (their random streams are keyed by them; not in the model's
``state_dict``), the training iterable's state at the start of the
current epoch and how many of its batches were consumed, the callbacks' running sums, the
records so far and the external logger's run id.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from experiments.core.errors import ConfigError
from experiments.core.io import atomic_torch_save
from kinetics.kitinet import kitinet_state, load_kitinet_state

__all__ = [
    "CHECKPOINT_NAME",
    "DamagedCheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_random_state",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_NAME = "checkpoints/last.pt"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as plain containers and tensors."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, contents: Mapping[str, Any], model: nn.Module) -> None:
    """Write ``contents`` plus the random state (global RNGs, ``model``'s KITINet call counters)
    atomically."""
    atomic_torch_save(
        path, {**contents, "rng": capture_rng_state(), "kitinet_calls": kitinet_state(model)}
    )


class DamagedCheckpointError(ConfigError):
    """A checkpoint file that cannot be read; the message names it and what to do."""


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` (tensors on the CPU; saved on a GPU or not).

    Raises:
        DamagedCheckpointError: the file is truncated or corrupt.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (EOFError, OSError, RuntimeError, ValueError, pickle.UnpicklingError) as err:
        raise DamagedCheckpointError(
            f"checkpoint {path} is damaged or truncated ({type(err).__name__}: {err}); move it "
            "away to resume from nothing, or start the run again with overwrite=true"
        ) from err
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise DamagedCheckpointError(f"checkpoint {path} holds no training state")
    return checkpoint


def restore_random_state(checkpoint: Mapping[str, Any], model: nn.Module) -> None:
    """Set the global RNG states and the KITINet call counters saved by :func:`save_checkpoint`."""
    load_kitinet_state(model, checkpoint.get("kitinet_calls", {}))
    restore_rng_state(checkpoint["rng"])
