"""The process a run trains in: seeds, device, precision, progress bars, moving batches, and the
facts about it that a run's numbers depend on (:func:`environment`)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import random
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "autocast",
    "environment",
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


# Packages whose kernels or data handling can change a run's numbers; those installed are recorded.
_RECORDED_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "timm",
    "transformers",
    "tokenizers",
    "datasets",
    "hydra-core",
)
# Environment variables that select kernels or thread counts, recorded when set.
_RECORDED_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_NUM_THREADS",
    "OMP_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
)


def environment(device: torch.device) -> dict[str, Any]:
    """What besides the code, the config and the data a run's numbers depend on.

    The same commit, config and seed give bit-identical runs only on the same package versions,
    thread count and kernels: a CPU's vector extension (``cpu_capability``, which ATen and MKL
    pick per machine) changes the rounding of reductions and matmuls, and training amplifies
    the last bit into the 3rd or 4th digit of a final metric.
    """
    packages = {}
    for name in _RECORDED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "packages": packages,
        "device": str(device),
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        facts["device_name"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda
    variables = {k: os.environ[k] for k in _RECORDED_VARIABLES if k in os.environ}
    if variables:
        facts["variables"] = variables
    return facts


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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
