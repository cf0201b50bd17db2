"""KITINet inside transformers models (kinetics.hf, issue 10 §1): eval outputs bitwise stock,
training collides, state dicts and checkpoints untouched, removal restores the stock modules.

Tiny models (hidden 16, 2 blocks, vocab 64, every dropout 0) are built from configs; no download.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from kinetics import KITINet

transformers = pytest.importorskip("transformers")
from kinetics.hf import insert_kitinet, remove_kitinet  # noqa: E402

SEQ = 8
SITE_SETS = [("attn",), ("mlp",), ("attn", "mlp")]


def _config(arch: str, attn_implementation: str = "sdpa") -> Any:
    t = transformers
    common: dict[str, Any] = dict(vocab_size=64, attn_implementation=attn_implementation)
    if arch == "gpt2":
        return t.GPT2Config(
            n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common,
        )  # fmt: skip
    if arch == "bert":
        return t.BertConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            **common,
        )  # fmt: skip
    if arch == "distilbert":
        return t.DistilBertConfig(
            dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=16,
            dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, **common,
        )  # fmt: skip
    config_class = {"qwen2": t.Qwen2Config, "llama": t.LlamaConfig, "mistral": t.MistralConfig}
    return config_class[arch](
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=16, bos_token_id=0, eos_token_id=0,
        pad_token_id=0, **common,
    )  # fmt: skip


MODELS = {
    "GPT2Model": "gpt2",
    "GPT2LMHeadModel": "gpt2",
    "BertModel": "bert",
    "BertForSequenceClassification": "bert",
    "DistilBertModel": "distilbert",
    "DistilBertForSequenceClassification": "distilbert",
    "Qwen2Model": "qwen2",
    "Qwen2ForCausalLM": "qwen2",
    "LlamaModel": "llama",
    "LlamaForCausalLM": "llama",
}
CAUSAL = {"gpt2", "qwen2", "llama"}
BASES = {"GPT2Model", "BertModel", "DistilBertModel", "Qwen2Model", "LlamaModel"}


def build(name: str, attn_implementation: str = "sdpa") -> nn.Module:
    torch.manual_seed(0)
    return getattr(transformers, name)(_config(MODELS[name], attn_implementation))


def stock_and_kitinet(name: str, **kwargs: Any) -> tuple[nn.Module, nn.Module, list[KITINet]]:
    """A tiny model, a copy with KITINet inserted (collision_heads=2: 8 particles per token) and
    the inserted modules."""
    stock = build(name, kwargs.pop("attn_implementation", "sdpa"))
    model = copy.deepcopy(stock)
    kwargs = {"collision_heads": 2, "coll_coef": 0.5, "mean_free_path": 4.0} | kwargs
    return stock, model, insert_kitinet(model, **kwargs)


def inputs(name: str, batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    """Token ids and an attention mask with padding in the second row (left padding for the
    causal models, right padding for the encoders)."""
    ids = torch.randint(1, 64, (batch, SEQ), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(batch, SEQ, dtype=torch.long)
    if MODELS[name] in CAUSAL:
        mask[1, :3] = 0
    else:
        mask[1, -3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def flat(obj: Any) -> list[torch.Tensor]:
    """Every tensor of a model output: fields, tuples of hidden states or attentions, KV caches."""
    if obj is None:
        return []
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):  # ModelOutput
        return [t for value in obj.values() for t in flat(value)]
    if isinstance(obj, (tuple, list)):
        return [t for value in obj for t in flat(value)]
    if hasattr(obj, "layers"):  # a transformers Cache
        return [t for layer in obj.layers for t in (layer.keys, layer.values)]
    raise TypeError(f"unexpected output part {type(obj)}")


def assert_bitwise_equal(got: Any, want: Any) -> None:
    got_t, want_t = flat(got), flat(want)
    assert len(got_t) == len(want_t) > 0
    for i, (g, w) in enumerate(zip(got_t, want_t, strict=True)):
        assert torch.equal(g, w), f"tensor {i} of the outputs differs"


def run(model: nn.Module, seed: int = 0, **kwargs: Any) -> Any:
    """A forward with the global RNG (dropout) and the KITINet call counters reset: two runs
    draw the same random numbers."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, KITINet):
            module.calls.zero_()
    return model(**kwargs)


