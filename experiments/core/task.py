"""The :class:`Task` protocol: what a data set tells the runner and the training loop.

A domain's dataset builder (registered in :data:`~experiments.core.registry.DATASETS`) returns a
Task. The runner and the loop speak only this protocol, so they never ask what kind of data they
hold: a new domain is a folder whose tasks implement it.

Batches are whatever the task's loaders yield: a tuple ``(inputs, targets)`` or a mapping (a
transformers-style ``dict`` with ``labels``); :func:`split_batch` and :func:`call_model` are the
loop's only assumptions about them. Losses and metrics are means over the batch's units, and the
loop weights them by :meth:`Task.units` when it averages over batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from experiments.core.io import file_digests

__all__ = [
    "LossFn",
    "MetricFn",
    "Task",
    "TaskDefaults",
    "call_model",
    "logits_of",
    "split_batch",
]

LossFn = Callable[[Any, Any], Tensor]
MetricFn = Callable[[Any, Any], Tensor]


@runtime_checkable
class Task(Protocol):
    """A data set with its loaders, losses and metrics, and what it asks of the model."""

    train_loss: LossFn
    """``train_loss(outputs, targets)``: the mean training loss of a batch."""
    eval_loss: LossFn
    """The test loss (e.g. plain cross-entropy when training uses soft targets)."""

    @property
    def metric_fns(self) -> Mapping[str, MetricFn]:
        """Test metrics ``fn(outputs, targets)`` -> batch mean, logged as ``test_<name>``."""
        ...

    def loaders(
        self,
        batch_size: int | None,
        *,
        seed: int,
        num_workers: int,
        pin_memory: bool,
        shuffle: bool,
    ) -> tuple[Iterable[Any], Iterable[Any]]:
        """``(train batches, test batches)``; the train iterable may have ``state_dict`` /
        ``load_state_dict`` (checkpointed) and ``set_epoch``."""
        ...

    def model_kwargs(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The model builder's arguments completed from the data (classes, channels, ...)."""
        ...

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Raise ConfigError if the built model cannot take this data."""
        ...

    def units(self, inputs: Any, targets: Any) -> int:
        """How many units (rows, tokens, points) a batch's mean loss averages over."""
        ...

    def model_stats(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Domain-specific facts about the model for ``summary.json`` (e.g. a paper's FLOP
        convention; ``units_per_sample`` turns FLOPs per sample into FLOPs per unit)."""
        ...

    def data_digests(self) -> dict[str, str]:
        """``{file name: sha256}`` of what the data were read from on disk (generated or
        downloaded), recorded in ``summary.json`` so a rerun can tell whether it read the same
        bytes. Empty for data made in memory from the config and seed."""
        ...

    def export(
        self, model: nn.Module, directory: Path, state_dict: Mapping[str, Any] | None = None
    ) -> bool:
        """Write the trained model in its ecosystem's format (e.g. ``save_pretrained``) into
        ``directory``, with ``state_dict`` as its weights when given (an FSDP model's gathered
        shards); False if the domain has none."""
        ...


class TaskDefaults:
    """Defaults of the optional parts of :class:`Task` for a domain's task class to inherit."""

    def model_kwargs(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The model config's arguments as they are."""
        del model_name
        return dict(kwargs)

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Nothing to check."""
        del model, model_name

    def model_stats(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """None."""
        del model_name, kwargs
        return {}

    files: Sequence[Path] = ()
    """The files or directories the data were read from (a domain's dataclass sets them)."""

    def data_digests(self) -> dict[str, str]:
        """The sha256 of every file in ``files`` (:func:`~experiments.core.io.file_digests`)."""
        return file_digests(self.files)

    def export(
        self, model: nn.Module, directory: Path, state_dict: Mapping[str, Any] | None = None
    ) -> bool:
        """None (the run dir's checkpoint and weights are the model)."""
        del model, directory, state_dict
        return False

    def units(self, inputs: Any, targets: Any) -> int:
        """Rows: the first dimension of the targets (1 for a scalar target)."""
        del inputs
        if isinstance(targets, Tensor) and targets.dim() > 0:
            return int(targets.shape[0])
        return 1


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch: a tuple's two items, or a mapping and its ``labels``."""
    if isinstance(batch, Mapping):
        return batch, batch.get("labels")
    inputs, targets = batch
    return inputs, targets


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a mapping (transformers style), else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def logits_of(outputs: Any) -> Any:
    """The logits of a model output object (``.logits``, transformers' ModelOutput), else itself."""
    return getattr(outputs, "logits", outputs)
