"""The runner on language-model data (issue 12): tiny GPT-2 / Qwen2 built from configs on a packed
token data set in the real layout; KITINet and KO; export; exact resume mid-run; rank-disjoint
data order; a 2-rank torchrun; the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures_lm import tiny_gpt2_overrides, write_token_data, write_tokenizer
from helpers import read_metrics, run_inprocess, run_torchrun, without_times

from experiments.core.errors import ConfigError, MissingDataError
from experiments.core.io import sha256_file
from experiments.engine.callbacks import Callback

pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[2]
STEPS = [
    "trainer.unit=step",
    "trainer.max_steps=6",
    "trainer.eval_every=3",
    "trainer.log_every=1",
    "trainer.batch_size=4",
    "trainer.device=cpu",
]


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lm")
    return write_token_data(root / "data", write_tokenizer(root / "tokenizer"))


def _capture_model(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Patch the runner's fit to keep the model it trains."""
    import experiments.runner as runner

    seen: dict[str, Any] = {}
    real_fit = runner.fit

    def fit(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        seen["model"] = model
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(runner, "fit", fit)
    return seen


@pytest.mark.parametrize("collision", ["none", "kitinet"])
def test_gpt2_trains_and_exports_a_stock_checkpoint(
    lm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collision: str
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = _capture_model(monkeypatch)
    extra = (
        ["collision.collision_heads=4", "collision.coll_coef=0.7"] if collision != "none" else []
    )
    run_inprocess(tmp_path, *tiny_gpt2_overrides(lm_data), f"collision={collision}", *STEPS, *extra)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4, 5, 6]
    evaluated = [r for r in records if r["test_loss"] is not None]
    assert [r["step"] for r in evaluated] == [0, 3, 6]
    for r in evaluated:
        assert r["test_perplexity"] == pytest.approx(torch.tensor(r["test_loss"]).exp().item())
    assert evaluated[-1]["test_loss"] < evaluated[0]["test_loss"]  # it learns
    if collision == "kitinet":
        rates = [k for k in records[-1] if k.startswith("collision_rate")]
        assert rates and all(0 <= records[-1][k] <= 1 for k in rates)

    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert type(exported).__name__ == "GPT2LMHeadModel"
    assert AutoTokenizer.from_pretrained(tmp_path / "export").eos_token == "<|endoftext|>"
    trained = seen["model"].eval()
    tokens = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # KITINet is the identity in eval: the stock model is the same function
        assert torch.equal(exported(tokens).logits, trained(tokens).logits)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["export"] == "export" and summary["units_per_sample"] == 16
    assert summary["flops_per_s"] > 0
    # the shards' digests as index.json records them, which are those of the bytes on disk
    shards = sorted(lm_data.glob("*.bin"))
    assert summary["data_sha256"] == {f"{lm_data.name}/{f.name}": sha256_file(f) for f in shards}


def test_qwen2_with_soft_collision_on_the_last_block(lm_data: Path, tmp_path: Path) -> None:
    run_inprocess(tmp_path, *tiny_gpt2_overrides(lm_data, "qwen2_0_5b"), "collision=soft", *STEPS)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_loss"] < 6
    config = (tmp_path / "config.yaml").read_text()
    assert "last_block" in config
    # every Linear of the last decoder layer collided: its change of the gradients is recorded
    effects = [k for k in summary if k.startswith("collision_alignment.") and "layers.1." in k]
    assert len(effects) == 7, sorted(summary)  # q, k, v, o, gate, up, down


def test_killed_mid_run_resumes_bitwise(
    lm_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import experiments.runner as runner

    overrides = [
        *tiny_gpt2_overrides(lm_data),
        "collision=kitinet",
        "collision.collision_heads=4",
        *STEPS,
        "trainer.max_steps=8",
        "trainer.eval_every=2",
        "trainer.checkpoint_every=2",
    ]
    run_inprocess(tmp_path / "whole", *overrides)

    class Killed(Exception):
        pass

    class Kill(Callback):
        def on_record(self, state: Any, record: dict) -> None:
            if record["step"] == 5:
                raise Killed

    real_fit = runner.fit
    monkeypatch.setattr(
        runner, "fit", lambda *a, **k: real_fit(*a, **{**k, "callbacks": [*k["callbacks"], Kill()]})
    )
    with pytest.raises(Killed):
        run_inprocess(tmp_path / "killed", *overrides)
    monkeypatch.setattr(runner, "fit", real_fit)
    run_inprocess(tmp_path / "killed", *overrides, "resume=auto")
    whole = without_times(read_metrics(tmp_path / "whole"))
    resumed = without_times(read_metrics(tmp_path / "killed"))
    assert resumed == whole


def test_token_budget_sets_the_steps(lm_data: Path, tmp_path: Path) -> None:
    overrides = [*tiny_gpt2_overrides(lm_data), "collision=none", *STEPS]
    overrides = [o for o in overrides if not o.startswith("trainer.max_steps")]
    run_inprocess(tmp_path, *overrides, "trainer.max_units=300")  # 4 x 16 tokens a step
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["max_steps_from_units"] == 5 and summary["step"] == 5


def test_errors_are_one_line_config_errors(lm_data: Path, tmp_path: Path) -> None:
    base = [*tiny_gpt2_overrides(lm_data), "collision=none", *STEPS]
    with pytest.raises(MissingDataError, match=r"prepare_lm_data\.py"):
        run_inprocess(tmp_path / "a", *base, f"dataset.dir={tmp_path / 'nowhere'}")
    with pytest.raises(ConfigError, match="exceeds model=gpt2's 64 positions"):
        run_inprocess(tmp_path / "b", *base, "dataset.seq_len=100")
    with pytest.raises(
        MissingDataError, match=r"AutoModelForCausalLM.from_pretrained\('nowhere'\)"
    ):
        run_inprocess(tmp_path / "c", *base, "model.pretrained=nowhere")
    with pytest.raises(ConfigError, match="shards the model over the ranks of a torchrun"):
        run_inprocess(tmp_path / "e", *base, "trainer.fsdp=true")
    with pytest.raises(ConfigError, match="cannot take token data"):
        run_inprocess(
            tmp_path / "d", "model=mlp", "dataset=lm_tokens", f"dataset.dir={lm_data}", *STEPS
        )


def test_torchrun_two_ranks_identical_replicas(lm_data: Path, tmp_path: Path) -> None:
    overrides = [*tiny_gpt2_overrides(lm_data, "qwen2_0_5b"), "collision=hard", *STEPS]
    run_torchrun(*overrides, "trainer.max_steps=3", f"hydra.run.dir={tmp_path}")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True


def test_fsdp_two_ranks_train_export_and_resume(lm_data: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    overrides = [
        *tiny_gpt2_overrides(lm_data),
        "collision=kitinet",
        "collision.collision_heads=4",
        *STEPS,
        "trainer.fsdp=true",
        "trainer.checkpoint_every=2",
        "trainer.eval_every=2",
    ]
    run_torchrun(*overrides, "trainer.max_steps=4", f"hydra.run.dir={tmp_path / 'whole'}")
    # the same run stopped after its checkpoint at step 2, then continued to step 4
    run_torchrun(*overrides, "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'parts'}")
    run_torchrun(
        *overrides, "trainer.max_steps=4", "resume=auto", f"hydra.run.dir={tmp_path / 'parts'}"
    )
    whole = without_times(read_metrics(tmp_path / "whole"))
    parts = without_times(read_metrics(tmp_path / "parts"))
    assert [r["step"] for r in parts] == [0, 1, 2, 3, 4]
    assert parts[-1]["test_loss"] == pytest.approx(whole[-1]["test_loss"], rel=1e-5)
    assert parts[-1]["train_loss"] == pytest.approx(whole[-1]["train_loss"], rel=1e-5)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "whole" / "export")
    assert exported.transformer.h[0].attn.c_attn.weight.shape == (32, 96)  # whole, not a shard


@pytest.mark.slow
def test_compiled_kiti_gpt2_trains(lm_data: Path, tmp_path: Path) -> None:
    overrides = [*tiny_gpt2_overrides(lm_data), "collision=kitinet", "collision.collision_heads=4"]
    run_inprocess(tmp_path, *overrides, *STEPS, "trainer.max_steps=4", "trainer.compile=true")
    records = read_metrics(tmp_path)
    assert records[-1]["step"] == 4 and records[-1]["test_loss"] < records[0]["test_loss"]
