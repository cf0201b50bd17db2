"""Losses and test metrics shared by the domains: means over a batch, as the loop expects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

__all__ = ["MacroF1", "accuracy_metrics", "mse", "relative_l2", "rmse", "topk_accuracy"]

MetricFn = Callable[[Tensor, Tensor], Tensor]


def topk_accuracy(outputs: Tensor, targets: Tensor, k: int = 1) -> Tensor:
    """Fraction of rows whose target class is among the ``k`` largest logits (top-k accuracy).

    ``targets``: class indices ``(N,)``, or soft targets ``(N, C)`` whose argmax is the class.
    """
    if not 1 <= k <= outputs.shape[-1]:
        raise ValueError(f"k={k} must be in [1, {outputs.shape[-1]}] (the number of classes)")
    if targets.ndim == outputs.ndim:
        targets = targets.argmax(dim=-1)
    top = outputs.topk(k, dim=-1).indices
    return (top == targets.unsqueeze(-1)).any(dim=-1).float().mean()


def accuracy_metrics(num_classes: int, ks: Sequence[int] = (1, 5)) -> dict[str, MetricFn]:
    """``{"top1": ..., "top5": ...}`` metric functions; ``k`` larger than the class count is
    skipped."""
    return {f"top{k}": partial(topk_accuracy, k=k) for k in ks if k <= num_classes}


class MacroF1:
    """Macro-averaged F1 over ``num_classes`` classes, a metric that is not a mean over rows.

    Called on a batch it returns the confusion matrix divided by the batch size (a per-row mean,
    as the loop expects); the loop's unit-weighted average of those is the test set's confusion
    matrix over its size, and :meth:`finalize` turns that into the F1 (scale-free). A class that
    never occurs and is never predicted is left out of the mean (its F1 is undefined).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def __call__(self, outputs: Tensor, targets: Tensor) -> Tensor:
        predicted = outputs.argmax(dim=-1)
        index = targets.long() * self.num_classes + predicted
        counts = torch.bincount(index, minlength=self.num_classes**2).double()
        return counts.view(self.num_classes, self.num_classes) / max(int(targets.numel()), 1)

    def finalize(self, confusion: Tensor) -> float:
        """Macro-F1 of a (true, predicted) confusion matrix (counts or any multiple of them)."""
        true_positive = confusion.diagonal()
        denominator = confusion.sum(dim=0) + confusion.sum(dim=1)  # 2 TP + FP + FN
        present = denominator > 0
        return float((2 * true_positive[present] / denominator[present]).mean())


def relative_l2(
    pred: Tensor, target: Tensor, *, reduction: str = "mean", eps: float = 1e-12
) -> Tensor:
    """Relative L2 error per sample, ``||pred - target|| / ||target||`` over all non-batch dims.

    ``reduction``: ``"mean"`` (the FNO papers' loss and metric), ``"sum"`` (to accumulate over a
    test set) or ``"none"`` (shape ``(B,)``). ``eps`` guards an all-zero target.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    diff = torch.linalg.vector_norm((pred - target).flatten(1), dim=1)
    norm = torch.linalg.vector_norm(target.flatten(1), dim=1)
    errors = diff / norm.clamp_min(eps)
    if reduction == "mean":
        return errors.mean()
    if reduction == "sum":
        return errors.sum()
    if reduction == "none":
        return errors
    raise ValueError(f"reduction={reduction!r} is not one of 'mean', 'sum', 'none'")


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return (pred - target).square().mean()


def rmse(pred: Tensor, target: Tensor) -> Tensor:
    """Root mean squared error over all elements (Table 4's Airfoil metric).

    Over a test set take the square root of the mean MSE, not the mean of batch RMSEs.
    """
    return mse(pred, target).sqrt()
