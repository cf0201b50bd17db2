"""Condensation metrics: how similar a layer's neurons are to each other (SPEC §1.6).

A *neuron* is a row of a weight viewed as ``(out_features, -1)``: Linear ``(out, in)`` rows, Conv
``(out, in*kh*kw)`` flattened filters (the same convention as the KO collisions, SPEC §1.2).

- :func:`cosine_similarity_matrix`: the ``(N, N)`` cosine matrix of the neurons.
- :func:`rho`: KITINet's degree of condensation, the mean absolute off-diagonal cosine
  (Def. I.1 for fully connected weights, Def. I.2 per input channel for convolutions).
- :func:`max_offdiag_abs_cos`: KO Fig. 3's "neuron similarity", the largest off-diagonal ``|cos|``.
- :func:`condensation_order`: KO App. B.1's greedy clustering order for heat maps.
- :func:`plot_cosine_heatmap`: the reordered heat map (matplotlib is imported only here).

Conventions shared by every function: a zero vector has cosine 0 with everything, itself included
(so it never counts as condensed), and half-precision inputs are computed in float32 (float64
inputs stay float64). Nothing here builds an ``(N, N, d)`` tensor: cosines are one matmul of
row-normalised weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "condensation_order",
    "cosine_similarity_matrix",
    "max_offdiag_abs_cos",
    "plot_cosine_heatmap",
    "rho",
]

# Bound on the elements of one (chunk, N, N) block of per-channel cosines in the conv rho:
# 2**24 float32 values = 64 MB, whatever the layer size.
_MAX_BLOCK_ELEMENTS = 2**24


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (half types, float32, integers) becomes float32."""
    if dtype.is_complex:
        # A cast would silently drop the imaginary part; the caller must choose (e.g. view_as_real).
        raise TypeError("complex weights are not supported; pass a real view of them")
    return torch.float64 if dtype == torch.float64 else torch.float32


def _unit_vectors(vectors: Tensor) -> Tensor:
    """Normalise the last dimension to unit length; zero vectors stay zero.

    Dividing by the max-abs entry first keeps the norm representable for tiny (subnormal) and huge
    vectors, where squaring would underflow to 0 or overflow to inf.
    """
    scale = vectors.abs().amax(dim=-1, keepdim=True)
    nonzero = scale > 0
    scaled = vectors / torch.where(nonzero, scale, torch.ones_like(scale))
    norm = torch.linalg.vector_norm(scaled, dim=-1, keepdim=True)
    return scaled / torch.where(nonzero, norm, torch.ones_like(norm))


def _neuron_rows(weight: Tensor) -> Tensor:
    """The neurons of ``weight`` as a detached ``(N, fan_in)`` matrix in the compute dtype."""
    if weight.dim() < 1:
        raise ValueError("weight must have at least one dimension (one row per neuron)")
    rows = weight.detach().reshape(weight.shape[0], -1)
    return rows.to(_compute_dtype(weight.dtype))


def cosine_similarity_matrix(weight: Tensor) -> Tensor:
    """Cosine similarity of every pair of neurons (rows of ``weight`` viewed as ``(out, -1)``).

    Args:
        weight: a layer weight, e.g. Linear ``(out, in)`` or Conv ``(out, in, kh, kw)``.

    Returns:
        A symmetric ``(N, N)`` tensor, ``N = weight.shape[0]``, with entries in ``[-1, 1]``, in
        float32 (float64 if ``weight`` is float64), on ``weight``'s device. The diagonal is 1 for a
        nonzero row and 0 for a zero row; a zero row has cosine 0 with every row.
    """
    unit = _unit_vectors(_neuron_rows(weight))
    cos = unit @ unit.T
    # One matmul need not give bit-identical (i, j) and (j, i) entries; callers rely on symmetry.
    cos = ((cos + cos.T) / 2).clamp_(-1.0, 1.0)
    nonzero = unit.abs().amax(dim=1) > 0
    cos.diagonal().copy_(nonzero.to(cos.dtype))
    return cos


