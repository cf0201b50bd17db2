"""The runner on text data (issue 11): tiny BERT / DistilBERT built from configs, on small local
tables in the real column layouts (a sentence; a sentence pair with SNLI's -1 rows), with KO and
KITINet, resume, a 2-rank torchrun, and the one-line offline error of a hub data set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_text import (
    pair_rows,
    sentiment_rows,
    tiny_model_overrides,
    write_table,
    write_tokenizer,
)
from helpers import kill_and_resume, read_metrics, run_inprocess, run_torchrun

from experiments.core.errors import ConfigError, MissingDataError
from experiments.core.io import sha256_file

pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[2]
FAST = ["trainer.batch_size=8", "trainer.epochs=2", "trainer.device=cpu"]


@pytest.fixture(scope="module")
def text_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text")
    return {
        "tokenizer": write_tokenizer(root / "tokenizer"),
        "train": write_table(root / "sentiment" / "train.csv", sentiment_rows(48, 0)),
        "test": write_table(root / "sentiment" / "test.csv", sentiment_rows(24, 1)),
        "pair_train": write_table(root / "pairs" / "train.parquet", pair_rows(42, 2)),
        "pair_test": write_table(root / "pairs" / "test.parquet", pair_rows(21, 3)),
        "cache": root / "data",
    }


def _sentiment(d: dict[str, Path], model: str = "bert_base_uncased") -> list[str]:
    return [
        *tiny_model_overrides(d["tokenizer"], model),
        "dataset=text_files",
        f"dataset.train={d['train']}",
        f"dataset.test={d['test']}",
        f"dataset.data_dir={d['cache']}",
    ]


def _pairs(d: dict[str, Path], model: str = "bert_base_uncased") -> list[str]:
    return [
        *tiny_model_overrides(d["tokenizer"], model),
        "dataset=text_files",
        f"dataset.train={d['pair_train']}",
        f"dataset.test={d['pair_test']}",
        "dataset.text_columns=[premise,hypothesis]",
        "dataset.drop_labels=[-1]",
        "dataset.macro_f1=true",
        f"dataset.data_dir={d['cache']}",
    ]


@pytest.mark.parametrize("model", ["bert_base_uncased", "distilbert_base_uncased"])
@pytest.mark.parametrize("collision", ["soft", "hard"])
def test_ko_on_the_head_trains_a_sentence_classifier(
    tmp_path: Path, text_data: dict[str, Path], model: str, collision: str
) -> None:
    run_inprocess(
        tmp_path, *_sentiment(text_data, model), f"collision={collision}", "optimizer=adamw", *FAST
    )
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    last = records[-1]
    assert 0.0 <= last["test_accuracy"] <= 1.0
    head = "pre_classifier" if model.startswith("distilbert") else "classifier"
    assert last[f"rho.{head}"] >= 0  # the head is watched
    if collision == "hard":
        assert last["collision_rate.classifier"] is not None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_params"] > 0
    assert summary["data_sha256"] == {
        text_data[split].name: sha256_file(text_data[split]) for split in ("train", "test")
    }


def test_kiti_bert_on_sentence_pairs_logs_rates_and_macro_f1(
    tmp_path: Path, text_data: dict[str, Path]
) -> None:
    run_inprocess(
        tmp_path,
        *_pairs(text_data),
        "collision=kitinet",
        "collision.collision_heads=2",
        "collision.coll_coef=0.9",
        "model.kitinet_sites=[attn,mlp]",
        *FAST,
    )
    last = read_metrics(tmp_path)[-1]
    rates = {k: v for k, v in last.items() if k.startswith("collision_rate.bert.encoder.layer.1")}
    assert len(rates) == 2 and all(0 < v <= 1 for v in rates.values())  # final layer, both sites
    assert 0.0 <= last["test_macro_f1"] <= 1.0
    # -1 rows dropped: 42 - 6 = 36 training pairs, 36 / 8 -> 5 steps per epoch
    assert last["step"] == 10


def test_killed_kiti_run_resumes_bitwise(
    tmp_path: Path, text_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    common = [
        *_sentiment(text_data),
        "collision=kitinet",
        "collision.collision_heads=2",
        "collision.coll_coef=0.9",
        "trainer.batch_size=8",
        "trainer.epochs=3",
        "trainer.checkpoint_every=1",
        "scheduler=linear",
        "scheduler.warmup_fraction=0.2",
    ]
    _, resumed, whole = kill_and_resume(tmp_path, monkeypatch, common, kill_at=2)
    assert resumed == whole


def test_a_hub_data_set_offline_fails_before_training_in_one_line(
    tmp_path: Path, text_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    overrides = [*tiny_model_overrides(text_data["tokenizer"]), "dataset=imdb"]
    with pytest.raises(MissingDataError, match=r"load_dataset\('stanfordnlp/imdb'\) failed"):
        run_inprocess(tmp_path / "run", *overrides, f"dataset.data_dir={text_data['cache']}")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    # From the command line: one line on stderr, exit status 1, no traceback.
    proc = subprocess.run(
        [sys.executable, "run.py", f"hydra.run.dir={tmp_path / 'cli'}", *overrides],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "stanfordnlp/imdb" in lines[0] and "text_files" in lines[0]


def test_text_errors_name_the_bad_value(tmp_path: Path, text_data: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="has no column 'sentence'"):
        run_inprocess(tmp_path / "a", *_sentiment(text_data), "dataset.text_columns=[sentence]")
    with pytest.raises(ConfigError, match="model=mlp cannot take text data"):
        run_inprocess(
            tmp_path / "b",
            "model=mlp",
            "dataset=text_files",
            f"dataset.train={text_data['train']}",
            f"dataset.test={text_data['test']}",
            f"dataset.tokenizer={text_data['tokenizer']}",
        )


def test_torchrun_two_ranks_end_bit_identical(tmp_path: Path, text_data: dict[str, Path]) -> None:
    run_dir = tmp_path / "run"
    run_torchrun(
        f"hydra.run.dir={run_dir}",
        *_sentiment(text_data),
        "collision=hard",
        "collision.coll_coef=0.95",
        "trainer.batch_size=4",
        "trainer.epochs=1",
        "trainer.device=cpu",
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 6]  # 48 rows, 24 per rank, batches of 4
