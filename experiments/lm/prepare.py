"""Stream text data sets, tokenise them and pack the tokens into shards (``experiments.lm.shards``).

:func:`prepare` is the whole pipeline; ``scripts/prepare_lm_data.py`` calls it with a dataset
config's ``prepare`` block. The rules (each is part of the recipe, so changing one is a new data set):

- **Sources** are hub data sets (``{name, path, config, data_dir, revision, split, text_column,
  weight}``) or local files (``{name, files: [globs], format: json|text|parquet|csv, text_column,
  weight}``), all read with ``datasets.load_dataset(..., streaming=True)`` (local files through
  the json / text / parquet / csv builders); ``shuffle_buffer: n`` shuffles a stream with
  ``IterableDataset.shuffle(seed, buffer_size=n)``.
- **Mixture**: each next document's source is drawn with a seeded ``numpy`` PCG64 generator, with
  probability proportional to the weights of the sources not yet exhausted (one uniform number per
  draw, looked up in the cumulative weights). Weights are per document, not per token: the index
  records the tokens each source contributed. A source that runs out leaves the mixture (the
  others are renormalised; ``exhausted: true`` in the index) and the draw is repeated.
- **Documents**: the text column, tokenised with the tokenizer's fast backend without added
  special tokens and with special-token strings in the text encoded as plain text (so a document
  can never contain ``eos_id``), followed by ``eos_id``. Empty (whitespace-only) texts are skipped
  and counted.
- **Splits**: the drawn documents fill ``val`` until it holds at least ``val_tokens`` tokens, then
  ``train`` until at least ``train_tokens`` (``None``: until every source is exhausted). Documents
  are never cut: the document that crosses a budget is kept whole, so a split overshoots its
  budget by less than one document. Train and val are disjoint sets of drawn documents.
- **Shards**: every ``shard_tokens`` tokens of a split go to the next shard file (atomically);
  the last shard of a split is shorter.

Resumable: after every batch of documents that completed a shard, the generator state, each
source's consumed-document count, the shard list and the tokens not yet in a shard are saved
(``.partial/progress.json``, atomically). A killed run started again with the same recipe
continues there (each stream skips the documents it had consumed) and writes byte-identical
shards. Idempotent: an ``index.json`` with the same recipe means the data set is up to date and
nothing is done; one with another recipe is an error naming what differs, unless ``force``.
``batch_docs`` only sets how many documents are tokenised per call: the output does not depend
on it, so it is not part of the recipe.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from experiments.core.archive import sha256_file
from experiments.core.errors import ConfigError
from experiments.core.io import atomic_write_bytes, atomic_write_json, git_commit
from experiments.lm import shards as fmt

__all__ = ["PrepareError", "SourceSpec", "check_prepare_config", "parse_sources", "prepare"]

METHOD = "kinetics-lm-prepare/1"  # bump when a rule above changes the bytes written
PARTIAL = ".partial"
PROGRESS = "progress.json"
FORMATS = ("json", "text", "parquet", "csv")
_COMMON_KEYS = ("name", "weight", "text_column", "shuffle_buffer", "split")
HUB_KEYS = (*_COMMON_KEYS, "path", "config", "data_dir", "revision")
LOCAL_KEYS = (*_COMMON_KEYS, "files", "format", "sample_by")


class PrepareError(ConfigError):
    """A preparation that cannot proceed; the message is one line saying what to do."""


# --- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """One text source of the mixture: a hub data set (``path``) or local files (``files``)."""

    name: str
    weight: float
    text_column: str = "text"
    split: str = "train"
    shuffle_buffer: int = 0
    path: str | None = None
    config: str | None = None
    data_dir: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = ()
    format: str | None = None
    sample_by: str | None = None
    matched: tuple[Path, ...] = field(default=(), compare=False)
    """The local files the globs matched (sorted), resolved by :func:`parse_sources`."""

    @property
    def is_hub(self) -> bool:
        return self.path is not None

    def call(self) -> str:
        """The ``load_dataset`` call that opens this source, as a user would type it."""
        if self.is_hub:
            args = [repr(self.path)] + ([repr(self.config)] if self.config else [])
            extra = {"data_dir": self.data_dir, "revision": self.revision}
            args += [f"{k}={v!r}" for k, v in extra.items() if v is not None]
        else:
            args = [repr(self.format), f"data_files=[{len(self.matched)} files]"]
        return f"load_dataset({', '.join(args)}, split={self.split!r}, streaming=True)"

    def load(self, cache_dir: str | None) -> Any:
        """The source as a ``datasets.IterableDataset`` (shuffled when asked)."""
        from datasets import load_dataset

        if self.is_hub:
            ds = load_dataset(
                self.path,
                self.config,
                data_dir=self.data_dir,
                revision=self.revision,
                split=self.split,
                streaming=True,
                cache_dir=cache_dir,
            )
        else:
            kwargs = {"sample_by": self.sample_by} if self.sample_by else {}
            ds = load_dataset(
                self.format,
                data_files=[str(p) for p in self.matched],
                split=self.split,
                streaming=True,
                cache_dir=cache_dir,
                **kwargs,
            )
        return ds

    def recipe(self) -> dict[str, Any]:
        """What the output depends on: local files by relative name and sha256 (not by where the
        data directory happens to be)."""
        keys = HUB_KEYS if self.is_hub else LOCAL_KEYS
        out = {k: getattr(self, k) for k in keys if k != "files"}
        if not self.is_hub:
            root = _common_root(self.matched)
            out["files"] = [
                {"file": p.relative_to(root).as_posix(), "sha256": sha256_file(p)}
                for p in self.matched
            ]
        return out


def _common_root(paths: Sequence[Path]) -> Path:
    parents = [str(p.parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path()


def parse_sources(specs: Sequence[Mapping[str, Any]], resolve: bool = True) -> list[SourceSpec]:
    """Check the source specs and (``resolve``) match local globs to files; :class:`ConfigError`
    on the first problem. ``resolve=False`` checks a config without its files being there."""
    if not specs:
        raise ConfigError("prepare.sources is empty: give at least one source")
    parsed = [_parse_source(i, dict(spec), resolve) for i, spec in enumerate(specs)]
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"prepare.sources: names are not unique: {names}")
    return parsed


def _parse_source(i: int, spec: dict[str, Any], resolve: bool) -> SourceSpec:
    where = f"prepare.sources[{i}]"
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name is missing: every source needs a name")
    where = f"prepare.sources[{i}] ({name})"
    if ("path" in spec) == ("files" in spec):
        raise ConfigError(f"{where}: give either path (a hub data set) or files (local globs)")
    allowed = HUB_KEYS if "path" in spec else LOCAL_KEYS
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]} is not a source option; allowed: {allowed}")
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise ConfigError(f"{where}.weight={weight!r} must be a number > 0")
    buffer = spec.get("shuffle_buffer", 0) or 0
    if not isinstance(buffer, int) or buffer < 0:
        raise ConfigError(f"{where}.shuffle_buffer={buffer!r} must be an integer >= 0")
    spec = {**spec, "weight": float(weight), "shuffle_buffer": buffer}
    if "path" in spec:
        return SourceSpec(**spec)
    fmt_name = spec.get("format")
    if fmt_name not in FORMATS:
        raise ConfigError(f"{where}.format={fmt_name!r} is unknown; allowed: {FORMATS}")
    files = spec["files"]
    if isinstance(files, str) or not files:
        raise ConfigError(f"{where}.files must be a non-empty list of paths or globs")
    matched: list[Path] = []
    for pattern in files if resolve else ():
        found = sorted(Path(p).resolve() for p in glob.glob(str(pattern), recursive=True))
        if not found:
            raise ConfigError(f"{where}: no file matches {pattern} (is the raw text set up?)")
        matched += [p for p in found if p not in matched]
    if fmt_name == "text":
        spec.setdefault("text_column", "text")  # the text builder's only column
    return SourceSpec(**{**spec, "files": tuple(files)}, matched=tuple(matched))


# --- tokenizer --------------------------------------------------------------------------------


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _offline_hint() -> str:
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v) == "1"]
    return f" ({' and '.join(f'{v}=1' for v in offline)} set)" if offline else ""


@dataclass
class Tokenizer:
    """The fast tokenizer's backend as used here, and the facts the index records."""

    backend: Any
    name_or_path: str
    sha256: str
    vocab_size: int
    eos_id: int

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model")