def rho(weight: Tensor, *, per_channel: bool | None = None) -> float:
    """KITINet's degree of condensation: mean absolute cosine over ordered neuron pairs ``i != j``.

    - 2-D weight ``(out, in)``: KITINet Def. I.1, mean of ``|cos(w_i, w_j)|`` over the
      ``N(N-1)`` ordered pairs of rows.
    - Conv weight ``(out, in, *kernel)``: KITINet Def. I.2. For every input channel ``z``, the
      cosine between filter ``i``'s and filter ``j``'s kernel vectors at channel ``z``
      (``kh*kw`` values for Conv2d); the mean of its absolute value over ``i != j`` and ``z``.

    ``per_channel`` overrides the choice: ``False`` applies Def. I.1 to a conv weight's flattened
    filters (rows as in :func:`cosine_similarity_matrix`), ``True`` forces Def. I.2. Note that for
    a 1x1 convolution Def. I.2 compares scalars, so every ``|cos|`` is 1 (or 0 for a zero weight).

    A layer with a single neuron has no pairs: its rho is defined as 0.0.

    Returns:
        rho as a Python float in ``[0, 1]``.
    """
    if weight.dim() < 2:
        raise ValueError(
            f"rho needs a weight with at least 2 dims, got shape {tuple(weight.shape)}"
        )
    if per_channel is None:
        per_channel = weight.dim() >= 3
    n = weight.shape[0]
    if n < 2:
        return 0.0
    if not per_channel:
        abs_cos = cosine_similarity_matrix(weight).abs()
        total = abs_cos.sum(dtype=torch.float64) - abs_cos.diagonal().sum(dtype=torch.float64)
        return float(total / (n * (n - 1)))
    if weight.dim() < 3:
        raise ValueError("per_channel rho needs a conv weight (out, in, *kernel)")
    # (out, in, *kernel) -> (in, out, kernel_size): one batch of N kernel vectors per input channel.
    kernels = weight.detach().reshape(n, weight.shape[1], -1).transpose(0, 1)
    unit = _unit_vectors(kernels.to(_compute_dtype(weight.dtype)))
    channels = unit.shape[0]
    chunk = max(1, _MAX_BLOCK_ELEMENTS // (n * n))
    total = torch.zeros((), dtype=torch.float64, device=weight.device)
    for start in range(0, channels, chunk):
        block = unit[start : start + chunk]
        abs_cos = torch.bmm(block, block.transpose(1, 2)).clamp_(-1.0, 1.0).abs_()
        off_diagonal = abs_cos.sum(dtype=torch.float64) - abs_cos.diagonal(dim1=1, dim2=2).sum(
            dtype=torch.float64
        )
        total += off_diagonal
    return float(total / (n * (n - 1) * channels))


def max_offdiag_abs_cos(weight: Tensor) -> float:
    """KO Fig. 3's "neuron similarity": the largest ``|cos|`` between two different neurons.

    Neurons are rows as in :func:`cosine_similarity_matrix`. A single-neuron layer gives 0.0.
    """
    abs_cos = cosine_similarity_matrix(weight).abs()
    if abs_cos.shape[0] < 2:
        return 0.0
    abs_cos.fill_diagonal_(0.0)
    return float(abs_cos.max())


def condensation_order(cos: Tensor, threshold: float = 0.6) -> Tensor:
    """Neuron order that puts condensed clusters into contiguous blocks (KO App. B.1).

    The paper: "Starting from neuron 0, we iteratively group neurons that are strongly similar
    (> 0.6) to the current neuron. If a negatively correlated neuron (< -0.6) is found, it may
    become the new reference." Precisely, with ``t = threshold``:

    1. The reference is the lowest-index unassigned neuron; it is placed next.
    2. Every unassigned neuron ``j`` with ``cos[ref, j] > t`` is placed next, in index order.
    3. If some unassigned neuron has ``cos[ref, j] < -t``, the most negative one (lowest index on
       ties) becomes the new reference: it is placed next, and step 2 repeats for it. So a cluster
       is followed directly by its anti-aligned cluster, and the pair shows as a 2x2 block pattern.
    4. Otherwise go back to step 1 until every neuron is placed.

    The result is deterministic and depends only on ``cos``.

    Args:
        cos: an ``(N, N)`` cosine-similarity matrix (see :func:`cosine_similarity_matrix`).
        threshold: the similarity threshold ``t`` (0.6 in the paper).

    Returns:
        A LongTensor permutation ``p`` of ``range(N)``; ``cos[p][:, p]`` is the reordered matrix.
    """
    if cos.dim() != 2 or cos.shape[0] != cos.shape[1]:
        raise ValueError(f"cos must be a square matrix, got shape {tuple(cos.shape)}")
    cos = cos.detach().to("cpu", _compute_dtype(cos.dtype))
    n = cos.shape[0]
    unassigned = torch.ones(n, dtype=torch.bool)
    order: list[int] = []

    def place(indices: Tensor) -> None:
        unassigned[indices] = False
        order.extend(indices.tolist())

    while len(order) < n:
        ref = int(unassigned.nonzero()[0])
        place(torch.tensor([ref]))
        while True:
            row = cos[ref]
            place((unassigned & (row > threshold)).nonzero().flatten())
            anti = unassigned & (row < -threshold)
            if not bool(anti.any()):
                break
            candidates = torch.where(anti, row, torch.full_like(row, float("inf")))
            ref = int(torch.argmin(candidates))  # first index among equal minima
            place(torch.tensor([ref]))
    return torch.tensor(order, dtype=torch.long)


def _looks_like_cosine_matrix(matrix: Tensor) -> bool:
    """Square, symmetric, entries in [-1, 1] and a diagonal of 0s and 1s."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        return False
    m = matrix.detach().to(torch.float64)
    diagonal = m.diagonal()
    return bool(
        torch.allclose(m, m.T, atol=1e-6)
        and m.abs().max() <= 1 + 1e-6
        and ((diagonal == 0) | ((diagonal - 1).abs() < 1e-5)).all()
    )


def plot_cosine_heatmap(
    weight_or_cos: Tensor,
    *,
    ax: Axes | None = None,
    reorder: bool = True,
    title: str | None = None,
    vmin: float = -1.0,
    vmax: float = 1.0,
    threshold: float = 0.6,
    is_cosine: bool | None = None,
    colorbar: bool = True,
    cmap: str = "RdBu_r",
) -> Figure:
    """Heat map of a layer's neuron cosine similarities, reordered as in KO App. B.1.

    Args:
        weight_or_cos: a layer weight, or an ``(N, N)`` cosine matrix already computed.
        ax: draw into this Axes; by default a new Figure (not registered with pyplot, so it is
            never shown implicitly and is freed with its last reference).
        reorder: reorder rows and columns with :func:`condensation_order`.
        title: Axes title.
        vmin, vmax: colour limits (a diverging map centred on 0 by default).
        threshold: the clustering threshold passed to :func:`condensation_order`.
        is_cosine: whether ``weight_or_cos`` is a cosine matrix. ``None`` guesses: a square,
            symmetric matrix in ``[-1, 1]`` with a 0/1 diagonal is taken as one.
        colorbar: add a colorbar beside the Axes.
        cmap: a diverging matplotlib colormap name.

    Returns:
        The Figure that holds the Axes.
    """
    from matplotlib.figure import Figure

    if is_cosine is None:
        is_cosine = _looks_like_cosine_matrix(weight_or_cos)
    if is_cosine:
        cos = weight_or_cos.detach().to("cpu", _compute_dtype(weight_or_cos.dtype))
    else:
        cos = cosine_similarity_matrix(weight_or_cos).cpu()
    if reorder:
        perm = condensation_order(cos, threshold)
        cos = cos[perm][:, perm]
    if ax is None:
        fig = Figure(figsize=(4.0, 3.4), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    image = ax.imshow(
        cos.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="equal"
    )
    label = "neuron (reordered)" if reorder else "neuron"
    ax.set_xlabel(label)
    ax.set_ylabel(label)
    if title is not None:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, label="cosine similarity")
    return fig
