"""The offline LM text and tokenizers (experiments/lm/sources.py, scripts/setup_lm_data.py) on
synthetic inputs in the real formats: a MediaWiki XML export compressed with bz2 inside a
gensim-like wheel, reStructuredText FAQ files inside a Debian ``.deb`` (an ar archive holding
``data.tar.xz``), and a tiny ``.tiktoken`` rank file. No downloads."""

from __future__ import annotations

import base64
import bz2
import importlib.util
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from experiments.core import archive as core_archive
from experiments.core.archive import Archive, FetchError, Source
from experiments.core.io import is_complete
from experiments.lm import sources as src

ROOT = Path(__file__).resolve().parents[2]
NS = "http://www.mediawiki.org/xml/export-0.10/"

ARTICLE = """{{Infobox theory|name={{nowrap|Kinetic theory}}|field=physics}}
'''Kinetic theory''' describes a [[gas]] as many small [[Particle|particles]]<ref>{{cite book|title=Gases}}</ref>
in random motion,<ref name="a"/> colliding with each other ({{lang|de|Kinetische Theorie}}).
[[File:Gas.png|thumb|Molecules of a [[gas]] in a box]]
<!-- a hidden comment -->
{| class="wikitable"
| cell || {{small|text}}
|}
== History ==
Early work by [[Daniel Bernoulli]] in 1738 ([http://example.org the book]).
* a list item with ''emphasis''
Pressure&nbsp;rises.

== References ==
* Some book, 1900.
{{Reflist}}
[[Category:Physics]]
[[de:Kinetische Gastheorie]]
"""
ARTICLE_TEXT = (
    "Kinetic theory describes a gas as many small particles\n"
    "in random motion, colliding with each other.\n\n"
    "History\n"
    "Early work by Daniel Bernoulli in 1738 (the book).\n"
    "a list item with emphasis\n"
    "Pressure rises."
)


def page(title: str, text: str, ns: int = 0, redirect: str | None = None) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    red = f'<redirect title="{redirect}" />' if redirect else ""
    return (
        f"<page><title>{title}</title><ns>{ns}</ns><id>1</id>{red}<revision><id>2</id>"
        f'<text xml:space="preserve">{escaped}</text></revision></page>'
    )