def _tokenizer_sha256(name_or_path: str, backend: Any) -> str:
    """sha256 of ``tokenizer.json`` (else of the vocabulary files, concatenated in a fixed order),
    found in the directory or the hub cache; of the serialised backend if neither is found."""
    from transformers.utils import cached_file

    for names in (TOKENIZER_FILES[:1], TOKENIZER_FILES[1:]):
        paths = []
        for name in names:
            if Path(name_or_path).is_dir():
                path: str | None = str(Path(name_or_path) / name)
                path = path if Path(path).is_file() else None
            else:
                path = cached_file(
                    name_or_path,
                    name,
                    _raise_exceptions_for_missing_entries=False,
                    _raise_exceptions_for_connection_errors=False,
                )
            if path:
                paths.append(path)
        if paths:
            digest = hashlib.sha256()
            for path in paths:
                digest.update(Path(path).read_bytes())
            return digest.hexdigest()
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def load_tokenizer(name_or_path: str) -> Tokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path)`` as a :class:`Tokenizer`, or one error line."""
    from tokenizers import Tokenizer as Backend
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise PrepareError(
            f"AutoTokenizer.from_pretrained({name_or_path!r}) failed{_offline_hint()}: "
            f"{_first_line(err)}; fetch it once with network access or name a local directory"
        ) from None
    if not tok.is_fast:
        raise PrepareError(f"the tokenizer {name_or_path!r} has no fast (Rust) version")
    if tok.eos_token_id is None:
        raise PrepareError(f"the tokenizer {name_or_path!r} has no eos token")
    # A private copy: no truncation or padding, and special-token strings in a document's text
    # encoded as text, so eos_id only ever marks the end of a document.
    backend = Backend.from_str(tok.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    backend.encode_special_tokens = True
    return Tokenizer(
        backend=backend,
        name_or_path=str(name_or_path),
        sha256=_tokenizer_sha256(str(name_or_path), backend),
        vocab_size=len(tok),
        eos_id=int(tok.eos_token_id),
    )


# --- recipe -----------------------------------------------------------------------------------


def build_recipe(
    specs: Sequence[SourceSpec],
    tokenizer: Tokenizer,
    *,
    train_tokens: int | None,
    val_tokens: int,
    shard_tokens: int,
    seed: int,
) -> dict[str, Any]:
    """Every parameter the written bytes depend on (see the module docstring for the rules)."""
    return {
        "method": METHOD,
        "format": fmt.FORMAT,
        "tokenizer_sha256": tokenizer.sha256,
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "dtype": fmt.dtype_name(fmt.dtype_for(tokenizer.vocab_size)),
        "sources": [s.recipe() for s in specs],
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "shard_tokens": shard_tokens,
        "seed": seed,
    }


def recipe_sha256(recipe: Mapping[str, Any]) -> str:
    canonical = json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def recipe_diff(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> str:
    """``key old -> new`` for the first ``limit`` differing leaves of two recipes."""
    a, b = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<absent>") != b.get(k, "<absent>")]

    def show(v: Any) -> str:
        text = repr(v)
        return text if len(text) <= 24 else text[:12] + "..." + text[-8:]

    parts = [f"{k} {show(a.get(k, '<absent>'))} -> {show(b.get(k, '<absent>'))}" for k in keys]
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


# --- the run ----------------------------------------------------------------------------------


def _source_counters() -> dict[str, Any]:
    return {
        "consumed": 0,
        "skipped_empty": 0,
        "documents": {"train": 0, "val": 0},
        "tokens": {"train": 0, "val": 0},
        "exhausted": False,
    }


class _Run:
    """The mutable state of one preparation: generator, streams, counters, writers."""

    def __init__(
        self,
        specs: list[SourceSpec],
        datasets: list[Any],
        tokenizer: Tokenizer,
        out: Path,
        recipe: dict[str, Any],
        sha: str,
    ):
        self.specs, self.datasets, self.tok, self.out = specs, datasets, tokenizer, out
        self.recipe, self.sha = recipe, sha
        self.dtype = fmt.dtype_for(tokenizer.vocab_size)
        self.rng = np.random.Generator(np.random.PCG64(recipe["seed"]))
        self.counters = [_source_counters() for _ in specs]
        self.active = list(range(len(specs)))
        self.split = "val" if recipe["val_tokens"] > 0 else "train"
        self.documents = {"train": 0, "val": 0}
        self.writers = {
            s: fmt.ShardWriter(out, s, self.dtype, recipe["shard_tokens"]) for s in fmt.SPLITS
        }
        self.done = False
        self.streams: list[Iterator[Any]] = []

    # streams and drawing

    def open_streams(self) -> None:
        """Iterators over the sources, past the documents already consumed (a resumed run)."""
        self.streams = []
        for spec, ds, counter in zip(self.specs, self.datasets, self.counters, strict=True):
            if spec.shuffle_buffer:
                ds = ds.shuffle(seed=self.recipe["seed"], buffer_size=spec.shuffle_buffer)
            if counter["consumed"]:
                ds = ds.skip(counter["consumed"])
            self.streams.append(iter(ds))

    def draw(self, n: int) -> list[tuple[int, str | None]]:
        """The next ``n`` documents as ``(source, text)``; ``(source, None)`` marks a source that
        ran out at that point of the sequence."""
        events: list[tuple[int, str | None]] = []
        docs = 0
        cdf = self._cdf()
        while docs < n and self.active:
            k = int(np.searchsorted(cdf, self.rng.random(), side="right"))
            source = self.active[min(k, len(self.active) - 1)]
            try:
                example = next(self.streams[source])
            except StopIteration:
                self.active.remove(source)
                events.append((source, None))
                cdf = self._cdf()  # the others, renormalised
                continue
            events.append((source, self._text(source, example)))
            docs += 1
        return events

    def _cdf(self) -> np.ndarray:
        """Cumulative probabilities of the active sources (their weights, normalised)."""
        weights = np.array([self.specs[i].weight for i in self.active], dtype=np.float64)
        return np.cumsum(weights / weights.sum()) if len(weights) else weights

    def _text(self, source: int, example: Mapping[str, Any]) -> str:
        column = self.specs[source].text_column
        if column not in example:
            raise PrepareError(
                f"source {self.specs[source].name}: no column {column!r} "
                f"(its columns: {', '.join(example)}); set text_column"
            )
        text = example[column]
        return text if isinstance(text, str) else ""

    # consuming

    def consume(self, events: list[tuple[int, str | None]]) -> int:
        """Tokenise and write the drawn documents in order until a budget ends the run; the
        number of shards written."""
        texts = [t for _, t in events if t is not None and t.strip()]
        encoded = iter(self.tok.encode(texts)) if texts else iter(())
        written = 0
        for source, text in events:
            counter = self.counters[source]
            if text is None:
                counter["exhausted"] = True
                continue
            counter["consumed"] += 1
            if not text.strip():
                counter["skipped_empty"] += 1
                continue
            ids = np.asarray([*next(encoded), self.tok.eos_id], dtype=np.int64)
            written += self._add(source, ids)
            if self.done:
                break
        return written

    def _add(self, source: int, ids: np.ndarray) -> int:
        split, writer = self.split, self.writers[self.split]
        written = writer.add(ids)
        self.documents[split] += 1
        self.counters[source]["documents"][split] += 1
        self.counters[source]["tokens"][split] += len(ids)
        if split == "val" and writer.tokens >= self.recipe["val_tokens"]:
            writer.close()
            written += 1
            self.split = "train"
        elif split == "train" and self.recipe["train_tokens"] is not None:
            self.done = writer.tokens >= self.recipe["train_tokens"]
        return written

    @property
    def tokens(self) -> int:
        return sum(w.tokens for w in self.writers.values())

    # checkpoints

    def checkpoint(self) -> None:
        """Save the state after a batch: shards so far, pending tokens, generator, counters."""
        partial = self.out / PARTIAL
        pending = self.writers[self.split].pending
        name = "pending_" + "_".join(f"{len(w.shards):05d}" for w in self.writers.values())
        payload = np.ascontiguousarray(pending, dtype=self.dtype).tobytes()
        atomic_write_bytes(partial / f"{name}.bin", payload)
        state = {
            "recipe_sha256": self.sha,
            "rng": self.rng.bit_generator.state,
            "counters": self.counters,
            "active": self.active,
            "split": self.split,
            "documents": self.documents,
            "shards": {s: w.shards for s, w in self.writers.items()},
            "pending": {
                "file": f"{name}.bin",
                "tokens": len(pending),
                "sha256": hashlib.sha256(payload).hexdigest(),
            },
        }
        atomic_write_json(partial / PROGRESS, state)
        for old in partial.glob("pending_*.bin"):
            if old.name != f"{name}.bin":
                old.unlink()

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`checkpoint` (checked against the disk)."""
        partial = self.out / PARTIAL
        for shards in state["shards"].values():
            for shard in shards:
                path = self.out / shard["file"]
                size = int(shard["tokens"]) * self.dtype.itemsize
                if not path.is_file() or path.stat().st_size != size:
                    raise FileNotFoundError(f"{path} is missing or truncated")
        payload = (partial / state["pending"]["file"]).read_bytes()
        if hashlib.sha256(payload).hexdigest() != state["pending"]["sha256"]:
            raise ValueError("the pending tokens do not match their checksum")
        self.rng.bit_generator.state = state["rng"]
        self.counters = state["counters"]
        self.active = list(state["active"])
        self.split = state["split"]
        self.documents = dict(state["documents"])
        pending = np.frombuffer(payload, dtype=self.dtype)
        self.writers = {
            s: fmt.ShardWriter(
                self.out,
                s,
                self.dtype,
                self.recipe["shard_tokens"],
                shards=state["shards"][s],
                pending=pending if s == self.split else None,
            )
            for s in fmt.SPLITS
        }

    # the index

    def index(self) -> dict[str, Any]:
        splits = {
            s: {
                "tokens": self.writers[s].tokens,
                "documents": self.documents[s],
                "budget": self.recipe[f"{s}_tokens"],
                "shards": self.writers[s].shards,
            }
            for s in fmt.SPLITS
        }
        sources = [
            {
                "name": spec.name,
                "spec": recipe,
                "weight": spec.weight,
                **{k: counter[k] for k in ("documents", "tokens", "exhausted")},
                "consumed": counter["consumed"],
                "skipped_empty": counter["skipped_empty"],
            }
            for spec, recipe, counter in zip(
                self.specs, self.recipe["sources"], self.counters, strict=True
            )
        ]
        return {
            "format": fmt.FORMAT,
            "dtype": fmt.dtype_name(self.dtype),
            "vocab_size": self.tok.vocab_size,
            "eos_id": self.tok.eos_id,
            "tokenizer": {"name_or_path": self.tok.name_or_path, "sha256": self.tok.sha256},
            "recipe": self.recipe,
            "recipe_sha256": self.sha,
            "splits": splits,
            "sources": sources,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(),
        }


