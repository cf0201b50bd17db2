"""Language-model data: packed token shards cut into windows, and what training a causal LM needs.

A data set is a directory written by ``scripts/prepare_lm_data.py`` (format:
:mod:`experiments.lm.shards`): the ``train`` and ``val`` splits as token files, every document
followed by EOS. Each split, its shards read as one sequence, is cut into consecutive windows of
``seq_len + 1`` tokens (inputs and next-token targets; neighbours share one token), documents
packed across window boundaries as in GPT-2 / nanoGPT training.

Order: the train windows are permuted by a generator keyed by ``(seed, epoch)`` and dealt to the
DDP ranks in turn (:class:`~experiments.core.sampling.SeededSampler`), so ranks never see the
same window in an epoch, and the batch at optimizer step k depends on nothing but (seed, k,
rank): a run resumed at step k jumps straight there (:meth:`WindowLoader.skip_batches`, no
reading of the skipped windows) and sees exactly the tokens an uninterrupted run sees. nanoGPT's
sampler, which draws random offsets from the global RNG, can do neither. The validation windows
are read in order; ``eval_tokens`` caps how many (the same prefix for every run and rank).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from experiments.core.errors import ConfigError
from experiments.core.hf_models import load_tokenizer
from experiments.core.registry import DATASETS, MODELS
from experiments.core.sampling import EpochDataLoader, SeededSampler, dist_world
from experiments.core.task import MetricFn, TaskDefaults, logits_of
from experiments.lm.shards import TokenSplit, read_index

__all__ = ["LMData", "TokenWindows", "WindowLoader", "lm_cross_entropy", "lm_tokens"]


def lm_cross_entropy(outputs: Any, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy over all target tokens, computed in float32."""
    logits = logits_of(outputs)
    return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten())


class Perplexity:
    """``exp`` of the mean token cross-entropy: per batch the cross-entropy (a per-token mean,
    as the loop expects), over the split :meth:`finalize` exponentiates the weighted mean."""

    def __call__(self, outputs: Any, targets: Tensor) -> Tensor:
        return lm_cross_entropy(outputs, targets)

    def finalize(self, mean_loss: Tensor) -> float:
        return math.exp(float(mean_loss))


