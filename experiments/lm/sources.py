"""Offline text and tokenizers for the CPU-scale language-model runs (``make mini-lm-data``).

Pure functions (no network): they read package archives already on disk and write under a data
directory; ``scripts/setup_lm_data.py`` downloads the pinned archives (:data:`SOURCES`) and calls
the ``build_*`` functions. Outputs (each a folder whose ``meta.json``, written last, lists its files
with their sizes and sha256: a folder with a valid ``meta.json`` is complete and left alone):

- ``lm_raw/wiki/``: ``articles.jsonl`` (``{"title", "text"}``: the articles of the shortened
  English Wikipedia dump in the gensim 4.4.0 wheel, markup stripped by :func:`clean_wikitext`;
  redirects, non-article namespaces and articles under :data:`MIN_ARTICLE_CHARS` characters after
  cleaning are skipped) and ``lee_background.jsonl`` (``{"text"}``: one document per line of
  ``lee_background.cor``: each line is one news story of the Lee et al. (2005) background corpus,
  which is how gensim reads it too).
- ``lm_raw/pydocs/``: ``docs.jsonl`` (``{"path", "text"}``: every ``_sources/**/*.rst.txt`` of
  Debian's python3.11-doc except ``faq/``, the reStructuredText source kept as it is) and
  ``faq_qa.jsonl`` (``{"path", "question", "answer"}``: :func:`faq_pairs` of ``faq/*.rst.txt``),
  the answer-perplexity evaluation set, disjoint from the training text.
- ``models/gpt2-bpe/``: GPT-2's byte-level BPE rebuilt exactly from ``whisper/assets/
  gpt2.tiktoken`` of the openai-whisper 20250625 sdist (:func:`build_gpt2_tokenizer`).
- ``models/mini-bpe-8k/``: a byte-level BPE of :data:`MINI_VOCAB` tokens trained on the
  training text (wiki + pydocs without the FAQ) (:func:`train_mini_bpe`).
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import html
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from experiments.core.archive import Archive, Source, sha256_file
from experiments.core.io import atomic_write_bytes, is_complete, json_bytes

META = "meta.json"
WIKI = "wiki"
PYDOCS = "pydocs"
GPT2_BPE = "gpt2-bpe"
MINI_BPE = "mini-bpe-8k"
EOS = "<|endoftext|>"

WIKI_DUMP = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
LEE = "gensim/test/test_data/lee_background.cor"
PYDOC_ROOT = "usr/share/doc/python3.11/html/_sources"
TIKTOKEN = "whisper/assets/gpt2.tiktoken"

MIN_ARTICLE_CHARS = 500
"""Articles shorter than this after cleaning (stubs, disambiguation lists) are skipped."""
MIN_ANSWER_CHARS = 40
"""FAQ answers shorter than this are pointers ("See the next question.") and are skipped."""
MINI_VOCAB = 8192
"""The mini BPE's size: SPEC §4 measured GPT-2 training ~3.5x faster with 8,192 tokens than
with GPT-2's 50,257 here (the embedding and output layers dominate a small model)."""

SOURCES: dict[str, Source] = {
    # The test data is in every gensim 4.4.0 wheel (the sdist needs a compiler to even resolve);
    # the platform flags pin one wheel, so the sha256 is the same on any machine.
    WIKI: Source(
        "gensim",
        "4.4.0",
        "wheel",
        "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
        "LGPL-2.1 (gensim); Wikipedia text CC BY-SA",
        pip_args=(
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ),
    ),
    PYDOCS: Source(
        "python3.11-doc",
        "3.11.2-6+deb12u8",
        "deb",
        "python3.11-doc_3.11.2-6+deb12u8_all.deb",
        "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b",
        "PSF-2.0",
        url="http://deb.debian.org/debian/pool/main/p/python3.11/"
        "python3.11-doc_3.11.2-6+deb12u8_all.deb",
    ),
    GPT2_BPE: Source(
        "openai-whisper",
        "20250625",
        "sdist",
        "openai_whisper-20250625.tar.gz",
        "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
        "MIT",
    ),
}


