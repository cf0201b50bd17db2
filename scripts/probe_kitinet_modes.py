"""Does a trained KITI network depend on its collisions? Score its test split twice: with KITINet
off (eval, plain x + v, as every reported number) and colliding (every KITINet module in train
mode, everything else, dropout included, in eval).

    python scripts/probe_kitinet_modes.py --run multirun/mini_lm/mini_lm_table1/kitinet_0
    python scripts/probe_kitinet_modes.py experiment=mini/text_topics_kiti seed=0

``--run DIR`` takes a finished run directory: its ``config.yaml`` and the model state of its last
checkpoint, which must be the run's final step. Otherwise the arguments are run.py overrides: one
run is trained first, in a temporary directory. Prints ``test_loss`` and the task's metrics in both
modes (the loop's ``evaluate``, so any domain works), and each KITINet module's mean collision rate
over the test batches when colliding.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import runner  # noqa: E402
from experiments.core.config import validate  # noqa: E402
from experiments.engine.checkpoint import load_checkpoint  # noqa: E402
from experiments.engine.loop import evaluate  # noqa: E402
from kinetics import KITINet  # noqa: E402


def kitinet_modules(model: torch.nn.Module) -> dict[str, KITINet]:
    return {name: m for name, m in model.named_modules() if isinstance(m, KITINet)}


def score(model: torch.nn.Module, test: Any, task: Any, device: torch.device, *, collide: bool):
    """``evaluate``'s record, with the KITINet modules colliding when ``collide``; and their mean
    collision rates (empty when not colliding)."""
    modules = kitinet_modules(model)
    rates: dict[str, list[float]] = {name: [] for name in modules}
    handles = []
    if collide:
        # evaluate() puts the whole model in eval mode first; this switches the KITINet
        # modules back on at every forward, after it.
        def switch_on(*_: Any) -> None:
            for m in modules.values():
                m.train()

        handles.append(model.register_forward_pre_hook(switch_on))
        for name, m in modules.items():

            def record(module: KITINet, *_: Any, name: str = name) -> None:
                if module.last_collision_rate is not None:
                    rates[name].append(float(module.last_collision_rate))

            handles.append(m.register_forward_hook(record))
    try:
        result = evaluate(model, test, task, device)
    finally:
        for h in handles:
            h.remove()
    mean_rates = {n: sum(r) / len(r) for n, r in rates.items() if r}
    return result, mean_rates


def from_run(run_dir: Path) -> tuple[torch.nn.Module, Any, Any, torch.device]:
    """The finished run's model (last checkpoint), test data, task and device."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rc = validate(OmegaConf.load(run_dir / "config.yaml"))
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        sys.exit(
            f"error: {path} does not exist: the run kept no checkpoint (trainer.checkpoint_every); "
            "pass run.py overrides instead to train one"
        )
    checkpoint = load_checkpoint(path)
    if checkpoint.get("step") != summary.get("step"):
        sys.exit(
            f"error: {path} is at step {checkpoint.get('step')}, the run "
            f"ended at step {summary.get('step')}: its final weights are not on disk"
        )
    p = runner.prepare(rc)
    p.model.load_state_dict(checkpoint["model"])
    return p.model, p.test_data, p.task, p.device


def trained(overrides: list[str]) -> tuple[torch.nn.Module, Any, Any, torch.device]:
    """Train one run from run.py ``overrides`` in a temporary directory; its model and data."""
    seen: dict[str, Any] = {}
    real_fit = runner.fit

    def fit(model: torch.nn.Module, optimizer: Any, task: Any, train: Any, test: Any, *a, **k):
        seen.update(model=model, test=test, task=task, device=k["device"])
        return real_fit(model, optimizer, task, train, test, *a, **k)

    runner.fit = fit
    with tempfile.TemporaryDirectory() as out:
        with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
            cfg = compose(
                "config",
                [*overrides, f"paths.output_dir={out}", "trainer.progress=false"],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)  # as run.py: the experiment names the run
        with open_dict(cfg):
            del cfg["hydra"]
        runner.run(cfg)
    return seen["model"], seen["test"], seen["task"], seen["device"]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a finished run directory")
    args, overrides = parser.parse_known_args(argv)
    if (args.run is None) == (not overrides):
        parser.error("give either --run DIR or run.py overrides")
    model, test, task, device = from_run(args.run) if args.run else trained(overrides)
    if not kitinet_modules(model):
        sys.exit("error: the model has no KITINet module")
    for collide in (False, True):
        record, rates = score(model, test, task, device, collide=collide)
        mode = "KITINet colliding" if collide else "eval (KITINet off)"
        print(f"{mode:20s}", "  ".join(f"{k} {v:.6g}" for k, v in record.items()))
        for name, rate in rates.items():
            print(f"  collision rate {name}: {rate:.4%}")


if __name__ == "__main__":
    main(sys.argv[1:])
