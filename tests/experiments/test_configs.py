"""Every config option and experiment composes and validates; bad values give the promised errors.

Options, recipes and experiments are enumerated from the YAML files, so a new file is tested
automatically.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest
import torch
from helpers import CONFIG_DIR, compose_cfg
from omegaconf import DictConfig, OmegaConf

from experiments.core.config import (
    COLLISION_KEYS,
    SCHEMA_GROUPS,
    RunConfig,
    collision_options,
    validate,
)
from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from experiments.engine.optim import build_optimizer
from experiments.engine.schedulers import build_scheduler
from experiments.pde.models import check_resolution
from experiments.runner import build_model, select_watch

# Groups whose options are tested one by one, recipe/ included (hydra/ configures Hydra itself,
# experiment/ below).
GROUPS = sorted(
    d.name for d in CONFIG_DIR.iterdir() if d.is_dir() and d.name not in ("hydra", "experiment")
)
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONFIG_DIR / g).glob("*.yaml"))]
RECIPES = sorted(f.stem for f in (CONFIG_DIR / "recipe").glob("*.yaml"))
# Experiments live in one folder per paper (experiment/ko/fig2.yaml: experiment=ko/fig2).
EXPERIMENT_DIR = CONFIG_DIR / "experiment"
EXPERIMENT_GROUPS = ("ko", "kitinet", "mini")
EXPERIMENTS = sorted(
    f.relative_to(EXPERIMENT_DIR).with_suffix("").as_posix() for f in EXPERIMENT_DIR.rglob("*.yaml")
)
# Options that only make sense together with another choice (a recipe: with a model it is for).
COMPANIONS = {
    ("collision", "kitinet"): ["model=kitinet_fc"],
    ("recipe", "cifar_sgd_cosine"): ["model=resnet18"],
    ("recipe", "cifar_sgd_multistep"): ["model=resnet18"],
    ("recipe", "cifar_adam"): ["model=resnet18_fc_head"],
    ("recipe", "rsb_a2"): ["model=timm_resnet50"],
    ("recipe", "convnext_adamw"): ["model=convnext_tiny"],
    ("recipe", "fno_adam"): ["model=fno1d"],
    ("recipe", "oformer_adamw"): ["model=oformer"],
    ("recipe", "mini_fno_burgers"): ["model=fno1d"],
    ("recipe", "text_ko_adamw"): ["model=bert_base_uncased"],
    ("recipe", "text_kitinet_adam"): ["model=bert_base_uncased"],
    **{("dataset", d): ["model=bert_base_uncased"] for d in ("imdb", "snli", "snips")},
    ("dataset", "lm_tokens"): ["model=gpt2", "dataset.dir=tokens"],
    ("recipe", "lm_pretrain_adamw"): ["model=gpt2"],
    **{
        ("dataset", d): ["model=gpt2"]
        for d in ("mini_wiki", "mini_pydocs", "fineweb_edu", "kitinet_table1_mix", "openwebmath")
    },
    ("dataset", "ko_table6_fineweb_edu"): ["model=qwen2_0_5b"],
    ("dataset", "text_files"): [
        "model=bert_base_uncased",
        "dataset.train=train.csv",
        "dataset.test=test.csv",
    ],
}

TEXT_MODELS = (
    "bert_base_cased",
    "bert_base_uncased",
    "distilbert_base_uncased",
    "minilm_l6",
    "hf_classifier",
)
# Text models are built from a tiny config of their architecture (no checkpoint download).
TINY_TEXT_CONFIGS = {
    "bert": {
        "model_type": "bert",
        "vocab_size": 64,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
    },
    "distilbert": {
        "model_type": "distilbert",
        "vocab_size": 64,
        "dim": 16,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_dim": 32,
    },
}


LM_MODELS = ("gpt2", "gpt2_medium", "gpt2_large", "gpt2_xl", "qwen2_0_5b", "qwen2_1_5b")
# Language models are built from their architecture shrunk (the paper sizes take GBs).
TINY_LM_CONFIGS = {
    "gpt2": {"n_layer": 2, "n_embd": 16, "n_head": 2},
    "qwen2": {
        "num_hidden_layers": 2,
        "hidden_size": 16,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 32,
    },
}


def _offline_text_model(rc: RunConfig) -> RunConfig:
    """``rc`` with a text model's checkpoint replaced by a tiny config of its architecture, and a
    language model shrunk."""
    if rc.model.name in LM_MODELS:
        tiny = TINY_LM_CONFIGS["qwen2" if "qwen2" in rc.model.name else "gpt2"]
        if rc.model.kwargs.get("pretrained"):
            kwargs = {**rc.model.kwargs, "pretrained": None}  # the architecture, not the weights
        else:
            kwargs = dict(rc.model.kwargs)
        kwargs = {**kwargs, "config": {**tiny, **(kwargs.get("config") or {})}, "vocab_size": 64}
        if "kitinet" in rc.collision.name:
            rc = dataclasses.replace(
                rc, collision=dataclasses.replace(rc.collision, collision_heads=2)
            )
        return dataclasses.replace(rc, model=dataclasses.replace(rc.model, kwargs=kwargs))
    if rc.model.name not in TEXT_MODELS:
        return rc
    kind = "distilbert" if "distilbert" in rc.model.name else "bert"
    kwargs = {**rc.model.kwargs, "pretrained": None, "config": TINY_TEXT_CONFIGS[kind]}
    if "kitinet" in rc.collision.name:
        rc = dataclasses.replace(rc, collision=dataclasses.replace(rc.collision, collision_heads=2))
    return dataclasses.replace(rc, model=dataclasses.replace(rc.model, kwargs=kwargs))


def build_all(cfg: DictConfig) -> None:
    """Validate and build everything that can fail before training; run one forward pass."""
    rc = _offline_text_model(validate(cfg))
    torch.manual_seed(0)
    model = build_model(rc, torch.device("cpu"))
    select_watch(model, rc.trainer.watch, rc.model.name)
    _, base = build_optimizer(rc, model)
    build_scheduler(rc, base, steps_per_epoch=3)
    FORWARD_CHECKS[rc.model.name](rc, model)


def _check_regressor(rc: RunConfig, model: torch.nn.Module) -> None:
    out = model(torch.randn(4, rc.model.kwargs.get("in_features", 5)))
    assert out.shape == (4, rc.model.kwargs.get("out_features", 1))


def _check_classifier(rc: RunConfig, model: torch.nn.Module) -> None:
    """Without data the model has the builder's class count and channels."""
    params = MODELS.parameters(rc.model.name)
    out = model(torch.randn(2, rc.model.kwargs.get("in_chans", 3), 32, 32))
    assert out.shape == (2, rc.model.kwargs.get("num_classes", params["num_classes"].default))