# --- entry point ------------------------------------------------------------------------------


def check_prepare_config(block: Mapping[str, Any], resolve: bool = False) -> list[SourceSpec]:
    """Check a dataset config's ``prepare`` block (keys, budgets, sources) without reading data."""
    known = ("sources", "train_tokens", "val_tokens", "shard_tokens", "seed", "batch_docs")
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise ConfigError(f"prepare.{unknown[0]} is not a prepare option; allowed: {known}")
    missing = [k for k in known[:4] if k not in block]
    if missing:
        raise ConfigError(f"prepare.{missing[0]} is missing")
    _check_budgets(
        block["train_tokens"], block["val_tokens"], block["shard_tokens"], block.get("seed", 0)
    )
    return parse_sources(block["sources"], resolve=resolve)


def _check_budgets(train_tokens: Any, val_tokens: Any, shard_tokens: Any, seed: Any) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if train_tokens is not None and (not is_int(train_tokens) or train_tokens < 1):
        raise ConfigError(f"prepare.train_tokens={train_tokens!r} must be an integer >= 1 or null")
    if not is_int(val_tokens) or val_tokens < 0:
        raise ConfigError(f"prepare.val_tokens={val_tokens!r} must be an integer >= 0")
    if not is_int(shard_tokens) or shard_tokens < 1:
        raise ConfigError(f"prepare.shard_tokens={shard_tokens!r} must be an integer >= 1")
    if not is_int(seed) or seed < 0:
        raise ConfigError(f"prepare.seed={seed!r} must be an integer >= 0")


