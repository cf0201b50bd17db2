"""Losses and test metrics shared by the domains: means over a batch, as the loop expects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

__all__ = ["accuracy_metrics", "mse", "relative_l2", "rmse", "topk_accuracy"]

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