def _check_mesh_operator(rc: RunConfig, model: torch.nn.Module) -> None:
    """OFormer: (values, coords) -> values at the same nodes."""
    values, coords = torch.randn(2, 10, model.in_channels), torch.rand(2, 10, model.coord_dim)
    assert model.eval()((values, coords)).shape == (2, 10, model.out_channels)


def _check_fno(rc: RunConfig, model: torch.nn.Module) -> None:
    """KITINet systems at the data set's training resolution (as the runner checks them with the
    data), then one eval forward on a small grid (eval is resolution-free: the paper-sized
    models stay cheap here)."""
    dataset = rc.dataset.kwargs
    if "train_resolution" in dataset:
        shape = (dataset["train_resolution"],) * model.dim
        check_resolution(model, shape, max_particles=dataset.get("max_particles"))
    u = torch.randn(2, *(16,) * model.dim, model.in_channels)
    with torch.no_grad():
        out = model.eval()(u)
    assert out.shape == (2, *(16,) * model.dim, model.t_out or model.out_channels)


def _check_text_classifier(rc: RunConfig, model: torch.nn.Module) -> None:
    """Token ids and a mask -> (batch, num_labels) logits."""
    ids = torch.randint(1, 64, (2, 7))
    out = model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert out.shape == (2, rc.model.kwargs.get("num_labels", 2))


def _check_causal_lm(rc: RunConfig, model: torch.nn.Module) -> None:
    """Token ids -> (batch, length, vocabulary) logits."""
    ids = torch.randint(0, 64, (2, 7))
    assert model.eval()(ids).logits.shape == (2, 7, 64)


