"""Registries by name (timm style) that know no domain.

A domain registers its builders when its module is imported (``@MODELS.register``);
:mod:`experiments.domains` imports every domain, so importing this module alone registers nothing.

Three registries live here: :data:`MODELS` (builders returning an ``nn.Module``), :data:`DATASETS`
(builders returning a :class:`~experiments.core.task.Task`) and :data:`REPORTS` (renderers of
result tables, :mod:`experiments.reports`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from experiments.core.errors import ConfigError

__all__ = ["DATASETS", "MODELS", "REPORTS", "Registry"]

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Named builders of one kind (``kind`` is the config key that picks one, e.g. ``model``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, F] = {}

    def register(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Decorator: register ``fn`` under ``name`` (default ``fn.__name__``).

        ``@REG.register`` and ``@REG.register(name="ko-fig2")`` both work.
        """

        def add(f: F) -> F:
            key = name or getattr(f, "__name__", None)
            if key is None:
                raise ValueError(f"{self.kind} builder {f!r} needs a name")
            if key in self._entries and self._entries[key] is not f:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = f
            return f

        return add if fn is None else add(fn)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> F:
        """The builder registered as ``name``; ConfigError naming the registered ones if unknown."""
        if name not in self._entries:
            raise ConfigError(
                f"{self.kind}.name={name!r} is unknown; registered {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Call the builder ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The builder's keyword parameters (what its config section may set).

        A builder registered as ``functools.partial(fn, **variant)`` (one entry of a table of
        variants, e.g. the block and depths of a ResNet) takes the parameters of ``fn`` less the
        ones the variant fixes.
        """
        builder = self.get(name)
        params = dict(inspect.signature(builder).parameters)
        if isinstance(builder, functools.partial):
            for key in builder.keywords:
                params.pop(key, None)
        return params


MODELS: Registry[Callable[..., Any]] = Registry("model")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
REPORTS: Registry[Callable[..., Any]] = Registry("report")
