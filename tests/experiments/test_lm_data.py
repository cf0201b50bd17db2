"""Token shards (experiments/lm/shards.py) and their preparation (experiments/lm/prepare.py,
scripts/prepare_lm_data.py) on tiny local jsonl sources with tokenizers built here. No network:
the hub source is refused offline."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_lm_data import (
    random_texts,
    write_bpe_tokenizer,
    write_jsonl,
    write_token_shards,
    write_wide_tokenizer,
)

from experiments.core.errors import ConfigError, MissingDataError
from experiments.lm import prepare as prep
from experiments.lm import shards

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return write_bpe_tokenizer(tmp_path_factory.mktemp("tok") / "bpe")


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def local(name: str, path: Path, weight: float = 1.0, **extra) -> dict:
    return {"name": name, "files": [str(path)], "format": "json", "weight": weight, **extra}


def run(sources, tokenizer_dir, out, **kwargs):
    """prepare() with small defaults; returns (index, log lines)."""
    lines: list[str] = []
    params = {"train_tokens": None, "val_tokens": 100, "shard_tokens": 97, "seed": 0}
    params.update(kwargs)
    index = prep.prepare(
        sources, str(tokenizer_dir), out, progress=False, log=lines.append, **params
    )
    return index, lines


def documents(out: Path, split: str) -> list[list[int]]:
    """The split's token documents (split at eos, eos dropped)."""
    data = shards.open_split(out, split)
    tokens = data.window(0, len(data)).tolist()
    docs, current = [], []
    for t in tokens:
        if t == data.eos_id:
            docs.append(current)
            current = []
        else:
            current.append(t)
    assert current == []  # the split ends with an eos
    return docs


def tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix == ".bin"}


# --- the format -------------------------------------------------------------------------------


def test_dtype_follows_the_vocabulary():
    assert shards.dtype_for(50257) == np.dtype("<u2")
    assert shards.dtype_for(65536) == np.dtype("<u2")
    assert shards.dtype_for(65537) == np.dtype("<u4")
    assert shards.dtype_for(151646) == np.dtype("<u4")
    assert shards.dtype_name(shards.dtype_for(10)) == "uint16"


def test_shards_round_trip_and_windows_cross_boundaries(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 100, size=rng.integers(1, 30)).tolist() for _ in range(40)]
    write_token_shards(tmp_path, docs[:35], docs[35:], vocab_size=100, shard_tokens=16)
    index = shards.read_index(tmp_path)
    expected = np.concatenate([[*d, 0] for d in docs[:35]])
    train = shards.open_split(tmp_path, "train")
    assert len(train) == len(expected) == index["splits"]["train"]["tokens"]
    assert [s["tokens"] for s in index["splits"]["train"]["shards"]][:-1] == [16] * (
        len(index["splits"]["train"]["shards"]) - 1
    )
    for p in index["splits"]["train"]["shards"]:  # raw little-endian uint16, as documented
        raw = np.fromfile(tmp_path / p["file"], dtype="<u2")
        assert len(raw) == p["tokens"]
    for start in range(0, len(expected), 5):
        for length in (0, 1, 15, 16, 17, 40):
            if start + length <= len(expected):
                window = train.window(start, length)
                assert window.dtype == np.dtype("<u2")
                assert np.array_equal(window, expected[start : start + length])
    assert np.array_equal(train.window(0, len(train)), expected)
    with pytest.raises(IndexError):
        train.window(len(expected) - 3, 4)
    assert documents(tmp_path, "val") == docs[35:]
    val_tokens = sum(len(d) + 1 for d in docs[35:])
    assert shards.verify(tmp_path) == {"train": len(expected), "val": val_tokens}


