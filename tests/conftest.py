"""Shared pytest fixtures (kept small on purpose)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import experiments.domains  # noqa: F401  (registers every model and data set, as the runner does)

# One intra-op thread for every test: the tensors here are tiny, and on a 2-core machine (with
# `pytest -n 2`, or any other load) extra OpenMP threads only add barriers that made tiny-op tests
# 10-20x slower. Tests that need more threads set them themselves.
torch.set_num_threads(1)


@pytest.fixture
def make_generator() -> Callable[[int], torch.Generator]:
    """Factory of fresh CPU ``torch.Generator``s seeded with the given seed."""

    def make(seed: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return make


@pytest.fixture
def unit_directions() -> Callable[..., torch.Tensor]:
    """Factory ``(k, d, seed=0, dtype=float64)`` of ``k`` unit vectors in R^d (normalised Gaussians).

    For the ``directions=`` hook of the fast code and the paper-literal reference in tests/reference.py.
    """

    def make(k: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(k, d, generator=gen, dtype=dtype)
        return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)

    return make