def wiki_dump(min_chars: int = 0) -> bytes:
    padding = " Filler sentence about gases." * (min_chars // 28 + 1) if min_chars else ""
    pages = [
        page("Kinetic theory", ARTICLE.replace("rises.", "rises." + padding)),
        page("KineticTheory", "#REDIRECT [[Kinetic theory]]", redirect="Kinetic theory"),
        page("Talk:Kinetic theory", "A discussion " * 100, ns=1),
        page("Stub", "Too short."),
    ]
    xml = f'<mediawiki xmlns="{NS}" version="0.10"><siteinfo/>{"".join(pages)}</mediawiki>'
    return bz2.compress(xml.encode("utf-8"))


LEE = "First news story, one line.\nSecond story.\n\n   Third story with spaces.   \n"

FAQ = """:tocdepth: 2

===========
General FAQ
===========

.. contents::

General Information
===================

What is Python?
---------------

Python is an interpreted, interactive, object-oriented programming language.

   An indented quotation that is part of the answer.


.. _faq-label:

How do I use ``sys.argv``?
--------------------------

Read it::

   import sys
   print(sys.argv)

It is a list of strings.

Why?
----

See the next question.
"""


def write_gensim_wheel(path: Path, min_chars: int = src.MIN_ARTICLE_CHARS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(src.WIKI_DUMP, wiki_dump(min_chars))
        z.writestr(src.LEE, LEE)
        z.writestr("gensim/__init__.py", "")
    return path


def ar_archive(members: dict[str, bytes]) -> bytes:
    """A Unix ar archive (the container format of a .deb)."""
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out.write(header.encode("ascii") + data + (b"\n" if len(data) % 2 else b""))
    return out.getvalue()


def write_deb(path: Path, files: dict[str, str]) -> Path:
    """A python3.11-doc-like .deb holding ``_sources/<name>`` for each file."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, text in files.items():
            raw = text.encode("utf-8")
            info = tarfile.TarInfo(f"./{src.PYDOC_ROOT}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    members = {"debian-binary": b"2.0\n", "control.tar.xz": b"", "data.tar.xz": data.getvalue()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ar_archive(members))
    return path


PYDOC_FILES = {
    "library/os.rst.txt": ":mod:`os` --- Miscellaneous OS interfaces\n====\n\nText.\n",
    "about.rst.txt": "About\n=====\n\nThese documents.\n",
    "faq/general.rst.txt": FAQ,
    "faq/index.rst.txt": "###\nFAQ\n###\n\n.. toctree::\n\n   general.rst\n",
}

# A tiny rank file: the 256 bytes, then these merges in rank order.
MERGES = [(b"t", b"h"), (b"th", b"e"), (b" ", b"the"), (b"i", b"n"), (b"in", b"g"), (b" ", b"t")]
MERGES += [(b"e", b"r")]


def tiktoken_bytes(merges=MERGES) -> bytes:
    tokens = [bytes([b]) for b in range(256)] + [a + b for a, b in merges]
    return b"".join(base64.b64encode(t) + f" {rank}\n".encode() for rank, t in enumerate(tokens))


def write_whisper_sdist(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        data = tiktoken_bytes()
        info = tarfile.TarInfo(f"openai_whisper-20250625/{src.TIKTOKEN}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


# --- Wikipedia --------------------------------------------------------------------------------


def test_wikitext_is_cleaned_by_the_documented_rules():
    assert src.clean_wikitext(ARTICLE) == ARTICLE_TEXT


def test_wiki_articles_skip_redirects_other_namespaces_and_stubs():
    articles, stats = src.wiki_articles(io.BytesIO(bz2.decompress(wiki_dump())), min_chars=20)
    assert articles == [{"title": "Kinetic theory", "text": ARTICLE_TEXT}]
    assert stats["pages"] == 4 and stats["articles"] == 1
    assert {k: v["titles"] for k, v in stats["skipped"].items()} == {
        "redirect": ["KineticTheory"],
        "namespace": ["Talk:Kinetic theory"],
        "short": ["Stub"],
    }


def test_build_wiki(tmp_path):
    wheel = write_gensim_wheel(tmp_path / "gensim.whl")
    out = tmp_path / "lm_raw" / "wiki"
    assert src.build_wiki(wheel, out, source=src.SOURCES[src.WIKI])
    articles = list(src.read_jsonl(out / "articles.jsonl"))
    assert [a["title"] for a in articles] == ["Kinetic theory"]
    assert articles[0]["text"].startswith(ARTICLE_TEXT)
    assert len(articles[0]["text"]) >= src.MIN_ARTICLE_CHARS
    assert list(src.read_jsonl(out / "lee_background.jsonl")) == [
        {"text": "First news story, one line."},
        {"text": "Second story."},
        {"text": "Third story with spaces."},
    ]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"]["package"] == "gensim" and meta["lee_background"]["documents"] == 3
    assert is_complete(out, "meta.json")
    assert not src.build_wiki(wheel, out)  # complete: left alone
    assert src.build_wiki(wheel, out, force=True)


# --- Python docs ------------------------------------------------------------------------------


def test_faq_questions_are_the_deepest_titles_and_answers_their_bodies():
    pairs, skipped = src.faq_pairs(FAQ, "faq/general.rst.txt")
    assert [p["question"] for p in pairs] == ["What is Python?", "How do I use ``sys.argv``?"]
    assert pairs[0]["answer"] == (
        "Python is an interpreted, interactive, object-oriented programming language.\n\n"
        "   An indented quotation that is part of the answer."
    )  # the label of the next section is not part of this answer
    assert pairs[1]["answer"] == (
        "Read it::\n\n   import sys\n   print(sys.argv)\n\nIt is a list of strings."
    )
    assert skipped == [
        {"path": "faq/general.rst.txt", "question": "Why?", "reason": "short answer"}
    ]


def test_rst_titles_levels_follow_first_appearance():
    lines = FAQ.splitlines()
    titles = [(lines[t], level) for _, t, level in src.rst_titles(lines)]
    assert titles == [
        ("General FAQ", 0),
        ("General Information", 1),
        ("What is Python?", 2),
        ("How do I use ``sys.argv``?", 2),
        ("Why?", 2),
    ]
    assert src.faq_pairs("###\nFAQ\n###\n\nonly a title\n", "faq/index.rst.txt") == ([], [])


def test_build_pydocs_from_a_deb(tmp_path):
    deb = write_deb(tmp_path / "python3.11-doc.deb", PYDOC_FILES)
    with Archive(deb) as package:  # the .deb is read through its data.tar.xz
        assert package.find(f"{src.PYDOC_ROOT}/about.rst.txt") is not None
    out = tmp_path / "lm_raw" / "pydocs"
    assert src.build_pydocs(deb, out, source=None)
    docs = list(src.read_jsonl(out / "docs.jsonl"))
    assert [d["path"] for d in docs] == ["about.rst.txt", "library/os.rst.txt"]  # no faq/
    assert docs[0]["text"] == PYDOC_FILES["about.rst.txt"]
    pairs = list(src.read_jsonl(out / "faq_qa.jsonl"))
    assert [(p["path"], p["question"]) for p in pairs] == [
        ("faq/general.rst.txt", "What is Python?"),
        ("faq/general.rst.txt", "How do I use ``sys.argv``?"),
    ]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["docs"]["files"] == 2 and meta["faq_qa"]["pairs"] == 2
    assert len(meta["faq_qa"]["skipped"]) == 1 and is_complete(out, "meta.json")


# --- GPT-2's BPE from ranks -------------------------------------------------------------------


def test_tiktoken_ranks_become_the_same_merges():
    ranks = src.read_tiktoken(tiktoken_bytes())
    vocab, merges = src.vocab_and_merges(ranks)
    chars = src.bytes_to_unicode()
    assert len(set(chars.values())) == 256 and chars[ord(" ")] == "Ġ" and chars[ord("\n")] == "Ċ"

    def show(token: bytes) -> str:
        return "".join(chars[b] for b in token)

    assert merges == [(show(a), show(b)) for a, b in MERGES]
    assert vocab["Ġthe"] == 258 and len(vocab) == 256 + len(MERGES)
    # tiktoken's rule, by hand: " thing" -> " " "th" "i" "n" "g" -> " " "th" "in" "g" -> " " "th" "ing"
    assert src.reference_encode(" the thing", ranks) == [258, 32, 256, 260]


def test_rebuilt_tokenizer_matches_the_rank_reference(tmp_path):
    from transformers import AutoTokenizer

    sdist = write_whisper_sdist(tmp_path / "whisper.tar.gz")
    out = tmp_path / "models" / "gpt2-bpe"
    extra = ["the thing is there\n\n  other things", "naïve"]
    assert src.build_gpt2_tokenizer(sdist, out, source=None, verify_texts=extra)
    ranks = src.read_tiktoken(tiktoken_bytes())
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 256 + len(MERGES)
    assert tok.bos_token_id == tok.eos_token_id == len(tok) - 1
    for text in [*src.VERIFY_STRINGS, *extra]:
        assert tok(text, add_special_tokens=False)["input_ids"] == src.reference_encode(text, ranks)
    assert tok(" the thing", add_special_tokens=False)["input_ids"] == [258, 32, 256, 260]
    merges = (out / "merges.txt").read_text().splitlines()
    assert merges == ["#version: 0.2", "t h", "th e", "Ġ the", "i n", "in g", "Ġ t", "e r"]
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["<|endoftext|>"] == 263 and vocab["Ġthe"] == 258
    meta = json.loads((out / "meta.json").read_text())
    assert meta["eos_id"] == 263 and meta["verified"]["texts"] == len(src.VERIFY_STRINGS) + 2
    assert is_complete(out, "meta.json") and not src.build_gpt2_tokenizer(sdist, out)


def test_the_check_catches_a_wrong_merge_order(tmp_path):
    ranks = src.read_tiktoken(tiktoken_bytes())
    vocab, merges = src.vocab_and_merges(ranks)
    vocab[src.EOS] = len(vocab)
    wrong = src.byte_level_tokenizer(vocab, list(reversed(merges)))  # " t" before "th"
    src.save_transformers_tokenizer(wrong, tmp_path, 1024)
    with pytest.raises(ValueError, match="differs from the ranks"):
        src.verify_tokenizer(tmp_path, ranks, [" the"])


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"dGg= x\n", "expected '<base64> <rank>'"), (b"dA== 0\ndGg= 2\n", "not 0..n-1")],
)
def test_bad_tiktoken_files(data, message):
    with pytest.raises(ValueError, match=message):
        src.read_tiktoken(data)


# --- the mini BPE -----------------------------------------------------------------------------


def test_mini_bpe_is_deterministic_and_loads(tmp_path):
    from transformers import AutoTokenizer

    texts = [f"def function_{i}(x):\n    return x + {i}  # the answer" for i in range(200)]
    first = src.train_mini_bpe(texts, tmp_path / "a", vocab_size=300, inputs={"x": "1"})
    src.train_mini_bpe(texts, tmp_path / "b", vocab_size=300)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()
    assert first["eos_id"] == 0 and first["vocab_size"] == 300
    assert first["training"]["min_frequency"] == 2 and first["inputs"] == {"x": "1"}
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "a"))
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 0
    ids = tok("def function_7(x):", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "def function_7(x):" and 0 not in ids


# --- fetching ---------------------------------------------------------------------------------


def test_a_deb_is_fetched_with_apt_get_and_checked(tmp_path, monkeypatch):
    payload = b"a deb"
    source = Source("pkg", "1.0-1", "deb", "pkg_1.0-1_all.deb", "0" * 64, "x", url="http://x/p.deb")
    commands = []

    def fake_run(command, cwd=None, **kwargs):
        commands.append(command)
        Path(cwd, source.filename).write_bytes(payload)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(core_archive.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(core_archive.subprocess, "run", fake_run)
    with pytest.raises(FetchError, match="has sha256"):
        core_archive.fetch(source, tmp_path)
    assert commands == [["apt-get", "download", "-q", "pkg=1.0-1"]]
    import hashlib

    good = Source(**{**source.__dict__, "sha256": hashlib.sha256(payload).hexdigest()})
    assert core_archive.fetch(good, tmp_path).read_bytes() == payload
    # without apt-get: the pool URL
    monkeypatch.setattr(core_archive.shutil, "which", lambda name: None)
    monkeypatch.setattr(
        core_archive.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload)
    )
    (tmp_path / good.filename).unlink()
    assert core_archive.fetch(good, tmp_path).read_bytes() == payload


# --- the script -------------------------------------------------------------------------------


def load_script():
    spec = importlib.util.spec_from_file_location(
        "setup_lm_data", ROOT / "scripts" / "setup_lm_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_writes_every_output_once(tmp_path, monkeypatch, capsys):
    script = load_script()
    archives = {
        "gensim": write_gensim_wheel(tmp_path / "pypi" / "gensim.whl"),
        "python3.11-doc": write_deb(tmp_path / "deb" / "doc.deb", PYDOC_FILES),
        "openai-whisper": write_whisper_sdist(tmp_path / "pypi" / "whisper.tar.gz"),
    }
    downloads = []

    def fake_fetch(source, dest):
        downloads.append(source.package)
        path = dest / source.filename
        path.write_bytes(archives[source.package].read_bytes())
        return path

    monkeypatch.setattr(script, "fetch", fake_fetch)
    data = tmp_path / "data"
    assert script.main(["--data-dir", str(data)]) == 0
    assert downloads == ["gensim", "python3.11-doc", "openai-whisper"]
    for name in script.OUTPUTS:
        assert is_complete(src.output_dir(data, name), "meta.json"), name
    printed = capsys.readouterr().out
    assert "wiki: 1 articles" in printed and "2 FAQ pairs" in printed
    gpt2 = json.loads((data / "models/gpt2-bpe/meta.json").read_text())
    assert gpt2["verified"]["texts"] > len(src.VERIFY_STRINGS)  # all the text was checked too

    assert script.main(["--data-dir", str(data)]) == 0  # nothing to do
    assert len(downloads) == 3 and capsys.readouterr().out.count("complete, left as it is") == 4
    # new text: the mini BPE is trained again
    write_deb(archives["python3.11-doc"], {**PYDOC_FILES, "new.rst.txt": "New\n===\n\nMore.\n"})
    assert script.main(["--data-dir", str(data), "--force", "--only", "pydocs"]) == 0
    assert script.main(["--data-dir", str(data), "--only", "mini-bpe-8k"]) == 0
    assert "mini-bpe-8k: trained on" in capsys.readouterr().out


def test_script_needs_the_text_before_the_mini_bpe(tmp_path):
    script = load_script()
    with pytest.raises(script.SetupError, match="set that up first"):
        script.main(["--data-dir", str(tmp_path), "--only", "mini-bpe-8k"])
