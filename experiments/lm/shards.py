"""Prepared token data on disk: format ``kinetics-lm-shards/1``, its reader and its writer.

A prepared data set is a directory::

    index.json          written last and atomically: its presence means the set is complete
    val_00000.bin ...   raw little-endian token ids, numpy dtype uint16 (vocab_size <= 65536)
    train_00000.bin ... or uint32; every document's tokens are followed by ``eos_id``

A split is the concatenation of its shard files in order; documents run across shard boundaries
(each shard holds exactly ``shard_tokens`` tokens except a split's last one). ``index.json``::

    {"format": "kinetics-lm-shards/1", "dtype": "uint16", "vocab_size": int, "eos_id": int,
     "tokenizer": {"name_or_path": str, "sha256": str}, "recipe": {...}, "recipe_sha256": str,
     "splits": {"train": {"tokens": int, "documents": int, "shards": [{"file", "tokens",
                "sha256"}]}, "val": {...}},
     "sources": [{"name", "spec", "weight", "documents": {"train", "val"},
                  "tokens": {"train", "val"}, "exhausted": bool}],
     "created": iso time, "commit": git commit}

Readers: :func:`read_index` and :func:`open_split` (a :class:`TokenSplit`: its length and a
``window(start, length)`` across shard boundaries). Writer: :class:`ShardWriter` (used by
``experiments.lm.prepare``); :func:`write_index` writes ``index.json``; :func:`verify` re-reads
every file against the index.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.core.errors import ConfigError, MissingDataError
from experiments.core.io import atomic_write_bytes, atomic_write_json

__all__ = [
    "FORMAT",
    "INDEX",
    "SPLITS",
    "ShardWriter",
    "TokenSplit",
    "dtype_for",
    "open_split",
    "read_index",
    "shard_name",
    "verify",
    "write_index",
]

FORMAT = "kinetics-lm-shards/1"
INDEX = "index.json"
SPLITS = ("train", "val")
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def dtype_for(vocab_size: int) -> np.dtype:
    """``<u2`` when every id fits in 16 bits (vocab_size <= 65536), else ``<u4``."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size={vocab_size} must be >= 1")
    return _DTYPES["uint16"] if vocab_size <= 1 << 16 else _DTYPES["uint32"]


def dtype_name(dtype: np.dtype) -> str:
    """The index's name of a shard dtype: "uint16" or "uint32"."""
    return {v: k for k, v in _DTYPES.items()}[np.dtype(dtype)]


def shard_name(split: str, number: int) -> str:
    """``train_00003.bin``: the file of a split's shard ``number``."""
    return f"{split}_{number:05d}.bin"


