"""Fetch the offline text and tokenizers of the CPU-scale language-model runs (``make mini-lm-data``).

Usage (from the repository root)::

    python scripts/setup_lm_data.py                       # into $KINETICS_DATA_DIR or data/
    python scripts/setup_lm_data.py --data-dir /tmp/lm --force --only wiki

Writes (see ``experiments/lm/sources.py`` for the rules)::

    <data dir>/lm_raw/wiki/articles.jsonl, lee_background.jsonl, meta.json    (gensim 4.4.0 wheel)
    <data dir>/lm_raw/pydocs/docs.jsonl, faq_qa.jsonl, meta.json      (Debian python3.11-doc .deb)
    <data dir>/models/gpt2-bpe/ (tokenizer.json, vocab.json, merges.txt, ...)  (openai-whisper sdist)
    <data dir>/models/mini-bpe-8k/ (a BPE trained on the wiki + pydocs training text)

Each pinned archive (~41 MB in all) is fetched with ``pip download --no-deps`` or ``apt-get
download`` (a Debian pool URL where apt is absent) into a temporary folder and checked against
its sha256; nothing is committed. A complete output folder is left alone (nothing is downloaded
for it) unless ``--force``; the mini BPE is retrained when its input text changed. The rebuilt
GPT-2 tokenizer is checked to encode all of the text exactly as the rank-based BPE does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: import this checkout's packages
    sys.path.insert(0, str(REPO))

from experiments.core.archive import FetchError, fetch  # noqa: E402
from experiments.core.io import is_complete  # noqa: E402
from experiments.lm import sources as src  # noqa: E402

OUTPUTS = (src.WIKI, src.PYDOCS, src.GPT2_BPE, src.MINI_BPE)
BUILDERS = {
    src.WIKI: src.build_wiki,
    src.PYDOCS: src.build_pydocs,
}


class SetupError(Exception):
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
        choices=OUTPUTS,
        default=list(OUTPUTS),
        help="set up only these (default: all four)",
    )
    parser.add_argument("--force", action="store_true", help="rewrite complete outputs too")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = Path(default_data_dir())
    return args


def training_text(data_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The mini BPE's training text; a :class:`SetupError` if wiki or pydocs is missing."""
    for name in (src.WIKI, src.PYDOCS):
        if not is_complete(src.output_dir(data_dir, name), src.META):
            raise SetupError(
                f"{src.MINI_BPE} is trained on {name}: set that up first (--only {name})"
            )
    return src.mini_bpe_texts(data_dir)


def mini_bpe_current(data_dir: Path, inputs: dict[str, str]) -> bool:
    """Whether the mini BPE is complete and was trained on exactly these input files."""
    out = src.output_dir(data_dir, src.MINI_BPE)
    if not is_complete(out, src.META):
        return False
    return json.loads((out / src.META).read_text(encoding="utf-8")).get("inputs") == inputs


def verify_texts(data_dir: Path) -> list[str]:
    """All of the mini-lm text (training text and FAQ pairs), when it is set up."""
    wiki, pydocs = (src.output_dir(data_dir, n) for n in (src.WIKI, src.PYDOCS))
    if not (is_complete(wiki, src.META) and is_complete(pydocs, src.META)):
        return []
    texts, _ = src.mini_bpe_texts(data_dir)
    faq = src.read_jsonl(pydocs / "faq_qa.jsonl")
    return texts + [f"{p['question']}\n\n{p['answer']}" for p in faq]


def set_up(name: str, args: argparse.Namespace, tmp: Path) -> None:
    """Build one output (downloading its archive unless it is the mini BPE)."""
    out = src.output_dir(args.data_dir, name)
    if name == src.MINI_BPE:
        texts, inputs = training_text(args.data_dir)
        if mini_bpe_current(args.data_dir, inputs) and not args.force:
            print(f"{name}: complete, left as it is ({out}; --force rewrites it)")
            return
        started = time.perf_counter()
        meta = src.train_mini_bpe(texts, out, inputs=inputs)
        print(
            f"{name}: trained on {meta['training']['documents']} documents in "
            f"{time.perf_counter() - started:.0f} s, vocab {meta['vocab_size']} -> {out}"
        )
        return
    if is_complete(out, src.META) and not args.force:
        print(f"{name}: complete, left as it is ({out}; --force rewrites it)")
        return
    source = src.SOURCES[name]
    print(f"{name}: downloading {source.requirement} ({source.kind}) ...")
    archive = fetch(source, tmp)
    started = time.perf_counter()
    if name == src.GPT2_BPE:
        src.build_gpt2_tokenizer(archive, out, force=True, verify_texts=verify_texts(args.data_dir))
    else:
        BUILDERS[name](archive, out, force=True)
    archive.unlink()
    print(f"{name}: written to {out} in {time.perf_counter() - started:.0f} s")


def summary(data_dir: Path, name: str) -> str:
    """One line of counts from an output's ``meta.json``."""
    meta = json.loads((src.output_dir(data_dir, name) / src.META).read_text(encoding="utf-8"))
    if name == src.WIKI:
        a, lee = meta["articles"], meta["lee_background"]
        skipped = ", ".join(f"{v['count']} {k}" for k, v in a["skipped"].items())
        return (
            f"{a['articles']} articles ({a['characters']:,} chars; skipped {skipped}), "
            f"lee_background {lee['documents']} documents ({lee['characters']:,} chars)"
        )
    if name == src.PYDOCS:
        d, q = meta["docs"], meta["faq_qa"]
        return (
            f"{d['files']} documents ({d['characters']:,} chars), {q['pairs']} FAQ pairs "
            f"({len(q['skipped'])} short answers skipped)"
        )
    verified = meta.get("verified", {})
    extra = f", checked on {verified['tokens']:,} tokens" if verified else ""
    return f"vocab {meta['vocab_size']:,}, eos {meta['eos_token']} = {meta['eos_id']}{extra}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tokenizers are loaded from local folders only
    from transformers.utils import logging

    logging.set_verbosity_error()  # long documents in the check are expected
    with tempfile.TemporaryDirectory(prefix="kinetics-lm-") as tmp:
        for name in [n for n in OUTPUTS if n in args.only]:
            set_up(name, args, Path(tmp))
    for name in [n for n in OUTPUTS if n in args.only]:
        print(f"{name}: {summary(args.data_dir, name)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SetupError, FetchError) as error:
        sys.exit(f"error: {error}")