def output_dir(data_dir: str | os.PathLike, name: str) -> Path:
    """Where output ``name`` (:data:`WIKI`, :data:`PYDOCS`, :data:`GPT2_BPE`, :data:`MINI_BPE`)
    lives under ``data_dir``."""
    if name in (GPT2_BPE, MINI_BPE):
        return Path(data_dir) / "models" / name
    return Path(data_dir) / "lm_raw" / name


def jsonl_bytes(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def write_outputs(
    out_dir: str | os.PathLike, payloads: Mapping[str, bytes], meta: Mapping[str, Any]
) -> None:
    """Write each payload atomically, then ``meta.json`` (with every file's size and sha256)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META).unlink(missing_ok=True)  # incomplete until the new meta is written
    for name, data in payloads.items():
        atomic_write_bytes(out_dir / name, data)
    files = {
        name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in payloads.items()
    }
    atomic_write_bytes(out_dir / META, json_bytes({**meta, "files": files}))


def _source_meta(source: Source | None, archive: str | os.PathLike) -> dict[str, Any]:
    meta: dict[str, Any] = dict(source.as_meta()) if source is not None else {}
    if Path(archive).is_file():
        meta["archive"] = Path(archive).name
        meta["archive_sha256"] = sha256_file(archive)
    return meta


# --- Wikipedia --------------------------------------------------------------------------------


def iter_pages(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """``{"title", "ns", "redirect", "text"}`` of every ``<page>`` of a MediaWiki XML export."""
    for _, elem in ET.iterparse(stream, events=("end",)):
        if elem.tag.rsplit("}", 1)[-1] != "page":
            continue
        fields: dict[str, Any] = {"title": "", "ns": "0", "redirect": False, "text": ""}
        for child in elem.iter():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag in ("title", "ns", "text"):
                fields[tag] = child.text or ""
            elif tag == "redirect":
                fields["redirect"] = True
        yield fields
        elem.clear()  # the dump is streamed: keep memory flat


_DROP_SECTIONS = {
    "references",
    "external links",
    "see also",
    "further reading",
    "notes",
    "bibliography",
    "sources",
    "footnotes",
    "citations",
    "notes and references",
}
_DROP_BLOCKS = ("gallery", "timeline", "imagemap", "math", "score", "references", "ref")
_NON_TEXT_LINKS = ("file", "image", "media", "category")


def _remove_nested(text: str, pattern: re.Pattern[str]) -> str:
    """Remove innermost matches until none is left (templates and tables nest)."""
    while True:
        text, n = pattern.subn("", text)
        if not n:
            return text


_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|(?:(?!\{\||\|\}).)*\|\}", re.S)
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")


def _link_text(match: re.Match[str]) -> str:
    """``[[target|label]]`` -> label, ``[[target]]`` -> target; files, categories and
    interlanguage links -> nothing."""
    inner = match.group(1)
    target, _, label = inner.partition("|")
    prefix = target.split(":", 1)[0].strip().lower() if ":" in target else ""
    if prefix in _NON_TEXT_LINKS or re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?|simple", prefix):
        return ""
    text = inner.rsplit("|", 1)[-1] if label else target
    return text.lstrip(":").strip()


def _drop_sections(text: str) -> str:
    """Remove the reference-list sections (:data:`_DROP_SECTIONS`) up to the next heading of the
    same or a higher level."""
    out: list[str] = []
    dropping: int | None = None
    for line in text.split("\n"):
        heading = re.fullmatch(r"(={2,6})\s*(.*?)\s*\1\s*", line)
        if heading:
            level = len(heading.group(1))
            if dropping is not None and level <= dropping:
                dropping = None
            if dropping is None and heading.group(2).strip().lower() in _DROP_SECTIONS:
                dropping = level
        if dropping is None:
            out.append(line)
    return "\n".join(out)


def clean_wikitext(text: str) -> str:
    """Plain text of an article's wikitext (the rules, in order):

    comments, ``<ref>`` elements and the blocks of :data:`_DROP_BLOCKS` are removed; reference
    sections (References, External links, See also, ...) are dropped; templates ``{{...}}`` and
    tables ``{|...|}`` are removed (nested ones too, innermost first; a template's text is lost,
    e.g. ``{{convert|5|km}}``); internal links become their label (files, images, categories and
    interlanguage links vanish, captions included); external links ``[url label]`` their label;
    bold/italic quotes, remaining HTML tags (their content kept), magic words and list / indent
    markers are removed; headings become their text on a line; HTML entities are decoded; empty
    parentheses and spaces before punctuation left by removed templates are deleted and blank
    runs collapsed.
    """
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    for tag in _DROP_BLOCKS:
        text = re.sub(rf"<{tag}\b[^>]*/>", "", text, flags=re.I)
        text = re.sub(rf"<{tag}\b[^>]*>.*?</{tag}\s*>", "", text, flags=re.I | re.S)
    text = _drop_sections(text)
    while True:  # templates and tables can hold each other
        before = text
        text = _remove_nested(_remove_nested(text, _TEMPLATE), _TABLE)
        if text == before:
            break
    text = _remove_nested_links(text)
    text = re.sub(r"\[(?:https?:|ftp:)?//[^\s\]]+\s*([^\]]*)\]", r"\1", text)
    text = re.sub(r"'{2,5}", "", text)
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.I)
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)
    text = re.sub(r"__[A-Z]+__", "", text)
    text = html.unescape(text).replace("\xa0", " ")
    return _tidy_lines(text)


def _remove_nested_links(text: str) -> str:
    while True:
        text, n = _LINK.subn(_link_text, text)
        if not n:
            return text


def _tidy_lines(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        heading = re.fullmatch(r"(={1,6})\s*(.*?)\s*\1\s*", line)
        if heading:
            line = heading.group(2)
        elif re.match(r"\s*(\{\||\|\}|\||!)", line) or line.strip() == "----":
            continue  # remnants of unbalanced table markup
        line = re.sub(r"^[*#:;]+\s*", "", line)
        line = re.sub(r"[ \t]+\(\s*[,;:]?\s*\)", "", line)  # " ()" left by removed templates
        line = re.sub(r"[ \t]+", " ", line).strip()
        line = re.sub(r" ([,.;:!?])(?=\s|$)", r"\1", line)  # " ," left by a removed template
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def wiki_articles(
    stream: IO[bytes], min_chars: int = MIN_ARTICLE_CHARS
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The cleaned articles (``{"title", "text"}``) of a dump and what was skipped."""
    articles: list[dict[str, str]] = []
    skipped: dict[str, list[str]] = {"redirect": [], "namespace": [], "short": []}
    pages = 0
    for page in iter_pages(stream):
        pages += 1
        raw = page["text"]
        if page["redirect"] or raw.lstrip().upper().startswith("#REDIRECT"):
            skipped["redirect"].append(page["title"])
        elif page["ns"] != "0":
            skipped["namespace"].append(page["title"])
        else:
            text = clean_wikitext(raw)
            if len(text) < min_chars:
                skipped["short"].append(page["title"])
            else:
                articles.append({"title": page["title"], "text": text})
    stats = {
        "pages": pages,
        "articles": len(articles),
        "characters": sum(len(a["text"]) for a in articles),
        "skipped": {k: {"count": len(v), "titles": v} for k, v in skipped.items()},
        "min_chars": min_chars,
    }
    return articles, stats


def lee_documents(text: str) -> list[dict[str, str]]:
    """One document per non-empty line of ``lee_background.cor`` (one news story per line)."""
    return [{"text": line.strip()} for line in text.splitlines() if line.strip()]


def build_wiki(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: Source | None = SOURCES[WIKI],
    force: bool = False,
) -> bool:
    """``lm_raw/wiki`` from the gensim wheel (or a folder); False if it was already complete."""
    if is_complete(out_dir, META) and not force:
        return False
    with Archive(archive) as package:
        with package.open(WIKI_DUMP) as raw:
            articles, stats = wiki_articles(bz2.BZ2File(raw))
        lee = lee_documents(package.read(LEE).decode("utf-8"))
    meta = {
        "dataset": "wiki",
        "description": "English Wikipedia articles (a shortened 2016 dump, gensim's test data) "
        "and the Lee et al. (2005) background news corpus: the pretraining text of mini-lm",
        "source": {**_source_meta(source, archive), "members": [WIKI_DUMP, LEE]},
        "rules": {
            "articles": clean_wikitext.__doc__.split("\n\n", 1)[1].strip(),
            "skip": f"redirects, pages outside namespace 0, articles under {MIN_ARTICLE_CHARS} "
            "characters after cleaning",
            "lee_background": "one document per non-empty line (one news story per line)",
        },
        "articles": stats,
        "lee_background": {
            "documents": len(lee),
            "characters": sum(len(d["text"]) for d in lee),
        },
    }
    payloads = {"articles.jsonl": jsonl_bytes(articles), "lee_background.jsonl": jsonl_bytes(lee)}
    write_outputs(out_dir, payloads, meta)
    return True


# --- Python documentation ---------------------------------------------------------------------

_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1+")
"""A reStructuredText section adornment: one punctuation character repeated (>= 2 times)."""


def rst_titles(lines: Sequence[str]) -> list[tuple[int, int, int]]:
    """``(first line, title line, level)`` of every section title of a reStructuredText file.

    A title is a non-indented text line followed by an adornment line at least as long (and
    optionally preceded by the same adornment: an overline). Levels are numbered by the order in
    which each style (character, with or without overline) first appears, as docutils does.
    """
    styles: list[tuple[str, bool]] = []
    titles: list[tuple[int, int, int]] = []
    for i in range(1, len(lines)):
        under, text = lines[i].rstrip(), lines[i - 1].rstrip()
        if not _ADORNMENT.fullmatch(under) or not text.strip() or text[0].isspace():
            continue
        if _ADORNMENT.fullmatch(text) or len(under) < len(text):
            continue
        over = i >= 2 and lines[i - 2].rstrip() == under
        style = (under[0], over)
        if style not in styles:
            styles.append(style)
        titles.append((i - 2 if over else i - 1, i - 1, styles.index(style)))
    return titles


def _trim_answer(lines: Sequence[str]) -> str:
    """A section body without surrounding blank lines and without trailing hyperlink targets /
    comments (``.. _label:`` lines), which label the next section."""
    body = list(lines)
    while body and (not body[-1].strip() or re.match(r"\.\.(\s+_[^:]+:|\s*$)", body[-1])):
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    return "\n".join(line.rstrip() for line in body)


def faq_pairs(
    text: str, path: str, min_answer: int = MIN_ANSWER_CHARS
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Question/answer pairs of one FAQ file, and the sections skipped (with the reason).

    A question is a section title at the file's deepest title level (below the document title);
    its answer is the section body up to the next title of any level (reStructuredText kept as it
    is, trailing link targets removed). Answers shorter than ``min_answer`` characters are
    pointers to other answers ("See the next question.") and are skipped.
    """
    lines = text.splitlines()
    titles = rst_titles(lines)
    deepest = max((level for _, _, level in titles), default=0)
    pairs: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    if deepest == 0:
        return pairs, skipped
    for k, (_, title, level) in enumerate(titles):
        if level != deepest:
            continue
        end = titles[k + 1][0] if k + 1 < len(titles) else len(lines)
        answer = _trim_answer(lines[title + 2 : end])
        question = lines[title].strip()
        if len(answer) < min_answer:
            skipped.append({"path": path, "question": question, "reason": "short answer"})
        else:
            pairs.append({"path": path, "question": question, "answer": answer})
    return pairs, skipped


def read_pydocs(archive: str | os.PathLike) -> dict[str, str]:
    """``{path under _sources: text}`` of every ``.rst.txt`` file in python3.11-doc (or a folder
    holding ``_sources``), in sorted order."""
    with Archive(archive) as package:
        names = package.glob(f"{PYDOC_ROOT}/*.rst.txt")
        prefix = PYDOC_ROOT
        if not names:  # a folder that is _sources itself
            names, prefix = [n for n in package.names if n.endswith(".rst.txt")], ""
        if not names:
            raise FileNotFoundError(f"no {PYDOC_ROOT}/**/*.rst.txt in {archive}")
        docs = {}
        for name in names:
            relative = name.split(f"{prefix}/", 1)[1] if prefix else name
            docs[relative] = package.read(name).decode("utf-8")
    return dict(sorted(docs.items()))


def build_pydocs(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: Source | None = SOURCES[PYDOCS],
    force: bool = False,
) -> bool:
    """``lm_raw/pydocs`` from the python3.11-doc ``.deb``; False if it was already complete."""
    if is_complete(out_dir, META) and not force:
        return False
    files = read_pydocs(archive)
    docs = [{"path": p, "text": t} for p, t in files.items() if not p.startswith("faq/")]
    pairs: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    for path, text in files.items():
        if path.startswith("faq/"):
            found, dropped = faq_pairs(text, path)
            pairs += found
            skipped += dropped
    meta = {
        "dataset": "pydocs",
        "description": "the Python 3.11 documentation sources (reStructuredText): docs.jsonl, "
        "the continued-pretraining text of mini-lm, without the FAQ; faq_qa.jsonl, the FAQ's "
        "question/answer pairs, the answer-perplexity evaluation set",
        "source": {**_source_meta(source, archive), "folder": PYDOC_ROOT},
        "rules": {
            "docs": "every _sources/**/*.rst.txt except faq/, text as it is, sorted by path",
            "faq_qa": faq_pairs.__doc__.split("\n\n", 1)[1].strip().replace("\n    ", " "),
            "min_answer_chars": MIN_ANSWER_CHARS,
        },
        "docs": {"files": len(docs), "characters": sum(len(d["text"]) for d in docs)},
        "faq_qa": {
            "files": sorted({p["path"] for p in pairs}),
            "pairs": len(pairs),
            "answer_characters": sum(len(p["answer"]) for p in pairs),
            "skipped": skipped,
        },
    }
    write_outputs(
        out_dir, {"docs.jsonl": jsonl_bytes(docs), "faq_qa.jsonl": jsonl_bytes(pairs)}, meta
    )
    return True


# --- GPT-2's BPE from tiktoken ranks ----------------------------------------------------------

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""GPT-2's pre-tokenisation regex (tiktoken's r50k_base; HF's ByteLevel pre-tokenizer)."""


def read_tiktoken(data: bytes) -> dict[bytes, int]:
    """``{token bytes: rank}`` of a ``.tiktoken`` file (``<base64 token> <rank>`` per line)."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.decode("ascii").splitlines(), start=1):
        if not line.strip():
            continue
        token, _, rank = line.partition(" ")
        if not rank.strip().isdigit():
            raise ValueError(f"line {number}: expected '<base64> <rank>', got {line[:60]!r}")
        ranks[base64.b64decode(token)] = int(rank)
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError("the ranks are not 0..n-1, each once")
    return ranks


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the alphabet of vocab.json)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def bpe_parts(ranks: Mapping[bytes, int], token: bytes, max_rank: int | None = None) -> list[bytes]:
    """Byte-pair merge ``token`` by rank (tiktoken's rule: always merge the adjacent pair whose
    concatenation has the lowest rank), using only ranks below ``max_rank``."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, best_rank = -1, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best_rank is None or (max_rank is not None and best_rank >= max_rank):
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def reference_encode(text: str, ranks: Mapping[bytes, int]) -> list[int]:
    """tiktoken's encoding of ``text`` (no special tokens) computed directly from the ranks: the
    reference the rebuilt tokenizer is checked against."""
    import regex

    ids: list[int] = []
    for piece in regex.findall(GPT2_PATTERN, text):
        data = piece.encode("utf-8")
        if data in ranks:
            ids.append(ranks[data])
        else:
            ids += [ranks[p] for p in bpe_parts(ranks, data)]
    return ids


def vocab_and_merges(ranks: Mapping[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json and merges.txt equivalent to the ranks: each multi-byte token's merge is the
    pair BPE reaches with only lower ranks (so merge order = rank order)."""
    byte_chars = bytes_to_unicode()

    def show(token: bytes) -> str:
        return "".join(byte_chars[b] for b in token)

    vocab = {show(token): rank for token, rank in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = bpe_parts(ranks, token, max_rank=rank)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not one merge of lower ranks")
        merges.append((show(parts[0]), show(parts[1])))
    return vocab, merges


def byte_level_tokenizer(vocab: Mapping[str, int], merges: Sequence[tuple[str, str]]) -> Any:
    """A ``tokenizers`` byte-level BPE as GPT-2's (no prefix space, GPT-2 regex) with
    :data:`EOS` as a special token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(merges), fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(EOS, special=True, normalized=False)])
    return tok


def save_transformers_tokenizer(tok: Any, out_dir: Path, model_max_length: int) -> list[str]:
    """Save a ``tokenizers`` tokenizer as a transformers GPT-2 tokenizer (eos = bos = unk =
    :data:`EOS`); the names of the files written."""
    from transformers import GPT2TokenizerFast

    fast = GPT2TokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        model_max_length=model_max_length,
    )
    return [Path(p).name for p in fast.save_pretrained(str(out_dir)) if Path(p).is_file()]


VERIFY_STRINGS = (
    "Hello world! It's 2024, isn't it? They'll say we've done what he'd do.",
    "  leading spaces,\n\n\ttabs and\r\nCRLF line ends   \n",
    "naïve café — Zürich, 東京, Ελληνικά; emoji 😀👍🏽",
    "def f(x):\n    return x**2  # squared\n\nprint(f(3))  # 9\n",
    "1234567890 3.14159 1e-3 0x1F $5.00 100%",
    "Anarchism is a political philosophy that advocates self-governed societies.",
)
"""Strings the rebuilt GPT-2 tokenizer must encode exactly as :func:`reference_encode` does:
contractions, whitespace runs, non-Latin scripts and multi-byte emoji, code, numbers."""


def verify_tokenizer(tokenizer_dir: Path, ranks: Mapping[bytes, int], texts: Iterable[str]) -> int:
    """Load ``tokenizer_dir`` with transformers and check it encodes every text as the rank-based
    reference does (and decodes back to it); the number of tokens checked."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    checked = 0
    for text in texts:
        expected = reference_encode(text, ranks)
        got = tok(text, add_special_tokens=False)["input_ids"]
        if got != expected:
            pairs = zip(got, expected, strict=False)
            first = next((i for i, (a, b) in enumerate(pairs) if a != b), len(expected))
            raise ValueError(
                f"the rebuilt tokenizer differs from the ranks on {text[:40]!r} at token {first}"
            )
        if tok.decode(got) != text:
            raise ValueError(f"the rebuilt tokenizer does not decode {text[:40]!r} back")
        checked += len(got)
    return checked


def _write_vocab_files(
    out_dir: Path, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]]
) -> None:
    """vocab.json and merges.txt, as GPT-2's slow tokenizer reads them."""
    atomic_write_bytes(out_dir / "vocab.json", json.dumps(dict(vocab), ensure_ascii=False).encode())
    text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    atomic_write_bytes(out_dir / "merges.txt", text.encode("utf-8"))


def _finish_model_dir(out_dir: Path, meta: Mapping[str, Any]) -> None:
    """``meta.json`` (last) listing every file of the tokenizer folder with size and sha256."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(out_dir.iterdir())
        if p.is_file() and p.name != META and not p.name.startswith(".")
    }
    atomic_write_bytes(out_dir / META, json_bytes({**meta, "files": files}))


def _start_dir(out_dir: Path) -> None:
    """An empty folder (a rebuilt tokenizer must not keep files of an earlier one)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def build_gpt2_tokenizer(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: Source | None = SOURCES[GPT2_BPE],
    force: bool = False,
    verify_texts: Iterable[str] = (),
) -> bool:
    """``models/gpt2-bpe`` from whisper's ``gpt2.tiktoken`` (the sdist, or the ``.tiktoken`` file
    itself); checked against :func:`reference_encode` on :data:`VERIFY_STRINGS` and
    ``verify_texts``. False if it was already complete."""
    out_dir = Path(out_dir)
    if is_complete(out_dir, META) and not force:
        return False
    if Path(archive).is_file() and str(archive).endswith(".tiktoken"):
        data = Path(archive).read_bytes()
    else:
        with Archive(archive) as package:
            data = package.read(TIKTOKEN)
    ranks = read_tiktoken(data)
    vocab, merges = vocab_and_merges(ranks)
    eos_id = len(vocab)
    vocab[EOS] = eos_id  # GPT-2: the one special token, after the 50,256 BPE tokens
    _start_dir(out_dir)
    saved = save_transformers_tokenizer(byte_level_tokenizer(vocab, merges), out_dir, 1024)
    _write_vocab_files(out_dir, vocab, merges)
    checked = verify_tokenizer(out_dir, ranks, [*VERIFY_STRINGS, *verify_texts])
    meta = {
        "model": GPT2_BPE,
        "description": "GPT-2's byte-level BPE (tiktoken r50k_base), rebuilt from the ranks in "
        "openai-whisper's gpt2.tiktoken: vocab.json (byte-level alphabet) and merges.txt (each "
        "token's last merge, in rank order) with <|endoftext|> as eos = bos = unk",
        "source": {
            **_source_meta(source, archive),
            "member": TIKTOKEN,
            "member_sha256": hashlib.sha256(data).hexdigest(),
        },
        "vocab_size": len(vocab),
        "merges": len(merges),
        "eos_token": EOS,
        "eos_id": eos_id,
        "transformers_files": saved,
        "verified": {
            "rule": "tokenizer(text) == tiktoken's rank-based BPE applied to the GPT-2 regex pieces",
            "texts": len(VERIFY_STRINGS) + len(list(verify_texts)),
            "tokens": checked,
        },
    }
    _finish_model_dir(out_dir, meta)
    return True


def train_mini_bpe(
    texts: Iterable[str],
    out_dir: str | os.PathLike,
    vocab_size: int = MINI_VOCAB,
    min_frequency: int = 2,
    inputs: Mapping[str, Any] | None = None,
    model_max_length: int = 1024,
) -> dict[str, Any]:
    """Train a GPT-2-style byte-level BPE on ``texts`` and save it as a transformers tokenizer
    with :data:`EOS` (id 0) as eos = bos = unk; its ``meta.json`` records the parameters."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    out_dir = Path(out_dir)
    tok = Tokenizer(models.BPE(fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    params = {
        "model": "BPE (byte-level, GPT-2 pre-tokenisation regex, no prefix space)",
        "vocab_size": vocab_size,
        "min_frequency": min_frequency,
        "special_tokens": [EOS],
        "initial_alphabet": "the 256 byte-level characters",
    }
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(texts)
    tok.train_from_iterator(texts, trainer)
    _start_dir(out_dir)
    saved = save_transformers_tokenizer(tok, out_dir, model_max_length)
    import tokenizers

    meta = {
        "model": out_dir.name,
        "description": "a byte-level BPE trained on the mini-lm training text (the fast "
        "tokenizer of make mini-lm; GPT-2's exact BPE is models/gpt2-bpe)",
        "training": {
            **params,
            "tokenizers_version": tokenizers.__version__,
            "documents": len(texts),
        },
        "inputs": dict(inputs or {}),
        "vocab_size": tok.get_vocab_size(),
        "eos_token": EOS,
        "eos_id": tok.token_to_id(EOS),
        "transformers_files": saved,
    }
    _finish_model_dir(out_dir, meta)
    return meta


def mini_bpe_texts(data_dir: str | os.PathLike) -> tuple[list[str], dict[str, Any]]:
    """The mini-lm training text in a fixed order (wiki articles, lee_background, Python docs
    without the FAQ) and each input file's sha256."""
    files = [
        output_dir(data_dir, WIKI) / "articles.jsonl",
        output_dir(data_dir, WIKI) / "lee_background.jsonl",
        output_dir(data_dir, PYDOCS) / "docs.jsonl",
    ]
    texts = [row["text"] for path in files for row in read_jsonl(path)]
    inputs = {f"{p.parent.name}/{p.name}": sha256_file(p) for p in files}
    return texts, inputs
