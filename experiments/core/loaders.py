"""Data sets that fit in memory: :class:`TensorBatches` and the task :class:`TensorTask`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from experiments.core.task import LossFn, MetricFn, TaskDefaults

__all__ = ["TensorBatches", "TensorTask"]


class TensorBatches:
    """Iterate over ``(x, y)`` batches of in-memory tensors.

    Args:
        x, y: tensors with the same first dimension; ``x`` may be a tuple of such tensors (e.g.
            a mesh model's ``(values, coords)``), batched alike.
        batch_size: None (or >= len) for one full batch per pass.
        shuffle: reshuffle at every pass (ignored for full batches, whose order does not matter
            for a mean loss).
        seed: seed of the shuffling generator.
    """

    def __init__(
        self,
        x: Tensor | tuple[Tensor, ...],
        y: Tensor,
        batch_size: int | None,
        *,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        rows = {int(t.shape[0]) for t in (x if isinstance(x, tuple) else (x,))}
        if len(rows) != 1 or rows != {int(y.shape[0])}:
            raise ValueError(f"x and y have different row counts: {sorted(rows)} and {y.shape[0]}")
        self.x, self.y = x, y
        n = int(y.shape[0])
        self.batch_size = n if batch_size is None else min(batch_size, n)
        self.shuffle = shuffle and self.batch_size < n
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-int(self.y.shape[0]) // self.batch_size)

    def state_dict(self) -> dict[str, Tensor]:
        """The shuffling generator's state, so a resumed run draws the same batch orders."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def __iter__(self) -> Iterator[tuple[Any, Tensor]]:
        n = int(self.y.shape[0])
        if self.batch_size == n:
            yield self.x, self.y
            return
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if isinstance(self.x, tuple):
                yield tuple(t[idx] for t in self.x), self.y[idx]
            else:
                yield self.x[idx], self.y[idx]


@dataclass
class TensorTask(TaskDefaults):
    """Train / test tensors in memory, a loss (default MSE) and test metrics (default none)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    train_loss: LossFn = field(default_factory=nn.MSELoss)
    eval_loss: LossFn = field(default_factory=nn.MSELoss)
    metric_fns: dict[str, MetricFn] = field(default_factory=dict)

    def loaders(
        self,
        batch_size: int | None,
        *,
        seed: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        shuffle: bool = True,
    ) -> tuple[TensorBatches, TensorBatches]:
        """Full batches (``batch_size`` None) or mini-batches reshuffled from ``seed``."""
        del num_workers, pin_memory  # the tensors are in memory already
        train = TensorBatches(self.x_train, self.y_train, batch_size, shuffle=shuffle, seed=seed)
        test = TensorBatches(self.x_test, self.y_test, batch_size, shuffle=False)
        return train, test
