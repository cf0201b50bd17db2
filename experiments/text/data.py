"""Text classification data described by its columns (KO Table 3, KITINet Table 5; SPEC §3).

A data set is a table with one or two text columns (a sentence, or a sentence pair tokenised as
a pair) and a label column, read with ``datasets``: from the hub (:func:`hub_text`; IMDB, SNLI
and Snips are thin wrappers naming their path and columns) or from local csv / json / parquet
files (:func:`text_files`, also what the tests and the CPU-scale replication use). It is tokenised
once with the model's tokenizer (cached by ``datasets`` in ``<data_dir>/hf_cache``) and padded per
batch (transformers' ``DataCollatorWithPadding``). Batches are transformers-style mappings with
``labels``; the model is called as ``model(**batch)``.

A hub data set or tokenizer that cannot be reached (offline) fails before training, in one line
that names the ``load_dataset`` / ``from_pretrained`` call and what to set instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, SequentialSampler

from experiments.core.errors import ConfigError, MissingDataError
from experiments.core.hf_models import first_line as _first_line
from experiments.core.hf_models import load_tokenizer
from experiments.core.hf_models import offline_hint as _offline_hint
from experiments.core.metrics import MacroF1, topk_accuracy
from experiments.core.registry import DATASETS, MODELS
from experiments.core.sampling import EpochDataLoader, SeededSampler, dist_world
from experiments.core.task import MetricFn, TaskDefaults, logits_of

__all__ = ["TextData", "hub_text", "imdb", "load_tokenizer", "snips", "snli", "text_files"]

FILE_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}


def cross_entropy(outputs: Any, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the logits (of a transformers output or a tensor) in float32."""
    return F.cross_entropy(logits_of(outputs).float(), targets)


def accuracy(outputs: Any, targets: Tensor) -> Tensor:
    """Fraction of rows whose largest logit is the label."""
    return topk_accuracy(logits_of(outputs), targets, k=1)


class _LogitsMacroF1(MacroF1):
    def __call__(self, outputs: Any, targets: Tensor) -> Tensor:
        return super().__call__(logits_of(outputs), targets)


