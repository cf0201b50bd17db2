"""Counter-based random streams: random numbers that are a pure function of a key and an index.

KITINet and KO draw a random unit direction for every accepted pair of particles. With a sequential
generator, which numbers a pair receives depends on how many pairs were accepted before it, i.e. on
other systems' data: changing a future token would change the directions of past tokens, and every
later draw of the generator (dropout) with them. Here a direction is computed from
``(key, pair index)`` alone, the way Philox-style counter-based generators work: ``key`` names the
stream (seed, module, call, rank, see :func:`stream_key`) and the pair's flat index (system, i, j)
is the counter. The result depends on nothing else: not on the other pairs, the chunking, the
device's generator state or the global RNG, which is never touched.

The arithmetic is exact integer arithmetic on 32-bit words, held as their two's-complement bit
patterns in int32 tensors: products wrap modulo 2^32 as the hash requires, so every backend
computes the same bits. The mixing function is the two-round multiply-xorshift integer hash with
multiplier 0x45d9f3b (full avalanche on 32 bits); each pair gets two independent 32-bit hashes of
its 64-bit index, one for the radii and one for the angles of a Box-Muller transform, so two pairs
share a direction only if both hashes collide (probability ~2^-64). Uniforms carry 24 bits, are
never 0 or 1, and the Gaussians are exact Box-Muller transforms of them; their directions are
uniform on the sphere.

Speed (CPU): the words are hashed block by block in reused buffers that stay in cache, with the
index hashes computed once per call; every elementwise pass runs on contiguous tensors (strided
in-place products were the slowest step) and only the final products write the interleaved
(cos, sin) columns. int32 words take half the memory traffic of int64 and multiply natively.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

__all__ = ["normal_directions", "normals", "stream_key"]

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_MULTIPLIER = 0x45D9F3B  # < 2^31: an int32 scalar
_SALT = (0x2545F491, 0x5BD1E995, 0x27D4EB2F)  # separate the radius, angle and normal streams

# Words (pairs x coordinates, radius and angle halves) hashed per block and intra-op thread (up to
# 8): int32 buffers of 512 KiB per thread stay in its cache, which makes the dozen elementwise
# passes several times faster than over one large tensor, and blocks big enough for every thread
# keep the per-op overhead small (2 threads: 2^18 words ~8% faster than 2^17; 1 thread: 2^17
# ~8% faster than 2^18). Results do not depend on it.
_BLOCK_ELEMENTS = 1 << 17


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


def _xorshift(word: int) -> int:
    return word ^ (word >> 16)


def _mix32(word: int) -> int:
    """The hash of one 32-bit word as a Python integer (for constants)."""
    for _ in range(2):
        word = (_xorshift(word) * _MULTIPLIER) & _MASK32
    return _xorshift(word)


def _signed(word: int) -> int:
    """The int32 value with the bits of the 32-bit word ``word``."""
    return word - (1 << 32) if word >> 31 else word


@functools.cache
def _const(value: float, dtype: torch.dtype) -> Tensor:
    """``value`` as a 0-d CPU tensor of ``dtype``: the operand of elementwise ops on any device,
    about 1.5 us per op cheaper than a Python number (no scalar conversion per call)."""
    return torch.tensor(value, dtype=dtype)


def _xorshift_(x: Tensor, tmp: Tensor) -> Tensor:
    """``x ^= x >> 16`` on the 32-bit words of int32 tensor ``x``, shifting logically (the
    arithmetic shift's copies of the sign bit are masked off); ``tmp``: a buffer like ``x``."""
    torch.bitwise_right_shift(x, _const(16, torch.int32), out=tmp)
    tmp.bitwise_and_(_const(0xFFFF, torch.int32))
    return x.bitwise_xor_(tmp)


def _mix_(x: Tensor, tmp: Tensor, *, first_xorshift: bool = True) -> Tensor:
    """Hash the 32-bit words of int32 tensor ``x`` in place (products wrap modulo 2^32);
    ``first_xorshift=False`` when ``x`` already had its first xorshift."""
    multiplier = _const(_MULTIPLIER, torch.int32)
    if first_xorshift:
        _xorshift_(x, tmp)
    x.mul_(multiplier)
    _xorshift_(x, tmp).mul_(multiplier)
    return _xorshift_(x, tmp)


def _words(t: Tensor) -> Tensor:
    """The low 32-bit words of int64 tensor ``t`` as int32 bit patterns (exact conversion)."""
    return t.bitwise_and(_MASK32).bitwise_xor_(1 << 31).sub_(1 << 31).to(torch.int32)


def _index_hashes(key: tuple[int, int], index: Tensor) -> Tensor:
    """(2, K) int32: the radius (row 0) and angle (row 1) hashes of the 64-bit indices (K,) under
    ``key``: ``hash(hash(low ^ k0) ^ high ^ k1)`` with the key words salted per row."""
    salted = [[_signed(_mix32(word ^ salt)) for salt in _SALT[:2]] for word in key]
    k0, k1 = (torch.tensor(w, dtype=torch.int32, device=index.device).view(2, 1) for w in salted)
    high = torch.bitwise_right_shift(index, 32).to(torch.int32)  # < 2^31: indices are >= 0
    h = torch.bitwise_xor(_words(index), k0)  # (2, K)
    tmp = torch.empty_like(h)
    _mix_(h, tmp)
    h.bitwise_xor_(high).bitwise_xor_(k1)
    return _mix_(h, tmp)


def _counter_hashes(m: int, device: torch.device) -> Tensor:
    """(2, m) int32: the hash of counter ``2c + half + 1`` for coordinate pair c, radius and angle
    halves, after the first xorshift of the words they enter (see :func:`normals`)."""
    words = [[_xorshift(_mix32(c * 2 + half + 1)) for c in range(m)] for half in range(2)]
    signed = [[_signed(w) for w in row] for row in words]
    return torch.tensor(signed, dtype=torch.int32, device=device)


def normals(key: tuple[int, int], index: Tensor, d: int, dtype: torch.dtype) -> Tensor:
    """Standard normal vectors (K, d), row ``r`` a function of ``(key, index[r])`` only.

    Coordinates ``2c`` and ``2c + 1`` of row r are ``rho cos(theta)`` and ``rho sin(theta)`` with
    ``rho = sqrt(-2 log u)``, ``theta = 2 pi u'``, and ``u``, ``u'`` the 24-bit uniforms of the
    words ``hash(h ^ hash(2c + 1))`` and ``hash(h' ^ hash(2c + 2))``, h and h' the radius and
    angle hashes of ``index[r]`` (a last odd coordinate drops its sine).

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
    k_all, device = index.shape[0], index.device
    out = torch.empty(k_all, d, dtype=dtype, device=device)
    if k_all == 0 or d == 0:
        return out
    m = (d + 1) // 2
    # The words' first xorshift distributes over the xor that forms them (both are linear over
    # GF(2)): xorshift(h ^ c) = xorshift(h) ^ xorshift(c), applied once per index and constant.
    heads = _index_hashes(key, index)
    _xorshift_(heads, torch.empty_like(heads))
    counters = _counter_hashes(m, device).view(2, 1, m)
    step = max(1, _BLOCK_ELEMENTS * min(torch.get_num_threads(), 8) // (2 * m))
    size = 2 * min(step, k_all) * m
    words_buf = torch.empty(size, dtype=torch.int32, device=device)
    tmp_buf = torch.empty_like(words_buf)
    u_buf = torch.empty(size, dtype=dtype, device=device)
    cos_buf = torch.empty(size // 2, dtype=dtype, device=device)
    for start in range(0, k_all, step):
        k = min(step, k_all - start)
        words = words_buf[: 2 * k * m].view(2, k, m)
        tmp = tmp_buf[: 2 * k * m].view(2, k, m)
        torch.bitwise_xor(heads[:, start : start + k, None], counters, out=words)
        _mix_(words, tmp, first_xorshift=False)
        # 24-bit uniforms in (0, 1): (top 24 bits + 1/2) / 2^24, never 0 or 1
        torch.bitwise_right_shift(words, _const(8, torch.int32), out=tmp)
        tmp.bitwise_and_(_const(0xFFFFFF, torch.int32))
        u = u_buf[: 2 * k * m].view(2, k, m)
        u.copy_(tmp).add_(_const(0.5, dtype)).mul_(_const(2.0**-24, dtype))
        radius = u[0].log_().mul_(_const(-2.0, dtype)).sqrt_()
        angle = u[1].mul_(_const(2.0 * math.pi, dtype))
        rows = out[start : start + k]
        cos = torch.cos(angle, out=cos_buf[: k * m].view(k, m))
        torch.mul(cos, radius, out=rows[:, 0::2])
        sin = angle[:, : d // 2].sin_()
        torch.mul(sin, radius[:, : d // 2], out=rows[:, 1::2])
    return out


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
