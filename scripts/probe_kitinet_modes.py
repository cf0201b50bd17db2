"""Train one KITI text run, then score its test set with KITINet on (train-mode collisions,
dropout off) and off (eval: plain x + v): does the trained network depend on the collisions?

    python scripts/probe_kitinet_modes.py experiment=mini/text_topics_kiti seed=0

Any run.py override works; the run directory is a temporary one. Prints both accuracies and the
class histogram of the eval predictions on the first test batch against its labels.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import runner  # noqa: E402
from experiments.core.task import call_model, logits_of, split_batch  # noqa: E402


def accuracy(model: torch.nn.Module, batches: Any, *, collide: bool) -> float:
    """Test accuracy in eval mode, with every KITINet module in train mode when ``collide``."""
    model.eval()
    if collide:
        for module in model.modules():
            if type(module).__name__ == "KITINet":
                module.train()
    right = total = 0
    with torch.no_grad():
        for batch in batches:
            inputs, labels = split_batch(batch)
            predicted = logits_of(call_model(model, inputs)).argmax(-1)
            right += int((predicted == labels).sum())
            total += len(labels)
    return right / total


def main(overrides: list[str]) -> None:
    seen: dict[str, Any] = {}
    real_fit = runner.fit

    def fit(model: torch.nn.Module, optimizer: Any, task: Any, train: Any, test: Any, *a, **k):
        seen.update(model=model, test=test)
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
    model, test = seen["model"], seen["test"]
    print(f"accuracy, eval (KITINet off): {accuracy(model, test, collide=False):.4f}")
    print(f"accuracy, KITINet colliding: {accuracy(model, test, collide=True):.4f}")
    inputs, labels = split_batch(next(iter(test)))
    model.eval()
    with torch.no_grad():
        predicted = logits_of(call_model(model, inputs)).argmax(-1)
    classes = int(max(predicted.max(), labels.max())) + 1
    print(
        "first test batch, eval predictions per class:",
        torch.bincount(predicted, minlength=classes).tolist(),
    )
    print(
        "first test batch, labels per class:          ",
        torch.bincount(labels, minlength=classes).tolist(),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
