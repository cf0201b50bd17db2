"""Vision data sets of both papers (SPEC §3-4): CIFAR-10/100, Fashion-MNIST and ImageNet-1K.

Importing this module registers four builders in :data:`experiments.core.registry.DATASETS`:

* ``cifar10`` / ``cifar100``: torchvision's CIFAR readers over the python-pickle batches
  (``<root>/cifar-10-batches-py/`` / ``<root>/cifar-100-python/``), downloaded when ``download``
  is set and the network allows. Train: pad-4 random 32x32 crop + horizontal flip; both splits:
  ``ToTensor`` + per-channel normalisation (:data:`CIFAR10_MEAN` ... below).
* ``fashion_mnist``: the four IDX files (optionally ``.gz``) of Fashion-MNIST, by default from the
  Debian package ``dataset-fashion-mnist`` (:data:`DEBIAN_FASHION_MNIST_ROOT`, installed by
  ``scripts/fetch_fashion_mnist.sh``), read by :func:`read_idx`; optional resize (e.g. to 32 for
  CIFAR-style nets), 3-channel replication, pad/crop and flip augmentation.
* ``imagenet``: an ImageFolder tree (``<root>/train/<class>/*.JPEG``, ``<root>/val/<class>/...``)
  through timm's pipeline (``timm.data.create_dataset`` / ``create_transform`` / ``Mixup``) with the
  knobs of the "ResNet strikes back" and ConvNeXt recipes.

The builders return :class:`VisionData`, not an in-memory ``DatasetBundle``: image data sets need
per-sample augmentation, so they come as ``torch.utils.data.Dataset`` pairs with
:meth:`VisionData.loaders` building the DataLoaders, plus the matching train / eval losses
(:class:`ClassificationLoss`) and top-k accuracy metrics (:func:`accuracy_metrics`).

Data order is a function of ``(seed, epoch)`` only (:class:`SeededSampler`,
:class:`EpochDataLoader`), with or without ``torch.distributed``, so a resumed run sees the same
batches as an uninterrupted one once it calls ``set_epoch(first_epoch)``. Augmentation draws use
the global RNGs in the main process (``num_workers=0``) or per-epoch worker seeds derived from
``(seed, epoch)`` (``num_workers>0``).

torchvision and timm are imported inside the builders, so importing this module stays cheap.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler, Subset
from torch.utils.data._utils.collate import default_collate

from experiments.core.errors import ConfigError, MissingDataError
from experiments.core.metrics import accuracy_metrics
from experiments.core.registry import DATASETS, MODELS
from experiments.core.sampling import EpochDataLoader, SeededSampler, dist_world
from experiments.core.task import TaskDefaults
from experiments.core.timm import import_timm
from experiments.vision.models import check_input_size, count_mflops

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DEBIAN_FASHION_MNIST_ROOT",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "ClassificationLoss",
    "EpochDataLoader",
    "IDXImageDataset",
    "MissingDataError",
    "MixupCollate",
    "SeededSampler",
    "VisionData",
    "cifar10",
    "cifar100",
    "fashion_mnist",
    "imagenet",
    "read_idx",
]

# Per-channel mean / std of the training images (pixels scaled to [0, 1]), the usual statistics of
# these data sets. Neither paper prints its values; the often-copied CIFAR-10 std
# (0.2023, 0.1994, 0.2010) of kuangliu/pytorch-cifar is a per-image std, not the data set's; pass
# `mean=` / `std=` to use it.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
# Measured on the 60,000 training images of the Debian package (0.28604, 0.35302).
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

DEBIAN_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FETCH_FASHION_MNIST = "scripts/fetch_fashion_mnist.sh"

MetricFn = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------- losses and metrics


class ClassificationLoss(nn.Module):
    """Cross-entropy for class indices ``(N,)`` or soft targets ``(N, C)`` (Mixup / CutMix).

    Soft targets use timm's ``SoftTargetCrossEntropy`` (their label smoothing is already applied
    by ``timm.data.Mixup``); class indices use ``cross_entropy`` with ``label_smoothing``.
    ``bce=True`` switches both to timm's ``BinaryCrossEntropy`` (the "ResNet strikes back" loss,
    with its ``target_threshold``), which one-hot encodes and smooths class indices itself.
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        *,
        bce: bool = False,
        bce_target_threshold: float | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        import_timm("timm.loss")  # the first timm import hides wandb (experiments/core/timm.py)
        from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy

        self.label_smoothing = label_smoothing
        self.soft = SoftTargetCrossEntropy()
        self.bce = (
            BinaryCrossEntropy(smoothing=label_smoothing, target_threshold=bce_target_threshold)
            if bce
            else None
        )

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean loss over the batch."""
        if self.bce is not None:
            return self.bce(outputs, targets)
        if targets.is_floating_point() and targets.ndim == outputs.ndim:
            return self.soft(outputs, targets)
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)


# --------------------------------------------------------------------------- sampling and loading


class MixupCollate:
    """Collate function: stack a batch, then apply ``timm.data.Mixup`` (soft targets ``(B, C)``).

    Runs where the batch is collated (in the workers when ``num_workers > 0``, whose numpy RNG the
    DataLoader seeds), so mixing costs the training process nothing.
    """

    def __init__(self, mixup: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]) -> None:
        self.mixup = mixup

    def __call__(self, batch: list[Any]) -> tuple[Tensor, Tensor]:
        x, y = default_collate(batch)
        return self.mixup(x, y)


@dataclass
class VisionData(TaskDefaults):
    """An image classification data set: train / test ``Dataset``s and what training them needs.

    ``input_size`` is ``(C, H, W)`` of the test images (train crops may be smaller, e.g. RSB A3).
    ``train_loss`` accepts class indices and soft targets; ``eval_loss`` is plain cross-entropy
    (timm's validation loss). ``mixup``: a ``timm.data.Mixup`` applied to every train batch, or None.
    ``files``: the files the images were read from, hashed into each run's ``summary.json``
    (CIFAR's batches, Fashion-MNIST's IDX files; none for ImageNet, whose 150 GB would take
    minutes to hash per run: its identity is the public release).
    """

    train: Dataset
    test: Dataset
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_loss: nn.Module
    eval_loss: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    mixup: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None
    classes: list[str] | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def metric_fns(self) -> dict[str, MetricFn]:
        """``top1`` (and ``top5`` when there are more than 5 classes), as fractions."""
        return accuracy_metrics(self.num_classes)

    def model_kwargs(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` completed with the class count and, where the model takes it, the input
        channels; a model that takes neither cannot read images."""
        params = MODELS.parameters(model_name)
        if "num_classes" not in params:
            raise ConfigError(
                f"model={model_name} cannot take image data; use an image model such as "
                "cifar_resnet18"
            )
        out = dict(kwargs)
        out.setdefault("num_classes", self.num_classes)
        if "in_chans" in params:
            out.setdefault("in_chans", self.input_size[0])
        return out

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Every KITINet residual must divide into ``collision_heads`` rows at this input size."""
        del model_name
        check_input_size(model, self.input_size)

    def model_stats(self, model_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``mmacs_imagenet_stem``: multiply-adds (millions) of one eval forward of the same
        network with the ImageNet stem, the KITINet paper's MFLOPs convention (its Table 3)."""
        if "stem" not in MODELS.parameters(model_name):
            return {}
        args = {**self.model_kwargs(model_name, kwargs), "stem": "imagenet"}
        with torch.random.fork_rng(devices=[]):  # initialising it draws random numbers
            model = MODELS.create(model_name, **args)
        return {"mmacs_imagenet_stem": count_mflops(model, self.input_size) / 2}

    def loaders(
        self,
        batch_size: int | None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool | None = None,
        distributed: bool | None = None,
        shard_eval: bool = False,
    ) -> tuple[EpochDataLoader, DataLoader]:
        """``(train_loader, test_loader)``.

        Args:
            batch_size: train batch size per process (the global batch is ``batch_size *
                world_size`` under DDP).
            seed: data-order seed (the run seed): equal seeds give equal orders epoch by epoch.
            eval_batch_size: test batch size (default ``batch_size``).
            num_workers, pin_memory: as in ``DataLoader`` (0 workers: load in the main process).
            drop_last: drop the last incomplete train batch; default True with Mixup (it needs an
                even batch), else False.
            distributed: shard the train set over ``torch.distributed`` ranks; None: when it is
                initialised. Call ``train_loader.set_epoch(e)`` on resume (iteration advances it).
            shard_eval: also shard the test set over ranks (each rank then sees ``1/world`` of it,
                padded to equal length; the caller must all-reduce the sums). Default: every rank
                evaluates the whole test set, so metrics are exact and identical on all ranks.
        """
        if batch_size is None:
            raise ConfigError(
                "trainer.batch_size=null (full batch) does not fit image data; set e.g. "
                "trainer.batch_size=128"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        del shuffle  # image training always reshuffles (SeededSampler, from the run seed)
        if self.mixup is not None and batch_size % 2:
            raise ConfigError(f"batch_size={batch_size} must be even with Mixup / CutMix")
        world = dist_world() if distributed in (None, True) else None
        if distributed and world is None:
            raise ConfigError("distributed=True but torch.distributed is not initialised")
        replicas, rank = world or (1, 0)
        drop = self.mixup is not None if drop_last is None else drop_last
        common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}

        sampler = SeededSampler(
            self.train, seed=seed, num_replicas=replicas, rank=rank, drop_last=drop
        )
        collate = MixupCollate(self.mixup) if self.mixup is not None else None
        train_loader = EpochDataLoader(
            self.train,
            seed=seed,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop,
            collate_fn=collate,
            **common,
        )
        test_sampler = (
            SeededSampler(self.test, shuffle=False, num_replicas=replicas, rank=rank)
            if shard_eval and world is not None
            else SequentialSampler(self.test)
        )
        test_loader = DataLoader(
            self.test, batch_size=eval_batch_size or batch_size, sampler=test_sampler, **common
        )
        return train_loader, test_loader


# --------------------------------------------------------------------------- helpers


def _stats(
    value: Sequence[float] | None, default: tuple[float, ...], name: str
) -> tuple[float, ...]:
    out = default if value is None else tuple(float(v) for v in value)
    if len(out) != len(default):
        raise ConfigError(f"dataset.{name}={list(out)} must have {len(default)} entries")
    if name == "std" and min(out) <= 0:
        raise ConfigError(f"dataset.std={list(out)} must be positive")
    return out


def _limit(dataset: Dataset, limit: int | None, name: str) -> Dataset:
    """The first ``limit`` samples of ``dataset`` (all when None)."""
    if limit is None:
        return dataset
    n = len(dataset)  # type: ignore[arg-type]
    if limit < 1:
        raise ConfigError(f"dataset.{name}={limit} must be >= 1")
    return Subset(dataset, range(min(limit, n)))


# --------------------------------------------------------------------------- CIFAR


def _cifar_class(which: str, verify: bool) -> type:
    """torchvision's CIFAR10/100, or a subclass that only checks that the files exist.

    torchvision checks every batch file's md5, so generated fixtures (and re-pickled copies) need
    ``verify=False``; the file names and the pickle format are still torchvision's.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if which == "cifar10" else CIFAR100
    if verify:
        return base
    return type(
        f"Unverified{base.__name__}",
        (base,),
        {
            "train_list": [[name, None] for name, _ in base.train_list],
            "test_list": [[name, None] for name, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


def _cifar_missing(cls: type, root: Path, reason: str) -> MissingDataError:
    files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    folder = root / cls.base_folder
    missing = [f for f in files if not (folder / f).is_file()]
    return MissingDataError(
        f"{cls.__name__.removeprefix('Unverified')} not found under dataset.root={root}: {reason}.\n"
        f"Put the python-pickle version there: {folder}/{{{','.join(files)}}} "
        f"(missing: {', '.join(missing) or 'none; md5 mismatch?'}). Get it with network access "
        f"(dataset.download=true), or download {cls.url} elsewhere and extract it into {root}."
    )


def _cifar(
    which: str,
    root: str,
    download: bool,
    verify: bool,
    augment: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    train_limit: int | None,
    test_limit: int | None,
) -> VisionData:
    from torchvision import transforms as T

    cls = _cifar_class(which, verify)
    root_path = Path(root).expanduser()
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    train_tf = T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *normalize]
        if augment
        else normalize
    )
    test_tf = T.Compose(normalize)

    def make(train: bool, tf: Callable[..., Any], download: bool) -> Dataset:
        return cls(str(root_path), train=train, transform=tf, download=download)

    try:
        train = make(True, train_tf, download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise _cifar_missing(cls, root_path, "the files are missing or corrupted") from err
    except OSError as err:  # URLError, socket and disk errors while downloading
        raise _cifar_missing(cls, root_path, f"download failed ({err})") from err
    test = make(False, test_tf, False)
    return VisionData(
        train=_limit(train, train_limit, "train_limit"),
        test=_limit(test, test_limit, "test_limit"),
        num_classes=len(train.classes),
        input_size=(3, 32, 32),
        mean=mean,
        std=std,
        train_loss=ClassificationLoss(),
        classes=list(train.classes),
        files=[root_path / cls.base_folder],
    )


@DATASETS.register
def cifar10(
    root: str = "data",
    download: bool = True,
    verify: bool = True,
    augment: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> VisionData:
    """CIFAR-10 (50,000 / 10,000 images, 10 classes) from ``<root>/cifar-10-batches-py/``.

    Train: pad-4 random 32x32 crop + horizontal flip (KO §4.2, KITINet §5.3; ``augment=False``
    turns them off), then ``ToTensor`` and normalisation with :data:`CIFAR10_MEAN` /
    :data:`CIFAR10_STD` (or ``mean`` / ``std``); test: ``ToTensor`` + normalisation.
    ``download``: fetch the archive when the files are missing (a :class:`MissingDataError` says
    where to put them when that fails). ``verify``: check the files' md5 (torchvision's check;
    False for generated fixtures). ``train_limit`` / ``test_limit``: keep the first n samples.
    """
    return _cifar(
        "cifar10",
        root,
        download,
        verify,
        augment,
        _stats(mean, CIFAR10_MEAN, "mean"),
        _stats(std, CIFAR10_STD, "std"),
        train_limit,
        test_limit,
    )


@DATASETS.register
def cifar100(
    root: str = "data",
    download: bool = True,
    verify: bool = True,
    augment: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> VisionData:
    """CIFAR-100 (fine labels, 100 classes) from ``<root>/cifar-100-python/``; as :func:`cifar10`
    with :data:`CIFAR100_MEAN` / :data:`CIFAR100_STD`."""
    return _cifar(
        "cifar100",
        root,
        download,
        verify,
        augment,
        _stats(mean, CIFAR100_MEAN, "mean"),
        _stats(std, CIFAR100_STD, "std"),
        train_limit,
        test_limit,
    )


# --------------------------------------------------------------------------- Fashion-MNIST

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzip-compressed when the name ends in ``.gz``).

    Header: two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions, then each
    dimension as a big-endian int32; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (header {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: {len(raw) - offset} data bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(root: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in ``root`` or in torchvision's ``root/FashionMNIST/raw``."""
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