# One forward check per registered model (a new model must add its own: see the test below).
FORWARD_CHECKS = {
    **dict.fromkeys(["mlp", "kitinet_fc", "skipnet"], _check_regressor),
    **dict.fromkeys(
        [f"cifar_resnet{d}" for d in (18, 34, 50, 101, 152)] + ["resnet18_fc_head", "timm_model"],
        _check_classifier,
    ),
    "fno1d": _check_fno,
    "fno2d": _check_fno,
    "oformer": _check_mesh_operator,
    **dict.fromkeys(TEXT_MODELS, _check_text_classifier),
    **dict.fromkeys(LM_MODELS, _check_causal_lm),
}


def test_every_registered_model_has_a_forward_check() -> None:
    assert sorted(FORWARD_CHECKS) == MODELS.names()


def test_there_is_something_to_test() -> None:
    assert {"model", "dataset", "collision", "optimizer", "scheduler", "trainer"} <= set(GROUPS)
    assert {"recipe"} <= set(GROUPS) and {"cifar_sgd_cosine", "fno_adam"} <= set(RECIPES)
    assert {"ko/fig2", "kitinet/fc", "kitinet/skip", "mini/pde"} <= set(EXPERIMENTS)


# LM token data sets (name: lm_tokens; prepared by scripts/prepare_lm_data.py): their prepare
# block is checked too (the files are not needed to build the model).
LM_DATASETS = sorted(
    f.stem
    for f in (CONFIG_DIR / "dataset").glob("*.yaml")
    if re.search(r"^name: lm_tokens\b", f.read_text(), re.M)
)


def _check_lm_dataset(cfg: DictConfig) -> None:
    """dir, tokenizer and seq_len are set and the prepare block is valid (files not needed)."""
    from experiments.lm.prepare import check_prepare_config

    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert dataset["dir"] and dataset["seq_len"] >= 1
    if "prepare" in dataset:  # lm_tokens.yaml: any prepared directory, no recipe
        assert dataset["tokenizer"]
        check_prepare_config(dataset["prepare"], resolve=False)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_cfg(f"{group}={option}", *COMPANIONS.get((group, option), []))
    if group == "dataset" and option in LM_DATASETS:
        _check_lm_dataset(cfg)
    build_all(cfg)


def test_the_lm_datasets_are_found() -> None:
    assert {"mini_wiki", "mini_pydocs", "fineweb_edu", "openwebmath"} <= set(LM_DATASETS)


def test_default_is_the_ko_fig2_setting() -> None:
    rc = validate(compose_cfg())
    assert rc.model.name == "mlp"
    assert rc.model.kwargs["activation"] == "tanh"
    assert rc.model.kwargs["init_std"] == 0.005
    assert rc.dataset.name == "sin5d"
    assert rc.dataset.kwargs["n_train"] == 80
    assert rc.optimizer.name == "adam"
    assert rc.collision.name == "soft"
    assert rc.collision.modules == ["fc1"]
    assert rc.trainer.epochs == 100
    assert rc.trainer.batch_size is None
    assert rc.trainer.watch == ["fc1"]
    assert rc.seed == 0
    assert rc.collision_seed == 0


def test_collision_seed_follows_the_run_seed() -> None:
    assert validate(compose_cfg("seed=7")).collision_seed == 7
    hard = validate(compose_cfg("seed=7", "collision=hard", "collision.seed=3"))
    assert hard.collision_seed == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["collision=soft", "+collision.mean_free_path=5"],
            "collision.mean_free_path does not apply to collision=soft; its options: name, "
            "coll_coef, modules, exclude_self",
        ),
        (["collision=none", "+collision.coll_coef=0.5"], "does not apply to collision=none"),
        (["collision=hard", "+collision.collision_heads=4"], "does not apply to collision=hard"),
        (["collision=kitinet", "+collision.modules=[fc1]"], "does not apply to collision=kitinet"),
    ],
)
def test_options_of_another_collision_mode_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_cfg(*overrides))


