"""Deterministic data generators for the KITINet PDE benchmarks (KITINet App. F; SPEC §3 Table 4).

Three periodic problems on the unit domain, solved in float64 with ``torch.fft`` (CPU or GPU):

* **Burgers 1D** (:func:`solve_burgers`): ``u_t + (u²/2)_x = nu u_xx``, ``nu = 0.1``, on (0, 1).
  Pseudo-spectral in space, ETDRK4 in time (Cox-Matthews; coefficients by the Kassam-Trefethen
  contour integral, so the stiff viscous term is integrated exactly and ``dt`` is set by accuracy,
  not stability). The data map ``u0 -> u(·, 1)`` with ``u0 ~ N(0, 625(-Δ+25I)^-2)``.
* **Navier-Stokes 2D** (:func:`solve_navier_stokes`), vorticity form on the unit torus:
  ``w_t + u·∇w = nu Δw + f``, ``nu = 1e-3``, ``f = 0.1(sin 2π(x+y) + cos 2π(x+y))``,
  ``w0 ~ N(0, 7^1.5(-Δ+49I)^-2.5)``. Crank-Nicolson for the viscous term, Heun (explicit RK2) for
  advection and forcing, velocity from the stream function (``-Δψ = w``, ``u = (ψ_y, -ψ_x)``).
* **Heat 2D** (:func:`solve_heat`), KITINet App. F.3: ``u_t = alpha Δu + q``, ``alpha = 1e-4``,
  solved exactly per Fourier mode. The paper's source "``q|∂Ω = 0.1``" names a boundary, which a
  torus does not have; we use the constant source ``q = 0.1`` by default (any smooth periodic field
  can be passed), so the data are ``e^{alpha Δ t} u0 + 0.1 t``.

Dealiasing: quadratic products are computed on the grid and every wave number with
``|k_i| > (n - 1) // 3`` is removed from the nonlinear term (Orszag's 2/3 rule: for those cut-offs
no product of two retained modes aliases back onto a retained mode).

Random initial fields (:class:`GRFSpec`): ``N(0, sigma2 (-Δ + tau² I)^-alpha)`` with the
eigenvalues ``4π²|k|² + tau²`` of ``-Δ + tau² I`` on the unit torus. The literal measure keeps the
``k = 0`` mode (a random mean); ``convention="fno"`` (:func:`ns_grf`) gives the FNO authors'
public NS sampler: zero mean and ``sigma2 = 2·7^3`` instead of ``7^1.5``, i.e. about 37x the
literal per-mode variance.
Fields are drawn at the fine resolution, solved there, and only the results are subsampled
(pointwise, every ``fine // r``-th grid point), as SPEC §3 asks.

Determinism: sample ``i`` of seed ``s`` comes from its own CPU ``torch.Generator`` seeded with a
hash of ``(s, i)`` (:func:`sample_seed`). The same call gives bitwise-identical tensors; a sample's
noise does not depend on the batch size, ``n_samples``, ``start_index`` or the device, and its
solution only up to floating-point rounding (batched FFTs round differently), so a data set can be
generated in chunks (``start_index``).

Measured costs (this machine, 2 CPU threads, float64, default settings; the metadata of every data
set records its own): Burgers at 8192 points, 500 ETDRK4 steps: ~0.11 s/sample (1100 samples:
~2 min). NS at 256², T = 20 with dt = 5e-3 (4000 Heun-CN steps, ~3.5 ms each): ~14 s/sample on an
idle machine (1200 samples: ~5 h; up to 3x more when the cores are shared; batching does not help
on CPU, hence ``batch_size=1``). Heat (exact): ~0.03 s/sample.

Tensor layouts (channels-last, as the FNO models in :mod:`experiments.pde.models` expect):
Burgers ``a_{r}``, ``u_{r}``: ``(N, r)``; NS and Heat ``a_{r}``: ``(N, r, r)`` (the field at
``t = 0``) and ``u_{r}``: ``(N, r, r, T)`` at ``t = 1, ..., T`` (stored in ``t``). Grid points are
``x_j = j / r``; the first array axis is ``x``, the second ``y``.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "BURGERS_DEFAULTS",
    "HEAT_DEFAULTS",
    "NS_DEFAULTS",
    "GRFSpec",
    "burgers_grf",
    "dealias_cutoff",
    "generate_burgers",
    "generate_heat",
    "generate_navier_stokes",
    "grf_from_noise",
    "library_versions",
    "navier_stokes_rhs",
    "ns_forcing",
    "ns_grf",
    "sample_grf",
    "sample_seed",
    "solve_burgers",
    "solve_heat",
    "solve_navier_stokes",
    "subsample",
    "wavenumbers",
    "white_noise",
]

DTYPE = torch.float64
TWO_PI = 2.0 * math.pi

# Defaults of the three data sets (the papers' parameters; dt values chosen by the convergence
# measurements quoted in each solver's docstring).
BURGERS_DEFAULTS: dict[str, Any] = {
    "nu": 0.1,
    "t_final": 1.0,
    "dt": 2e-3,
    "fine": 8192,
    "resolutions": (1024,),
}
NS_DEFAULTS: dict[str, Any] = {
    "nu": 1e-3,
    "t_final": 20,
    "dt": 5e-3,
    "fine": 256,
    "resolutions": (64, 32),
}
HEAT_DEFAULTS: dict[str, Any] = {
    "alpha": 1e-4,
    "source": 0.1,
    "t_final": 20,
    "fine": 256,
    "resolutions": (64, 32),
}


# --------------------------------------------------------------------------------------------
# Grids, wave numbers, random fields
# --------------------------------------------------------------------------------------------


def wavenumbers(n: int, dim: int, device: torch.device | str | None = None) -> list[Tensor]:
    """Integer wave numbers of an ``rfftn`` over the last ``dim`` axes of an ``n^dim`` grid.

    Returns one tensor per axis, shaped to broadcast against the ``rfftn`` output
    (``(n, 1, n//2+1)`` layout in 2D): leading axes use ``fftfreq``, the last axis ``rfftfreq``.
    """
    ks = []
    for axis in range(dim):
        if axis == dim - 1:
            k = torch.fft.rfftfreq(n, d=1.0 / n, dtype=DTYPE, device=device)
        else:
            k = torch.fft.fftfreq(n, d=1.0 / n, dtype=DTYPE, device=device)
        shape = [1] * dim
        shape[axis] = k.numel()
        ks.append(k.reshape(shape))
    return ks


def dealias_cutoff(n: int) -> int:
    """Largest ``|k|`` kept by the 2/3 rule on ``n`` points: products of kept modes never alias."""
    return (n - 1) // 3


@dataclass(frozen=True)
class GRFSpec:
    """Gaussian random field ``N(0, sigma2 (-Δ + tau² I)^-alpha)`` on the periodic ``[0, 1)^d``.

    Mode ``k`` (integer vector) has variance ``sigma2 (4π²|k|² + tau²)^-alpha``; the pointwise
    variance is the sum of these over the grid's modes (:meth:`analytic_variance`).
    ``include_mean=False`` drops the ``k = 0`` mode (zero-mean fields). ``convention`` is only a
    label recorded in metadata ("literal", "fno", or anything for custom amplitudes).
    """

    alpha: float
    tau: float
    sigma2: float
    include_mean: bool = True
    convention: str = "literal"

    def mode_variance(self, ks: Sequence[Tensor], n: int) -> Tensor:
        """Per-mode variances on an ``n^d`` grid (``rfftn`` layout of ``ks``).

        Modes with ``|k_i| = n/2`` on any axis (even ``n``) get 0: on the grid the Nyquist mode
        has no sine partner, so it cannot carry the measure's isotropic variance; the truncation
        is at the fine resolution, where these modes are negligible.
        """
        k2 = sum(k**2 for k in ks)
        var = self.sigma2 * (4.0 * math.pi**2 * k2 + self.tau**2) ** (-self.alpha)
        keep = torch.ones_like(var, dtype=torch.bool)
        for k in ks:
            keep = keep & (k.abs() < n / 2)
        if not self.include_mean:
            keep = keep & (k2 > 0)
        return torch.where(keep, var, torch.zeros_like(var))

    def analytic_variance(self, n: int, dim: int) -> float:
        """Pointwise variance of a field drawn on an ``n^dim`` grid: the sum over its modes."""
        # Sum over the full (not the rfft half) spectrum: fftfreq on every axis.
        full = torch.fft.fftfreq(n, d=1.0 / n, dtype=DTYPE)
        grids = torch.meshgrid(*([full] * dim), indexing="ij")
        return float(self.mode_variance(list(grids), n).sum())


def burgers_grf() -> GRFSpec:
    """Burgers initial measure ``N(0, 625(-Δ + 25 I)^-2)``, literal (mean mode included)."""
    return GRFSpec(alpha=2.0, tau=5.0, sigma2=625.0, include_mean=True, convention="literal")


def ns_grf(convention: str = "literal") -> GRFSpec:
    """NS / Heat initial measure ``N(0, 7^1.5(-Δ + 49 I)^-2.5)`` in 2D.

    ``"literal"``: the paper's formula, ``k = 0`` included (pointwise std ~0.054 at 256²).
    ``"fno"``: the FNO authors' public sampler, which scales the square root of the eigenvalues by
    ``tau^(alpha - d/2) = 7^1.5`` (so ``sigma2 = 7^3``), draws complex noise and keeps the real
    part of its inverse FFT (another factor 2), and zeroes the mean: ``sigma2 = 2·7^3``, no
    ``k = 0`` mode, i.e. ``2·7^1.5 ≈ 37`` times the literal per-mode variance (std ~0.26).
    """
    tau, alpha, dim = 7.0, 2.5, 2
    if convention == "literal":
        return GRFSpec(alpha, tau, tau**1.5, include_mean=True, convention="literal")
    if convention == "fno":
        return GRFSpec(
            alpha, tau, 2.0 * tau ** (2 * alpha - dim), include_mean=False, convention="fno"
        )
    raise ValueError(f"unknown GRF convention {convention!r} (expected 'literal' or 'fno')")


def sample_seed(seed: int, index: int) -> int:
    """The 63-bit generator seed of sample ``index`` in the stream ``seed`` (batch-independent)."""
    digest = hashlib.sha256(f"kinetics.pde:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def white_noise(shape: Sequence[int], seed: int, indices: Sequence[int]) -> Tensor:
    """Standard normal float64 CPU noise ``(len(indices), *shape)``, one generator per sample."""
    out = torch.empty((len(indices), *shape), dtype=DTYPE)
    for row, index in enumerate(indices):
        gen = torch.Generator().manual_seed(sample_seed(seed, index))
        out[row] = torch.randn(tuple(shape), generator=gen, dtype=DTYPE)
    return out


def grf_from_noise(spec: GRFSpec, noise: Tensor, dim: int) -> Tensor:
    """Colour white noise ``(..., n, ..., n)`` (last ``dim`` axes) into a sample of ``spec``.

    The FFT of real white noise on ``M = n^dim`` points has ``E|ξ̂_k|² = M`` and the Hermitian
    symmetry of a real field, so multiplying by ``sqrt(M var_k)`` and inverting gives a real field
    whose mode ``k`` has variance ``var_k``.
    """
    n = noise.shape[-1]
    axes = tuple(range(-dim, 0))
    if any(noise.shape[a] != n for a in axes):
        raise ValueError(
            f"expected a square grid over the last {dim} axes, got {tuple(noise.shape)}"
        )
    ks = wavenumbers(n, dim, device=noise.device)
    scale = torch.sqrt(n**dim * spec.mode_variance(ks, n))
    spectrum = torch.fft.rfftn(noise.to(DTYPE), dim=axes) * scale
    return torch.fft.irfftn(spectrum, s=(n,) * dim, dim=axes)


def sample_grf(
    spec: GRFSpec,
    n: int,
    dim: int,
    seed: int,
    indices: Sequence[int],
    device: torch.device | str | None = None,
) -> Tensor:
    """Samples ``indices`` of stream ``seed``: ``(len(indices), n, ..., n)`` float64 on ``device``."""
    noise = white_noise((n,) * dim, seed, indices).to(device)
    return grf_from_noise(spec, noise, dim)


def subsample(field: Tensor, resolution: int, dim: int, time_last: bool = False) -> Tensor:
    """Pointwise subsampling of the ``dim`` spatial axes to ``resolution`` points (every s-th)."""
    offset = 1 if time_last else 0
    n = field.shape[-1 - offset]
    if n % resolution:
        raise ValueError(f"resolution {resolution} does not divide the fine grid {n}")
    step = n // resolution
    index: list[slice] = [slice(None)] * field.ndim
    for axis in range(field.ndim - dim - offset, field.ndim - offset):
        index[axis] = slice(None, None, step)
    return field[tuple(index)]


def _intervals(times: Sequence[float], dt: float) -> list[tuple[int, float]]:
    """Split ``0 < t_1 < t_2 < ...`` into ``(steps, h)`` per interval with ``h <= dt``."""
    out, previous = [], 0.0
    for t in times:
        span = float(t) - previous
        if span <= 0:
            raise ValueError(f"record times must be increasing and positive, got {list(times)}")
        steps = max(1, math.ceil(span / dt - 1e-9))
        out.append((steps, span / steps))
        previous = float(t)
    return out


# --------------------------------------------------------------------------------------------
# Burgers 1D: pseudo-spectral + ETDRK4
# --------------------------------------------------------------------------------------------


def _etdrk4_coefficients(lin: Tensor, h: float, points: int = 32) -> tuple[Tensor, ...]:
    """ETDRK4 weights for the diagonal linear operator ``lin`` (Kassam & Trefethen 2005).

    The phi-functions are averaged over a circle of radius 1 around each ``h·lin`` (upper half,
    real part: ``lin`` is real), which avoids the cancellation of the direct formulas near 0.
    """
    theta = math.pi * (torch.arange(1, points + 1, dtype=DTYPE, device=lin.device) - 0.5) / points
    roots = torch.exp(1j * theta)
    z = (h * lin).to(torch.complex128).unsqueeze(-1) + roots
    ez = torch.exp(z)
    q = h * ((torch.exp(z / 2) - 1) / z).mean(-1).real
    f1 = h * ((-4 - z + ez * (4 - 3 * z + z**2)) / z**3).mean(-1).real
    f2 = h * ((2 + z + ez * (z - 2)) / z**3).mean(-1).real
    f3 = h * ((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3).mean(-1).real
    return torch.exp(h * lin), torch.exp(h * lin / 2), q, f1, f2, f3


def solve_burgers(
    u0: Tensor,
    *,
    nu: float = 0.1,
    times: Sequence[float] = (1.0,),
    dt: float = 2e-3,
    dealias: bool = True,
) -> Tensor:
    """Solve viscous Burgers on the periodic unit interval from ``u0`` (``(B, n)``).

    Returns ``(B, len(times), n)`` float64: ``u(·, t)`` at each record time. Each interval between
    record times is split into equal steps of at most ``dt``.

    Time step: ETDRK4 is 4th order; on the 8192 grid with the Burgers measure, max errors at
    ``t = 1`` against ``dt = 2.5e-4`` were 1.9e-7 (dt 1e-2), 1.2e-8 (5e-3), 3.6e-10 (2e-3) and
    4.3e-11 (1e-3), hence the default ``2e-3``: far below float32 storage precision.
    """
    u0 = u0.to(DTYPE)
    n = u0.shape[-1]
    (k,) = wavenumbers(n, 1, device=u0.device)
    wave = TWO_PI * k
    lin = -nu * wave**2
    keep = (k <= dealias_cutoff(n)) if dealias else torch.ones_like(k, dtype=torch.bool)
    # N(v) = -(u²/2)_x in Fourier space, with the 2/3 rule applied to the product.
    grad_half = torch.where(keep, -0.5j * wave, torch.zeros_like(wave, dtype=torch.complex128))

    def nonlinear(v: Tensor) -> Tensor:
        u = torch.fft.irfft(v, n=n)
        return grad_half * torch.fft.rfft(u * u)

    v = torch.fft.rfft(u0)
    cache: dict[float, tuple[Tensor, ...]] = {}
    out = []
    for steps, h in _intervals(times, dt):
        if h not in cache:
            cache[h] = _etdrk4_coefficients(lin, h)
        e, e2, q, f1, f2, f3 = cache[h]
        for _ in range(steps):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(c)
            v = e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc
        out.append(torch.fft.irfft(v, n=n))
    return torch.stack(out, dim=1)


# --------------------------------------------------------------------------------------------
# Navier-Stokes 2D (vorticity): pseudo-spectral, Crank-Nicolson + Heun
# --------------------------------------------------------------------------------------------


def ns_forcing(n: int, amplitude: float = 0.1, device: torch.device | str | None = None) -> Tensor:
    """The papers' forcing ``amplitude (sin 2π(x+y) + cos 2π(x+y))`` on the ``n x n`` grid."""
    x = torch.arange(n, dtype=DTYPE, device=device) / n
    s = TWO_PI * (x[:, None] + x[None, :])
    return amplitude * (torch.sin(s) + torch.cos(s))


class _SpectralOps2D:
    """Wave numbers, inverse Laplacian and 2/3 mask of an ``n x n`` periodic grid."""

    def __init__(self, n: int, device: torch.device, dealias: bool = True) -> None:
        kx, ky = wavenumbers(n, 2, device=device)
        self.n = n
        self.kx, self.ky = TWO_PI * kx, TWO_PI * ky
        self.k2 = self.kx**2 + self.ky**2
        # Inverse of -Δ; the mean mode carries no velocity (see solve_navier_stokes).
        self.inv_lap = torch.where(self.k2 > 0, 1.0 / self.k2.clamp_min(1e-300), 0.0)
        cut = dealias_cutoff(n)
        keep = (kx.abs() <= cut) & (ky.abs() <= cut)
        self.mask = keep if dealias else torch.ones_like(keep)

    def irfft(self, spectrum: Tensor) -> Tensor:
        return torch.fft.irfft2(spectrum, s=(self.n, self.n))

    def velocity(self, w_hat: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, v) = (ψ_y, -ψ_x)`` with ``-Δψ = w``, on the grid."""
        psi = w_hat * self.inv_lap
        return self.irfft(1j * self.ky * psi), self.irfft(-1j * self.kx * psi)


def navier_stokes_rhs(w: Tensor, dealias: bool = True) -> Tensor:
    """The advection term ``-u·∇w`` of a vorticity field ``w`` (``(..., n, n)``), on the grid.

    For tests and diagnostics; the solver works on spectra directly.
    """
    ops = _SpectralOps2D(w.shape[-1], w.device, dealias)
    w_hat = torch.fft.rfft2(w.to(DTYPE))
    return ops.irfft(_advection_hat(ops, w_hat)[0])


def _advection_hat(ops: _SpectralOps2D, w_hat: Tensor) -> tuple[Tensor, Tensor]:
    """Spectrum of ``-u·∇w`` (2/3-dealiased) and the largest ``max(|u|, |v|)`` per batch element."""
    u, v = ops.velocity(w_hat)
    wx = ops.irfft(1j * ops.kx * w_hat)
    wy = ops.irfft(1j * ops.ky * w_hat)
    adv = torch.fft.rfft2(u * wx + v * wy)
    speed = torch.maximum(u.abs().amax(dim=(-2, -1)), v.abs().amax(dim=(-2, -1)))
    return -adv * ops.mask, speed


def solve_navier_stokes(
    w0: Tensor,
    *,
    nu: float = 1e-3,
    forcing: Tensor | None = None,
    times: Sequence[float] = tuple(range(1, 21)),
    dt: float = 5e-3,
    dealias: bool = True,
    max_cfl: float = 1.0,
    on_record: Callable[[float], None] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Solve 2D incompressible NS in vorticity form on the unit torus from ``w0`` (``(B, n, n)``).

    Scheme per step (``L = -nu|k|²``, ``F(w) = -u·∇w + f``):
    ``w* = [(1 + hL/2) w + h F(w)] / (1 - hL/2)``, then
    ``w' = [(1 + hL/2) w + h/2 (F(w) + F(w*))] / (1 - hL/2)``: 2nd order, exact steady state of the
    linear forced problem. Returns ``(w at each record time as (B, n, n, T), info)`` where ``info``
    has ``max_cfl`` = ``max(|u|, |v|) h n`` over all steps. Raises if it exceeds ``max_cfl``
    (the explicit advection would lose accuracy or stability: lower ``dt``).

    The ``k = 0`` mode of ``w`` (nonzero under the literal measure) induces no velocity — a
    periodic velocity field has zero-mean vorticity — and is conserved exactly: it is a constant
    offset riding along.

    Time step: at 256² (FNO amplitude, T = 20) the field at ``dt = 1e-2`` differs from
    ``dt = 2.5e-3`` by 3e-6 of its max and at ``5e-3`` by 6e-7 (64²: 4e-6 / 1e-6 against 5e-4);
    the default ``5e-3`` keeps the time error ~1e-6 relative. The CFL number stays below ~0.3.
    """
    w0 = w0.to(DTYPE)
    n = w0.shape[-1]
    ops = _SpectralOps2D(n, w0.device, dealias)
    f_hat = torch.fft.rfft2(forcing.to(DTYPE).to(w0.device)) if forcing is not None else None
    w_hat = torch.fft.rfft2(w0)
    cfl = 0.0
    out = []
    for (steps, h), t in zip(_intervals(times, dt), times, strict=True):
        explicit = 1.0 - 0.5 * h * nu * ops.k2
        implicit = 1.0 / (1.0 + 0.5 * h * nu * ops.k2)
        for _ in range(steps):
            f0, speed = _advection_hat(ops, w_hat)
            if f_hat is not None:
                f0 = f0 + f_hat
            w_star = (explicit * w_hat + h * f0) * implicit
            f1, _ = _advection_hat(ops, w_star)
            if f_hat is not None:
                f1 = f1 + f_hat
            w_hat = (explicit * w_hat + 0.5 * h * (f0 + f1)) * implicit
            step_cfl = float(speed.max()) * h * n
            cfl = max(cfl, step_cfl)
            if not math.isfinite(step_cfl) or step_cfl > max_cfl:
                raise RuntimeError(
                    f"Navier-Stokes CFL {step_cfl:.3g} exceeds {max_cfl} at n={n}, dt={h:.3g}: "
                    "reduce dt"
                )
        out.append(ops.irfft(w_hat))
        if on_record is not None:
            on_record(float(t))
    return torch.stack(out, dim=-1), {"max_cfl": cfl}


# --------------------------------------------------------------------------------------------
# Heat 2D: exact per Fourier mode
# --------------------------------------------------------------------------------------------


def solve_heat(
    u0: Tensor,
    *,
    alpha: float = 1e-4,
    source: float | Tensor = 0.1,
    times: Sequence[float] = tuple(range(1, 21)),
) -> Tensor:
    """Exact solution of ``u_t = alpha Δu + q`` on the unit torus from ``u0`` (``(B, n, n)``).

    Per mode (``λ = 4π²|k|²``): ``û(t) = e^{-alpha λ t} û(0) + (1 - e^{-alpha λ t}) q̂/(alpha λ)``,
    and ``û_0(t) = û_0(0) + q̂_0 t``. ``source`` is a constant or an ``(n, n)`` field (time
    independent). Returns ``(B, n, n, T)`` float64.
    """
    u0 = u0.to(DTYPE)
    n = u0.shape[-1]
    kx, ky = wavenumbers(n, 2, device=u0.device)
    rate = alpha * 4.0 * math.pi**2 * (kx**2 + ky**2)
    q = torch.as_tensor(source, dtype=DTYPE, device=u0.device)
    q_hat = torch.fft.rfft2(q.expand(n, n) if q.ndim == 0 else q)
    u_hat = torch.fft.rfft2(u0)
    out = []
    for t in times:
        decay = torch.exp(-rate * t)
        # (1 - e^{-rate t}) / rate, with its limit t at rate = 0 (expm1 keeps small rates exact).
        gain = torch.where(rate > 0, -torch.expm1(-rate * t) / rate.clamp_min(1e-300), float(t))
        out.append(torch.fft.irfft2(decay * u_hat + gain * q_hat, s=(n, n)))
    return torch.stack(out, dim=-1)


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    """Versions of what produced the data (python, torch, numpy if present, kinetics)."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numpy", "kinetics"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "unknown"))
        except ImportError:
            pass
    return versions


def _batches(start: int, count: int, batch_size: int) -> list[list[int]]:
    indices = list(range(start, start + count))
    return [indices[i : i + batch_size] for i in range(0, count, batch_size)]


def _check_resolutions(fine: int, resolutions: Sequence[int]) -> list[int]:
    res = [int(r) for r in resolutions]
    bad = [r for r in res if r <= 0 or r > fine or fine % r]
    if bad or not res:
        raise ValueError(f"resolutions {res} must be non-empty divisors of the fine grid {fine}")
    return res


def _common_metadata(
    equation: str,
    *,
    n_samples: int,
    seed: int,
    start_index: int,
    fine: int,
    resolutions: Sequence[int],
    dim: int,
    grf: GRFSpec,
    save_dtype: torch.dtype,
    device: torch.device,
    batch_size: int,
) -> dict[str, Any]:
    return {
        "equation": equation,
        "n_samples": n_samples,
        "batch_size": batch_size,
        "seed": seed,
        "start_index": start_index,
        "seeding": "sample i uses torch.Generator().manual_seed(sample_seed(seed, i)) "
        "(sha256 of 'kinetics.pde:{seed}:{i}'), i = start_index .. start_index + n_samples - 1",
        "grid": {
            "domain": f"periodic [0, 1)^{dim}",
            "points": "x_j = j / r (first array axis x, second y)",
            "fine_resolution": fine,
            "resolutions": list(resolutions),
            "subsampling": "pointwise: every (fine // r)-th point of the fine solution",
        },
        "initial_field": {
            **asdict(grf),
            "measure": f"N(0, {grf.sigma2:g} (-Δ + {grf.tau:g}² I)^-{grf.alpha:g})",
            "eigenvalues": "4π²|k|² + tau²",
            "nyquist_modes": "dropped (|k_i| = n/2)",
            "drawn_at": fine,
            "pointwise_variance": grf.analytic_variance(fine, dim),
        },
        "save_dtype": str(save_dtype).replace("torch.", ""),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
    }


def _timing(seconds: float, cpu: float, n_samples: int) -> dict[str, float]:
    return {
        "total_seconds": seconds,
        "seconds_per_sample": seconds / max(n_samples, 1),
        "process_cpu_seconds": cpu,
        "cpu_count": float(os.cpu_count() or 0),
    }


def generate_burgers(
    n_samples: int,
    *,
    seed: int = 0,
    start_index: int = 0,
    fine: int = BURGERS_DEFAULTS["fine"],
    resolutions: Sequence[int] = BURGERS_DEFAULTS["resolutions"],
    nu: float = BURGERS_DEFAULTS["nu"],
    t_final: float = BURGERS_DEFAULTS["t_final"],
    dt: float = BURGERS_DEFAULTS["dt"],
    grf: GRFSpec | None = None,
    batch_size: int = 20,
    device: torch.device | str = "cpu",
    save_dtype: torch.dtype = torch.float32,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Burgers data ``a_{r}`` = u0 and ``u_{r}`` = u(·, t_final), ``(n_samples, r)`` per resolution.

    ``progress(k)`` is called after each batch with the number of samples it finished.
    """
    grf = grf or burgers_grf()
    res = _check_resolutions(fine, resolutions)
    device = torch.device(device)
    parts: dict[str, list[Tensor]] = {f"{key}_{r}": [] for r in res for key in ("a", "u")}
    start, cpu = time.perf_counter(), time.process_time()
    for batch in _batches(start_index, n_samples, batch_size):
        u0 = sample_grf(grf, fine, 1, seed, batch, device)
        u1 = solve_burgers(u0, nu=nu, times=(t_final,), dt=dt)[:, -1]
        for r in res:
            parts[f"a_{r}"].append(subsample(u0, r, 1).to("cpu", save_dtype))
            parts[f"u_{r}"].append(subsample(u1, r, 1).to("cpu", save_dtype))
        if progress is not None:
            progress(len(batch))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    tensors = {key: torch.cat(chunks) for key, chunks in parts.items()}
    meta = _common_metadata(
        "burgers",
        n_samples=n_samples,
        seed=seed,
        start_index=start_index,
        fine=fine,
        resolutions=res,
        dim=1,
        grf=grf,
        save_dtype=save_dtype,
        device=device,
        batch_size=batch_size,
    )
    meta.update(
        {
            "pde": "u_t + (u²/2)_x = nu u_xx on (0, 1), periodic",
            "parameters": {"nu": nu, "t_final": t_final},
            "solver": {
                "name": "pseudo-spectral Fourier + ETDRK4 (Cox-Matthews, Kassam-Trefethen "
                "contour coefficients, 32 points)",
                "dt": dt,
                "dealiasing": f"2/3 rule on the nonlinear term: |k| <= (n-1)//3 = "
                f"{dealias_cutoff(fine)}",
                "precision": "float64",
            },
            "layout": {"a_{r}": "(N, r) u(x, 0)", "u_{r}": f"(N, r) u(x, {t_final:g})"},
            "timing": _timing(elapsed, cpu, n_samples),
        }
    )
    return tensors, meta


def _time_series(
    equation: str,
    solve: Callable[[Tensor, Sequence[float]], tuple[Tensor, dict[str, float]]],
    *,
    n_samples: int,
    seed: int,
    start_index: int,
    fine: int,
    resolutions: Sequence[int],
    t_final: int,
    grf: GRFSpec,
    batch_size: int,
    device: torch.device,
    save_dtype: torch.dtype,
    progress: Callable[[int], None] | None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Shared driver of the 2D time-series data sets (NS, Heat): record ``t = 1..t_final``."""
    res = _check_resolutions(fine, resolutions)
    times = [float(t) for t in range(1, int(t_final) + 1)]
    parts: dict[str, list[Tensor]] = {f"{key}_{r}": [] for r in res for key in ("a", "u")}
    info: dict[str, float] = {}
    start, cpu = time.perf_counter(), time.process_time()
    for batch in _batches(start_index, n_samples, batch_size):
        w0 = sample_grf(grf, fine, 2, seed, batch, device)
        w, batch_info = solve(w0, times)
        for key, value in batch_info.items():
            info[key] = max(info.get(key, value), value)
        for r in res:
            parts[f"a_{r}"].append(subsample(w0, r, 2).to("cpu", save_dtype))
            parts[f"u_{r}"].append(subsample(w, r, 2, time_last=True).to("cpu", save_dtype))
        if progress is not None:
            progress(len(batch))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    tensors = {key: torch.cat(chunks) for key, chunks in parts.items()}
    tensors["t"] = torch.tensor(times, dtype=save_dtype)
    meta = _common_metadata(
        equation,
        n_samples=n_samples,
        seed=seed,
        start_index=start_index,
        fine=fine,
        resolutions=res,
        dim=2,
        grf=grf,
        save_dtype=save_dtype,
        device=device,
        batch_size=batch_size,
    )
    meta.update(
        {
            "times": times,
            "layout": {
                "a_{r}": "(N, r, r) field at t = 0",
                "u_{r}": "(N, r, r, T) field at t = times[0..T-1] = 1..T",
                "t": "(T,) record times",
                "training_split_hint": "model maps steps 1..10 -> 11..T",
            },
            "timing": _timing(elapsed, cpu, n_samples),
            "diagnostics": info,
        }
    )
    return tensors, meta


def generate_navier_stokes(
    n_samples: int,
    *,
    seed: int = 0,
    start_index: int = 0,
    fine: int = NS_DEFAULTS["fine"],
    resolutions: Sequence[int] = NS_DEFAULTS["resolutions"],
    nu: float = NS_DEFAULTS["nu"],
    t_final: int = NS_DEFAULTS["t_final"],
    dt: float = NS_DEFAULTS["dt"],
    convention: str = "literal",
    grf: GRFSpec | None = None,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    save_dtype: torch.dtype = torch.float32,
    progress: Callable[[int], None] | None = None,
    on_record: Callable[[float], None] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """NS vorticity data (KITINet App. F.2): ``a_{r}`` = w0, ``u_{r}`` = w at ``t = 1..t_final``.

    ``grf`` overrides ``convention`` (``"literal"`` or ``"fno"``, see :func:`ns_grf`).
    ``on_record(t)`` is called at every record time of every batch (inner progress).
    """
    grf = grf or ns_grf(convention)
    device = torch.device(device)
    forcing = ns_forcing(fine, device=device)

    def solve(w0: Tensor, times: Sequence[float]) -> tuple[Tensor, dict[str, float]]:
        return solve_navier_stokes(
            w0, nu=nu, forcing=forcing, times=times, dt=dt, on_record=on_record
        )

    tensors, meta = _time_series(
        "navier_stokes",
        solve,
        n_samples=n_samples,
        seed=seed,
        start_index=start_index,
        fine=fine,
        resolutions=resolutions,
        t_final=t_final,
        grf=grf,
        batch_size=batch_size,
        device=device,
        save_dtype=save_dtype,
        progress=progress,
    )
    meta.update(
        {
            "pde": "w_t + u·∇w = nu Δw + f, -Δψ = w, u = (ψ_y, -ψ_x), unit torus",
            "parameters": {
                "nu": nu,
                "forcing": "0.1 (sin(2π(x+y)) + cos(2π(x+y)))",
                "t_final": t_final,
            },
            "solver": {
                "name": "pseudo-spectral Fourier; Crank-Nicolson (viscous) + Heun/RK2 "
                "predictor-corrector (advection, forcing)",
                "dt": dt,
                "dealiasing": f"2/3 rule on u·∇w: |k_x|, |k_y| <= (n-1)//3 = "
                f"{dealias_cutoff(fine)}",
                "mean_mode": "k = 0 of w induces no velocity and is conserved",
                "precision": "float64",
            },
        }
    )
    return tensors, meta


def generate_heat(
    n_samples: int,
    *,
    seed: int = 0,
    start_index: int = 0,
    fine: int = HEAT_DEFAULTS["fine"],
    resolutions: Sequence[int] = HEAT_DEFAULTS["resolutions"],
    alpha: float = HEAT_DEFAULTS["alpha"],
    source: float | Tensor = HEAT_DEFAULTS["source"],
    t_final: int = HEAT_DEFAULTS["t_final"],
    convention: str = "literal",
    grf: GRFSpec | None = None,
    batch_size: int = 50,
    device: torch.device | str = "cpu",
    save_dtype: torch.dtype = torch.float32,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Heat data (KITINet App. F.3): ``a_{r}`` = u0, ``u_{r}`` = u at ``t = 1..t_final``, exact.

    ``source``: constant (default 0.1, our reading of the paper's ``q|∂Ω = 0.1`` on a torus) or a
    fine-grid ``(fine, fine)`` field.
    """
    grf = grf or ns_grf(convention)
    device = torch.device(device)

    def solve(u0: Tensor, times: Sequence[float]) -> tuple[Tensor, dict[str, float]]:
        return solve_heat(u0, alpha=alpha, source=source, times=times), {}

    tensors, meta = _time_series(
        "heat",
        solve,
        n_samples=n_samples,
        seed=seed,
        start_index=start_index,
        fine=fine,
        resolutions=resolutions,
        t_final=t_final,
        grf=grf,
        batch_size=batch_size,
        device=device,
        save_dtype=save_dtype,
        progress=progress,
    )
    constant = not isinstance(source, Tensor) or source.ndim == 0
    meta.update(
        {
            "pde": "u_t = alpha Δu + q on the unit torus",
            "parameters": {
                "alpha": alpha,
                "source": float(source) if constant else "custom (n, n) field",
                "source_note": "the paper's 'q|∂Ω = 0.1' has no boundary on a torus; we use the "
                "constant source q = 0.1 everywhere (unless a field is given)",
                "t_final": t_final,
            },
            "solver": {
                "name": "exact per Fourier mode: û(t) = e^{-aλt} û(0) + (1 - e^{-aλt}) q̂/(aλ), "
                "λ = 4π²|k|²; û_0(t) = û_0(0) + q̂_0 t",
                "dt": None,
                "precision": "float64",
            },
        }
    )
    return tensors, meta
