"""Tiny vision data sets written in the real on-disk formats (importable by any test).

* :func:`write_cifar10` / :func:`write_cifar100`: the python-pickle batches torchvision reads
  (``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``,
  ``cifar-100-python/{train,test,meta}``; ``data`` uint8 ``(N, 3072)`` in CHW order, ``labels`` /
  ``fine_labels`` + ``coarse_labels``). The md5s differ from the real files', so load them with
  ``verify=False``.
* :func:`write_image_folder`: ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``.
* :func:`write_fashion_mnist`: the four Fashion-MNIST IDX files (optionally gzip-compressed).

Pixel values are seeded random noise; the writers return the arrays they wrote.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ImageArrays",
    "write_cifar10",
    "write_cifar100",
    "write_fashion_mnist",
    "write_idx",
    "write_image_folder",
]


@dataclass
class ImageArrays:
    """What a writer put on disk: images ``(N, H, W, C)`` or ``(N, H, W)`` uint8, labels int64."""

    root: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3)`` HWC images -> the files' ``(N, 3072)`` rows (R plane, G plane, B plane)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def write_cifar10(
    root: str | Path, n_per_batch: int = 4, n_test: int = 10, seed: int = 0
) -> ImageArrays:
    """CIFAR-10 python batches under ``root/cifar-10-batches-py``: 5 train batches of
    ``n_per_batch`` images and a test batch of ``n_test``; label ``i`` of a split is ``i % 10``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    n_train = 5 * n_per_batch
    x_train, x_test = _images(rng, n_train, (32, 32, 3)), _images(rng, n_test, (32, 32, 3))
    y_train, y_test = np.arange(n_train) % 10, np.arange(n_test) % 10
    for b in range(5):
        part = slice(b * n_per_batch, (b + 1) * n_per_batch)
        _pickle(
            folder / f"data_batch_{b + 1}",
            {
                "batch_label": f"training batch {b + 1} of 5",
                "labels": y_train[part].tolist(),
                "data": _cifar_rows(x_train[part]),
                "filenames": [f"img_{i}.png" for i in range(n_train)[part]],
            },
        )
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": y_test.tolist(),
            "data": _cifar_rows(x_test),
            "filenames": [f"test_{i}.png" for i in range(n_test)],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    _pickle(
        folder / "batches.meta",
        {"label_names": names, "num_cases_per_batch": n_per_batch, "num_vis": 3072},
    )
    return ImageArrays(Path(root), x_train, y_train, x_test, y_test)


def write_cifar100(
    root: str | Path, n_train: int = 20, n_test: int = 10, seed: int = 0
) -> ImageArrays:
    """CIFAR-100 python files under ``root/cifar-100-python``; fine label ``i`` of a split is
    ``(7 * i) % 100`` (so indices above 9 occur), coarse label ``fine // 5``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    x_train, x_test = _images(rng, n_train, (32, 32, 3)), _images(rng, n_test, (32, 32, 3))
    y_train, y_test = (7 * np.arange(n_train)) % 100, (7 * np.arange(n_test)) % 100
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        _pickle(
            folder / name,
            {
                "batch_label": f"{name}ing batch 1 of 1",
                "fine_labels": y.tolist(),
                "coarse_labels": (y // 5).tolist(),
                "data": _cifar_rows(x),
                "filenames": [f"{name}_{i}.png" for i in range(len(x))],
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
        },
    )
    return ImageArrays(Path(root), x_train, y_train, x_test, y_test)


def write_image_folder(
    root: str | Path,
    classes: tuple[str, ...] = ("n01440764", "n01443537", "n01484850"),
    n_train: int = 4,
    n_val: int = 2,
    size: tuple[int, int] = (48, 40),
    seed: int = 0,
    val_name: str = "val",
) -> Path:
    """An ImageFolder tree ``root/{train,val}/<class>/<k>.JPEG`` of ``size`` (W, H) RGB JPEGs;
    each class has its own base colour plus noise. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), (val_name, n_val)):
        for c, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(80 * c) % 256, (150 + 40 * c) % 256, (30 * c + 60) % 256])
            for k in range(n):
                noise = rng.integers(-40, 41, size=(size[1], size[0], 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{k}.JPEG", quality=90)
    return Path(root)


_IDX_TYPE = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C}


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    dtype = array.dtype if array.dtype.itemsize == 1 else array.dtype.newbyteorder(">")
    header = bytes([0, 0, _IDX_TYPE[np.dtype(dtype)], array.ndim])
    header += np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_fashion_mnist(
    root: str | Path, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0
) -> ImageArrays:
    """The four Fashion-MNIST IDX files (28x28 uint8 images, label ``i % 10``) in ``root``."""
    rng = np.random.default_rng(seed)
    x_train, x_test = _images(rng, n_train, (28, 28)), _images(rng, n_test, (28, 28))
    y_train, y_test = np.arange(n_train) % 10, np.arange(n_test) % 10
    suffix = ".gz" if gz else ""
    for stem, array in (
        ("train-images-idx3-ubyte", x_train),
        ("train-labels-idx1-ubyte", y_train.astype(np.uint8)),
        ("t10k-images-idx3-ubyte", x_test),
        ("t10k-labels-idx1-ubyte", y_test.astype(np.uint8)),
    ):
        write_idx(Path(root) / f"{stem}{suffix}", array)
    return ImageArrays(Path(root), x_train, y_train, x_test, y_test)
