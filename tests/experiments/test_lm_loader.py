"""The LM loader (experiments/lm/data.py): windows across shard boundaries, an order keyed by
(seed, epoch) dealt to disjoint ranks, and a jump to batch k equal to reading up to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import experiments.lm.data as lm_data
from experiments.core.errors import ConfigError
from experiments.lm.data import TokenWindows, lm_tokens


def _write(directory: Path, shards: dict[str, list[np.ndarray]], vocab: int = 70000) -> Path:
    dtype = "uint16" if vocab <= 65536 else "uint32"
    splits = {}
    for split, arrays in shards.items():
        entries = []
        for k, array in enumerate(arrays):
            name = f"{split}_{k:05d}.bin"
            array.astype(np.dtype(dtype).newbyteorder("<")).tofile(directory / name)
            entries.append({"file": name, "tokens": len(array), "sha256": ""})
        splits[split] = {"tokens": sum(len(a) for a in arrays), "documents": 1, "shards": entries}
    index = {
        "format": "kinetics-lm-shards/1",
        "dtype": dtype,
        "vocab_size": vocab,
        "eos_id": 0,
        "tokenizer": {"name_or_path": "tok"},
        "splits": splits,
    }
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def test_windows_read_across_shards_in_order(tmp_path: Path) -> None:
    # uint32 tokens above 2^16: the dtype is honoured
    tokens = np.arange(70_000, 70_000 + 103)
    data = lm_tokens(
        str(_write(tmp_path, {"train": np.split(tokens, [10, 11, 60]), "val": [tokens[:40]]})),
        seq_len=8,
    )
    assert len(data.train) == (103 - 1) // 8
    for i in range(len(data.train)):
        inputs, targets = data.train[i]
        assert inputs.dtype == torch.int64
        assert torch.equal(inputs, torch.from_numpy(tokens[i * 8 : i * 8 + 8]))
        assert torch.equal(targets, torch.from_numpy(tokens[i * 8 + 1 : i * 8 + 9]))
    with pytest.raises(IndexError):
        data.train[len(data.train)]
    assert len(TokenWindows(data.train.split, 8, max_tokens=17)) == 2


def test_too_little_data_for_one_window_is_a_config_error(tmp_path: Path) -> None:
    directory = _write(tmp_path, {"train": [np.arange(100)], "val": [np.arange(5)]})
    with pytest.raises(ConfigError, match=r"val split .* has 5 tokens"):
        lm_tokens(str(directory), seq_len=8)


def _batches(loader: object) -> list[torch.Tensor]:
    return [inputs for inputs, _ in loader]  # type: ignore[attr-defined]


def test_ranks_get_disjoint_windows_and_the_order_depends_on_seed_and_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = lm_tokens(
        str(_write(tmp_path, {"train": [np.arange(801)], "val": [np.arange(50)]})), seq_len=8
    )
    starts = {}
    for rank in (0, 1):
        monkeypatch.setattr(lm_data, "dist_world", lambda rank=rank: (2, rank))
        train, _ = data.loaders(5, seed=3)
        assert len(train) == 10  # 100 windows / 2 ranks / 5
        starts[rank] = {int(b[0]) // 8 for batch in _batches(train) for b in batch}
    assert starts[0].isdisjoint(starts[1])
    assert starts[0] | starts[1] == set(range(100))

    monkeypatch.setattr(lm_data, "dist_world", lambda: None)
    first = [b[:, 0].tolist() for b in _batches(data.loaders(5, seed=3)[0])]
    again = [b[:, 0].tolist() for b in _batches(data.loaders(5, seed=3)[0])]
    other_seed = [b[:, 0].tolist() for b in _batches(data.loaders(5, seed=4)[0])]
    assert first == again and first != other_seed
    train, _ = data.loaders(5, seed=3)
    epoch0, epoch1 = _batches(train), _batches(train)
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, epoch1, strict=True))


def test_skip_batches_jumps_to_the_same_batches_once(tmp_path: Path) -> None:
    data = lm_tokens(
        str(_write(tmp_path, {"train": [np.arange(801)], "val": [np.arange(50)]})), seq_len=8
    )
    train, _ = data.loaders(6, seed=1)
    whole = _batches(train)
    train.set_epoch(0)
    train.skip_batches(5)
    rest = _batches(train)
    assert len(rest) == len(whole) - 5
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[5:], strict=True))
    assert len(_batches(train)) == len(whole)  # the jump applies to one pass only