def structure(model: nn.Module) -> list[tuple[str, type]]:
    return [(name, type(m)) for name, m in model.named_modules()]


# --------------------------------------------------------------------------------------------
# Eval: bitwise the stock model
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sites", SITE_SETS)
@pytest.mark.parametrize("name", MODELS)
def test_eval_outputs_are_bitwise_stock(name: str, sites: tuple[str, ...]) -> None:
    stock, model, _ = stock_and_kitinet(name, sites=sites)
    stock.eval(), model.eval()
    kwargs = inputs(name) | {"output_hidden_states": True}
    with torch.no_grad():
        assert_bitwise_equal(model(**kwargs), stock(**kwargs))


@pytest.mark.parametrize("name", MODELS)
def test_eval_with_eager_attention_and_output_attentions(name: str) -> None:
    stock, model, _ = stock_and_kitinet(name, sites=("attn", "mlp"), attn_implementation="eager")
    stock.eval(), model.eval()
    kwargs = inputs(name) | {"output_hidden_states": True, "output_attentions": True}
    with torch.no_grad():
        got, want = model(**kwargs), stock(**kwargs)
    assert len(got.attentions) == 2 and len(got.hidden_states) == 3
    assert_bitwise_equal(got, want)


@pytest.mark.parametrize("sites", SITE_SETS)
@pytest.mark.parametrize("name", [n for n, a in MODELS.items() if a in CAUSAL])
def test_eval_with_kv_cache_steps_is_bitwise_stock(name: str, sites: tuple[str, ...]) -> None:
    """A prompt with use_cache=True, then two one-token steps on past_key_values."""
    stock, model, _ = stock_and_kitinet(name, sites=sites)
    stock.eval(), model.eval()
    ids, mask = inputs(name).values()
    assert_bitwise_equal(cached_steps(model, ids, mask), cached_steps(stock, ids, mask))