@pytest.mark.parametrize("mode", ["none", "soft", "hard", "kitinet"])
def test_a_collision_mode_shows_only_its_options(mode: str) -> None:
    companions = ["model=kitinet_fc"] if mode == "kitinet" else []
    rc = validate(compose_cfg(f"collision={mode}", *companions))
    assert tuple(collision_options(rc.collision)) == COLLISION_KEYS[mode]


def test_a_mode_sweep_may_set_options_for_one_mode_in_its_file() -> None:
    """experiment=mini/vision sweeps none,soft,hard,kitinet and sets collision_heads (kitinet's)."""
    rc = validate(compose_cfg("experiment=mini/vision", "collision=soft"))
    assert "collision_heads" not in collision_options(rc.collision)
    rc = validate(compose_cfg("experiment=mini/vision", "collision=kitinet"))
    assert collision_options(rc.collision)["collision_heads"] == 16


def _sweep_points(cfg: DictConfig) -> list[list[str]]:
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    axes = [[f"{key}={v}" for v in str(values).split(",")] for key, values in params.items()]
    return [list(p) for p in itertools.product(*axes)]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_is_named_after_its_file(experiment: str) -> None:
    """experiment=<group>/<stem> runs as <group>_<stem>: the names results and renderers use."""
    group, _, stem = experiment.partition("/")
    assert group in EXPERIMENT_GROUPS and stem and "/" not in stem, experiment
    cfg = compose_cfg(f"experiment={experiment}")
    # the file does not name itself: the name is config.yaml's, derived from the file's path
    assert OmegaConf.to_container(cfg)["experiment_name"] == "${kinetics.experiment_name:}"
    assert cfg.experiment_name == f"{group}_{stem}"
    assert validate(cfg).experiment_name == f"{group}_{stem}"


def test_a_run_without_an_experiment_is_named_after_what_it_runs() -> None:
    assert validate(compose_cfg()).experiment_name == "mlp_sin5d_soft"
    cfg = compose_cfg("model=resnet18", "collision=hard", "recipe=cifar_sgd_cosine")
    assert validate(cfg).experiment_name == "resnet18_cifar10_hard"
    assert validate(compose_cfg("experiment_name=mine")).experiment_name == "mine"


def test_every_recipe_is_used_by_an_experiment() -> None:
    used = {
        line.split(":", 1)[1].strip()
        for f in EXPERIMENT_DIR.rglob("*.yaml")
        for line in f.read_text().splitlines()
        if line.strip().startswith("- override /recipe:")
    }
    assert used == set(RECIPES)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_sweep_point_composes(experiment: str) -> None:
    cfg = compose_cfg(f"experiment={experiment}", hydra_config=True)
    points = _sweep_points(cfg)
    assert points, f"experiment {experiment} defines no hydra.sweeper.params"
    for point in points:
        build_all(compose_cfg(f"experiment={experiment}", *point))