class TokenWindows(Dataset):
    """Windows ``i`` of ``seq_len + 1`` tokens starting at ``i * seq_len`` of a split (its shards
    read as one sequence, :class:`~experiments.lm.shards.TokenSplit`), within its first
    ``max_tokens``: ``(inputs, targets)`` int64 tensors of ``seq_len`` each."""

    def __init__(self, split: TokenSplit, seq_len: int, max_tokens: int | None = None):
        if seq_len < 1:
            raise ConfigError(f"dataset.seq_len={seq_len} must be >= 1")
        self.split = split
        self.seq_len = seq_len
        self.tokens = len(split) if max_tokens is None else min(len(split), max_tokens)
        self.length = max(0, (self.tokens - 1) // seq_len)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"window {index} of {self.length}")
        window = self.split.window(index * self.seq_len, self.seq_len + 1).astype(np.int64)
        tokens = torch.from_numpy(window)
        return tokens[:-1], tokens[1:]


class WindowLoader(EpochDataLoader):
    """The train loader: an :class:`EpochDataLoader` of windows that can skip batches without
    reading them (windows involve no random transform, so skipping changes nothing else)."""

    def skip_batches(self, count: int) -> None:
        """Make the next ``iter()`` start after its first ``count`` batches."""
        sampler = self.sampler
        assert isinstance(sampler, SeededSampler) and self.batch_size is not None
        sampler.start = count * self.batch_size


@dataclass
class LMData(TaskDefaults):
    """A packed token data set: train / validation windows, its tokenizer and vocabulary."""

    train: TokenWindows
    val: TokenWindows
    vocab_size: int
    eos_id: int
    tokenizer: str
    directory: Path

    train_loss = staticmethod(lm_cross_entropy)
    eval_loss = staticmethod(lm_cross_entropy)

    @property
    def metric_fns(self) -> dict[str, MetricFn]:
        """``perplexity`` (of the validation split, logged as ``test_perplexity``)."""
        return {"perplexity": Perplexity()}

    def units(self, inputs: Any, targets: Any) -> int:
        """Target tokens: the loss is a per-token mean."""
        return int(targets.numel())

    def data_digests(self) -> dict[str, str]:
        """The shards' sha256 as ``index.json`` records them (written with each shard and checked
        by :func:`experiments.lm.shards.verify`): hashing tens of GB of tokens in every run would
        cost minutes. ``index.json`` itself is left out: it also records when it was written."""
        index = read_index(self.directory)
        return {
            f"{self.directory.name}/{shard['file']}": shard["sha256"]
            for split in index["splits"].values()
            for shard in split["shards"]
        }

    def loaders(
        self,
        batch_size: int | None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> tuple[WindowLoader, DataLoader]:
        """``(train windows in (seed, epoch) order dealt to the ranks, validation windows)``."""
        if batch_size is None or batch_size < 1:
            raise ConfigError(
                f"trainer.batch_size={batch_size} does not fit LM data; set the sequences per "
                "batch and process, e.g. trainer.batch_size=8"
            )
        replicas, rank = dist_world() or (1, 0)
        sampler = SeededSampler(
            self.train, seed=seed, shuffle=shuffle, num_replicas=replicas, rank=rank, drop_last=True
        )
        common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
        train = WindowLoader(
            self.train, seed=seed, batch_size=batch_size, sampler=sampler, drop_last=True, **common
        )
        val = DataLoader(
            self.val, batch_size=batch_size, sampler=SequentialSampler(self.val), **common
        )
        return train, val

    def model_kwargs(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``vocab_size`` and ``eos_id`` from the data; a model without them is not a language
        model."""
        if "vocab_size" not in MODELS.parameters(model_name):
            raise ConfigError(
                f"model={model_name} cannot take token data; use a language model such as gpt2"
            )
        return {**kwargs, "vocab_size": self.vocab_size, "eos_id": self.eos_id}

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Every token id has an embedding row and every position a position."""
        rows = model.get_input_embeddings().num_embeddings  # type: ignore[operator]
        if rows < self.vocab_size:
            raise ConfigError(
                f"model={model_name} embeds {rows} token ids but the data's tokenizer "
                f"({self.tokenizer}) has {self.vocab_size}; prepare the data with the model's "
                "tokenizer"
            )
        config = getattr(model, "config", None)
        positions = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        )
        if positions is not None and self.train.seq_len > positions:
            raise ConfigError(
                f"dataset.seq_len={self.train.seq_len} exceeds model={model_name}'s "
                f"{positions} positions"
            )

    def model_stats(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``units_per_sample``: the tokens of one window (turns the FLOPs of one sample into
        FLOPs per token for the throughput's FLOP/s and MFU), and the data's sizes."""
        del model_name, kwargs
        return {
            "units_per_sample": self.train.seq_len,
            "train_tokens": self.train.tokens,
            "val_tokens": self.val.tokens,
        }

    def export(
        self, model: nn.Module, directory: Path, state_dict: Mapping[str, Any] | None = None
    ) -> bool:
        """``save_pretrained`` of ``model`` (with ``state_dict``'s weights if given) and its
        tokenizer into ``directory``: a stock transformers checkpoint that lm-eval and any HF
        tool load."""
        _export(model, load_tokenizer(self.tokenizer), directory, state_dict)
        return True


def _export(
    model: nn.Module, tokenizer: Any, directory: Path, state_dict: Mapping[str, Any] | None
) -> None:
    config = model.config  # type: ignore[union-attr]
    use_cache, config.use_cache = config.use_cache, True  # generation wants the cache
    try:
        model.save_pretrained(directory, state_dict=state_dict)  # type: ignore[operator]
    finally:
        config.use_cache = use_cache
    tokenizer.save_pretrained(directory)


@DATASETS.register
def lm_tokens(
    dir: str,
    seq_len: int = 1024,
    tokenizer: str | None = None,
    eval_tokens: int | None = None,
) -> LMData:
    """A prepared token data set (``dir``) cut into ``seq_len`` windows; ``eval_tokens`` caps
    the validation tokens evaluated; ``tokenizer`` (default: the one the index names) is what
    exported checkpoints carry."""
    directory = Path(dir)
    index = read_index(directory)
    train = TokenWindows(TokenSplit(directory, "train", index), seq_len)
    val = TokenWindows(TokenSplit(directory, "val", index), seq_len, eval_tokens)
    for name, split in (("train", train), ("val", val)):
        if len(split) == 0:
            raise ConfigError(
                f"the {name} split of {directory} has {split.tokens} tokens, fewer than one "
                f"window of dataset.seq_len={seq_len} + 1"
            )
    return LMData(
        train=train,
        val=val,
        vocab_size=int(index["vocab_size"]),
        eos_id=int(index["eos_id"]),
        tokenizer=tokenizer or index["tokenizer"]["name_or_path"],
        directory=directory,
    )