class IDXImageDataset(Dataset):
    """Grayscale images held as a uint8 tensor ``(N, H, W)``, normalised per sample.

    Train augmentation (``train=True``): a random ``H x W`` crop of the image zero-padded by
    ``pad`` pixels (zero = black, as torchvision's ``RandomCrop(padding=pad)`` before
    ``Normalize``) and, with ``hflip``, a horizontal flip with probability 1/2; draws use the
    global torch RNG, like torchvision's transforms. Items: ``(float (channels, H, W), int)``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        mean: float,
        std: float,
        channels: int = 1,
        train: bool = False,
        pad: int = 0,
        hflip: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 3:
            raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.size = tuple(images.shape[1:])
        self.augment = train and (pad > 0 or hflip)
        self.pad = pad if train else 0
        self.hflip = hflip and train
        # Pad once here so a random crop is a slice.
        self.images = F.pad(images, (self.pad,) * 4) if self.pad else images
        self.labels = labels.long()
        self.mean, self.std, self.channels = mean, std, channels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        img = self.images[index]
        if self.pad:
            top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            img = img[top : top + self.size[0], left : left + self.size[1]]
        if self.hflip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        x = (img.float().div(255.0) - self.mean) / self.std
        return x.unsqueeze(0).expand(self.channels, -1, -1).contiguous(), int(self.labels[index])


def _resize_uint8(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of uint8 ``(N, H, W)`` images to ``size x size``, rounded back to uint8."""
    out = F.interpolate(
        images.unsqueeze(1).float(), size=(size, size), mode="bilinear", align_corners=False
    )
    return out.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)


