"""KineticOptimizer: KO's collision gadget in front of any torch optimizer (SPEC §1.4).

After backward (and after gradient unscaling or clipping), the gradients of the chosen layers'
weights are changed by a soft or hard collision between their neurons; then the wrapped optimizer
steps unchanged. The wrapper shares the base optimizer's ``param_groups`` and ``state``, so LR
schedulers, ``GradScaler.step`` and checkpointing treat it like the base.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from kinetics.collision import hard_collision_op, soft_collision_op
from kinetics.dsmc import _check_coef, _compute_dtype

__all__ = [
    "MAX_NEURONS",
    "KineticOptimizer",
    "find_classifier",
    "last_block",
    "neuron_view",
    "neurons_are_columns",
    "select_modules",
]

CollisionMode = Literal["soft", "hard"]

# Layers with more neurons (rows) than this are refused unless the caller raises the limit: their
# pairs (n (n - 1) / 2, 1.25e9 for a 50k-token LM head) make every step very slow.
MAX_NEURONS = 16384


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


def neurons_are_columns(module: nn.Module) -> bool:
    """Whether ``module`` stores its weight as ``(in, out)``: transformers' ``Conv1D`` (GPT-2),
    recognised by its ``nx``/``nf`` sizes without importing transformers. Its neurons are the
    columns of the stored weight."""
    weight = getattr(module, "weight", None)
    nx, nf = getattr(module, "nx", None), getattr(module, "nf", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, Tensor)
        and isinstance(nx, int)
        and tuple(weight.shape) == (nx, nf)
    )


def neuron_view(module: nn.Module, tensor: Tensor) -> Tensor:
    """``tensor`` (the module's weight or its gradient) with one neuron per row: transposed for a
    layer that stores ``(in, out)`` (:func:`neurons_are_columns`), as it is otherwise."""
    return tensor.t() if neurons_are_columns(module) else tensor


def last_block(model: nn.Module) -> tuple[str, nn.Module]:
    """The last block of the model's stack of blocks and its name: the last element of the longest
    ``nn.ModuleList`` whose elements are all of one type (GPT-2's ``transformer.h``, Qwen2's and
    Llama's ``model.layers``, BERT's ``encoder.layer``, a ResNet-like ``blocks``)."""
    stacks = [
        (len(m), name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) and len({type(b) for b in m}) == 1
    ]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of blocks")
    _, name, stack = max(stacks, key=lambda item: item[0])
    return f"{name}.{len(stack) - 1}", stack[len(stack) - 1]


def select_modules(model: nn.Module, patterns: str | Iterable[str]) -> dict[str, nn.Module]:
    """Layers of ``model`` whose weights should collide, by name.

    Each pattern is matched with :func:`fnmatch.fnmatch` against the names of
    ``model.named_modules()`` (e.g. ``"fc"``, ``"layer4.*.conv*"``, ``"blocks.11.*"``); only modules
    with a weight of two or more dimensions (Linear, Conv, transformers' Conv1D) are kept. The
    pattern ``"head"`` means the classifier head (:func:`find_classifier`) unless a module is
    literally named ``head``; ``"last_block"`` means every such layer of the model's last block
    (:func:`last_block`: the last transformer layer of GPT-2, Qwen2, Llama, BERT; KO Table 6).

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
        elif pattern == "last_block" and "last_block" not in candidates:
            prefix, _ = last_block(model)
            hits = {n: m for n, m in candidates.items() if n.startswith(prefix + ".")}
        else:
            hits = {name: m for name, m in candidates.items() if fnmatch.fnmatch(name, pattern)}
        if not hits:
            raise ValueError(
                f"module pattern {pattern!r} matches no layer with a weight matrix; "
                f"candidates are: {', '.join(candidates) or '(none)'}"
            )
        selected.update(hits)
    return selected


def _requires_closure(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step`` has a ``closure`` parameter without a default (torch's L-BFGS)."""
    try:
        parameters = inspect.signature(type(optimizer).step).parameters
    except (TypeError, ValueError):  # a builtin or an odd callable: assume the usual signature
        return False
    closure = parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


# Hyper-parameters a checkpoint records; loading a state saved with other values is refused.
_CONFIG_KEYS = ("mode", "coll_coef", "seed", "exclude_self", "mean_free_path")

# What __getstate__ keeps (pickle, copy.deepcopy, torch.save of the whole object). Hooks are
# dropped, as torch.optim.Optimizer drops them.
_PICKLED = (
    "optimizer",
    "layers",
    *_CONFIG_KEYS,
    "_closure_required",
    "_collisions",
    "_rates",
    "_stats",
    "_skips",
)


class KineticOptimizer(Optimizer):
    """Wrap ``optimizer`` so that the weight gradients of ``modules`` collide before each step.

    Example::

        base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        opt = KineticOptimizer(base, select_modules(model, "head"), "hard", coll_coef=0.5, seed=0)
        loss.backward(); opt.step(); opt.zero_grad()

    Args:
        optimizer: any ``torch.optim.Optimizer`` (SGD, Adam, AdamW, LAMB, L-BFGS, ...). It must
            optimise the chosen layers' weights.
        modules: the layers whose ``weight.grad`` collide, as ``{name: module}`` (names are used for
            logging) or an iterable of modules. Layers with sparse gradients
            (``nn.Embedding(sparse=True)``) are refused: a collision needs dense rows.
        mode: ``"soft"`` (KO Algorithm 2) or ``"hard"`` (KO Algorithm 1, DSMC hard spheres).
        coll_coef: collision coefficient in [0, 1].
        seed: seed of the optimizer's own random stream (hard mode): the directions of layer
            ``l``'s pair (i, j) at the optimizer's ``c``-th collision are keyed by
            (seed, c, l, i, j) (:mod:`kinetics.streams`), never drawn from the global RNG, and do
            not depend on how the work is chunked. Use the same seed on every DDP rank: gradients
            are identical after all-reduce, so every rank draws the same directions and replicas
            stay bit-identical (the rank is not part of the key). The counter ``c`` is in
            :meth:`state_dict`, so a resumed run continues the stream.
        exclude_self: soft mode without the i == j term (KO App. A Eq. 12).
        mean_free_path: hard mode locality length scale; > 0.
        max_neurons: refuse a layer with more neurons than this (default 16384).

    Closures: for a base whose ``step`` takes an optional closure (SGD, Adam, ...),
    ``step(closure)`` evaluates ``closure`` once, collides, then calls the base's ``step()``. A base
    whose ``step`` *requires* a closure (``torch.optim.LBFGS``) re-evaluates it several times per
    step, each evaluation recomputing the gradients; it gets a wrapped closure that collides after
    every evaluation, so every gradient it reads is a collided one (and ``step()`` without a closure
    raises a ValueError naming the optimizer). In hard mode each evaluation draws fresh directions,
    so L-BFGS sees a noisy objective: its line search and curvature pairs may suffer. Collision
    statistics then describe the last evaluation; ``nonfinite_skips`` counts evaluations.
    Biases and other parameters are untouched and behave exactly as under the base optimizer.

    Non-finite values: a layer whose gradient or weight holds a NaN/Inf (or whose collided gradient
    would) keeps its gradient exactly as it is for that step, so the base optimizer and a
    ``GradScaler`` treat it as they would without KO (a soft collision would otherwise spread one
    NaN over every neuron of the layer). Such skips are counted per layer in
    :attr:`nonfinite_skips` (checkpointed). The decision is a ``torch.where`` on a 0-dim flag in
    the optimizer's code (no host synchronisation there): each layer's collision is one operator
    (``kinetics::soft_collision``, ``kinetics::hard_collision``), so ``torch.compile`` of a step
    with :meth:`step` inside has no graph break from the collision (the hard operator's pair
    selection synchronises inside, as the number of accepted pairs is data-dependent).

    What a collision does to the descent direction (KO Eq. 8, SPEC §1.3): in hard mode neuron i
    with ``k_i`` accepted partners gets ``g*_i = g_i + sum_j [(g_j - g_i)/2 + |g_i - g_j| n_ij/2]``,
    whose expectation is ``(1 - k_i/2) g_i + (1/2) sum_j g_j``: it keeps ``1 - k_i/2`` of its own
    gradient, nothing at ``k_i = 2`` and a reversed share at ``k_i >= 3``, so with many partners the
    changed gradient can point uphill. Soft mode gives ``<g_new, g> = |g|^2 - coll_coef <g, M g>``
    with ``M = C_w ∘ C_g`` (its diagonal alone takes ``coll_coef`` of ``|g|^2``). After every step
    :attr:`collision_stats` reports per layer the alignment ``<g_new, g> / |g|^2`` (1: unchanged,
    below 0: the collision turned the layer's descent direction into an ascent one) and the norm
    ratio ``|g_new| / |g|`` (g: the layer's whole weight gradient before the collision, flattened),
    as 0-dim tensors, so a training loop can log them without a host sync.

    Per-step attributes (read after ``step``; a layer whose ``weight.grad`` was None in the last
    step is absent from all of them):

    * :attr:`collision_rates` / :attr:`collision_rate_tensors`: hard mode, accepted / candidate
      pairs per layer (a layer skipped for non-finite values: absent from ``collision_rates``,
      NaN in ``collision_rate_tensors``; soft mode: empty);
    * :attr:`collision_stats`: ``{layer: {"alignment", "norm_ratio", "skipped"}}``;
    * :attr:`nonfinite_skips` / :attr:`nonfinite_skip_tensors`: cumulative skip counts per layer.

    Pickling, ``copy.deepcopy`` and ``torch.save`` of the whole object work (hooks are dropped, as
    for torch optimizers); ``state_dict``/``load_state_dict`` run the hooks registered with
    ``register_(load_)state_dict_pre/post_hook`` with torch's semantics, and ``load_state_dict``
    refuses a state saved with another mode, coll_coef, seed, exclude_self or mean_free_path.
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
        max_neurons: int = MAX_NEURONS,
    ) -> None:
        # Deliberately no Optimizer.__init__: parameters, groups and state stay the base's own, and
        # the class's step is never patched (torch's own hooks run once, around the base's step).
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
            if getattr(module, "sparse", False):
                raise ValueError(
                    f"layer {name!r} ({type(module).__name__}) has sparse gradients "
                    "(sparse=True); collisions need dense gradient rows"
                )
            if id(module.weight) not in optimised:
                raise ValueError(f"the weight of layer {name!r} is not optimised by the optimizer")
            neurons = neuron_view(module, module.weight).shape[0]
            if neurons > max_neurons:
                raise ValueError(
                    f"layer {name!r} has {neurons} neurons, i.e. {neurons * (neurons - 1) // 2:,} "
                    f"pairs per collision, more than max_neurons={max_neurons} allows (an LM head "
                    "or a tied embedding?); leave it out, or raise max_neurons"
                )

        self.optimizer = optimizer
        self.layers = layers
        self.mode: CollisionMode = mode
        self.coll_coef = float(coll_coef)
        self.seed = int(seed)
        self.exclude_self = bool(exclude_self)
        self.mean_free_path = float(mean_free_path)
        self._closure_required = _requires_closure(optimizer)
        # Collisions so far: the counter of the random stream (a CPU tensor, so a compiled step
        # increments it in place instead of recompiling for every new value).
        self._collisions = torch.zeros((), dtype=torch.int64)
        self._rates: dict[str, Tensor] = {}
        self._stats: dict[str, dict[str, Tensor]] = {}
        self._skips: dict[str, Tensor] = {}
        self._init_hooks()

    def _init_hooks(self) -> None:
        # Attributes the torch.optim.Optimizer machinery (hooks, profiling) expects to exist.
        self._optimizer_step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()

    # -- pickling (copy.deepcopy, pickle, torch.save of the object) -----------------------------
    def __getstate__(self) -> dict[str, Any]:  # type: ignore[override]
        return {key: self.__dict__[key] for key in _PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:  # type: ignore[override]
        # Never Optimizer.__setstate__: it patches the class's step (global step hooks would then
        # fire twice per step, once for the wrapper and once for the base).
        missing = [key for key in _PICKLED if key not in state]
        if missing:
            raise ValueError(
                f"cannot restore a KineticOptimizer from a state without {', '.join(missing)} "
                "(not pickled by this version of KineticOptimizer)"
            )
        self.__dict__.update({key: state[key] for key in _PICKLED})
        self._init_hooks()

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
    def _count_skip(self, name: str, skipped: Tensor) -> None:
        count = self._skips.get(name)
        if count is None or count.device != skipped.device:
            base = 0 if count is None else int(count)
            count = torch.full((), base, dtype=torch.int64, device=skipped.device)
        self._skips[name] = count + skipped.to(torch.int64)

    @torch.no_grad()
    def collide_gradients(self) -> None:
        """Apply the collision to the chosen layers' ``weight.grad`` in place (``step`` calls it).

        Replaces :attr:`collision_rate_tensors` and :attr:`collision_stats` by this call's values;
        a layer whose gradient or weight is not all finite keeps its gradient (see the class doc).
        """
        work = [
            (index, name, m)
            for index, (name, m) in enumerate(self.layers.items())
            if m.weight.grad is not None
        ]
        for _, name, module in work:
            if module.weight.grad.is_sparse:
                raise TypeError(f"layer {name!r} has a sparse gradient; collisions need dense rows")
        self._rates = {}
        self._stats = {}
        for index, name, module in work:
            # one neuron per row: a view, so writing into it writes the stored gradient
            weight = neuron_view(module, module.weight)
            grad = neuron_view(module, module.weight.grad)
            if self.mode == "soft":
                finite = torch.isfinite(grad).all() & torch.isfinite(weight).all()
                # Finite stand-ins (the same values when finite): the collision never sees a NaN.
                w_in = torch.where(finite, weight.detach(), 0)
                g_in = torch.where(finite, grad, 0)
                new = soft_collision_op(w_in, g_in, self.coll_coef, self.exclude_self)
            else:
                new, rate, nonfinite = hard_collision_op(
                    weight.detach(),
                    grad,
                    self._collisions,
                    seed=self.seed,
                    layer=index,
                    coll_coef=self.coll_coef,
                    mean_free_path=self.mean_free_path,
                )
                finite = nonfinite.logical_not()
                self._rates[name] = rate
            ok = finite & torch.isfinite(new).all()
            self._stats[name] = _stats(new, grad, ok)
            grad.copy_(torch.where(ok, new, grad))
            self._count_skip(name, self._stats[name]["skipped"])
        self._collisions.add_(1)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Collide the chosen gradients, then step the base (see the class doc for closures)."""
        if self._closure_required:
            if closure is None:
                raise ValueError(
                    f"{type(self.optimizer).__name__}.step requires a closure: call step(closure)"
                )

            def colliding_closure() -> Any:
                loss = closure()
                self.collide_gradients()
                return loss

            return self.optimizer.step(colliding_closure)
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

        Only layers that collided in the last step: a layer without a gradient, or skipped for
        non-finite values, has no rate for that step. Soft mode couples every pair with a
        continuous weight, so it has no rate (empty dict). Reading this synchronises with the device.
        """
        rates = {name: float(rate) for name, rate in self._rates.items()}
        return {name: rate for name, rate in rates.items() if not math.isnan(rate)}

    @property
    def collision_rate_tensors(self) -> dict[str, Tensor]:
        """:attr:`collision_rates` as 0-dim tensors on the layers' devices: no host sync, so a
        training loop can accumulate them and read once per epoch."""
        return dict(self._rates)

    @property
    def collision_stats(self) -> dict[str, dict[str, Tensor]]:
        """What the last step's collision did to each layer's weight gradient (0-dim tensors).

        ``{layer: {"alignment": <g_new, g> / |g|^2, "norm_ratio": |g_new| / |g|, "skipped": bool}}``
        with ``g`` the whole weight gradient before the collision and ``g_new`` after it (both
        flattened; float32 for half-precision gradients). Alignment 1 and norm ratio 1 for a zero
        gradient (it stays zero). A layer skipped for non-finite values has ``skipped`` True and
        NaN numbers (``<g, g>`` is undefined); a layer without a gradient is absent.
        """
        return {name: dict(stats) for name, stats in self._stats.items()}

    @property
    def nonfinite_skips(self) -> dict[str, int]:
        """Per layer, how many collisions were skipped because the gradient or the weight (or the
        collided gradient) held a NaN/Inf, since construction (or as loaded from a checkpoint).
        Reading this synchronises with the device; :attr:`nonfinite_skip_tensors` does not."""
        return {name: int(self._skips[name]) if name in self._skips else 0 for name in self.layers}

    @property
    def nonfinite_skip_tensors(self) -> dict[str, Tensor]:
        """:attr:`nonfinite_skips` as 0-dim int64 tensors (layers that had a gradient so far)."""
        return dict(self._skips)

    # -- checkpointing --------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _CONFIG_KEYS}

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The base's state dict plus a ``"kinetic"`` entry: the configuration, the random
        stream's counter and the non-finite skip counts (plain containers and tensors: loadable with
        ``torch.load(weights_only=True)``). State-dict hooks run as for torch optimizers."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        state = self.optimizer.state_dict()
        state["kinetic"] = {
            **self._config(),
            "collisions": int(self._collisions),
            "nonfinite_skips": self.nonfinite_skips,
        }
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state)
            if result is not None:
                state = result
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load a :meth:`state_dict`; a resumed run continues with the same random draws.

        Raises:
            ValueError: the state was saved with another mode, coll_coef, seed, exclude_self or
                mean_free_path (nothing is loaded then). A state without a ``"kinetic"`` entry
                (a bare base optimizer's) loads the base only.
        """
        state_dict = dict(state_dict)  # shallow copy, as torch does
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        state_dict = dict(state_dict)
        kinetic = state_dict.pop("kinetic", None)
        if kinetic is not None:
            current = self._config()
            for key in _CONFIG_KEYS:
                if key in kinetic and kinetic[key] != current[key]:
                    raise ValueError(
                        f"the optimizer state was saved with {key}={kinetic[key]!r}, but this "
                        f"KineticOptimizer has {key}={current[key]!r}"
                    )
        self.optimizer.load_state_dict(state_dict)
        if kinetic is not None:
            if "generators" in kinetic and "collisions" not in kinetic:
                warnings.warn(
                    "this optimizer state was saved by a kinetics version that drew KO's "
                    "directions from a torch.Generator; its stream cannot be continued, the "
                    "collisions restart their counter-based stream at 0",
                    stacklevel=2,
                )
            self._collisions.fill_(int(kinetic.get("collisions", 0)))
            skips = kinetic.get("nonfinite_skips", {})
            self._skips = {
                name: torch.tensor(int(skips[name]), device=m.weight.device)
                for name, m in self.layers.items()
                if name in skips
            }
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)


def _stats(new: Tensor, grad: Tensor, ok: Tensor) -> dict[str, Tensor]:
    """Alignment and norm ratio of ``new`` against ``grad`` (NaN where not ``ok``), no host sync."""
    work = _compute_dtype(grad.dtype)
    g = grad.detach().reshape(-1).to(work)
    n = new.detach().reshape(-1).to(work)
    gg = torch.dot(g, g)
    nonzero = gg > 0
    one = torch.ones((), dtype=work, device=g.device)
    nan = torch.full((), math.nan, dtype=work, device=g.device)
    alignment = torch.where(nonzero, torch.dot(n, g) / gg, one)
    norm_ratio = torch.where(nonzero, torch.dot(n, n).sqrt() / gg.sqrt(), one)
    return {
        "alignment": torch.where(ok, alignment, nan),
        "norm_ratio": torch.where(ok, norm_ratio, nan),
        "skipped": ok.logical_not(),
    }
