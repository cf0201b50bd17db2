"""Data orders that depend on (seed, epoch) only, sharded over DDP ranks: the samplers and
loaders every domain with a map-style ``Dataset`` uses (image and text classification)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["EpochDataLoader", "SeededSampler", "dist_world", "mix_seed"]


def mix_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed from ``(seed, epoch)``; unlike ``seed + epoch``, seeds 0 and 1 do not share
    shifted orders."""
    entropy = [seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]) >> 1


def dist_world() -> tuple[int, int] | None:
    """``(world_size, rank)`` when ``torch.distributed`` is initialised, else None."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return None


class SeededSampler(DistributedSampler):
    """A ``DistributedSampler`` whose permutation is drawn from a generator seeded with
    ``(seed, epoch)`` (mixed, see :func:`_mix_seed`); with ``num_replicas=1`` it is a plain seeded
    random (or sequential) sampler.

    As with any ``DistributedSampler``, call ``set_epoch(epoch)`` before each epoch
    (:class:`EpochDataLoader` does it), otherwise every epoch has the same order. Ranks share the
    permutation and take every ``num_replicas``-th index; without ``drop_last`` the permutation is
    padded by wrapping around so every rank gets the same number of samples.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.start = 0
        """Samples of this rank the next ``iter()`` leaves out at its start (then reset to 0): a
        resumed run's jump into the epoch."""

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            indices = torch.randperm(n, generator=gen).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[: self.total_size]
        elif self.total_size > n:
            pad = self.total_size - n
            indices += (indices * (pad // n + 1))[:pad]
        start, self.start = self.start, 0
        own = indices[self.rank : self.total_size : self.num_replicas]
        return iter(own[start:])


class EpochDataLoader(DataLoader):
    """A DataLoader whose batches depend on ``(seed, epoch)`` only.

    Each ``iter()`` sets the sampler's epoch and reseeds the generator that draws the workers'
    base seed, then advances ``epoch``; a resumed run calls ``set_epoch(first_epoch)`` once.
    Workers are not persistent, so their seeds really are re-drawn every epoch.
    """

    def __init__(self, dataset: Dataset, *, seed: int, **kwargs: Any) -> None:
        super().__init__(dataset, generator=torch.Generator(), persistent_workers=False, **kwargs)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next ``iter()`` produces."""
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        """What a checkpoint needs to continue the same batch sequence: the next epoch."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(int(state["epoch"]))

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(self.epoch)
        assert self.generator is not None
        # Offset the stream from the sampler's so order and augmentation draws are unrelated.
        self.generator.manual_seed(mix_seed(self.seed + 0x5EED, self.epoch))
        self.epoch += 1
        return super().__iter__()
