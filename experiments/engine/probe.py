"""One look at the built model with a real input before training: sizes that cannot work, and cost.

The runner takes the first test sample (:func:`first_rows`) and runs one forward pass in eval
mode, which draws no random numbers and changes no state (KITINet is the plain addition, dropout
is off, batch norm uses its running statistics):

* :func:`check_kitinet_sizes`: every KITINet must be able to cut its systems into
  ``collision_heads`` rows; a size that cannot fails here, before anything is written, whatever
  the domain;
* :func:`model_cost`: parameter count and FLOPs of one sample, for the run's ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from experiments.core.errors import ConfigError
from experiments.core.task import call_model, split_batch
from kinetics import KITINet
from kinetics.kitinet import kitinet_state, load_kitinet_state

__all__ = ["check_kitinet_sizes", "first_rows", "model_cost", "sample_inputs"]


def first_rows(obj: Any, n: int = 1) -> Any:
    """``obj`` with every tensor cut to its first ``n`` rows (nested tuples, lists, mappings)."""
    if isinstance(obj, Tensor):
        return obj[:n] if obj.dim() > 0 else obj
    if isinstance(obj, Mapping):
        return {k: first_rows(v, n) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(first_rows(v, n) for v in obj)
    return obj


def sample_inputs(batches: Iterable[Any], device: torch.device) -> Any:
    """The inputs of the first sample of ``batches`` (e.g. the test loader), on ``device``."""
    from experiments.engine.runtime import to_device

    batch = next(iter(batches), None)
    if batch is None:
        raise ConfigError("the test data yielded no batch; the data set is empty")
    inputs, _ = split_batch(first_rows(batch))
    return to_device(inputs, device)


def _features(module: KITINet, x: Tensor) -> int:
    return int(x.shape[-1]) if module.system == "token" else int(x[0].numel())


@torch.no_grad()
def check_kitinet_sizes(model: nn.Module, inputs: Any) -> dict[str, int]:
    """``{module: features per system}`` of every KITINet on ``inputs``; ConfigError naming the
    module, its size and the allowed ``collision_heads`` if one does not divide."""
    sizes: dict[str, int] = {}
    modules = {name: m for name, m in model.named_modules() if isinstance(m, KITINet)}
    if not modules:
        return sizes

    def hook(name: str) -> Any:
        def record(module: KITINet, args: tuple[Any, ...]) -> None:
            sizes[name] = _features(module, args[0])

        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in modules.items()]
    training = model.training
    try:
        call_model(model.eval(), inputs)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    for name, features in sizes.items():
        heads = modules[name].collision_heads
        if features % heads:
            divisors = [d for d in range(1, features + 1) if features % d == 0]
            raise ConfigError(
                f"collision.collision_heads={heads} does not divide the {features} features of "
                f"each KITINet system in {name}; allowed: {', '.join(map(str, divisors))}"
            )
    return sizes


@torch.no_grad()
def model_cost(model: nn.Module, inputs: Any) -> dict[str, float | int]:
    """``num_params``, and ``mflops``: FLOPs of one eval forward of ``inputs`` in millions (2 per
    multiply-add, torch's FlopCounterMode). With KITINet also ``mflops_train``: the same with the
    KITINet modules in training mode (their collisions' matrix products); the modules' call
    counters and collision rates are left as they were."""
    cost: dict[str, float | int] = {"num_params": sum(p.numel() for p in model.parameters())}
    kitinets = [m for m in model.modules() if isinstance(m, KITINet)]
    modes = {m: m.training for m in model.modules()}
    calls = kitinet_state(model)
    cuda = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=cuda):  # dropout and the like draw globally
        _count_flops(model, inputs, kitinets, cost)
    load_kitinet_state(model, calls)
    for m in kitinets:
        m.last_collision_rate = None
    for m, training in modes.items():
        m.training = training
    return cost


def _count_flops(
    model: nn.Module, inputs: Any, kitinets: list[KITINet], cost: dict[str, float | int]
) -> None:
    model.eval()
    for key, train_kitinet in (("mflops", False), ("mflops_train", True)):
        if train_kitinet and not kitinets:
            break
        for m in kitinets:
            m.train(train_kitinet)
        with FlopCounterMode(display=False) as counter:
            call_model(model, inputs)
        cost[key] = counter.get_total_flops() / 1e6