def test_ko_fig2_sweeps_the_whole_figure() -> None:
    cfg = compose_cfg("experiment=ko/fig2", hydra_config=True)
    points = _sweep_points(cfg)
    assert len(points) == 15
    assert ["model.activation=xtanh", "collision=hard"] in points


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["collision.coll_coef=1.5"], "collision.coll_coef=1.5 is outside [0, 1]"),
        (["collision.coll_coef=-0.1"], "collision.coll_coef=-0.1 is outside [0, 1]"),
        (
            ["collision=hard", "collision.mean_free_path=0"],
            "collision.mean_free_path=0.0 must be > 0",
        ),
        (
            ["collision=hard", "collision.mean_free_path=-2"],
            "collision.mean_free_path=-2.0 must be > 0",
        ),
        (
            ["model=kitinet_fc", "collision=kitinet", "collision.collision_heads=0"],
            "collision.collision_heads=0 must be an integer >= 1",
        ),
        (
            ["model.activation=swish"],
            "model.activation='swish' is unknown; allowed: tanh, xtanh, sigmoid, softplus, relu, "
            "leaky_relu",
        ),
        (
            ["optimizer.name=rmsprop"],
            "optimizer.name='rmsprop' is unknown; allowed: sgd, adam, adamw, lamb",
        ),
        (["model.name=resnet999"], "model.name='resnet999' is unknown; registered models:"),
        (["dataset.name=mnist9"], "dataset.name='mnist9' is unknown; registered datasets:"),
        (["scheduler.name=poly"], "scheduler.name='poly' is unknown; allowed:"),
        (["collision.name=medium"], "collision.name='medium' is unknown; allowed:"),
        (["logger.name=tensorboard"], "logger.name='tensorboard' is unknown; allowed: none, wandb"),
        (
            ["collision=kitinet"],
            "collision=kitinet needs a model with residual connections, but model=mlp has none; "
            "use one of: bert_base_cased, bert_base_uncased, cifar_resnet101, cifar_resnet152, "
            "cifar_resnet18, cifar_resnet34, cifar_resnet50, distilbert_base_uncased, fno1d, "
            "fno2d, gpt2, gpt2_large, gpt2_medium, gpt2_xl, hf_classifier, kitinet_fc, minilm_l6, "
            "oformer, qwen2_0_5b, qwen2_1_5b, skipnet",
        ),
        (["+collision.bogus=1"], "collision.bogus is not a known option of 'collision'"),
        (["+model.depth=3"], "model.depth is not an argument of model 'mlp'; allowed:"),
        (["collision.coll_coef=high"], "collision.coll_coef='high' must be of type float"),
        (["trainer.epochs=0"], "trainer.epochs=0 must be >= 1"),
        (["trainer.progress=sometimes"], "trainer.progress='sometimes' is unknown"),
        (["optimizer.lr=0"], "optimizer.lr=0.0 must be > 0"),
        (["seed=-1"], "seed=-1 must be an integer >= 0"),
        (["scheduler=multistep", "scheduler.milestones=[]"], "scheduler.milestones is empty"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(overrides: list[str], message: str) -> None:
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model=kitinet_fc", "collision=kitinet", "collision.collision_heads=3"],
            "collision.collision_heads=3 does not divide the feature size 50 (model.hidden); "
            "allowed: 1, 2, 5, 10, 25, 50",
        ),
        (
            ["model=skipnet", "collision=kitinet", "model.kitinet_layers=7"],
            "model.kitinet_layers=7 is outside [0, 6]",
        ),
    ],
)
def test_bad_model_combinations_fail_at_build(overrides: list[str], message: str) -> None:
    rc = validate(compose_cfg(*overrides))
    with pytest.raises(ConfigError) as err:
        build_model(rc, torch.device("cpu"))
    assert message in str(err.value)


def test_ko_modules_matching_nothing_fail_at_build() -> None:
    rc = validate(compose_cfg("collision=hard", "collision.modules=[encoder.*]"))
    model = build_model(rc, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"collision.modules=\['encoder.\*'\]: module pattern"):
        build_optimizer(rc, model)


def test_watch_matching_nothing_fails() -> None:
    rc = validate(compose_cfg("trainer.watch=[fc9]"))
    model = build_model(rc, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"trainer\.watch='fc9' matches no layer"):
        select_watch(model, rc.trainer.watch, rc.model.name)


LAUNCHERS = sorted(f.stem for f in (CONFIG_DIR / "hydra" / "launcher").glob("*.yaml"))


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/\w+' is validated against ConfigStore")
def test_launcher_configs_compose_to_an_importable_launcher(launcher: str) -> None:
    from hydra.utils import get_class

    cfg = compose_cfg(f"hydra/launcher={launcher}", hydra_config=True)
    target = cfg.hydra.launcher._target_
    assert get_class(target).__name__.endswith("Launcher")
    assert cfg.hydra.launcher.timeout_min > 0 and cfg.hydra.launcher.partition is None


@pytest.mark.parametrize("group", sorted(SCHEMA_GROUPS))
def test_group_options_start_from_their_schema(group: str) -> None:
    """Each default is written once (the dataclass); every option of the group has every key,
    so any option can be set on the command line without '+'."""
    fields = [f.name for f in dataclasses.fields(SCHEMA_GROUPS[group])]
    for option in sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")):
        cfg = compose_cfg(f"{group}={option}")
        assert list(cfg[group]) == fields, option
    cfg = compose_cfg("trainer.grad_accum_steps=4", "scheduler.warmup_steps=3")
    assert cfg.trainer.grad_accum_steps == 4 and cfg.scheduler.warmup_steps == 3