def read_index(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``index.json`` of a prepared data set (a one-line error if it is absent or foreign)."""
    path = Path(directory) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingDataError(
            f"{path} does not exist: the token shards in {directory} are not prepared (or their "
            "preparation did not finish); run scripts/prepare_lm_data.py dataset=<name>"
        ) from None
    except ValueError as err:
        raise ConfigError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else None
        raise ConfigError(f"{path} has format {found!r}; this reader reads {FORMAT!r}")
    return index


class TokenSplit:
    """One split of a prepared data set: its shard files as read-only memory maps, concatenated.

    ``len(split)`` is the number of tokens; ``split.window(start, length)`` copies tokens
    ``[start, start + length)`` into a new array (of the file dtype), crossing shard boundaries.
    """

    def __init__(self, directory: str | os.PathLike, split: str, index: dict[str, Any]):
        if split not in index["splits"]:
            raise ConfigError(f"split {split!r} is not in {directory}; its splits: {SPLITS}")
        self.directory = Path(directory)
        self.split = split
        self.dtype = _DTYPES[index["dtype"]]
        self.eos_id = int(index["eos_id"])
        self.vocab_size = int(index["vocab_size"])
        self.documents = int(index["splits"][split]["documents"])
        self.shards: list[np.memmap] = []
        for shard in index["splits"][split]["shards"]:
            path = self.directory / shard["file"]
            expected = int(shard["tokens"]) * self.dtype.itemsize
            size = path.stat().st_size if path.is_file() else None
            if size != expected:
                raise MissingDataError(
                    f"{path} is {'missing' if size is None else f'{size} bytes'}, "
                    f"{INDEX} says {expected} bytes: prepare the data set again"
                )
            if expected:
                self.shards.append(np.memmap(path, dtype=self.dtype, mode="r"))
        lengths = np.array([len(s) for s in self.shards], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        """``offsets[i]``: the position of shard ``i``'s first token in the split."""

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the split (a copy, in the file dtype)."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"window [{start}, {start + length}) outside [0, {len(self)})")
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        parts: list[np.ndarray] = []
        position, remaining = start, length
        shard = first
        while remaining > 0:
            local = position - int(self.offsets[shard])
            take = min(remaining, len(self.shards[shard]) - local)
            parts.append(self.shards[shard][local : local + take])
            position, remaining, shard = position + take, remaining - take, shard + 1
        if len(parts) == 1:
            return np.array(parts[0])
        return np.concatenate(parts) if parts else np.empty(0, self.dtype)


def open_split(directory: str | os.PathLike, split: str) -> TokenSplit:
    """The ``split`` ("train" or "val") of the prepared data set in ``directory``."""
    return TokenSplit(directory, split, read_index(directory))


class ShardWriter:
    """Appends token arrays to a split, writing each full shard of ``shard_tokens`` atomically.

    ``shards`` lists the written shards (``{"file", "tokens", "sha256"}``); :attr:`pending` holds
    the tokens not yet in a shard. A writer can be re-created from both (resuming a run).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        dtype: np.dtype,
        shard_tokens: int,
        shards: Sequence[dict[str, Any]] = (),
        pending: np.ndarray | None = None,
    ):
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens={shard_tokens} must be >= 1")
        self.directory = Path(directory)
        self.split = split
        self.dtype = np.dtype(dtype)
        self.shard_tokens = shard_tokens
        self.shards: list[dict[str, Any]] = [dict(s) for s in shards]
        self._in_shards = sum(int(s["tokens"]) for s in self.shards)  # kept: read per document
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        if pending is not None and len(pending):
            self.add(pending)

    @property
    def tokens(self) -> int:
        """Tokens added so far (in shards or pending)."""
        return self._in_shards + self._buffered

    @property
    def pending(self) -> np.ndarray:
        """The tokens not yet written to a shard."""
        if not self._buffer:
            return np.empty(0, self.dtype)
        return np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]

    def add(self, tokens: np.ndarray) -> int:
        """Append ``tokens``; write every shard that is now full. The number of shards written."""
        tokens = np.asarray(tokens)
        if tokens.size and int(tokens.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"token id {int(tokens.max())} does not fit in {self.dtype}")
        self._buffer.append(tokens.astype(self.dtype, copy=False))
        self._buffered += len(tokens)
        written = 0
        while self._buffered >= self.shard_tokens:
            data = self.pending
            self._write(data[: self.shard_tokens])
            rest = data[self.shard_tokens :]
            self._buffer, self._buffered = ([rest] if len(rest) else []), len(rest)
            written += 1
        return written

    def close(self) -> None:
        """Write the pending tokens as the split's last (shorter) shard, if there are any."""
        if self._buffered:
            self._write(self.pending)
            self._buffer, self._buffered = [], 0

    def _write(self, data: np.ndarray) -> None:
        payload = np.ascontiguousarray(data, dtype=self.dtype).tobytes()
        name = shard_name(self.split, len(self.shards))
        atomic_write_bytes(self.directory / name, payload)
        self.shards.append(
            {"file": name, "tokens": len(data), "sha256": hashlib.sha256(payload).hexdigest()}
        )
        self._in_shards += len(data)


def write_index(directory: str | os.PathLike, index: dict[str, Any]) -> None:
    """Write ``index.json`` atomically (call it last: it marks the data set complete)."""
    atomic_write_json(Path(directory) / INDEX, index)


def verify(directory: str | os.PathLike) -> dict[str, int]:
    """Re-read every shard against ``index.json`` (size, sha256, token ids < vocab_size, counts).

    Returns ``{split: tokens}``; raises :class:`ConfigError` naming the first mismatch.
    """
    index = read_index(directory)
    counts: dict[str, int] = {}
    for split, facts in index["splits"].items():
        data = TokenSplit(directory, split, index)
        for shard, tokens in zip(facts["shards"], data.shards, strict=False):
            digest = hashlib.sha256(Path(directory, shard["file"]).read_bytes()).hexdigest()
            if digest != shard["sha256"]:
                raise ConfigError(f"{shard['file']}: sha256 {digest} != index {shard['sha256']}")
            if len(tokens) and int(tokens.max()) >= data.vocab_size:
                raise ConfigError(f"{shard['file']}: a token id >= vocab_size {data.vocab_size}")
        if len(data) != facts["tokens"]:
            raise ConfigError(
                f"{split}: the shards hold {len(data)} tokens, index {facts['tokens']}"
            )
        eos = sum(int(np.count_nonzero(s == data.eos_id)) for s in data.shards)
        if eos != facts["documents"]:
            raise ConfigError(
                f"{split}: {eos} eos tokens, index says {facts['documents']} documents"
            )
        counts[split] = len(data)
    return counts
