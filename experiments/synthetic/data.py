"""The papers' synthetic regression data (KO §4.1, KITINet §5.7) as an in-memory task."""

from __future__ import annotations

import torch
from torch import Tensor

from experiments.core.errors import ConfigError
from experiments.core.loaders import TensorTask
from experiments.core.registry import DATASETS

__all__ = ["sin5d"]


@DATASETS.register
def sin5d(
    n_train: int = 80,
    n_test: int = 1000,
    dim: int = 5,
    low: float = -4.0,
    high: float = 2.0,
    amplitude: float = 3.5,
    frequency: float = 5.0,
    phase: float = 1.0,
    seed: int = 0,
) -> TensorTask:
    """KO §4.1 / KITINet §5.7: ``y = sum_k amplitude * sin(frequency * x_k + phase)``.

    ``x ~ U[low, high]^dim``; ``n_train`` then ``n_test`` points are drawn from a generator seeded
    with ``seed`` (the data set's own seed), so the data stay fixed across run seeds. Targets have
    shape ``(n, 1)``; the loss is the mean squared error.
    """
    for key, value in (("n_train", n_train), ("n_test", n_test), ("dim", dim)):
        if value < 1:
            raise ConfigError(f"dataset.{key}={value} must be >= 1")
    if not high > low:
        raise ConfigError(f"dataset.low={low} must be < dataset.high={high}")
    gen = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        x = low + (high - low) * torch.rand(n, dim, generator=gen)
        y = (amplitude * torch.sin(frequency * x + phase)).sum(dim=1, keepdim=True)
        return x, y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return TensorTask(x_train, y_train, x_test, y_test)
