"""KineticOptimizer: KO's collision gadget in front of any torch optimizer (SPEC §1.4).

After backward (and after gradient unscaling or clipping), the gradients of the chosen layers'
weights are changed by a soft or hard collision between their neurons; then the wrapped optimizer
steps unchanged. The wrapper shares the base optimizer's ``param_groups`` and ``state``, so LR
schedulers, ``GradScaler.step`` and checkpointing treat it like the base.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from kinetics.collision import hard_collision_with_stats, soft_collision
from kinetics.dsmc import _check_coef

__all__ = ["KineticOptimizer", "find_classifier", "select_modules"]

CollisionMode = Literal["soft", "hard"]


def find_classifier(model: nn.Module) -> tuple[str, nn.Module]:
    """The classifier head of ``model`` and its name.

    ``model.get_classifier()`` when the model has it (timm models), else the last ``nn.Linear``
    registered in the model.
    """
    named = list(model.named_modules())
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        for name, module in named:
            if module is head:
                return name, module
    linears = [(name, m) for name, m in named if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no get_classifier() and no nn.Linear layer")
    return linears[-1]


def _has_matrix_weight(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, Tensor) and weight.dim() >= 2


def select_modules(model: nn.Module, patterns: str | Iterable[str]) -> dict[str, nn.Module]:
    """Layers of ``model`` whose weights should collide, by name.

    Each pattern is matched with :func:`fnmatch.fnmatch` against the names of
    ``model.named_modules()`` (e.g. ``"fc"``, ``"layer4.*.conv*"``, ``"blocks.11.*"``); only modules
    with a weight of two or more dimensions (Linear, Conv) are kept. The pattern ``"head"`` means the
    classifier head (:func:`find_classifier`) unless a module is literally named ``head``.

    Raises:
        ValueError: when a pattern matches no such module (the message lists the candidates).
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    candidates = {name: m for name, m in model.named_modules() if _has_matrix_weight(m)}
    selected: dict[str, nn.Module] = {}
    for pattern in patterns:
        if pattern == "head" and "head" not in candidates:
            name, module = find_classifier(model)
            hits = {name: module}
        else:
            hits = {name: m for name, m in candidates.items() if fnmatch.fnmatch(name, pattern)}
        if not hits:
            raise ValueError(
                f"module pattern {pattern!r} matches no layer with a weight matrix; "
                f"candidates are: {', '.join(candidates) or '(none)'}"
            )
        selected.update(hits)
    return selected