@torch.no_grad()
def cached_steps(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> list[Any]:
    out = model(input_ids=ids[:, :5], attention_mask=mask[:, :5], use_cache=True)
    steps = [out]
    for t in (5, 6):
        out = model(
            input_ids=ids[:, t : t + 1],
            attention_mask=mask[:, : t + 1],
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        steps.append(out)
    return steps


@pytest.mark.parametrize("name", ["GPT2LMHeadModel", "Qwen2ForCausalLM", "LlamaForCausalLM"])
def test_greedy_generation_is_bitwise_stock(name: str) -> None:
    stock, model, _ = stock_and_kitinet(name, sites=("attn", "mlp"))
    stock.eval(), model.eval()
    kwargs = inputs(name) | dict(
        max_new_tokens=4, do_sample=False, pad_token_id=0, output_logits=True,
        return_dict_in_generate=True,
    )  # fmt: skip
    got, want = model.generate(**kwargs), stock.generate(**kwargs)
    assert torch.equal(got.sequences, want.sequences)
    assert_bitwise_equal(got.logits, want.logits)


# --------------------------------------------------------------------------------------------
# Training: collides; coll_coef=0 is the stock arithmetic; gradients flow; causal
# --------------------------------------------------------------------------------------------
def _output(name: str, out: Any) -> torch.Tensor:
    return out.last_hidden_state if name in BASES else out.logits


@pytest.mark.parametrize("sites", SITE_SETS)
@pytest.mark.parametrize("name", MODELS)
def test_training_collides_and_gradients_flow(name: str, sites: tuple[str, ...]) -> None:
    stock, model, modules = stock_and_kitinet(name, sites=sites)
    stock.train(), model.train()
    kwargs = inputs(name)
    got = _output(name, run(model, **kwargs))
    want = _output(name, run(stock, **kwargs))
    assert not torch.allclose(got, want)
    assert all(0 < float(m.last_collision_rate) <= 1 for m in modules)
    got.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


@pytest.mark.parametrize("sites", SITE_SETS)
@pytest.mark.parametrize("name", MODELS)
def test_training_with_coll_coef_zero_is_bitwise_stock(name: str, sites: tuple[str, ...]) -> None:
    """KITINet computes torch.add(skip, branch); the stock code `skip + branch` or `branch + skip`
    (GPT-2's attention residual): float addition is commutative, so both are bitwise equal."""
    stock, model, _ = stock_and_kitinet(name, sites=sites, coll_coef=0.0)
    stock.train(), model.train()
    kwargs = inputs(name) | {"output_hidden_states": True}
    got, want = run(model, **kwargs), run(stock, **kwargs)
    assert_bitwise_equal(got, want)
    _output(name, got).sum().backward()
    _output(name, want).sum().backward()
    for (n, p), q in zip(model.named_parameters(), stock.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), n
        assert p.grad is None or torch.equal(p.grad, q.grad), n


# Per architecture and site: the block submodule whose output is the branch, and the one whose
# first input is the skip path ("": the block itself).
BRANCH_AND_SKIP = {
    "gpt2": {"attn": ("attn", ""), "mlp": ("mlp", "ln_2")},
    "bert": {"attn": ("attention.output.dropout", ""), "mlp": ("output.dropout", "intermediate")},
    "distilbert": {"attn": ("attention", ""), "mlp": ("ffn", "ffn")},
    "qwen2": {"attn": ("self_attn", ""), "mlp": ("mlp", "post_attention_layernorm")},
    "llama": {"attn": ("self_attn", ""), "mlp": ("mlp", "post_attention_layernorm")},
}


@pytest.mark.parametrize(
    "name", ["GPT2LMHeadModel", "BertModel", "DistilBertModel", "Qwen2Model", "LlamaModel"]
)
def test_kitinet_gets_the_skip_path_as_x_and_the_branch_as_v(name: str) -> None:
    """Float addition is commutative, so no output test sees swapped arguments; this one does."""
    _, model, modules = stock_and_kitinet(name, sites=("attn", "mlp"))
    blocks = model.base_model.get_submodule(
        {"gpt2": "h", "bert": "encoder.layer", "distilbert": "transformer.layer"}.get(
            MODELS[name], "layers"
        )
    )
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str, output: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict, out: Any) -> None:
            value = (out[0] if isinstance(out, tuple) else out) if output else args[0]
            seen[key] = value if output or args else kwargs["hidden_states"]

        return hook

    for i, block in enumerate(blocks):
        for site, (branch, skip) in BRANCH_AND_SKIP[MODELS[name]].items():
            hook = keep(f"{i}.{site}.branch", output=True)
            block.get_submodule(branch).register_forward_hook(hook, with_kwargs=True)
            hook = keep(f"{i}.{site}.skip", output=False)
            block.get_submodule(skip).register_forward_hook(hook, with_kwargs=True)
    arguments = []
    for m in modules:
        m.register_forward_hook(lambda _, args, out: arguments.append(args))
    model.train()
    run(model, **inputs(name))
    assert len(arguments) == 4
    for (x, v), key in zip(arguments, ["0.attn", "0.mlp", "1.attn", "1.mlp"], strict=True):
        assert torch.equal(x, seen[f"{key}.skip"]) and torch.equal(v, seen[f"{key}.branch"]), key
        assert not torch.equal(x, v)


@pytest.mark.parametrize("name", ["GPT2Model", "Qwen2Model", "LlamaModel"])
def test_training_is_causal(name: str) -> None:
    """In training (dropout off), changing tokens after position t of one sequence leaves every
    hidden state at positions <= t bitwise unchanged, and the other sequence entirely: each
    token is its own system and its directions are keyed by (seed, call, system, pair). The
    global RNG is not touched, whatever the input."""
    _, model, modules = stock_and_kitinet(name, sites=("attn", "mlp"))
    model.train()
    t = 4
    ids = inputs(name)["input_ids"]
    changed = ids.clone()
    changed[0, t + 1 :] = (changed[0, t + 1 :] + 7) % 63 + 1
    a = run(model, input_ids=ids, output_hidden_states=True)
    rng_a = torch.get_rng_state()
    b = run(model, input_ids=changed, output_hidden_states=True)
    assert torch.equal(torch.get_rng_state(), rng_a)
    assert all(float(m.last_collision_rate) > 0 for m in modules)
    assert not torch.allclose(a.last_hidden_state[0, t + 1 :], b.last_hidden_state[0, t + 1 :])
    for h_a, h_b in zip(a.hidden_states, b.hidden_states, strict=True):
        assert torch.equal(h_a[:, : t + 1], h_b[:, : t + 1])
        assert torch.equal(h_a[1], h_b[1])


@pytest.mark.parametrize("name", ["GPT2LMHeadModel", "BertForSequenceClassification"])
def test_gradient_checkpointing_recomputes_the_same_collisions(name: str) -> None:
    """A checkpointed block runs its KITINet modules again in backward (non-reentrant checkpoint,
    which restores the global RNG state); the recompute must draw the same directions, or the
    gradients belong to another forward. (GPT-2's recompute stops early, before its last
    addition, which saves nothing for backward: 2 of its 4 modules run again.)"""
    _, model, _ = stock_and_kitinet(name, sites=("attn", "mlp"))
    checkpointed = copy.deepcopy(model)
    checkpointed.activation_checkpointing_enable()
    grads, calls = [], []
    for m in (model, checkpointed):
        m.train()
        count = [0]
        for module in m.modules():
            if isinstance(module, KITINet):
                module.register_forward_hook(
                    lambda *_, count=count: count.__setitem__(0, count[0] + 1)
                )
        _output(name, run(m, **inputs(name))).square().mean().backward()
        grads.append([p.grad for p in m.parameters()])
        calls.append(count[0])
    assert calls[0] == 4 and calls[1] > 4  # the checkpointed model recomputed collisions
    for g, h in zip(*grads, strict=True):
        torch.testing.assert_close(g, h)


# --------------------------------------------------------------------------------------------
# What insert_kitinet returns and where it puts the modules
# --------------------------------------------------------------------------------------------
def test_returned_modules_in_block_order_with_seed_and_stream() -> None:
    model = build("GPT2LMHeadModel")
    modules = insert_kitinet(
        model, collision_heads=4, coll_coef=0.3, sites=("mlp", "attn"), dt=0.5,
        position_update=False, mean_free_path=2.0, seed=7,
    )  # fmt: skip
    names = {id(m): n for n, m in model.named_modules()}
    assert [names[id(m)] for m in modules] == [
        "transformer.h.0.kitinet_attn",
        "transformer.h.0.kitinet_mlp",
        "transformer.h.1.kitinet_attn",
        "transformer.h.1.kitinet_mlp",
    ]
    for i, m in enumerate(modules):
        assert isinstance(m, KITINet) and m.system == "token"
        assert (m.collision_heads, m.coll_coef, m.dt, m.position_update, m.mean_free_path) == (
            4, 0.3, 0.5, False, 2.0,
        )  # fmt: skip
        assert (m.seed, m.stream) == (7, i)
        assert m.last_collision_rate is None
    model.eval()
    assert not any(m.training for m in modules)
    model.train()
    assert all(m.training for m in modules)


def test_layers_pick_blocks_and_bert_sites_sit_in_the_output_modules() -> None:
    model = build("BertForSequenceClassification")
    modules = insert_kitinet(model, collision_heads=2, coll_coef=0.5, sites="mlp", layers=[-1, 1])
    names = {id(m): n for n, m in model.named_modules()}
    assert [names[id(m)] for m in modules] == ["bert.encoder.layer.1.output.kitinet_mlp"]
    remove_kitinet(model)
    modules = insert_kitinet(model, collision_heads=2, coll_coef=0.5, sites=("attn", "mlp"))
    names = {id(m): n for n, m in model.named_modules()}
    assert [names[id(m)] for m in modules] == [
        f"bert.encoder.layer.{i}.{site}"
        for i in (0, 1)
        for site in ("attention.output.kitinet_attn", "output.kitinet_mlp")
    ]
    assert type(model.bert.encoder.layer[0]) is transformers.models.bert.modeling_bert.BertLayer


# --------------------------------------------------------------------------------------------
# State dict, save_pretrained, remove_kitinet
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_save_pretrained_gives_a_stock_checkpoint(name: str, tmp_path: Path) -> None:
    stock, model, _ = stock_and_kitinet(name, sites=("attn", "mlp"))
    assert list(model.state_dict()) == list(stock.state_dict())
    model.save_pretrained(tmp_path)
    loaders = [type(stock)] + ([transformers.AutoModel] if name in BASES else [])
    kwargs = inputs(name)
    stock.eval()
    with torch.no_grad():
        want = stock(**kwargs)
    for loader in loaders:
        loaded, info = loader.from_pretrained(tmp_path, output_loading_info=True)
        assert type(loaded) is type(stock)
        assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
        assert not any("kitinet" in n.lower() for n, _ in loaded.named_modules())
        got_state, want_state = loaded.state_dict(), stock.state_dict()
        assert list(got_state) == list(want_state)
        assert all(torch.equal(got_state[k], want_state[k]) for k in want_state)
        loaded.eval()
        with torch.no_grad():
            assert_bitwise_equal(loaded(**kwargs), want)


@pytest.mark.parametrize("name", MODELS)
def test_remove_kitinet_restores_the_stock_modules(name: str) -> None:
    stock, model, modules = stock_and_kitinet(name, sites=("attn", "mlp"), coll_coef=1.0)
    assert structure(model) != structure(stock)
    assert remove_kitinet(model) == modules
    assert structure(model) == structure(stock)
    assert all("forward" not in vars(m) for m in model.modules())
    assert list(model.state_dict()) == list(stock.state_dict())
    stock.train(), model.train()
    kwargs = inputs(name)
    assert_bitwise_equal(run(model, **kwargs), run(stock, **kwargs))
    assert remove_kitinet(model) == []  # nothing left to remove
    assert len(insert_kitinet(model, collision_heads=2, coll_coef=0.5)) == 2  # insert again


# --------------------------------------------------------------------------------------------
# Errors: nothing is changed
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (
            lambda: build("GPT2Model"),
            {"sites": ("attn", "ffn")},
            r"unknown sites \['ffn'\]: allowed sites are 'attn', 'mlp'",
        ),
        (lambda: build("GPT2Model"), {"sites": ()}, r"no site given: allowed sites are"),
        (lambda: build("LlamaModel"), {"layers": [2]}, r"2 blocks, valid indices are -2\.\.1"),
        (lambda: build("BertModel"), {"layers": [0, -3]}, r"valid indices are -2\.\.1"),
        (lambda: build("DistilBertModel"), {"collision_heads": 3}, r"collision_heads=3"),
        (
            lambda: transformers.MistralModel(_config("mistral")),
            {},
            r"does not support MistralModel.*GPT-2 \(GPT2Model, GPT2LMHeadModel\).*Llama",
        ),
        (lambda: nn.Linear(4, 4), {}, r"does not support Linear.*Supported: GPT-2"),
    ],
)
def test_bad_arguments_raise_and_change_nothing(
    make: Callable[[], nn.Module], kwargs: dict[str, Any], message: str
) -> None:
    model = make()
    before = structure(model)
    with pytest.raises(ValueError, match=message):
        insert_kitinet(model, **({"collision_heads": 2, "coll_coef": 0.5} | kwargs))
    assert structure(model) == before


def test_inserting_twice_raises() -> None:
    model = build("Qwen2ForCausalLM")
    insert_kitinet(model, collision_heads=2, coll_coef=0.5, layers=[0])
    before = structure(model)
    with pytest.raises(ValueError, match=r"already inserted .*1 modules.*remove_kitinet"):
        insert_kitinet(model, collision_heads=2, coll_coef=0.5, layers=[1])
    assert structure(model) == before


def test_another_transformers_major_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The block forwards follow transformers 5.x; 4.x blocks take other arguments."""
    model = build("GPT2Model")
    # transformers' lazy module can be replaced in sys.modules on imports: patch the current one
    monkeypatch.setattr(sys.modules["transformers"], "__version__", "4.57.1")
    with pytest.raises(RuntimeError, match=r"transformers 5\.x; transformers 4\.57\.1"):
        insert_kitinet(model, collision_heads=2, coll_coef=0.5)
    assert not any(isinstance(m, KITINet) for m in model.modules())


def test_import_needs_no_transformers() -> None:
    """`import kinetics` does not import kinetics.hf, and kinetics.hf imports with torch alone."""
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "import kinetics\n"
        "assert 'kinetics.hf' not in sys.modules\n"
        "import kinetics.hf\n"
        "print('ok')\n"
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
