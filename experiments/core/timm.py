"""``import_timm``: import timm (or a submodule) without letting it import wandb.

timm's utilities import wandb whenever it is installed (for timm's own summary helpers, which we
never use), which costs ~0.7 s and loads wandb into runs with ``logger=none``. Hiding wandb while
timm is first imported makes timm record "no wandb"; a later ``import wandb`` (``logger=wandb``)
still works. Every import of timm in ``experiments`` goes through here, since only the first one
in a process decides.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["import_timm"]


def import_timm(module: str = "timm") -> ModuleType:
    """``importlib.import_module(module)`` with wandb hidden if it is not imported yet."""
    hidden = "wandb" not in sys.modules
    if hidden:
        sys.modules["wandb"] = None  # type: ignore[assignment]  # makes `import wandb` fail
    try:
        return importlib.import_module(module)
    finally:
        if hidden and sys.modules.get("wandb", 0) is None:
            del sys.modules["wandb"]
