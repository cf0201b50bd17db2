"""Tokenise an LM data set into token shards (``experiments/lm/prepare.py``; ``make lm-data``).

Usage (from the repository root), with Hydra-style overrides of ``configs/config.yaml``::

    python scripts/prepare_lm_data.py dataset=mini_wiki
    python scripts/prepare_lm_data.py dataset=mini_wiki dataset.prepare.train_tokens=100000 --force
    python scripts/prepare_lm_data.py dataset=fineweb_edu          # hub data: needs the network,
        # e.g. HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 python scripts/prepare_lm_data.py ...

Reads ``dataset.dir`` (where the shards go), ``dataset.tokenizer`` (a hub id or a local folder)
and ``dataset.prepare`` (sources, train_tokens, val_tokens, shard_tokens, seed). A complete data
set with the same recipe is left as it is; one with another recipe is refused unless ``--force``;
a killed run continues where it stopped. Configuration errors are one line on stderr (exit 2);
a source or tokenizer that cannot be opened, or a recipe conflict, one line too (exit 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: import this checkout's packages
    sys.path.insert(0, str(REPO))

from experiments.core.errors import ConfigError  # noqa: E402
from experiments.lm.prepare import PrepareError, check_prepare_config, prepare  # noqa: E402

CONFIG_DIR = REPO / "configs"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=mini_wiki")
    parser.add_argument("--force", action="store_true", help="rebuild a data set of another recipe")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def compose(overrides: Sequence[str]) -> Any:
    """``configs/config.yaml`` composed with ``overrides`` (one-line :class:`ConfigError`s)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import experiments.core.config  # noqa: F401  (registers the schema options Hydra composes)

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None


def lm_settings(cfg: Any) -> dict[str, Any]:
    """``dir``, ``tokenizer``, ``prepare`` and ``data_dir`` of the composed config, resolved."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
        data_dir = str(cfg.paths.data_dir)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    if not isinstance(dataset, dict) or "prepare" not in dataset:
        name = dataset.get("name") if isinstance(dataset, dict) else None
        raise ConfigError(
            f"the dataset config (name {name!r}) has no prepare block: choose an LM data set, "
            "e.g. dataset=mini_wiki"
        )
    for key in ("dir", "tokenizer"):
        if not dataset.get(key):
            raise ConfigError(f"dataset.{key} is not set")
    check_prepare_config(dataset["prepare"])
    return {
        "dir": dataset["dir"],
        "tokenizer": dataset["tokenizer"],
        "prepare": dataset["prepare"],
        "data_dir": data_dir,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = lm_settings(compose(args.overrides))
    block = settings["prepare"]
    started = time.perf_counter()
    prepare(
        block["sources"],
        settings["tokenizer"],
        settings["dir"],
        train_tokens=block["train_tokens"],
        val_tokens=block["val_tokens"],
        shard_tokens=block["shard_tokens"],
        seed=block.get("seed", 0),
        batch_docs=block.get("batch_docs", 512),
        cache_dir=str(Path(settings["data_dir"]) / "hf_cache"),
        force=args.force,
        progress=not args.no_progress,
    )
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
