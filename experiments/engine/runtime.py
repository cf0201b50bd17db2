"""The process a run trains in: seeds, device, precision, progress bars, moving batches."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "autocast",
    "float32",
    "progress_enabled",
    "resolve_device",
    "seed_everything",
    "to_device",
]


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` use deterministic algorithms.

    On CPU the same seed then gives bit-identical runs. On CUDA, ops without a deterministic
    implementation only warn (``warn_only``) instead of failing.
    """
    random.seed(seed)
    # The legacy global RNG is what third-party code calling np.random.* uses; seed it too.
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)
    if deterministic:
        # Must be set before cuBLAS initialises for deterministic CUDA matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else is passed to torch."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={spec!r} but CUDA is not available; use cpu or auto")
    return device


def progress_enabled(setting: bool | str) -> bool:
    """Progress bars: explicit ``True``/``False``, or ``"auto"``: on only in an interactive
    terminal and never under CI (``$CI`` set)."""
    if setting == "auto":
        return not os.environ.get("CI") and sys.stderr.isatty()
    return bool(setting)


def to_device(obj: Any, device: torch.device, *, channels_last: bool = False) -> Any:
    """Tensors in ``obj`` (nested tuples, lists, mappings) moved to ``device``; 4-D ones in
    channels-last memory format when asked."""
    if isinstance(obj, Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4:
            return obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, channels_last=channels_last) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device, channels_last=channels_last) for v in obj)
    return obj


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` in bfloat16 / float16 for ``precision`` bf16 / fp16; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def float32(outputs: Any) -> Any:
    """Autocast outputs (bf16 / fp16 logits) as float32, so losses and metrics are float32.

    Output objects with ``logits`` (transformers' ModelOutput) keep their type; their logits are
    converted in place of the attribute.
    """
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, Tensor) and logits.is_floating_point():
        outputs.logits = logits.float()
    return outputs