def test_missing_or_truncated_shards_are_one_line_errors(tmp_path):
    with pytest.raises(MissingDataError, match=r"index\.json does not exist"):
        shards.read_index(tmp_path)
    write_token_shards(tmp_path, [[1, 2, 3]] * 20, shard_tokens=8)
    (tmp_path / "train_00001.bin").write_bytes(b"\0\0")
    with pytest.raises(MissingDataError, match=r"train_00001.bin is 2 bytes, index.json says 16"):
        shards.open_split(tmp_path, "train")
    (tmp_path / "index.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(ConfigError, match="has format 'other/9'"):
        shards.read_index(tmp_path)


# --- preparation ------------------------------------------------------------------------------


def test_every_document_is_its_tokens_then_eos(tmp_path, tokenizer_dir, tokenizer):
    texts = [f"{i}: {t}" for i, t in enumerate(random_texts(60, seed=1))]  # unique documents
    texts.append("a literal <|endoftext|> in the text stays text")
    source = write_jsonl(tmp_path / "a.jsonl", texts)
    out = tmp_path / "out"
    index, _ = run([local("a", source)], tokenizer_dir, out, val_tokens=80)
    got = documents(out, "val") + documents(out, "train")
    # the eos string inside a text is text, never the eos id
    encode = tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert sorted(got) == sorted(encode)  # every document once, whole, in one split
    assert all(index["eos_id"] not in doc for doc in got)
    assert not set(map(tuple, documents(out, "val"))) & set(map(tuple, documents(out, "train")))
    assert index["eos_id"] == tokenizer.eos_token_id == 0
    assert index["dtype"] == "uint16" and index["vocab_size"] == len(tokenizer)
    for split in ("train", "val"):
        facts = index["splits"][split]
        files = [out / s["file"] for s in facts["shards"]]
        assert facts["tokens"] == sum(f.stat().st_size // 2 for f in files)
        assert facts["tokens"] == sum(s["tokens"] for s in facts["shards"])
        assert all(s["tokens"] == 97 for s in facts["shards"][:-1])
        assert facts["documents"] == len(documents(out, split))
    assert shards.verify(out) == {s: index["splits"][s]["tokens"] for s in ("train", "val")}
    assert index["sources"][0]["documents"] == {
        "train": index["splits"]["train"]["documents"],
        "val": index["splits"]["val"]["documents"],
    }
    assert index["sources"][0]["exhausted"] is True
    assert sorted(p.name for p in out.iterdir() if not p.suffix == ".bin") == ["index.json"]


def test_uint32_when_the_vocabulary_needs_it(tmp_path):
    tok_dir = write_wide_tokenizer(tmp_path / "wide")
    texts = ["w65535 w65536 w69999", "w1 w2", "w68000"]
    source = write_jsonl(tmp_path / "a.jsonl", texts)
    out = tmp_path / "out"
    index, _ = run([local("a", source)], tok_dir, out, val_tokens=0, shard_tokens=4)
    assert index["dtype"] == "uint32" and index["vocab_size"] > 65536
    eos = index["eos_id"]
    assert sorted(documents(out, "train")) == [[1, 2], [65535, 65536, 69999], [68000]]
    raw = np.concatenate(
        [np.fromfile(out / s["file"], "<u4") for s in index["splits"]["train"]["shards"]]
    )
    assert int((raw == eos).sum()) == 3 and raw.max() == max(eos, 69999)


def test_val_comes_first_and_splits_keep_whole_documents(tmp_path, tokenizer_dir):
    source = write_jsonl(tmp_path / "a.jsonl", random_texts(200, seed=2))
    run([local("a", source)], tokenizer_dir, tmp_path / "v", val_tokens=150)
    run([local("a", source)], tokenizer_dir, tmp_path / "n", val_tokens=0)
    val, train = documents(tmp_path / "v", "val"), documents(tmp_path / "v", "train")
    # the same draw: val is the first documents, train the rest
    assert val + train == documents(tmp_path / "n", "train")
    lengths = [len(d) + 1 for d in val]
    assert sum(lengths) >= 150 > sum(lengths[:-1])  # the crossing document is kept whole
    budget, _ = run(
        [local("a", source)], tokenizer_dir, tmp_path / "b", val_tokens=150, train_tokens=300
    )
    train_b = documents(tmp_path / "b", "train")
    assert train_b == train[: len(train_b)]
    lengths = [len(d) + 1 for d in train_b]
    assert sum(lengths) >= 300 > sum(lengths[:-1])
    assert budget["splits"]["train"]["budget"] == 300
    assert budget["sources"][0]["exhausted"] is False


def test_mixture_follows_the_weights(tmp_path, tokenizer_dir, tokenizer):
    """3:1 weights give 75% of the documents from the first source, within 3 standard deviations
    of a binomial draw (~2.7 points at ~2,300 documents; equal weights would miss by 25)."""
    a = write_jsonl(tmp_path / "a.jsonl", random_texts(4000, seed=3, prefix="alpha", max_words=3))
    b = write_jsonl(tmp_path / "b.jsonl", random_texts(4000, seed=4, prefix="beta", max_words=3))
    out = tmp_path / "out"
    index, _ = run(
        [local("a", a, 3.0), local("b", b, 1.0)],
        tokenizer_dir,
        out,
        val_tokens=0,
        train_tokens=24000,
    )
    counts = [s["documents"]["train"] for s in index["sources"]]
    n = sum(counts)
    assert n >= 1500 and not any(s["exhausted"] for s in index["sources"])
    assert abs(counts[0] / n - 0.75) < 3 * (0.75 * 0.25 / n) ** 0.5
    alpha = tokenizer("alpha", add_special_tokens=False)["input_ids"]
    from_a = sum(d[: len(alpha)] == alpha for d in documents(out, "train"))
    assert from_a == counts[0]  # the index's provenance is the content's
    assert sum(s["tokens"]["train"] for s in index["sources"]) == index["splits"]["train"]["tokens"]


def test_an_exhausted_source_leaves_the_mixture(tmp_path, tokenizer_dir):
    small = write_jsonl(tmp_path / "s.jsonl", random_texts(15, seed=5, prefix="alpha"))
    large = write_jsonl(tmp_path / "l.jsonl", random_texts(400, seed=6, prefix="beta"))
    index, _ = run(
        [local("small", small, 1.0), local("large", large, 1.0)],
        tokenizer_dir,
        tmp_path / "out",
        val_tokens=50,
        train_tokens=1500,
    )
    small_facts, large_facts = index["sources"]
    assert small_facts["exhausted"] is True and large_facts["exhausted"] is False
    assert sum(small_facts["documents"].values()) == 15  # every document of it was used
    assert small_facts["consumed"] == 15
    everything, _ = run(
        [local("small", small, 1.0), local("large", large, 1.0)], tokenizer_dir, tmp_path / "all"
    )
    assert all(s["exhausted"] for s in everything["sources"])
    assert sum(everything["sources"][1]["documents"].values()) == 400


def test_empty_documents_are_skipped_and_counted(tmp_path, tokenizer_dir):
    source = write_jsonl(tmp_path / "a.jsonl", ["the cat", "", "   ", "a dog"])
    index, _ = run([local("a", source)], tokenizer_dir, tmp_path / "out", val_tokens=0)
    assert index["splits"]["train"]["documents"] == 2
    assert index["sources"][0]["skipped_empty"] == 2 and index["sources"][0]["consumed"] == 4


def test_a_killed_run_resumes_to_identical_shards(tmp_path, tokenizer_dir, monkeypatch):
    a = write_jsonl(tmp_path / "a.jsonl", random_texts(300, seed=7, prefix="alpha"))
    b = write_jsonl(tmp_path / "b.jsonl", random_texts(200, seed=8, prefix="beta"))
    sources = [local("a", a, 2.0, shuffle_buffer=50), local("b", b, 1.0)]
    params = {"val_tokens": 120, "train_tokens": 2500, "shard_tokens": 61}
    reference, _ = run(sources, tokenizer_dir, tmp_path / "ref", batch_docs=8, **params)

    out = tmp_path / "out"
    real_write = shards.ShardWriter._write
    calls = []

    def killed_at_the_seventh_shard(self, data):
        calls.append(self.split)
        if len(calls) == 7:
            raise KeyboardInterrupt
        real_write(self, data)

    monkeypatch.setattr(shards.ShardWriter, "_write", killed_at_the_seventh_shard)
    with pytest.raises(KeyboardInterrupt):
        run(sources, tokenizer_dir, out, batch_docs=8, **params)
    monkeypatch.setattr(shards.ShardWriter, "_write", real_write)
    assert not (out / "index.json").exists() and (out / ".partial" / "progress.json").exists()
    # another batch size on resume: the output does not depend on it
    resumed, lines = run(sources, tokenizer_dir, out, batch_docs=5, **params)
    assert any("resuming at" in line for line in lines)
    assert tree(out) == tree(tmp_path / "ref")
    for key in ("splits", "sources", "recipe_sha256"):
        assert resumed[key] == reference[key]
    assert not (out / ".partial").exists()


def test_a_complete_set_is_left_alone_and_another_recipe_refused(tmp_path, tokenizer_dir):
    source = write_jsonl(tmp_path / "a.jsonl", random_texts(50, seed=9))
    out = tmp_path / "out"
    first, _ = run([local("a", source)], tokenizer_dir, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again, lines = run([local("a", source)], tokenizer_dir, out)
    assert again == first and any("up to date" in line for line in lines)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    with pytest.raises(prep.PrepareError) as err:
        run([local("a", source)], tokenizer_dir, out, val_tokens=60)
    message = str(err.value)
    assert "\n" not in message and "val_tokens 100 -> 60" in message and "--force" in message
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    rebuilt, _ = run([local("a", source)], tokenizer_dir, out, val_tokens=60, force=True)
    assert rebuilt["recipe"]["val_tokens"] == 60 and shards.verify(out)
    write_jsonl(source, random_texts(50, seed=10))  # the text changed: another recipe
    with pytest.raises(prep.PrepareError, match=r"sources\[0\]\.files\[0\]\.sha256"):
        run([local("a", source)], tokenizer_dir, out, val_tokens=60)


def test_an_unreachable_hub_source_fails_before_writing(tmp_path, tokenizer_dir, monkeypatch):
    def offline(self, cache_dir):
        raise ConnectionError("Couldn't reach 'HuggingFaceFW/fineweb-edu' on the Hub (offline)")

    monkeypatch.setattr(prep.SourceSpec, "load", offline)
    hub = {"name": "fw", "path": "HuggingFaceFW/fineweb-edu", "config": "sample-10BT"}
    with pytest.raises(prep.PrepareError) as err:
        run([hub], tokenizer_dir, tmp_path / "out")
    message = str(err.value)
    assert message.startswith(
        "source fw: load_dataset('HuggingFaceFW/fineweb-edu', 'sample-10BT', split='train', "
        "streaming=True) failed"
    )
    assert "HF_DATASETS_OFFLINE=0" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_a_missing_text_column_fails_before_writing(tmp_path, tokenizer_dir):
    source = write_jsonl(tmp_path / "a.jsonl", ["the cat"], column="body")
    with pytest.raises(
        prep.PrepareError, match=r"source a: no column 'text' \(its columns: body\)"
    ):
        run([local("a", source)], tokenizer_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    index, _ = run([local("a", source, text_column="body")], tokenizer_dir, tmp_path / "out")
    assert index["splits"]["val"]["documents"] == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"name": "a", "files": ["x"], "format": "json", "weight": 0},
            "weight=0 must be a number > 0",
        ),
        ({"name": "a", "format": "json"}, "give either path (a hub data set) or files"),
        ({"name": "a", "path": "x", "files": ["y"]}, "give either path"),
        ({"name": "a", "files": ["x"], "format": "xml"}, "format='xml' is unknown"),
        ({"name": "a", "path": "x", "colour": 1}, "colour is not a source option"),
        ({"name": "a", "files": ["/nonexistent/*.jsonl"], "format": "json"}, "no file matches"),
        ({"files": ["x"], "format": "json"}, "name is missing"),
    ],
)
def test_bad_sources_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prep.parse_sources([spec])


