"""The bits of kinetics.streams: its output is pinned to a plain restatement of the algorithm
documented in the module (int64 words, one index at a time per operation, no blocks), so any
speed-up of the implementation must reproduce it exactly, for every block size and thread count.
"""

from __future__ import annotations

import math

import pytest
import torch

from kinetics import streams
from kinetics.streams import normal_directions, normals, stream_key

MASK32 = 0xFFFFFFFF
MULTIPLIER = 0x45D9F3B
SALT = (0x2545F491, 0x5BD1E995)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """The two-round multiply-xorshift hash of 32-bit words held in int64 (a new tensor)."""
    for _ in range(2):
        x = ((x ^ (x >> 16)) * MULTIPLIER) & MASK32
    return x ^ (x >> 16)


def _mix_int(word: int) -> int:
    return int(_mix(torch.tensor([word], dtype=torch.int64))[0])


def reference_normals(
    key: tuple[int, int], index: torch.Tensor, d: int, dtype: torch.dtype
) -> torch.Tensor:
    """Row r: Box-Muller normals of the words hash(hash(index_r) ^ hash(c)) of index r under key."""
    m = (d + 1) // 2
    lo, hi = index & MASK32, index >> 32
    heads = []
    for salt in SALT:
        k0, k1 = _mix_int(key[0] ^ salt), _mix_int(key[1] ^ salt)
        heads.append(_mix(_mix(lo ^ k0) ^ hi ^ k1))
    columns = []
    for c in range(m):
        words = [_mix(h ^ _mix_int(2 * c + half + 1)) for half, h in enumerate(heads)]
        u_radius, u_angle = (((w >> 8).to(dtype) + 0.5) * 2.0**-24 for w in words)
        radius = torch.sqrt(torch.log(u_radius) * -2.0)
        angle = u_angle * (2.0 * math.pi)
        columns += [torch.cos(angle) * radius, torch.sin(angle) * radius]
    return torch.stack(columns, dim=-1)[:, :d]


def _indices(count: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, 2**62, (count,), generator=gen)
    index[:4] = torch.tensor([0, 1, 2**32 - 1, 2**63 - 1])  # word boundaries and the maximum
    return index


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 2, 3, 12, 13, 48])
def test_normals_match_the_reference_bit_for_bit(d: int, dtype: torch.dtype) -> None:
    index = _indices(3000, seed=d)
    for key in ((0, 0), (MASK32, 0x12345678), stream_key(7, 1, 3, 0)):
        assert torch.equal(normals(key, index, d, dtype), reference_normals(key, index, d, dtype))


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 12])
def test_normals_do_not_depend_on_blocks(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    index = _indices(2000 if block > 1 else 100, seed=1)
    key = stream_key(3, 2, 1, 0)
    expected = {d: reference_normals(key, index, d, torch.float32) for d in (5, 12)}
    monkeypatch.setattr(streams, "_BLOCK_ELEMENTS", block)
    for d, want in expected.items():
        assert torch.equal(normals(key, index, d, torch.float32), want), d


def test_normals_do_not_depend_on_threads() -> None:
    # Large enough for every elementwise op to be split between two threads (and their tails).
    index = _indices(60_001, seed=4)
    key = stream_key(5)
    want = reference_normals(key, index, 12, torch.float32)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(normals(key, index, 12, torch.float32), want), threads
    finally:
        torch.set_num_threads(previous)


def test_rows_are_functions_of_their_own_index() -> None:
    index = _indices(500, seed=2)
    key = stream_key(1)
    full = normals(key, index, 7, torch.float64)
    order = torch.randperm(index.numel(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(normals(key, index[order], 7, torch.float64), full[order])
    assert torch.equal(normals(key, index[123:124], 7, torch.float64), full[123:124])
    assert normals(key, index[:0], 7, torch.float64).shape == (0, 7)


def test_normal_directions_are_unit_after_scaling() -> None:
    index = _indices(1000, seed=3)
    z, inv_norm = normal_directions(stream_key(2), index, 12, torch.float32)
    assert torch.equal(z, normals(stream_key(2), index, 12, torch.float32))
    unit = z * inv_norm
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(1000), rtol=1e-6, atol=0)
