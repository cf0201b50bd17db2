"""Tiny PDE data sets written in the real on-disk formats (importable by any test).

* :func:`write_airfoil_fixture`: the MeshGraphNets ``airfoil`` layout that
  :mod:`experiments.pde.airfoil` reads: ``meta.json`` plus ``train`` / ``valid`` / ``test``
  ``.tfrecord`` files of ``tf.train.Example`` records (raw-bytes fields, TFRecord framing with
  masked CRC-32C, written by :mod:`experiments.pde.tfrecord`).

Values are seeded, smooth and physically scaled; the writers return the arrays they wrote.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.core.io import atomic_write_json
from experiments.pde.airfoil import AIRFOIL_SPLITS
from experiments.pde.tfrecord import Feature, encode_example, write_tfrecord

__all__ = ["write_airfoil_fixture"]


def _fixture_mesh(rng: np.random.Generator, n_nodes: int) -> dict[str, np.ndarray]:
    """A mesh like the real one in layout: far-field ring (node type 4), airfoil surface (2),
    interior (0). Cells are random node triples (the loader never uses connectivity)."""
    n_far = max(1, n_nodes // 8)
    n_surface = max(1, n_nodes // 8)
    n_inner = n_nodes - n_far - n_surface
    if n_inner < 1:
        raise ValueError(f"n_nodes={n_nodes} is too small for a fixture mesh (need >= 3)")
    angle = np.linspace(0, 2 * np.pi, n_far, endpoint=False)
    far = 20.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    chord = np.sort(rng.uniform(0, 1, n_surface))
    surface = np.stack([chord, 0.06 * np.sqrt(chord) * (1 - chord) * rng.choice([-1, 1])], axis=1)
    inner = rng.uniform(-14, 14, (n_inner, 2)) * rng.uniform(0.05, 1, (n_inner, 1))
    mesh_pos = np.concatenate([inner, surface, far]).astype(np.float32)
    node_type = np.concatenate(
        [np.zeros(n_inner), np.full(n_surface, 2), np.full(n_far, 4)]
    ).astype(np.int32)
    cells = np.stack([rng.permutation(n_nodes)[:3] for _ in range(2 * n_nodes)]).astype(np.int32)
    return {"mesh_pos": mesh_pos[None], "node_type": node_type[None, :, None], "cells": cells[None]}


def _fixture_flow(
    rng: np.random.Generator, mesh_pos: np.ndarray, n_steps: int, dt: float
) -> dict[str, np.ndarray]:
    """Smooth, physically scaled fields: free stream of a random Mach number and angle of attack
    plus a travelling disturbance (velocity ~ 100-250 m/s, density ~ 1.2, pressure ~ 1e5)."""
    mach, alpha = rng.uniform(0.3, 0.7), np.deg2rad(rng.uniform(-10, 10))
    speed = 340.0 * mach
    t = (np.arange(n_steps) * dt)[:, None]
    x, y = mesh_pos[0, :, 0][None], mesh_pos[0, :, 1][None]
    wave = np.sin(0.4 * x - 3.0 * t + rng.uniform(0, 6)) * np.exp(-0.01 * (x**2 + y**2))
    velocity = np.stack(
        [speed * np.cos(alpha) * (1 + 0.1 * wave), speed * np.sin(alpha) + 5.0 * wave], axis=-1
    )
    density = 1.2 * (1 + 0.05 * wave)[..., None]
    pressure = 1.0e5 * (1 + 0.08 * wave)[..., None]
    return {
        "velocity": velocity.astype(np.float32),
        "density": density.astype(np.float32),
        "pressure": pressure.astype(np.float32),
    }


def write_airfoil_fixture(
    root: str | os.PathLike[str],
    n_trajectories: int = 3,
    n_nodes: int = 48,
    n_steps: int = 25,
    seed: int = 0,
    *,
    dt: float = 0.008,
    splits: Sequence[str] = AIRFOIL_SPLITS,
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Write a small airfoil data set in the real on-disk format under ``root``.

    ``meta.json`` (fields, shapes with -1, dtypes, ``trajectory_length = n_steps``, ``dt``,
    ``simulator``) and one ``<split>.tfrecord`` per split with ``n_trajectories`` records; every
    record is a ``tf.train.Example`` of raw-bytes fields with TFRecord framing and masked CRCs.
    All trajectories share one mesh, as in the real data. Returns the arrays written
    (``{split: [{field: array}]}``, static fields ``(1, n, C)``, dynamic ``(n_steps, n, C)``).
    """
    if n_trajectories < 1 or n_steps < 1:
        raise ValueError(f"n_trajectories={n_trajectories} and n_steps={n_steps} must be >= 1")
    root = Path(root)
    rng = np.random.default_rng(seed)
    mesh = _fixture_mesh(rng, n_nodes)
    written: dict[str, list[dict[str, np.ndarray]]] = {}
    for split in splits:
        if split not in AIRFOIL_SPLITS:
            raise ValueError(f"split={split!r} is not one of {', '.join(AIRFOIL_SPLITS)}")
        trajectories = [
            {**mesh, **_fixture_flow(rng, mesh["mesh_pos"], n_steps, dt)}
            for _ in range(n_trajectories)
        ]
        records = (
            encode_example({k: Feature("bytes_list", [v.tobytes()]) for k, v in t.items()})
            for t in trajectories
        )
        write_tfrecord(root / f"{split}.tfrecord", records)
        written[split] = trajectories
    static = {"mesh_pos": ("float32", 2), "node_type": ("int32", 1), "cells": ("int32", 3)}
    dynamic = {"velocity": 2, "density": 1, "pressure": 1}
    features = {
        name: {"type": "static", "shape": [1, -1, c], "dtype": dtype}
        for name, (dtype, c) in static.items()
    }
    features |= {
        name: {"type": "dynamic", "shape": [n_steps, -1, c], "dtype": "float32"}
        for name, c in dynamic.items()
    }
    meta = {
        "simulator": "su2",
        "dt": dt,
        "features": features,
        "field_names": list(features),
        "trajectory_length": n_steps,
    }
    atomic_write_json(root / "meta.json", meta)  # last: its presence marks a complete data set
    return written
