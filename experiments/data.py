"""Dataset registry and the papers' synthetic regression data set.

``@register_dataset`` registers a builder returning a :class:`DatasetBundle` (train and test sets
plus the loss that goes with them); ``create_dataset(name, **kwargs)`` calls it.
:class:`TensorBatches` iterates over in-memory tensors in full or shuffled mini-batches, with its
own generator so data order never depends on other random draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from experiments.config import ConfigError

__all__ = [
    "DatasetBundle",
    "TensorBatches",
    "create_dataset",
    "get_builder",
    "list_datasets",
    "register_dataset",
    "sin5d",
]


@dataclass
class DatasetBundle:
    """In-memory train / test tensors and the name of their loss (``"mse"`` or ``"cross_entropy"``)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    loss: str


_DATASETS: dict[str, Callable[..., DatasetBundle]] = {}


def register_dataset(fn: Callable[..., DatasetBundle]) -> Callable[..., DatasetBundle]:
    """Decorator: register ``fn`` as the builder of the data set named ``fn.__name__``."""
    name = fn.__name__
    if name in _DATASETS and _DATASETS[name] is not fn:
        raise ValueError(f"dataset {name!r} is already registered")
    _DATASETS[name] = fn
    return fn


def list_datasets() -> list[str]:
    """Names of all registered data sets, sorted."""
    return sorted(_DATASETS)


def get_builder(name: str) -> Callable[..., DatasetBundle]:
    """The builder registered as ``name``."""
    if name not in _DATASETS:
        raise ConfigError(
            f"dataset.name={name!r} is unknown; registered datasets: {', '.join(list_datasets())}"
        )
    return _DATASETS[name]


def create_dataset(name: str, **kwargs: object) -> DatasetBundle:
    """Build the registered data set ``name`` with ``kwargs``."""
    return get_builder(name)(**kwargs)


@register_dataset
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
) -> DatasetBundle:
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
    return DatasetBundle(x_train, y_train, x_test, y_test, loss="mse")


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


# The image and PDE data sets (experiments/vision/data.py, experiments/pde/data.py) register
# themselves with `register_dataset` when imported; importing them here makes the registry the same
# whichever module is imported first.
import experiments.pde.data  # noqa: E402
import experiments.vision.data  # noqa: E402, F401
