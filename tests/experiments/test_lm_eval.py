"""lm-eval on exported checkpoints (experiments/lm/evaluation.py, scripts/evaluate_lm.py), offline.

A tiny GPT-2 (2 layers, 32 wide) and a byte-level BPE trained here are saved with
``save_pretrained`` and evaluated through lm-eval on local tasks only: a multiple-choice YAML task
over a JSON file written here, and the FAQ answer-perplexity task over a JSONL file. The scores
are checked against the same quantities computed directly with the model.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

# Never the hub: set before anything imports datasets / huggingface_hub (they read these once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
import yaml

from experiments.core.errors import ConfigError, MissingDataError
from experiments.lm import evaluation

ROOT = Path(__file__).resolve().parents[2]
LM_EVAL_TASKS = Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks"

SENTENCES = [
    "What is Python? Python is an interpreted, interactive, object-oriented language.",
    "Why is Python installed on my machine? Many programs need it to run.",
    "How do I make a Python script executable? Add a shebang line and set the mode.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A fox is quick, a dog is lazy, and the river is cold in the morning.",
    "Is there a tool to find bugs? Pylint and Pyflakes do basic checking.",
]

FAQ = [
    {"question": "What is Python?", "answer": "Python is an interpreted language."},
    {"question": "Why is Python installed on my machine?", "answer": "Many programs need it."},
    {"question": "Is there a tool to find bugs?", "answer": "Pylint and Pyflakes do checking."},
]

LONG_FAQ = [
    {
        "question": "How do I make a Python script executable?",
        "answer": "Add a shebang line, set the mode with chmod, and the fox jumps over the dog "
        "near the river bank in the cold morning while Pylint checks the script.",
    }
]

MC_DOCS = [
    {"question": "What is quick?", "choices": ["a fox", "the lazy dog", "a river"], "label": 0},
    {"question": "What is lazy?", "choices": ["a fox", "the dog"], "label": 1},
    {"question": "What checks bugs?", "choices": ["Pylint", "the morning", "a bank"], "label": 0},
    {"question": "What is Python?", "choices": ["a river", "a language"], "label": 1},
    {"question": "Where is the bank?", "choices": ["near the river", "in Python"], "label": 0},
]


# --- fixtures ---------------------------------------------------------------------------------


def make_tokenizer():
    """A byte-level BPE (vocabulary ~200) trained on SENTENCES, with an end-of-text token."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        SENTENCES, vocab_size=320, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def make_model(vocab_size: int, eos_id: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint dir, model, tokenizer) of a tiny GPT-2 exported like our trained models."""
    directory = tmp_path_factory.mktemp("gpt2_tiny")
    tokenizer = make_tokenizer()
    model = make_model(len(tokenizer), tokenizer.eos_token_id)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, model, tokenizer


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_mc_task(directory: Path) -> Path:
    """A multiple-choice YAML task over a local JSON file (with its own datasets cache)."""
    data = directory / "mc.json"
    data.write_text(json.dumps(MC_DOCS), encoding="utf-8")
    config = {
        "task": "kinetics_test_mc",
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {"test": str(data)},
            "cache_dir": str(directory / "hf_cache"),
        },
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "label",
        "doc_to_choice": "choices",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }
    (directory / "kinetics_test_mc.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return directory


# --- direct computations with the model -------------------------------------------------------


def token_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return logits[:-1].log_softmax(-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def continuation_loglik(model, tokenizer, context: str, continuation: str) -> tuple[float, int]:
    """(sum of log-probs, number) of the tokens of ``context + continuation`` after those of
    ``context``; the boundary must fall between tokens."""
    ctx = tokenizer(context)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    assert whole[: len(ctx)] == ctx, "the context's tokens must be a prefix of the whole's"
    logprobs = token_logprobs(model, whole)[len(ctx) - 1 :]
    return float(logprobs.double().sum()), len(whole) - len(ctx)


def faq_prompt(pair: dict) -> tuple[str, str]:
    return f"Question: {pair['question']}\nAnswer:", " " + pair["answer"]


# --- suites and names -------------------------------------------------------------------------


def test_suite_task_names_exist_in_the_installed_lm_eval():
    """The benchmark names are lm-eval 0.4.13's (its YAML files name them)."""
    where = {
        "mmlu": "mmlu/default/_mmlu.yaml",
        "arc_challenge": "arc/arc_challenge.yaml",
        "arc_easy": "arc/arc_easy.yaml",
        "hellaswag": "hellaswag/hellaswag.yaml",
        "winogrande": "winogrande/default.yaml",
        "piqa": "piqa/piqa.yaml",
        "openbookqa": "openbookqa/openbookqa.yaml",
    }
    assert set(evaluation.TABLE1_TASKS) == set(where)
    assert set(evaluation.KO_TABLE6_TASKS) <= set(where)
    for name, relative in where.items():
        config = yaml.safe_load(
            "\n".join(
                line
                for line in (LM_EVAL_TASKS / relative).read_text().splitlines()
                if "!function" not in line
            )
        )
        assert name in (config.get("task"), config.get("group")), relative
    ours = {path.stem for path in evaluation.TASKS_DIR.glob("*.yaml")}
    assert set(evaluation.TABLE2_TASKS) | set(evaluation.MINI_TASKS) == ours


def test_paper_columns_match_paper_tables():
    tables = yaml.safe_load((ROOT / "results" / "paper_tables.yaml").read_text())
    expected = {
        "kitinet_table1": tables["kitinet"]["table1"]["columns"],
        "kitinet_table2": tables["kitinet"]["table2"]["columns"],
        "ko_table6": [c for c in tables["ko"]["table6"]["columns"] if c != "Avg"],
    }
    for table, columns in expected.items():
        assert list(evaluation.PAPER_COLUMNS[table]) == columns
    assert set(evaluation.PAPER_COLUMNS["ko_table6"].values()) == set(evaluation.KO_TABLE6_TASKS)


def test_resolve_tasks_expands_suites_once():
    assert evaluation.resolve_tasks(["ko_table6", "mmlu", "piqa"]) == [
        *evaluation.KO_TABLE6_TASKS,
        "mmlu",
    ]
    assert evaluation.resolve_tasks("mini") == ["kinetics_faq_answer_ppl"]
    with pytest.raises(ConfigError, match="no tasks"):
        evaluation.resolve_tasks([])


def test_scored_continuation_is_lm_evals_pair_and_pickles():
    scored = evaluation.ScoredContinuation(-3.5, False, 7)
    loglikelihood, greedy = scored
    assert (loglikelihood, greedy, scored.n_tokens) == (-3.5, False, 7)
    again = pickle.loads(pickle.dumps(scored))
    assert tuple(again) == (-3.5, False) and again.n_tokens == 7


# --- evaluation through lm-eval ---------------------------------------------------------------


def test_multiple_choice_task_gives_acc_and_acc_norm_with_stderr(tiny, tmp_path):
    directory, model, tokenizer = tiny
    result = evaluation.evaluate_checkpoint(
        directory,
        ["kinetics_test_mc"],
        batch_size=3,
        device="cpu",
        include_path=write_mc_task(tmp_path),
        dtype="float32",
    )
    task = result["tasks"]["kinetics_test_mc"]
    assert {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"} <= set(task)
    assert (task["n"], task["num_fewshot"], task["kind"]) == (len(MC_DOCS), 0, "task")
    assert result["versions"]["lm_eval"] == "0.4.13"

    # lm-eval's definitions, computed directly: argmax of the choices' loglikelihoods (acc) and
    # of the loglikelihoods divided by the choices' lengths in characters (acc_norm)
    hits, hits_norm = [], []
    for doc in MC_DOCS:
        context = f"Question: {doc['question']}\nAnswer:"
        lls = np.array(
            [continuation_loglik(model, tokenizer, context, " " + c)[0] for c in doc["choices"]]
        )
        lengths = np.array([len(c) for c in doc["choices"]], dtype=float)
        hits.append(float(np.argmax(lls) == doc["label"]))
        hits_norm.append(float(np.argmax(lls / lengths) == doc["label"]))
    assert task["acc"] == pytest.approx(np.mean(hits))
    assert task["acc_norm"] == pytest.approx(np.mean(hits_norm))
    assert task["acc_stderr"] == pytest.approx(np.std(hits, ddof=1) / math.sqrt(len(hits)))
    json.dumps(result, allow_nan=False)  # JSON-safe as returned


def test_faq_answer_perplexity_matches_direct_computation(tiny, tmp_path, monkeypatch):
    directory, model, tokenizer = tiny
    faq = write_jsonl(tmp_path / "faq_qa.jsonl", FAQ)
    monkeypatch.setenv("KINETICS_DATA_DIR", str(tmp_path / "elsewhere"))  # metadata wins
    result = evaluation.evaluate_checkpoint(
        directory,
        ["mini"],
        batch_size=2,
        device="cpu",
        dtype="float32",
        metadata={"faq_qa": str(faq)},
    )
    task = result["tasks"]["kinetics_faq_answer_ppl"]
    pairs = [continuation_loglik(model, tokenizer, *faq_prompt(pair)) for pair in FAQ]
    total_ll = sum(ll for ll, _ in pairs)
    total_tokens = sum(n for _, n in pairs)
    assert task["answer_tokens"] == total_tokens
    assert task["answer_ppl_token"] == pytest.approx(math.exp(-total_ll / total_tokens), rel=1e-5)
    assert task["answer_ppl_doc"] == pytest.approx(math.exp(-total_ll / len(FAQ)), rel=1e-5)
    # per token and per answer differ here: a test that mixed them up would fail
    assert abs(math.log(task["answer_ppl_doc"] / task["answer_ppl_token"])) > 1
    assert (task["n"], task["num_fewshot"]) == (len(FAQ), 0)


def test_qwen2_checkpoint_answer_perplexity(tmp_path):
    """The other exported architecture (KO Table 6) through the same path."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config).eval()
    directory = tmp_path / "qwen2"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    faq = write_jsonl(tmp_path / "faq_qa.jsonl", FAQ)
    result = evaluation.evaluate_checkpoint(
        directory,
        ["mini"],
        batch_size=2,
        device="cpu",
        dtype="float32",
        metadata={"faq_qa": str(faq)},
    )
    task = result["tasks"]["kinetics_faq_answer_ppl"]
    pairs = [continuation_loglik(model, tokenizer, *faq_prompt(pair)) for pair in FAQ]
    total_tokens = sum(n for _, n in pairs)
    expected = math.exp(-sum(ll for ll, _ in pairs) / total_tokens)
    assert task["answer_tokens"] == total_tokens
    assert task["answer_ppl_token"] == pytest.approx(expected, rel=1e-5)
    assert result["max_length"] == 64


def test_faq_file_from_data_dir_and_missing_file_error(tiny, tmp_path, monkeypatch):
    directory, _, _ = tiny
    monkeypatch.delenv("KINETICS_FAQ_QA", raising=False)
    monkeypatch.setenv("KINETICS_DATA_DIR", str(tmp_path))
    with pytest.raises(MissingDataError, match=r"kinetics_faq_answer_ppl.*faq_qa\.jsonl"):
        evaluation.evaluate_checkpoint(directory, ["mini"], batch_size=1, device="cpu")
    faq = tmp_path / "lm_raw" / "pydocs" / "faq_qa.jsonl"
    faq.parent.mkdir(parents=True)
    write_jsonl(faq, FAQ[:1])
    result = evaluation.evaluate_checkpoint(
        directory, ["kinetics_faq_answer_ppl"], batch_size=1, device="cpu", limit=1
    )
    assert result["tasks"]["kinetics_faq_answer_ppl"]["n"] == 1


def test_answers_longer_than_the_context_are_scored_in_pieces(tiny, tmp_path):
    directory, model, tokenizer = tiny
    max_length = 16
    faq = write_jsonl(tmp_path / "long.jsonl", LONG_FAQ)
    result = evaluation.evaluate_checkpoint(
        directory,
        ["mini"],
        batch_size=2,
        device="cpu",
        dtype="float32",
        metadata={"faq_qa": str(faq)},
        max_length=max_length,
    )
    task = result["tasks"]["kinetics_faq_answer_ppl"]

    context, continuation = faq_prompt(LONG_FAQ[0])
    ctx = tokenizer(context)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    n_answer = len(whole) - len(ctx)
    assert n_answer > 2 * max_length  # several pieces
    # each piece of max_length // 2 tokens, predicted from the last max_length tokens before it
    total, step = 0.0, max_length // 2
    for begin in range(len(ctx), len(whole), step):
        end = min(begin + step, len(whole))
        window = whole[:end][-(max_length + 1) :]
        total += float(token_logprobs(model, window)[-(end - begin) :].double().sum())
    assert task["answer_tokens"] == n_answer
    assert task["answer_ppl_token"] == pytest.approx(math.exp(-total / n_answer), rel=1e-5)


def test_kitinet_checkpoint_loads_and_scores_like_the_stock_model(tiny, tmp_path):
    from lm_eval.api.instance import Instance
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel

    from kinetics.hf import insert_kitinet

    stock_dir, _, tokenizer = tiny
    kitinet_model = GPT2LMHeadModel.from_pretrained(stock_dir)
    inserted = insert_kitinet(kitinet_model, collision_heads=4, coll_coef=0.5, sites="attn")
    assert len(inserted) == 2
    kitinet_dir = tmp_path / "kitinet"
    kitinet_model.save_pretrained(kitinet_dir)
    tokenizer.save_pretrained(kitinet_dir)
    stock_weights = load_file(stock_dir / "model.safetensors")
    saved_weights = load_file(kitinet_dir / "model.safetensors")
    assert stock_weights.keys() == saved_weights.keys()
    assert all(torch.equal(stock_weights[k], saved_weights[k]) for k in stock_weights)

    lm_class = evaluation.token_counting_hflm()
    options = {"batch_size": 2, "device": "cpu", "dtype": "float32"}
    stock = lm_class(pretrained=str(stock_dir), **options)
    saved = lm_class(pretrained=str(kitinet_dir), **options)
    live = lm_class(pretrained=kitinet_model, tokenizer=tokenizer, batch_size=2)  # KITINet inside
    requests = [
        Instance("loglikelihood", doc={}, arguments=faq_prompt(pair), idx=0) for pair in FAQ
    ]
    expected = stock.loglikelihood(requests)
    assert saved.loglikelihood(requests) == expected
    assert live.loglikelihood(requests) == expected  # eval: KITINet is x + v, bitwise
    assert [r.n_tokens for r in expected] == [
        continuation_loglik(stock.model, tokenizer, *faq_prompt(pair))[1] for pair in FAQ
    ]
    kitinet_model.train()  # collisions on: the comparison above can fail
    assert live.loglikelihood(requests) != expected


def test_hub_task_offline_fails_before_the_model_is_loaded(tiny, monkeypatch):
    import datasets

    if not datasets.config.HF_HUB_OFFLINE:
        pytest.skip("datasets was imported online; this test must never reach the hub")
    directory, _, _ = tiny

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded before the data")

    monkeypatch.setattr(evaluation, "_load_model", no_model)
    with pytest.raises(MissingDataError) as caught:
        evaluation.evaluate_checkpoint(
            directory, ["kinetics_gsm8k_answer_ppl"], batch_size=1, device="cpu"
        )
    message = str(caught.value)
    assert "kinetics_gsm8k_answer_ppl" in message and "HF_DATASETS_OFFLINE=0" in message
    assert "\n" not in message


def test_unknown_task_names_close_matches(tiny, monkeypatch):
    import lm_eval.tasks

    real = lm_eval.tasks.TaskManager

    def ours_only(**kwargs):  # indexing lm-eval's built-ins takes ~9 s; not needed here
        return real(**{**kwargs, "include_defaults": False})

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", ours_only)
    with pytest.raises(ConfigError, match=r"'kinetics_faq_answer_pp'.*kinetics_faq_answer_ppl"):
        evaluation.evaluate_checkpoint(
            tiny[0], ["kinetics_faq_answer_pp"], batch_size=1, device="cpu"
        )


# --- the command line -------------------------------------------------------------------------


def load_cli():
    spec = importlib.util.spec_from_file_location("evaluate_lm", ROOT / "scripts/evaluate_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_json_and_refuses_to_overwrite(tiny, tmp_path, capsys):
    cli = load_cli()
    faq = write_jsonl(tmp_path / "faq.jsonl", FAQ)
    out = tmp_path / "out" / "results.json"
    argv = ["--checkpoint", str(tiny[0]), "--tasks", "mini", "--faq-qa", str(faq)]
    assert cli.main([*argv, "--out", str(out), "--batch-size", "2"]) == 0
    written = json.loads(out.read_text())
    assert written["tasks"]["kinetics_faq_answer_ppl"]["n"] == len(FAQ)
    assert written["command"].startswith("python scripts/evaluate_lm.py --checkpoint")
    before = out.read_bytes()
    capsys.readouterr()

    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert out.read_bytes() == before
    assert cli.main([*argv, "--out", str(out), "--overwrite", "--limit", "1"]) == 0
    assert json.loads(out.read_text())["tasks"]["kinetics_faq_answer_ppl"]["n"] == 1


def test_cli_missing_checkpoint_and_bad_arguments_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "scripts" / "evaluate_lm.py")
    out = tmp_path / "results.json"
    cases = [
        (["--checkpoint", str(tmp_path / "missing"), "--tasks", "mini"], "does not exist"),
        (["--checkpoint", str(tmp_path), "--tasks", "mini"], "no config.json"),
        (["--checkpoint", str(tmp_path), "--tasks", "mini", "--limit", "0"], "positive integer"),
    ]
    for argv, expected in cases:
        done = subprocess.run(
            [sys.executable, script, *argv, "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not out.exists()


def test_doc_perplexity_of_long_answers_is_infinite_not_an_error() -> None:
    import math

    from experiments.lm.lm_eval_tasks.utils import doc_perplexity, token_perplexity

    assert doc_perplexity([-1000.0, -900.0]) == math.inf  # exp(950) overflows a float
    assert doc_perplexity([-1.0, -3.0]) == pytest.approx(math.exp(2.0))
    assert token_perplexity([(-1000.0, 100), (-900.0, 100)]) == pytest.approx(math.exp(9.5))