@dataclass
class TextData(TaskDefaults):
    """Tokenised train / test tables (``datasets.Dataset`` with ``input_ids``, ``attention_mask``,
    ``labels``, ...) and what training a sequence classifier on them needs. ``files``: what the
    raw tables were read from (local files, or the hub data's Arrow cache)."""

    train: Any
    test: Any
    num_labels: int
    tokenizer: Any
    label_names: list[str] | None = None
    macro_f1: bool = False
    train_loss: Callable[[Any, Tensor], Tensor] = cross_entropy
    eval_loss: Callable[[Any, Tensor], Tensor] = cross_entropy
    columns: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def metric_fns(self) -> dict[str, MetricFn]:
        """``accuracy``, and ``macro_f1`` when asked (Snips)."""
        metrics: dict[str, MetricFn] = {"accuracy": accuracy}
        if self.macro_f1:
            metrics["macro_f1"] = _LogitsMacroF1(self.num_labels)
        return metrics

    def model_kwargs(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``num_labels`` from the data; a model without it cannot classify text."""
        if "num_labels" not in MODELS.parameters(model_name):
            raise ConfigError(
                f"model={model_name} cannot take text data; use a sequence classifier such as "
                "bert_base_uncased"
            )
        return {**kwargs, "num_labels": self.num_labels}

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Every token id of the tokenizer must have an embedding row."""
        embeddings = getattr(model, "get_input_embeddings", lambda: None)()
        rows = getattr(embeddings, "num_embeddings", None)
        if rows is not None and len(self.tokenizer) > rows:
            raise ConfigError(
                f"model={model_name} embeds {rows} token ids but the tokenizer has "
                f"{len(self.tokenizer)}; use the model's own tokenizer (model.tokenizer)"
            )

    def loaders(
        self,
        batch_size: int | None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        eval_batch_size: int | None = None,
    ) -> tuple[EpochDataLoader, DataLoader]:
        """``(train_loader, test_loader)``: the train order depends on ``(seed, epoch)`` only and
        is sharded over DDP ranks; every rank evaluates the whole test set."""
        if batch_size is None or batch_size < 1:
            raise ConfigError(
                f"trainer.batch_size={batch_size} does not fit text data; set e.g. "
                "trainer.batch_size=32"
            )
        from transformers import DataCollatorWithPadding

        collate = DataCollatorWithPadding(self.tokenizer, return_tensors="pt")
        replicas, rank = dist_world() or (1, 0)
        sampler = SeededSampler(
            self.train, seed=seed, shuffle=shuffle, num_replicas=replicas, rank=rank
        )
        common: dict[str, Any] = {
            "num_workers": num_workers,
            "pin_memory": pin_memory,
            "collate_fn": collate,
        }
        train = EpochDataLoader(
            self.train, seed=seed, batch_size=batch_size, sampler=sampler, **common
        )
        test = DataLoader(
            self.test,
            batch_size=eval_batch_size or batch_size,
            sampler=SequentialSampler(self.test),
            **common,
        )
        return train, test


# --------------------------------------------------------------------------- building


def _check_columns(table: Any, text_columns: Sequence[str], label_column: str, where: str) -> None:
    if not 1 <= len(text_columns) <= 2:
        raise ConfigError(
            f"dataset.text_columns={list(text_columns)} must name one text column or a pair"
        )
    missing = [c for c in (*text_columns, label_column) if c not in table.column_names]
    if missing:
        raise ConfigError(
            f"{where} has no column {missing[0]!r}; its columns: {', '.join(table.column_names)}"
        )


def _label_names(tables: Sequence[Any], label_column: str) -> list[str] | None:
    """Class names from a ``ClassLabel`` feature, or the sorted distinct strings of a text label
    column; None for integer labels."""
    feature = tables[0].features[label_column]
    names = getattr(feature, "names", None)
    if names:
        return list(names)
    if getattr(feature, "dtype", None) == "string":
        return sorted({str(v) for t in tables for v in t[label_column]})
    return None


def _tokenised(
    table: Any,
    tokenizer: Any,
    text_columns: Sequence[str],
    label_column: str,
    max_length: int,
    label_ids: Mapping[str, int] | None,
) -> Any:
    def encode(rows: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [rows[c] for c in text_columns]
        encoded = tokenizer(*texts, truncation=True, max_length=max_length)
        labels = rows[label_column]
        encoded["labels"] = [label_ids[str(v)] for v in labels] if label_ids else labels
        return encoded

    out = table.map(encode, batched=True, remove_columns=table.column_names)
    return out.with_format("torch")


def build_text_data(
    tables: Mapping[str, Any],
    *,
    text_columns: Sequence[str],
    label_column: str,
    tokenizer: str | None,
    max_length: int,
    truncation_side: str,
    drop_labels: Sequence[int],
    macro_f1: bool,
    train_limit: int | None,
    test_limit: int | None,
    num_labels: int | None,
    where: str,
    files: Sequence[Path] = (),
) -> TextData:
    """Tokenise ``{"train": table, "test": table}`` (``datasets.Dataset``) into a :class:`TextData`."""
    if truncation_side not in ("right", "left"):
        raise ConfigError(f"dataset.truncation_side={truncation_side!r} is not one of right, left")
    if max_length < 2:
        raise ConfigError(f"dataset.max_length={max_length} must be >= 2")
    if not tokenizer:
        raise ConfigError(
            "dataset.tokenizer is not set: text data needs the model's tokenizer; use a text "
            "model (e.g. model=bert_base_uncased), whose config names it, or set model.tokenizer"
        )
    tok = load_tokenizer(tokenizer)
    tok.truncation_side = truncation_side
    splits = {}
    dropped = set(drop_labels)
    for split, table in tables.items():
        _check_columns(table, text_columns, label_column, f"{where} ({split})")
        if dropped:
            table = table.filter(lambda row: row[label_column] not in dropped)
        limit = train_limit if split == "train" else test_limit
        if limit is not None and limit < len(table):
            # a fixed random subset (the same for every run): files are often sorted by label
            table = table.shuffle(seed=0).select(range(limit))
        splits[split] = table
    names = _label_names(list(splits.values()), label_column)
    label_ids = None
    if names is not None and splits["train"].features[label_column].dtype == "string":
        label_ids = {name: i for i, name in enumerate(names)}
    encoded = {
        split: _tokenised(table, tok, text_columns, label_column, max_length, label_ids)
        for split, table in splits.items()
    }
    if names is not None:
        count = len(names)
    elif num_labels is not None:
        count = num_labels
    else:
        count = max(int(_labels(t).max()) for t in encoded.values() if len(t)) + 1
    for split, table in encoded.items():
        labels = _labels(table)
        if len(labels) == 0:
            raise ConfigError(f"{where} ({split}) holds no rows")
        if int(labels.min()) < 0 or int(labels.max()) >= count:
            raise ConfigError(
                f"{where} ({split}) has labels in [{int(labels.min())}, {int(labels.max())}], "
                f"outside [0, {count - 1}]; set dataset.drop_labels or dataset.num_labels"
            )
    return TextData(
        encoded["train"],
        encoded["test"],
        count,
        tok,
        label_names=names,
        macro_f1=macro_f1,
        columns=list(text_columns),
        files=list(files),
    )


def _labels(table: Any) -> Tensor:
    """The ``labels`` column of a tokenised table as an int64 tensor."""
    return torch.as_tensor(table.with_format("numpy")["labels"][:], dtype=torch.int64)


def _cache_dir(data_dir: str) -> str:
    return str(Path(data_dir) / "hf_cache")


@DATASETS.register
def text_files(
    train: str,
    test: str,
    tokenizer: str,
    text_columns: Sequence[str] = ("text",),
    label_column: str = "label",
    max_length: int = 128,
    truncation_side: str = "right",
    drop_labels: Sequence[int] = (),
    macro_f1: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
    num_labels: int | None = None,
    data_dir: str = "data",
) -> TextData:
    """A text classification table from local csv / tsv / json(l) / parquet files.

    ``text_columns``: one column, or two tokenised as a sentence pair; ``label_column``: integer
    class indices or class names (strings, mapped to indices in sorted order). ``max_length``:
    tokens per example after truncation (``truncation_side``: which end is cut). ``drop_labels``:
    rows with these labels are removed (SNLI's -1). ``train_limit`` / ``test_limit``: keep a fixed
    random subset of that many rows (seed 0, the same in every run). ``num_labels``: the class
    count when the files do not show every class.
    """
    from datasets import load_dataset

    files = {"train": Path(train), "test": Path(test)}
    for split, path in files.items():
        if not path.is_file():
            raise MissingDataError(f"dataset.{split}={path} is not a file")
    suffixes = {FILE_FORMATS.get(p.suffix.lower()) for p in files.values()}
    if None in suffixes or len(suffixes) != 1:
        raise ConfigError(
            f"dataset.train / dataset.test must both be one of {', '.join(FILE_FORMATS)} files; "
            f"got {files['train'].name} and {files['test'].name}"
        )
    kind = suffixes.pop()
    extra = {"delimiter": "\t"} if files["train"].suffix.lower() == ".tsv" else {}
    tables = load_dataset(
        kind,
        data_files={k: str(v) for k, v in files.items()},
        cache_dir=_cache_dir(data_dir),
        **extra,
    )
    return build_text_data(
        tables,
        text_columns=text_columns,
        label_column=label_column,
        tokenizer=tokenizer,
        max_length=max_length,
        truncation_side=truncation_side,
        drop_labels=drop_labels,
        macro_f1=macro_f1,
        train_limit=train_limit,
        test_limit=test_limit,
        num_labels=num_labels,
        where=f"{files['train'].parent}",
        files=list(files.values()),
    )


@DATASETS.register
def hub_text(
    path: str,
    tokenizer: str,
    text_columns: Sequence[str] = ("text",),
    label_column: str = "label",
    config_name: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    max_length: int = 128,
    truncation_side: str = "right",
    drop_labels: Sequence[int] = (),
    macro_f1: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
    num_labels: int | None = None,
    data_dir: str = "data",
) -> TextData:
    """A text classification data set from the Hugging Face hub (parquet; no loading scripts),
    ``load_dataset(path, config_name)``, cached in ``<data_dir>/hf_cache``; arguments as in
    :func:`text_files`."""
    from datasets import load_dataset

    call = f"load_dataset({path!r}" + (f", {config_name!r}" if config_name else "") + ")"
    try:
        tables = load_dataset(path, config_name, cache_dir=_cache_dir(data_dir))
    except Exception as err:  # datasets raises many types (ConnectionError, DatasetNotFound...)
        raise MissingDataError(
            f"{call} failed{_offline_hint()}: {_first_line(err)}; download it once with network "
            "access (it is cached in <data_dir>/hf_cache), or use dataset=text_files with local "
            "files"
        ) from None
    missing = [s for s in (train_split, test_split) if s not in tables]
    if missing:
        raise ConfigError(f"{call} has no split {missing[0]!r}; its splits: {', '.join(tables)}")
    return build_text_data(
        {"train": tables[train_split], "test": tables[test_split]},
        text_columns=text_columns,
        label_column=label_column,
        tokenizer=tokenizer,
        max_length=max_length,
        truncation_side=truncation_side,
        drop_labels=drop_labels,
        macro_f1=macro_f1,
        train_limit=train_limit,
        test_limit=test_limit,
        num_labels=num_labels,
        where=call,
        files=[
            Path(entry["filename"])
            for split in (train_split, test_split)
            for entry in tables[split].cache_files
        ],
    )


# The papers' data sets: their hub paths and columns (the run_glue task_to_keys idea).
imdb = DATASETS.register(
    partial(hub_text, path="stanfordnlp/imdb", text_columns=("text",)), name="imdb"
)
snli = DATASETS.register(
    partial(hub_text, path="stanfordnlp/snli", text_columns=("premise", "hypothesis")),
    name="snli",
)
snips = DATASETS.register(
    partial(hub_text, path="AutoIntent/snips", text_columns=("utterance",)), name="snips"
)