def _open_sources(specs: Sequence[SourceSpec], cache_dir: str | None) -> list[Any]:
    """Every source opened before anything is written; a hub source offline is one error line."""
    opened = []
    for spec in specs:
        try:
            opened.append(spec.load(cache_dir))
        except Exception as err:  # datasets raises many types (ConnectionError, FileNotFound...)
            hint = (
                "hub data sets need the network: set HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 "
                "(make lm-data does) or give the source local files"
                if spec.is_hub
                else "check the files and the format"
            )
            raise PrepareError(
                f"source {spec.name}: {spec.call()} failed{_offline_hint()}: "
                f"{_first_line(err)}; {hint}"
            ) from None
        columns = list(getattr(opened[-1], "features", None) or {})
        if columns and spec.text_column not in columns:
            raise PrepareError(
                f"source {spec.name}: no column {spec.text_column!r} "
                f"(its columns: {', '.join(columns)}); set text_column"
            )
    return opened


def _clear(out: Path) -> None:
    """Remove a previous data set (index first, so the folder is never taken for complete)."""
    (out / fmt.INDEX).unlink(missing_ok=True)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    for split in fmt.SPLITS:
        for path in out.glob(f"{split}_*.bin"):
            path.unlink()


def _read_progress(out: Path, sha: str) -> dict[str, Any] | None:
    try:
        state = json.loads((out / PARTIAL / PROGRESS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if state.get("recipe_sha256") == sha else None


def prepare(
    sources: Sequence[Mapping[str, Any]],
    tokenizer: str,
    out_dir: str | os.PathLike,
    *,
    train_tokens: int | None,
    val_tokens: int,
    shard_tokens: int,
    seed: int = 0,
    batch_docs: int = 512,
    cache_dir: str | None = None,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Prepare (or resume, or confirm) the token shards of ``sources`` in ``out_dir``.

    Returns the data set's index (the existing one when it is up to date). Raises
    :class:`ConfigError` (bad arguments) or :class:`PrepareError` (a source or tokenizer that
    cannot be opened, or an existing data set of another recipe without ``force``), each a
    one-line message, before anything is written.
    """
    from tqdm.auto import tqdm

    _check_budgets(train_tokens, val_tokens, shard_tokens, seed)
    specs = parse_sources(sources)
    tok = load_tokenizer(tokenizer)
    recipe = build_recipe(
        specs,
        tok,
        train_tokens=train_tokens,
        val_tokens=val_tokens,
        shard_tokens=shard_tokens,
        seed=seed,
    )
    sha = recipe_sha256(recipe)
    out = Path(out_dir)
    if (out / fmt.INDEX).is_file() and not force:
        existing = fmt.read_index(out)
        if existing.get("recipe_sha256") == sha:
            log(f"{out}: up to date (recipe {sha[:12]}); nothing to do")
            return existing
        raise PrepareError(
            f"{out} holds shards of another recipe (differs in "
            f"{recipe_diff(existing.get('recipe', {}), recipe)}); use --force to rebuild it"
        )
    datasets = _open_sources(specs, cache_dir)
    run = _Run(specs, datasets, tok, out, recipe, sha)
    state = None if force else _read_progress(out, sha)
    if state is not None:
        try:
            run.restore(state)
            log(f"{out}: resuming at {run.tokens:,} tokens")
        except (OSError, ValueError) as err:
            log(f"{out}: cannot resume ({err}); starting again")
            state, run = None, _Run(specs, datasets, tok, out, recipe, sha)
    if state is None:
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    run.open_streams()
    total = None if train_tokens is None else train_tokens + val_tokens
    with tqdm(
        total=total, initial=run.tokens, unit="tok", unit_scale=True, disable=not progress
    ) as bar:
        while not run.done:
            before = run.tokens
            events = run.draw(batch_docs)
            if not events:
                break  # every source is exhausted
            if run.consume(events) and not run.done:
                run.checkpoint()
            bar.update(run.tokens - before)
    for writer in run.writers.values():
        writer.close()
    index = run.index()
    fmt.write_index(out, index)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    log(_summary(out, index))
    return index


def _summary(out: Path, index: Mapping[str, Any]) -> str:
    parts = [
        f"{s} {f['tokens']:,} tokens / {f['documents']:,} documents / {len(f['shards'])} shards"
        for s, f in index["splits"].items()
    ]
    return f"{out}: {'; '.join(parts)} ({index['dtype']}, vocab {index['vocab_size']:,})"