def test_bad_budgets_are_config_errors():
    sources = [{"name": "a", "path": "x"}]
    block = {"sources": sources, "train_tokens": None, "val_tokens": 10, "shard_tokens": 5}
    assert prep.check_prepare_config(block)[0].path == "x"
    for key, value, message in [
        ("train_tokens", 0, "train_tokens=0 must be an integer >= 1 or null"),
        ("val_tokens", -1, "val_tokens=-1 must be an integer >= 0"),
        ("shard_tokens", 1.5, "shard_tokens=1.5 must be an integer >= 1"),
        ("bogus", 1, "prepare.bogus is not a prepare option"),
    ]:
        with pytest.raises(ConfigError, match=message):
            prep.check_prepare_config({**block, key: value})


# --- the script -------------------------------------------------------------------------------


def load_script():
    spec = importlib.util.spec_from_file_location(
        "prepare_lm_data", ROOT / "scripts" / "prepare_lm_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_prepares_the_mini_configs(tmp_path, tokenizer_dir, monkeypatch, capsys):
    """dataset=mini_wiki / mini_pydocs as configured, on tiny files where the setup puts them."""
    import shutil

    shutil.copytree(tokenizer_dir, tmp_path / "models" / "mini-bpe-8k")
    write_jsonl(tmp_path / "lm_raw/wiki/articles.jsonl", random_texts(30, seed=11))
    write_jsonl(tmp_path / "lm_raw/wiki/lee_background.jsonl", random_texts(40, seed=12))
    write_jsonl(tmp_path / "lm_raw/pydocs/docs.jsonl", random_texts(50, seed=13))
    monkeypatch.setenv("KINETICS_DATA_DIR", str(tmp_path))
    script = load_script()
    for name in ("mini_wiki", "mini_pydocs"):
        assert (
            script.main([f"dataset={name}", "dataset.prepare.val_tokens=50", "--no-progress"]) == 0
        )
        index = shards.read_index(tmp_path / "lm" / name)
        assert index["splits"]["val"]["tokens"] >= 50 and index["splits"]["train"]["tokens"] > 0
        assert all(s["exhausted"] for s in index["sources"])
    assert script.main(["dataset=mini_wiki", "dataset.prepare.val_tokens=50"]) == 0
    assert "up to date" in capsys.readouterr().out


def _script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "KINETICS_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prepare_lm_data.py"), *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_script_errors_are_one_line(tmp_path, tokenizer_dir):
    """A config error exits 2, a hub source offline exits 1: one line each, nothing written."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "KINETICS_DATA_DIR": str(tmp_path)}
    bad = _script("dataset=mini_wiki", "dataset.prepare.val_tokens=-5", env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: prepare.val_tokens=-5 must be an integer >= 0"
    ]
    hub = _script(
        "dataset=fineweb_edu", f"dataset.tokenizer={tokenizer_dir}", "--no-progress", env=env
    )
    assert hub.returncode == 1, hub.stderr
    lines = hub.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: source fineweb_edu: load_dataset('HuggingFaceFW/fineweb-edu', 'sample-10BT', "
        "split='train', streaming=True) failed (HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 set)"
    )
    assert not (tmp_path / "lm").exists()
