"""Tests for kinetics.metrics (SPEC §1.6): cosines, rho, max |cos|, KO App. B.1 ordering, heat map."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kinetics import metrics
from kinetics.metrics import (
    condensation_order,
    cosine_similarity_matrix,
    max_offdiag_abs_cos,
    plot_cosine_heatmap,
    rho,
)

S = 1 / math.sqrt(2)
# Rows: e1, (e1+e2), 2*e2, -e1. Cosines worked out by hand.
HAND_W = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])
HAND_COS = torch.tensor(
    [
        [1.0, S, 0.0, -1.0],
        [S, 1.0, S, -S],
        [0.0, S, 1.0, 0.0],
        [-1.0, -S, 0.0, 1.0],
    ]
)


def test_cosine_matrix_hand_computed() -> None:
    torch.testing.assert_close(cosine_similarity_matrix(HAND_W), HAND_COS)


def test_rho_and_max_hand_computed() -> None:
    # Off-diagonal |cos| in the upper triangle: S, 0, 1, S, S, 0 -> ordered pairs count each twice.
    expected = 2 * (3 * S + 1) / (4 * 3)
    assert rho(HAND_W) == pytest.approx(expected, abs=1e-6)
    assert max_offdiag_abs_cos(HAND_W) == pytest.approx(1.0, abs=1e-6)


def test_cosine_matrix_matches_pairwise_reference() -> None:
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    reference = torch.nn.functional.cosine_similarity(w[:, None, :], w[None, :, :], dim=-1)
    cos = cosine_similarity_matrix(w)
    torch.testing.assert_close(cos, reference, atol=1e-6, rtol=0)
    assert torch.equal(cos, cos.T)


def test_conv_weight_rows_are_flattened_filters() -> None:
    w = torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(cosine_similarity_matrix(w), cosine_similarity_matrix(w.flatten(1)))
    assert rho(w, per_channel=False) == pytest.approx(rho(w.flatten(1)), abs=1e-7)


def test_invariance_to_row_scaling() -> None:
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(8, 4, generator=gen)
    scale = torch.rand(8, 1, generator=gen) * 100 + 0.01
    sign = torch.tensor([1.0, -1, 1, 1, -1, 1, -1, 1])[:, None]
    torch.testing.assert_close(cosine_similarity_matrix(w * scale), cosine_similarity_matrix(w))
    # A sign flip of neuron i flips row and column i of the cosines; |cos| metrics are unchanged.
    flipped = cosine_similarity_matrix(w * scale * sign)
    torch.testing.assert_close(flipped, sign * cosine_similarity_matrix(w) * sign.T)
    assert rho(w * scale * sign) == pytest.approx(rho(w), abs=1e-6)
    assert max_offdiag_abs_cos(w * scale * sign) == pytest.approx(max_offdiag_abs_cos(w), abs=1e-6)


@pytest.mark.parametrize("magnitude", [1e-30, 1e30])
def test_extreme_magnitudes_do_not_underflow_or_overflow(magnitude: float) -> None:
    # Squares of 1e-30 underflow and of 1e30 overflow in float32: a naive norm gives 0 or inf.
    w = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(cosine_similarity_matrix(w * magnitude), cosine_similarity_matrix(w))


def test_permutation_equivariance() -> None:
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(9, 3, 3, 3, generator=gen)
    perm = torch.randperm(9, generator=gen)
    cos = cosine_similarity_matrix(w)
    torch.testing.assert_close(cosine_similarity_matrix(w[perm]), cos[perm][:, perm])
    assert rho(w[perm]) == pytest.approx(rho(w), abs=1e-6)
    # Def. I.2 is also invariant to permuting input channels.
    channel_perm = torch.randperm(3, generator=gen)
    assert rho(w[:, channel_perm]) == pytest.approx(rho(w), abs=1e-6)


def test_zero_rows_have_zero_cosine_everywhere() -> None:
    w = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    cos = cosine_similarity_matrix(w)
    expected = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    assert torch.equal(cos, expected)
    assert not cos.isnan().any()
    # Only the pair (0, 2) is similar: 2 of the 6 ordered pairs.
    assert rho(w) == pytest.approx(1 / 3, abs=1e-7)
    assert rho(torch.zeros(4, 3)) == 0.0
    assert max_offdiag_abs_cos(torch.zeros(4, 3)) == 0.0


def _rho_conv_literal(w: torch.Tensor) -> float:
    """KITINet Eq. 18 written out with plain loops (float64)."""
    n, channels = w.shape[0], w.shape[1]
    total = 0.0
    for i, j in itertools.permutations(range(n), 2):
        for z in range(channels):
            a = w[i, z].flatten().double()
            b = w[j, z].flatten().double()
            denominator = a.norm() * b.norm()
            if denominator > 0:
                total += abs(float(a @ b / denominator))
    return total / (n * (n - 1) * channels)


def test_conv_rho_matches_literal_triple_loop() -> None:
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(5, 4, 3, 3, generator=gen)
    w[2, 1] = 0.0  # a zero kernel vector: cosine 0 by convention
    w[3] = w[0] * -2.0  # a fully anti-aligned filter
    assert rho(w) == pytest.approx(_rho_conv_literal(w), abs=1e-6)
    # Conv1d weights (out, in, k) follow the same definition.
    w1 = torch.randn(4, 3, 5, generator=gen)
    assert rho(w1) == pytest.approx(_rho_conv_literal(w1), abs=1e-6)


def test_conv_rho_differs_from_flattened_rows() -> None:
    # Def. I.2 is per channel: filters equal up to a per-channel sign have |cos| = 1 at every
    # channel, while the flattened filters are orthogonal.
    a = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]]).reshape(1, 2, 1, 2)
    b = a.clone()
    b[0, 1] *= -1
    w = torch.cat([a, b])
    assert rho(w) == pytest.approx(1.0, abs=1e-6)
    assert rho(w, per_channel=False) == pytest.approx(abs(float(1 * 1 + 4 - 9 - 16)) / 30, abs=1e-6)


def test_conv_rho_chunking_matches_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    w = torch.randn(6, 7, 3, 3, generator=torch.Generator().manual_seed(6))
    whole = rho(w)
    monkeypatch.setattr(metrics, "_MAX_BLOCK_ELEMENTS", 2 * 6 * 6)  # chunks of 2 channels
    assert rho(w) == pytest.approx(whole, abs=1e-7)


def test_single_neuron_is_defined_as_zero() -> None:
    assert rho(torch.randn(1, 5)) == 0.0
    assert rho(torch.randn(1, 3, 3, 3)) == 0.0
    assert max_offdiag_abs_cos(torch.randn(1, 5)) == 0.0
    assert cosine_similarity_matrix(torch.randn(1, 5)).tolist() == [[1.0]]


def test_dtypes() -> None:
    w = torch.randn(6, 4, generator=torch.Generator().manual_seed(7))
    cos64 = cosine_similarity_matrix(w.double())
    assert cos64.dtype == torch.float64
    torch.testing.assert_close(cos64, cosine_similarity_matrix(w).double(), atol=1e-6, rtol=0)
    for half in (torch.bfloat16, torch.float16):
        low = w.to(half)
        cos = cosine_similarity_matrix(low)
        assert cos.dtype == torch.float32
        # Computed in float32 from the exact (upcast) half values, not in half precision.
        torch.testing.assert_close(cos, cosine_similarity_matrix(low.float()))
        assert rho(low) == pytest.approx(rho(low.float()), abs=1e-6)
    with pytest.raises(TypeError, match="complex"):
        cosine_similarity_matrix(torch.randn(3, 2, dtype=torch.complex64))


def test_accepts_parameters_that_require_grad() -> None:
    layer = torch.nn.Linear(4, 5)
    cos = cosine_similarity_matrix(layer.weight)
    assert not cos.requires_grad
    assert 0.0 <= rho(layer.weight) <= 1.0


def test_ordering_is_a_permutation() -> None:
    gen = torch.Generator().manual_seed(8)
    for n in (1, 2, 17, 50):
        cos = cosine_similarity_matrix(torch.randn(n, 3, generator=gen))
        for threshold in (0.0, 0.6, 0.99):
            order = condensation_order(cos, threshold)
            assert order.dtype == torch.long
            assert torch.equal(order.sort().values, torch.arange(n))
    assert torch.equal(condensation_order(cos), condensation_order(cos.clone()))


def test_ordering_hand_example() -> None:
    # 0 ~ 2 (0.9); 3 and 4 anti-aligned with 0 (4 more so); 3 ~ 4; 1 unrelated; 5 ~ 1.
    cos = torch.eye(6)
    pairs = {(0, 2): 0.9, (0, 3): -0.7, (0, 4): -0.8, (3, 4): 0.8, (1, 5): 0.7, (2, 4): -0.5}
    for (i, j), value in pairs.items():
        cos[i, j] = cos[j, i] = value
    # ref 0 -> {2}; most negative unassigned is 4 -> new ref 4 -> {3}; then ref 1 -> {5}.
    assert condensation_order(cos).tolist() == [0, 2, 4, 3, 1, 5]
    # At a stricter threshold nothing groups and the order is the identity.
    assert condensation_order(cos, threshold=0.95).tolist() == list(range(6))


def test_ordering_recovers_planted_blocks() -> None:
    gen = torch.Generator().manual_seed(9)
    centres = torch.linalg.qr(torch.randn(8, 8, generator=gen)).Q[:, :3].T  # 3 orthonormal rows
    sizes = [(0, 1.0, 7), (1, 1.0, 5), (2, 1.0, 6), (0, -1.0, 4)]  # the last: anti-aligned to 0
    rows, labels = [], []
    for label, (centre, sign, size) in enumerate(sizes):
        rows.append(sign * centres[centre] + 0.05 * torch.randn(size, 8, generator=gen))
        labels += [label] * size
    w = torch.cat(rows)
    shuffle = torch.randperm(w.shape[0], generator=gen)
    w, labels = w[shuffle], torch.tensor(labels)[shuffle]
    ordered = labels[condensation_order(cosine_similarity_matrix(w))].tolist()
    runs = [key for key, _ in itertools.groupby(ordered)]
    assert sorted(runs) == [0, 1, 2, 3], f"blocks are not contiguous: {ordered}"
    # The anti-aligned cluster is placed right beside cluster 0.
    assert abs(runs.index(0) - runs.index(3)) == 1


def test_ordering_rejects_non_square() -> None:
    with pytest.raises(ValueError, match="square"):
        condensation_order(torch.zeros(3, 4))


def test_heatmap_writes_png(tmp_path) -> None:
    w = torch.randn(12, 5, generator=torch.Generator().manual_seed(10))
    fig = plot_cosine_heatmap(w, title="hidden")
    path = tmp_path / "heatmap.png"
    fig.savefig(path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert fig.axes[0].get_title() == "hidden"
    assert len(fig.axes) == 2  # heat map and colorbar


def test_heatmap_shows_reordered_matrix_and_accepts_cosines() -> None:
    from matplotlib.figure import Figure

    w = torch.randn(10, 3, generator=torch.Generator().manual_seed(11))
    cos = cosine_similarity_matrix(w)
    order = condensation_order(cos)
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert plot_cosine_heatmap(w, ax=axes[0], colorbar=False) is fig
    plot_cosine_heatmap(cos, ax=axes[1], colorbar=False)  # detected as a cosine matrix
    plot_cosine_heatmap(w, ax=axes[2], colorbar=False, reorder=False)
    shown = [torch.as_tensor(ax.images[0].get_array().data) for ax in axes]
    torch.testing.assert_close(shown[0], cos[order][:, order])
    torch.testing.assert_close(shown[1], shown[0])
    torch.testing.assert_close(shown[2], cos)
    assert len(fig.axes) == 3  # no colorbars were added
