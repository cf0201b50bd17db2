"""Saving and loading PDE data sets, plus an optional reader of the public FNO ``.mat`` files.

On-disk format of our data sets: ``<name>.pt``, a ``torch.save`` of a flat ``{str: Tensor}`` dict
(loadable with ``weights_only=True``), and the sidecar ``<name>.json`` with the metadata (equation,
parameters, grid, seed, initial-field convention, solver, dt, timings, library versions) plus the
tensors' shapes and dtypes and the ``.pt`` file's sha256. Both files are written atomically (a
temporary file in the same directory, then ``os.replace``); the JSON is written last, so its
presence marks a complete data set.

:func:`load_fno_mat` reads the FNO authors' files (Burgers ``burgers_data_R10.mat``: keys ``a``,
``u`` of shape ``(N, 8192)``; NS ``ns_V1e-3_N5000_T50.mat``: ``a`` ``(N, 64, 64)``, ``u``
``(N, 64, 64, T)``). MATLAB v5 files need ``scipy``, v7.3 (HDF5) files ``h5py``; neither is a
dependency of this project, so they are imported only here and only when needed.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from experiments.core.io import atomic_torch_save, atomic_write_text, sha256_file

__all__ = ["load_dataset", "load_fno_mat", "save_dataset", "sidecar_path"]

FORMAT_VERSION = 1
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON metadata file next to the data file ``path`` (``x.pt`` -> ``x.json``)."""
    return Path(path).with_suffix(".json")


def save_dataset(
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], metadata: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``tensors`` to ``path`` (``.pt``) and ``metadata`` to its JSON sidecar; return both.

    Tensors are stored contiguous and on the CPU; ``metadata`` must be JSON-serialisable.
    """
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"data set files end in .pt, got {path}")
    plain = {str(k): v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    # through a file object, so the bytes do not depend on the file's name (torch.save to a
    # path names its archive after it): the same tensors give the same sha256 everywhere
    atomic_torch_save(path, plain)
    sidecar = {
        **dict(metadata),
        "format": {"version": FORMAT_VERSION, "data_file": path.name, "sha256": sha256_file(path)},
        "tensors": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
            for k, v in plain.items()
        },
    }
    text = json.dumps(sidecar, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    json_path = sidecar_path(path)
    atomic_write_text(json_path, text)
    return path, json_path


def load_dataset(
    path: str | os.PathLike[str], *, verify: bool = False
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load ``(tensors, metadata)`` written by :func:`save_dataset`.

    ``verify=True`` also checks the ``.pt`` file against the sha256 recorded in the sidecar.
    """
    path = Path(path)
    json_path = sidecar_path(path)
    if not json_path.exists():
        raise FileNotFoundError(f"{json_path} is missing: {path} is incomplete or not a data set")
    metadata = json.loads(json_path.read_text(encoding="utf-8"))
    if verify and sha256_file(path) != metadata["format"]["sha256"]:
        raise ValueError(f"{path} does not match the checksum recorded in {json_path}")
    tensors = torch.load(path, map_location="cpu", weights_only=True)
    return tensors, metadata


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or fail with an error naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise ImportError(
            f"reading {purpose} needs the optional package '{package}', which is not installed "
            f"(pip install {package}); it is not a dependency of kinetics"
        ) from err


def _is_hdf5(path: Path) -> bool:
    """MATLAB v7.3 files are HDF5, whose signature sits at offset 0 or 512 (after the header)."""
    with path.open("rb") as handle:
        head = handle.read(520)
    return head[:8] == _HDF5_SIGNATURE or head[512:520] == _HDF5_SIGNATURE


def load_fno_mat(
    path: str | os.PathLike[str],
    keys: Sequence[str] = ("a", "u"),
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Read ``keys`` of a public FNO ``.mat`` file into tensors with the FNO layout.

    v7.3 (HDF5) files store MATLAB arrays column-major, so h5py sees every axis reversed; they are
    transposed back (NS ``u`` becomes ``(N, 64, 64, T)``). v5 files go through
    ``scipy.io.loadmat``, which already returns the MATLAB shape.
    """
    path = Path(path)
    out: dict[str, Tensor] = {}
    if _is_hdf5(path):
        h5py = _require("h5py", f"the MATLAB v7.3 file {path.name}")
        with h5py.File(path, "r") as handle:
            for key in keys:
                if key not in handle:
                    raise KeyError(f"{path.name} has no key {key!r} (has {sorted(handle.keys())})")
                array = handle[key][()]
                out[key] = torch.as_tensor(array).permute(*reversed(range(array.ndim)))
    else:
        scipy_io = _require("scipy.io", f"the MATLAB file {path.name}")
        data = scipy_io.loadmat(path)
        for key in keys:
            if key not in data:
                names = sorted(k for k in data if not k.startswith("__"))
                raise KeyError(f"{path.name} has no key {key!r} (has {names})")
            out[key] = torch.as_tensor(data[key])
    return {k: v.to(dtype).contiguous() for k, v in out.items()}
