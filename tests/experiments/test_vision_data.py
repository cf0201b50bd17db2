"""Vision data pipeline (experiments.vision.data) on fixtures in the real on-disk formats."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_vision import (
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_idx,
    write_image_folder,
)

from experiments.core import metrics
from experiments.core.errors import ConfigError
from experiments.core.registry import DATASETS
from experiments.vision import data as vd


def _normalise(images_hwc: np.ndarray, mean: tuple, std: tuple) -> torch.Tensor:
    """Reference: ToTensor + Normalize of uint8 HWC images -> (N, C, H, W)."""
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def _crops(padded: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    """Every h x w crop of ``padded`` (C, H', W') and its horizontal flip."""
    out = []
    for top in range(padded.shape[1] - h + 1):
        for left in range(padded.shape[2] - w + 1):
            crop = padded[:, top : top + h, left : left + w]
            out += [crop, crop.flip(-1)]
    return out


def _is_some_crop(x: torch.Tensor, padded: torch.Tensor) -> bool:
    return any(torch.allclose(x, c, atol=1e-6) for c in _crops(padded, *x.shape[1:]))


def _all(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope="module")
def cifar10_files(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar10"))


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imagenet"))


def test_registered():
    assert {"cifar10", "cifar100", "fashion_mnist", "imagenet"} <= set(DATASETS.names())


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_batches_shapes_and_normalisation(cifar10_files):
    data = DATASETS.create("cifar10", root=str(cifar10_files.root), verify=False, download=False)
    assert data.num_classes == 10 and data.input_size == (3, 32, 32)
    assert data.classes[0] == "airplane" and set(data.metric_fns) == {"top1", "top5"}
    train, test = data.loaders(8, seed=0)
    xb, yb = next(iter(train))
    assert xb.shape == (8, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    x_test, y_test = _all(test)
    expected = _normalise(cifar10_files.x_test, vd.CIFAR10_MEAN, vd.CIFAR10_STD)
    torch.testing.assert_close(x_test, expected, atol=1e-6, rtol=0)
    assert y_test.tolist() == cifar10_files.y_test.tolist()
    _, y_train = _all(train)
    assert sorted(y_train.tolist()) == sorted(cifar10_files.y_train.tolist())


def test_cifar10_train_augments_and_test_does_not(cifar10_files):
    data = vd.cifar10(root=str(cifar10_files.root), verify=False)
    ref = _normalise(cifar10_files.x_train[:1], vd.CIFAR10_MEAN, vd.CIFAR10_STD)[0]
    # torchvision pads with black (0) before normalising: -mean/std after it.
    fill = -torch.tensor(vd.CIFAR10_MEAN) / torch.tensor(vd.CIFAR10_STD)
    padded = fill.view(3, 1, 1).expand(3, 40, 40).clone()
    padded[:, 4:36, 4:36] = ref
    torch.manual_seed(0)
    draws = [data.train[0][0] for _ in range(12)]
    assert all(_is_some_crop(x, padded) for x in draws)
    assert len({tuple(x.flatten()[::97].tolist()) for x in draws}) > 3  # really random
    torch.testing.assert_close(data.test[0][0], data.test[0][0], atol=0, rtol=0)
    plain = vd.cifar10(root=str(cifar10_files.root), verify=False, augment=False)
    torch.testing.assert_close(plain.train[0][0], ref, atol=1e-6, rtol=0)


def test_cifar100_fine_labels(tmp_path):
    files = write_cifar100(tmp_path)
    data = vd.cifar100(root=str(tmp_path), verify=False, test_limit=4)
    assert data.num_classes == 100 and len(data.train) == 20 and len(data.test) == 4
    x_test, y_test = _all(data.loaders(3)[1])
    assert y_test.tolist() == files.y_test[:4].tolist()
    expected = _normalise(files.x_test[:4], vd.CIFAR100_MEAN, vd.CIFAR100_STD)
    torch.testing.assert_close(x_test, expected, atol=1e-6, rtol=0)


def test_cifar_missing_files_error(tmp_path):
    with pytest.raises(vd.MissingDataError, match=r"cifar-10-batches-py.*data_batch_1"):
        vd.cifar10(root=str(tmp_path), download=False)
    with pytest.raises(vd.MissingDataError, match=r"cifar-100-python/\{train,test,meta\}"):
        vd.cifar100(root=str(tmp_path), download=False)


def test_cifar_failed_download_error(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(vd.MissingDataError, match=r"(?s)download failed.*Put the python-pickle"):
        vd.cifar10(root=str(tmp_path), download=True)


def test_cifar_md5_check_rejects_fixture(cifar10_files):
    # The fixture is not the real data set: torchvision's integrity check must say so.
    with pytest.raises(vd.MissingDataError, match="md5 mismatch"):
        vd.cifar10(root=str(cifar10_files.root), download=False, verify=True)


# --------------------------------------------------------------------------- Fashion-MNIST


def test_read_idx_roundtrip_and_bad_header(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    b = np.array([[-5, 70000], [3, 4]], dtype=">i4")
    np.testing.assert_array_equal(vd.read_idx(write_idx(tmp_path / "a.gz", a)), a)
    np.testing.assert_array_equal(vd.read_idx(write_idx(tmp_path / "b", b)), b.astype(np.int32))
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an IDX file"):
        vd.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(write_idx(tmp_path / "c", a).read_bytes()[:-1])
    with pytest.raises(ValueError, match="data bytes"):
        vd.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_fixture(tmp_path, gz):
    files = write_fashion_mnist(tmp_path, gz=gz)
    data = DATASETS.create("fashion_mnist", root=str(tmp_path))
    assert (len(data.train), len(data.test), data.num_classes) == (30, 10, 10)
    assert data.input_size == (1, 28, 28)
    x_test, y_test = _all(data.loaders(4)[1])
    expected = _normalise(files.x_test[..., None], vd.FASHION_MNIST_MEAN, vd.FASHION_MNIST_STD)
    torch.testing.assert_close(x_test, expected, atol=1e-6, rtol=0)
    assert y_test.tolist() == files.y_test.tolist()
    # No augmentation by default: train items are deterministic.
    torch.testing.assert_close(data.train[3][0], data.train[3][0], atol=0, rtol=0)


def test_fashion_mnist_torchvision_layout_resize_channels_and_augmentation(tmp_path):
    files = write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    data = vd.fashion_mnist(root=str(tmp_path), resize=32, channels=3, pad=2, hflip=True)
    assert data.input_size == (3, 32, 32) and len(data.mean) == 3
    x, _ = next(iter(data.loaders(5)[0]))
    assert x.shape == (5, 3, 32, 32)
    torch.testing.assert_close(x[:, 0], x[:, 2], atol=0, rtol=0)  # replicated gray channel
    resized = F.interpolate(
        torch.from_numpy(files.x_train[:1, None]).float(), size=(32, 32), mode="bilinear"
    ).round()
    ref = (resized[0] / 255 - vd.FASHION_MNIST_MEAN[0]) / vd.FASHION_MNIST_STD[0]
    padded = F.pad(ref, (2, 2, 2, 2), value=-vd.FASHION_MNIST_MEAN[0] / vd.FASHION_MNIST_STD[0])
    torch.manual_seed(0)
    draws = [data.train[0][0][:1] for _ in range(10)]
    assert all(_is_some_crop(d, padded) for d in draws)
    assert len({tuple(d.flatten()[::37].tolist()) for d in draws}) > 3
    torch.testing.assert_close(data.test[0][0], data.test[0][0], atol=0, rtol=0)
    x_test = F.interpolate(
        torch.from_numpy(files.x_test[:1, None]).float(), size=(32, 32), mode="bilinear"
    ).round()[0]
    ref_test = (x_test / 255 - vd.FASHION_MNIST_MEAN[0]) / vd.FASHION_MNIST_STD[0]
    torch.testing.assert_close(data.test[0][0][:1], ref_test, atol=1e-6, rtol=0)


def test_fashion_mnist_missing_files_names_the_fetch_script(tmp_path):
    write_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(vd.MissingDataError, match=r"t10k-labels.*fetch_fashion_mnist\.sh"):
        vd.fashion_mnist(root=str(tmp_path))
    with pytest.raises(ConfigError, match="channels"):
        vd.fashion_mnist(root=str(tmp_path), channels=2)


@pytest.mark.skipif(
    not Path(vd.DEBIAN_FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (scripts/fetch_fashion_mnist.sh)",
)
def test_real_fashion_mnist_from_debian_package():
    data = vd.fashion_mnist()
    assert (len(data.train), len(data.test)) == (60000, 10000)
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    pixels = data.train.images.float() / 255
    assert abs(pixels.mean().item() - vd.FASHION_MNIST_MEAN[0]) < 5e-4
    assert abs(pixels.std().item() - vd.FASHION_MNIST_STD[0]) < 5e-4


# --------------------------------------------------------------------------- ImageNet / timm


def test_imagenet_folder_through_timm(imagenet_root):
    data = vd.imagenet(root=str(imagenet_root), input_size=32, auto_augment="rand-m7-mstd0.5-inc1")
    assert data.num_classes == 3 and data.input_size == (3, 32, 32)
    assert data.classes == ["n01440764", "n01443537", "n01484850"]
    assert set(data.metric_fns) == {"top1"}  # top-5 of 3 classes would always be 1
    train, test = data.loaders(4, seed=0)
    xb, yb = next(iter(train))
    assert xb.shape == (4, 3, 32, 32) and yb.dtype == torch.int64
    x1, y1 = _all(test)
    x2, _ = _all(test)
    assert x1.shape == (6, 3, 32, 32) and y1.tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(x1, x2, atol=0, rtol=0)  # no augmentation at test time
    # Class colours survive normalisation: class 0's red channel is the darkest.
    assert x1[:2, 0].mean() < x1[2:, 0].mean()
    torch.manual_seed(0)
    a, b = data.train[0][0], data.train[0][0]
    assert not torch.equal(a, b)  # random-resized crop / RandAugment are on in training


def test_imagenet_mixup_soft_targets_and_loss(imagenet_root):
    data = vd.imagenet(
        root=str(imagenet_root), input_size=32, mixup_alpha=0.8, cutmix_alpha=1.0,
        label_smoothing=0.1,
    )  # fmt: skip
    train, test = data.loaders(4, seed=0)
    assert train.drop_last
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - timm's Mixup draws from numpy's global RNG
    batches = list(train)
    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == (4, 3, 32, 32) and y.dtype == torch.float32 and y.shape == (4, 3)
        torch.testing.assert_close(y.sum(1), torch.ones(4))
    targets = torch.cat([y for _, y in batches])
    assert targets.max() < 1.0  # smoothed and mixed, never one-hot
    logits = torch.randn(4, 3)
    x, y = batches[0]
    loss = data.train_loss(logits, y)
    expected = -(y * torch.log_softmax(logits, -1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    _, y_test = next(iter(test))
    assert y_test.dtype == torch.int64  # evaluation keeps class indices
    torch.testing.assert_close(data.eval_loss(logits, y_test), F.cross_entropy(logits, y_test))
    with pytest.raises(ConfigError, match="even"):
        data.loaders(3)


def test_imagenet_missing_or_mismatched_folders(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(vd.MissingDataError, match=r"no val/ folder.*root/val/<class>"):
        vd.imagenet(root=str(tmp_path))
    write_image_folder(tmp_path / "two", classes=("a", "b"))
    (tmp_path / "two" / "val" / "c").mkdir()
    with pytest.raises(ConfigError, match="different class folders"):
        vd.imagenet(root=str(tmp_path / "two"))


# --------------------------------------------------------------------------- losses and metrics


def test_topk_accuracy_hand_examples():
    logits = torch.tensor(
        [[0.1, 0.5, 0.2, 0.9], [3.0, 1.0, 2.0, 0.0], [0.0, 0.1, 0.3, 0.2], [1.0, 4.0, 3.0, 2.0]]
    )
    targets = torch.tensor([3, 2, 0, 0])
    # top-1 hits row 0; top-2 adds row 1 (2 is second); top-3 adds nothing (row 2's 0 is last,
    # row 3's 0 is last); top-4 is everything.
    assert [metrics.topk_accuracy(logits, targets, k).item() for k in (1, 2, 3, 4)] == [
        0.25,
        0.5,
        0.5,
        1.0,
    ]
    soft = F.one_hot(targets, 4).float() * 0.7 + 0.075
    assert metrics.topk_accuracy(logits, soft, 2).item() == 0.5
    with pytest.raises(ValueError, match="k=5"):
        metrics.topk_accuracy(logits, targets, 5)
    assert set(metrics.accuracy_metrics(10)) == {"top1", "top5"}


def test_classification_loss_hard_soft_and_bce():
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    plain = vd.ClassificationLoss()
    onehot = F.one_hot(targets, 5).float()
    torch.testing.assert_close(plain(logits, targets), F.cross_entropy(logits, targets))
    torch.testing.assert_close(plain(logits, onehot), F.cross_entropy(logits, targets))
    smooth = vd.ClassificationLoss(0.1)
    soft = onehot * 0.9 + 0.1 / 5
    torch.testing.assert_close(smooth(logits, targets), plain(logits, soft))
    bce = vd.ClassificationLoss(0.0, bce=True)
    expected = F.binary_cross_entropy_with_logits(logits, onehot)
    torch.testing.assert_close(bce(logits, targets), expected)
    torch.testing.assert_close(bce(logits, onehot), expected)


# --------------------------------------------------------------------------- order and DDP


def test_same_seed_same_order(tmp_path):
    write_fashion_mnist(tmp_path, n_train=40)
    data = vd.fashion_mnist(root=str(tmp_path))

    def epochs(seed: int, n: int = 2, start: int | None = None) -> list[list[int]]:
        loader = data.loaders(8, seed=seed)[0]
        if start is not None:
            loader.set_epoch(start)
        return [_all(loader)[1].tolist() for _ in range(n)]

    a, b = epochs(0), epochs(0)
    assert a == b and a[0] != a[1]
    assert epochs(1) != a
    assert sorted(a[0]) == sorted(data.train.labels.tolist())
    assert epochs(0, n=1, start=1) == a[1:]  # resume at epoch 1


def test_same_seed_same_augmented_batches_with_workers(tmp_path):
    write_fashion_mnist(tmp_path, n_train=16)
    data = vd.fashion_mnist(root=str(tmp_path), pad=4, hflip=True)
    runs = [_all(data.loaders(8, seed=3, num_workers=2)[0])[0] for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)


def test_distributed_sharding(tmp_path, monkeypatch):
    write_fashion_mnist(tmp_path, n_train=30)
    data = vd.fashion_mnist(root=str(tmp_path))
    with pytest.raises(ConfigError, match="not initialised"):
        data.loaders(4, distributed=True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 4)
    shards = []
    for rank in range(4):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None, r=rank: r)
        train, test = data.loaders(4, seed=0)
        assert isinstance(train.sampler, torch.utils.data.DistributedSampler)
        shards.append(list(train.sampler))
        assert len(test.dataset) == 10 and len(list(test.sampler)) == 10  # eval not sharded
    # 30 samples over 4 ranks: 8 each, padded by wrapping 2 indices around.
    assert [len(s) for s in shards] == [8] * 4
    flat = [i for s in shards for i in s]
    assert sorted(set(flat)) == list(range(30)) and len(flat) == 32
    assert list(data.loaders(4, seed=0, distributed=False)[0].sampler) != shards[0]
