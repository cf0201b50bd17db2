"""Counter-based random streams: random numbers that are a pure function of a key and an index.

KITINet and KO draw a random unit direction for every accepted pair of particles. With a sequential
generator, which numbers a pair receives depends on how many pairs were accepted before it, i.e. on
other systems' data: changing a future token would change the directions of past tokens, and every
later draw of the generator (dropout) with them. Here a direction is computed from
``(key, pair index)`` alone, the way Philox-style counter-based generators work: ``key`` names the
stream (seed, module, call, rank, see :func:`stream_key`) and the pair's flat index (system, i, j)
is the counter. The result depends on nothing else: not on the other pairs, the chunking, the
device's generator state or the global RNG, which is never touched.

The arithmetic is exact integer arithmetic on int64 tensors holding 32-bit words (products of a
32-bit word and a 31-bit constant stay below 2^63), so every backend computes the same bits. The
mixing function is the two-round multiply-xorshift integer hash with multiplier 0x45d9f3b (full
avalanche on 32 bits); each pair gets two independent 32-bit hashes of its 64-bit index, one for the
radii and one for the angles of a Box-Muller transform, so two pairs share a direction only if
both hashes collide (probability ~2^-64). Uniforms carry 24 bits, are never 0 or 1, and the
Gaussians are exact Box-Muller transforms of them; their directions are uniform on the sphere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["normal_directions", "normals", "stream_key"]

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_MULTIPLIER = 0x45D9F3B  # < 2^31: a 32-bit word times it is exact in int64
_SALT = (0x2545F491, 0x5BD1E995, 0x27D4EB2F)  # separate the radius, angle and normal streams

# Elements (pairs x coordinates) hashed per block: int64 buffers of 2 MiB stay in cache, which
# makes the dozen in-place integer passes several times faster than over one large tensor.
_BLOCK_ELEMENTS = 1 << 18


def _splitmix64(state: int) -> int:
    z = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(*parts: int) -> tuple[int, int]:
    """The key of the stream named by integers ``parts`` (e.g. seed, module, call, rank): two 32-bit
    words, a 64-bit hash of the parts in order (any integers, negative ones included)."""
    state = 0
    for part in parts:
        state = _splitmix64(state ^ (int(part) & _MASK64))
    return state & _MASK32, state >> 32


def _mix32(word: int) -> int:
    """:func:`_mix_` of one Python integer (for constants)."""
    for _ in range(2):
        word = ((word ^ (word >> 16)) * _MULTIPLIER) & _MASK32
    return word ^ (word >> 16)


def _mix_(x: Tensor, tmp: Tensor) -> Tensor:
    """Hash the 32-bit words of int64 tensor ``x`` in place (``tmp``: a buffer of its shape)."""
    for _ in range(2):
        x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))
        x.mul_(_MULTIPLIER).bitwise_and_(_MASK32)
    return x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))


def _index_hashes(key: tuple[int, int], index: Tensor, salt: int) -> Tensor:
    """One 32-bit hash per 64-bit index (int64 tensor) under ``key`` and ``salt``."""
    k0, k1 = _mix32(key[0] ^ salt), _mix32(key[1] ^ salt)
    h = index.bitwise_and(_MASK32).bitwise_xor_(k0)
    tmp = torch.empty_like(h)
    _mix_(h, tmp)
    h.bitwise_xor_(torch.bitwise_right_shift(index, 32, out=tmp).bitwise_xor_(k1))
    return _mix_(h, tmp)


def _uniforms(words: Tensor, dtype: torch.dtype) -> Tensor:
    """24-bit uniforms in (0, 1) from 32-bit words: (top 24 bits + 1/2) / 2^24, never 0 or 1."""
    return words.bitwise_right_shift_(8).to(dtype).add_(0.5).mul_(2.0**-24)


def _box_muller(key: tuple[int, int], index: Tensor, m: int, dtype: torch.dtype) -> Tensor:
    """Standard normals (K, 2m) for indices (K,): ``m`` radius and ``m`` angle uniforms each,
    coordinate ``2c`` is ``r_c cos(theta_c)`` and ``2c + 1`` is ``r_c sin(theta_c)``."""
    k = index.shape[0]
    heads = torch.stack([_index_hashes(key, index, _SALT[0]), _index_hashes(key, index, _SALT[1])])
    counters = torch.tensor(
        [[_mix32(c * 2 + half + 1) for c in range(m)] for half in range(2)], device=index.device
    )
    words = heads.view(2, k, 1).bitwise_xor(counters.view(2, 1, m))  # (2, K, m)
    _mix_(words, torch.empty_like(words))
    u = _uniforms(words, dtype)
    radius = u[0].log_().mul_(-2.0).sqrt_()
    angle = u[1].mul_(2.0 * math.pi)
    out = torch.empty(k, m, 2, dtype=dtype, device=index.device)
    torch.cos(angle, out=out[..., 0]).mul_(radius)
    torch.sin(angle, out=out[..., 1]).mul_(radius)
    return out.view(k, 2 * m)


def normals(key: tuple[int, int], index: Tensor, d: int, dtype: torch.dtype) -> Tensor:
    """Standard normal vectors (K, d), row ``r`` a function of ``(key, index[r])`` only.

    Args:
        key: stream key from :func:`stream_key`.
        index: int64 tensor (K,) of non-negative counters, e.g. flat pair indices.
        d: coordinates per row.
        dtype: float32 or float64 (half precision callers compute in float32).
    """
    if index.dtype != torch.int64 or index.dim() != 1:
        raise ValueError(
            f"index must be a 1-d int64 tensor, got {index.dtype} {tuple(index.shape)}"
        )
    m = (d + 1) // 2
    step = max(1, _BLOCK_ELEMENTS // (2 * m))
    blocks = [
        _box_muller(key, index[start : start + step], m, dtype)[:, :d]
        for start in range(0, index.shape[0], step)
    ]
    if not blocks:
        return torch.empty(0, d, dtype=dtype, device=index.device)
    return torch.cat(blocks) if len(blocks) > 1 else blocks[0].contiguous()


def normal_directions(
    key: tuple[int, int], index: Tensor, d: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Directions uniform on the unit sphere in ``d`` dimensions, one per counter of ``index``.

    Returns ``(z, inv_norm)``: standard normals (K, d) (see :func:`normals`) and ``1 / |z|`` (K, 1);
    the unit vectors are ``z * inv_norm`` (kept apart so callers can fold the scaling into their
    own products).
    """
    z = normals(key, index, d, dtype)
    tiny = torch.finfo(dtype).tiny
    inv_norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min_(tiny).reciprocal_()
    return z, inv_norm