@DATASETS.register
def fashion_mnist(
    root: str = DEBIAN_FASHION_MNIST_ROOT,
    resize: int | None = None,
    channels: int = 1,
    pad: int = 0,
    hflip: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> VisionData:
    """Fashion-MNIST (60,000 / 10,000 28x28 grayscale images, 10 classes) from IDX files.

    ``root`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``; torchvision's
    ``<root>/FashionMNIST/raw/`` layout works too); the default is where the Debian package
    ``dataset-fashion-mnist`` puts them (``scripts/fetch_fashion_mnist.sh`` installs it).
    ``resize``: bilinear resize of every image once at load time (32 for CIFAR-style nets).
    ``channels``: 1, or 3 to replicate the gray channel for RGB models. ``pad`` / ``hflip``: train
    augmentation (pad-``pad`` random crop, horizontal flip), off by default. Normalisation:
    :data:`FASHION_MNIST_MEAN` / :data:`FASHION_MNIST_STD` (or ``mean`` / ``std``).
    ``train_limit`` / ``test_limit``: keep the first n samples.
    """
    if channels not in (1, 3):
        raise ConfigError(f"dataset.channels={channels} must be 1 or 3")
    if pad < 0:
        raise ConfigError(f"dataset.pad={pad} must be >= 0")
    if resize is not None and resize < 1:
        raise ConfigError(f"dataset.resize={resize} must be >= 1")
    (mean_,), (std_,) = (
        _stats(mean, FASHION_MNIST_MEAN, "mean"),
        _stats(std, FASHION_MNIST_STD, "std"),
    )
    root_path = Path(root).expanduser()
    paths = {key: _find_idx(root_path, name) for key, name in _FASHION_FILES.items()}
    missing = [_FASHION_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise MissingDataError(
            f"Fashion-MNIST not found under dataset.root={root_path}: missing "
            f"{', '.join(f'{m}[.gz]' for m in missing)}. Run `{FETCH_FASHION_MNIST}` (installs the "
            f"Debian package dataset-fashion-mnist into {DEBIAN_FASHION_MNIST_ROOT}) or point "
            "dataset.root at a folder with the four IDX files."
        )
    arrays = {key: read_idx(path) for key, path in paths.items() if path is not None}

    def split(prefix: str, train: bool, limit: int | None, limit_name: str) -> IDXImageDataset:
        images = torch.from_numpy(arrays[f"{prefix}_images"].copy())
        labels = torch.from_numpy(arrays[f"{prefix}_labels"].astype(np.int64))
        if limit is not None:
            if limit < 1:
                raise ConfigError(f"dataset.{limit_name}={limit} must be >= 1")
            images, labels = images[:limit], labels[:limit]
        if resize is not None and resize != images.shape[-1]:
            images = _resize_uint8(images, resize)
        return IDXImageDataset(
            images,
            labels,
            mean=mean_,
            std=std_,
            channels=channels,
            train=train,
            pad=pad,
            hflip=hflip,
        )

    train = split("train", True, train_limit, "train_limit")
    test = split("test", False, test_limit, "test_limit")
    return VisionData(
        train=train,
        test=test,
        num_classes=len(FASHION_MNIST_CLASSES),
        input_size=(channels, *test.size),
        mean=(mean_,) * channels,
        std=(std_,) * channels,
        train_loss=ClassificationLoss(),
        classes=list(FASHION_MNIST_CLASSES),
        files=[path for path in paths.values() if path is not None],
    )


# --------------------------------------------------------------------------- ImageNet


def _split_dir(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _imagenet_splits(root: Path) -> tuple[Path, Path]:
    """``root/train`` and ``root/val`` (or ``validation``), checked to hold the same classes."""
    train_dir = _split_dir(root, ("train",))
    val_dir = _split_dir(root, ("val", "validation"))
    if train_dir is None or val_dir is None:
        absent = [n for n, d in (("train/", train_dir), ("val/", val_dir)) if d is None]
        raise MissingDataError(
            f"ImageNet not found under dataset.root={root}: no {' or '.join(absent)} folder. "
            "Expected an ImageFolder tree root/train/<class>/<image>.JPEG and "
            "root/val/<class>/<image>.JPEG with the same class folders (the validation images "
            "sorted into class folders, e.g. with the valprep.sh script)."
        )
    train_classes, val_classes = _class_dirs(train_dir), _class_dirs(val_dir)
    if train_classes != val_classes:
        diff = sorted(set(train_classes) ^ set(val_classes))
        raise ConfigError(
            f"{train_dir} and {val_dir} have different class folders (e.g. {diff[:5]}): the "
            "label indices would not match"
        )
    return train_dir, val_dir


@DATASETS.register
def imagenet(
    root: str = "data/imagenet",
    input_size: int = 224,
    test_input_size: int | None = None,
    interpolation: str = "bicubic",
    crop_pct: float = 0.875,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: float = 0.5,
    color_jitter: float = 0.4,
    auto_augment: str | None = None,
    re_prob: float = 0.0,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    mixup_prob: float = 1.0,
    mixup_switch_prob: float = 0.5,
    mixup_mode: str = "batch",
    label_smoothing: float = 0.0,
    bce: bool = False,
    bce_target_threshold: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> VisionData:
    """ImageNet-1K (or any ImageFolder tree) through timm's data pipeline (KO Table 2).

    ``root`` holds ``train/<class>/<image>`` and ``val/<class>/<image>`` (``validation/`` also
    accepted) with the same class folders; classes are indexed by sorted folder name
    (``timm.data.create_dataset("", root, split)``). Train transform
    (``timm.data.create_transform(is_training=True)``): random-resized crop to ``input_size`` with
    ``scale``, flip ``hflip``, ``color_jitter`` (timm ignores it when ``auto_augment`` is set),
    ``auto_augment`` (RandAugment string, e.g. ``"rand-m7-mstd0.5-inc1"``), random erasing
    ``re_prob``. Test: resize to ``test_input_size / crop_pct`` and centre crop ``test_input_size``
    (default ``input_size``). Mixup / CutMix (``timm.data.Mixup``) run on every train batch when
    either alpha is > 0, with ``label_smoothing`` folded into their soft targets; the train loss is
    then soft-target CE (or BCE with ``bce=True``), else CE with ``label_smoothing``.

    The recipes (set them in the experiment config): "ResNet strikes back" A2 for ResNet50 + LAMB:
    ``auto_augment="rand-m7-mstd0.5-inc1"``, ``mixup_alpha=0.1``, ``cutmix_alpha=1.0``,
    ``bce=True``, ``crop_pct=0.95`` (A1: ``mixup_alpha=0.2``, ``label_smoothing=0.1``,
    ``bce_target_threshold=0.2``; A3: ``input_size=160``, ``test_input_size=224``,
    ``auto_augment="rand-m6-mstd0.5-inc1"``). ConvNeXt + AdamW: ``auto_augment=
    "rand-m9-mstd0.5-inc1"``, ``mixup_alpha=0.8``, ``cutmix_alpha=1.0``, ``label_smoothing=0.1``,
    ``re_prob=0.25``.
    """
    import_timm("timm.data")  # the first timm import hides wandb (experiments/core/timm.py)
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
    from timm.data import create_dataset as timm_dataset

    mean_ = _stats(mean, tuple(IMAGENET_DEFAULT_MEAN), "mean")
    std_ = _stats(std, tuple(IMAGENET_DEFAULT_STD), "std")
    for key, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if value < 0:
            raise ConfigError(f"dataset.{key}={value} must be >= 0")
    root_path = Path(root).expanduser()
    train_dir, val_dir = _imagenet_splits(root_path)
    # timm indexes classes by sorted folder name; passing train's map to val pins it anyway.
    train = timm_dataset("", root=str(root_path), split=train_dir.name)
    class_map = dict(train.reader.class_to_idx)
    test = timm_dataset("", root=str(root_path), split=val_dir.name, class_map=class_map)
    test_size = test_input_size or input_size
    train.transform = create_transform(
        input_size,
        is_training=True,
        scale=tuple(scale),
        hflip=hflip,
        color_jitter=color_jitter,
        auto_augment=auto_augment,
        interpolation=interpolation,
        mean=mean_,
        std=std_,
        re_prob=re_prob,
    )
    test.transform = create_transform(
        test_size,
        is_training=False,
        interpolation=interpolation,
        mean=mean_,
        std=std_,
        crop_pct=crop_pct,
    )
    num_classes = len(class_map)
    mixup = None
    if mixup_alpha > 0 or cutmix_alpha > 0:
        mixup = Mixup(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=mixup_prob,
            switch_prob=mixup_switch_prob,
            mode=mixup_mode,
            label_smoothing=label_smoothing,
            num_classes=num_classes,
        )
    # With Mixup the smoothing lives in the soft targets; the loss's own smoothing only reaches
    # class-index targets (timm's train.py does the same).
    train_loss = ClassificationLoss(
        label_smoothing, bce=bce, bce_target_threshold=bce_target_threshold
    )
    return VisionData(
        train=_limit(train, train_limit, "train_limit"),
        test=_limit(test, test_limit, "test_limit"),
        num_classes=num_classes,
        input_size=(3, test_size, test_size),
        mean=mean_,
        std=std_,
        train_loss=train_loss,
        mixup=mixup,
        classes=sorted(class_map, key=class_map.__getitem__),
    )