class KineticOptimizer(Optimizer):
    """Wrap ``optimizer`` so that the weight gradients of ``modules`` collide before each step.

    Example::

        base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        opt = KineticOptimizer(base, select_modules(model, "head"), "hard", coll_coef=0.5, seed=0)
        loss.backward(); opt.step(); opt.zero_grad()

    Args:
        optimizer: any ``torch.optim.Optimizer`` (SGD, Adam, AdamW, LAMB, ...). It must optimise the
            chosen layers' weights.
        modules: the layers whose ``weight.grad`` collide, as ``{name: module}`` (names are used for
            logging) or an iterable of modules.
        mode: ``"soft"`` (KO Algorithm 2) or ``"hard"`` (KO Algorithm 1, DSMC hard spheres).
        coll_coef: collision coefficient in [0, 1].
        seed: seed of the gadget's own ``torch.Generator`` (hard mode). Use the same seed on every
            DDP rank: gradients are identical after all-reduce, so every rank draws the same
            directions and replicas stay bit-identical.
        exclude_self: soft mode without the i == j term (KO App. A Eq. 12).
        mean_free_path: hard mode locality length scale; > 0.

    ``step(closure)`` evaluates ``closure`` once (if given), collides, then calls the base's
    ``step()``; optimisers that re-evaluate closures themselves (L-BFGS) are not supported.
    Biases and other parameters are untouched and behave exactly as under the base optimizer.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        modules: Mapping[str, nn.Module] | Iterable[nn.Module],
        mode: CollisionMode,
        coll_coef: float,
        *,
        seed: int = 0,
        exclude_self: bool = False,
        mean_free_path: float = 1.0,
    ) -> None:
        # Deliberately no Optimizer.__init__: parameters, groups and state stay the base's own.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
        if mode not in ("soft", "hard"):
            raise ValueError(f"mode={mode!r} is not one of 'soft', 'hard'")
        _check_coef(coll_coef, mean_free_path)
        if isinstance(modules, Mapping):
            layers = dict(modules)
        else:
            layers = {f"{i}:{type(m).__name__}": m for i, m in enumerate(modules)}
        if not layers:
            raise ValueError("modules is empty: nothing would collide")
        optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for name, module in layers.items():
            if not _has_matrix_weight(module):
                raise ValueError(f"layer {name!r} has no weight with >= 2 dims to collide")
            if id(module.weight) not in optimised:
                raise ValueError(f"the weight of layer {name!r} is not optimised by the optimizer")

        self.optimizer = optimizer
        self.layers = layers
        self.mode: CollisionMode = mode
        self.coll_coef = float(coll_coef)
        self.seed = int(seed)
        self.exclude_self = bool(exclude_self)
        self.mean_free_path = float(mean_free_path)
        self._generators: dict[str, torch.Generator] = {}
        self._rates: dict[str, Tensor] = {}
        # Attributes the torch.optim.Optimizer machinery (hooks, profiling) expects to exist.
        self._optimizer_step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()

    # -- the base optimizer's state, shared -----------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def register_step_pre_hook(self, hook: Callable[..., Any]) -> Any:
        """Register ``hook`` on the base optimizer: it runs after the collision, before the step."""
        return self.optimizer.register_step_pre_hook(hook)

    def register_step_post_hook(self, hook: Callable[..., Any]) -> Any:
        """Register ``hook`` on the base optimizer: it runs after the base's step."""
        return self.optimizer.register_step_post_hook(hook)

    def __repr__(self) -> str:
        return (
            f"KineticOptimizer(mode={self.mode!r}, coll_coef={self.coll_coef}, "
            f"layers={list(self.layers)}, base={self.optimizer!r})"
        )

    # -- collision ------------------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        # One generator per device type: ranks on cuda:0 and cuda:1 share seed and state layout.
        key = device.type
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    @torch.no_grad()
    def collide_gradients(self) -> None:
        """Apply the collision to the chosen layers' ``weight.grad`` in place (``step`` calls it)."""
        for name, module in self.layers.items():
            weight = module.weight
            if weight.grad is None:
                continue
            if self.mode == "soft":
                new = soft_collision(
                    weight, weight.grad, self.coll_coef, exclude_self=self.exclude_self
                )
            else:
                new, result = hard_collision_with_stats(
                    weight,
                    weight.grad,
                    self.coll_coef,
                    mean_free_path=self.mean_free_path,
                    generator=self._generator(weight.device),
                )
                self._rates[name] = result.collision_rate
            weight.grad.copy_(new)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Evaluate ``closure`` (if any), collide the chosen gradients, then step the base."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.collide_gradients()
        self.optimizer.step()
        return loss

    @property
    def collision_rates(self) -> dict[str, float]:
        """Hard mode: accepted / candidate neuron pairs of the last step, per layer name.

        Soft mode couples every pair with a continuous weight, so it has no rate (empty dict).
        Reading this synchronises with the device.
        """
        return {name: float(rate) for name, rate in self._rates.items()}

    @property
    def collision_rate_tensors(self) -> dict[str, Tensor]:
        """:attr:`collision_rates` as 0-dim tensors on the layers' devices: no host sync, so a
        training loop can accumulate them and read once per epoch."""
        return dict(self._rates)

    # -- checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The base's state dict plus a ``"kinetic"`` entry with the generators' states."""
        state = self.optimizer.state_dict()
        state["kinetic"] = {
            "mode": self.mode,
            "coll_coef": self.coll_coef,
            "seed": self.seed,
            "generators": {k: g.get_state() for k, g in self._generators.items()},
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load a :meth:`state_dict`; a resumed run continues with the same random draws."""
        state_dict = dict(state_dict)
        kinetic = state_dict.pop("kinetic", None)
        self.optimizer.load_state_dict(state_dict)
        if kinetic is None:
            return
        for key, gen_state in kinetic.get("generators", {}).items():
            device = next(
                (m.weight.device for m in self.layers.values() if m.weight.device.type == key),
                torch.device(key),
            )
            self._generator(device).set_state(gen_state)
