"""Physics and bookkeeping tests of the PDE data generators (experiments/pde/generate.py, io.py).

Every solver is checked against something computed another way: closed forms (Cole-Hopf, the
Taylor-Green shell, analytic advection), an independent time integration (heat), invariants
(mean, energy, enstrophy) and a finer grid. Grids are small so the file runs in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.pde import generate as gen
from experiments.pde.io import load_dataset, load_fno_mat, save_dataset, sidecar_path

F64 = torch.float64
TWO_PI = 2 * math.pi
ROOT = Path(__file__).resolve().parents[2]


def grid(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=F64) / n


def band_limited(spec: gen.GRFSpec, n_low: int, n: int, seed: int, count: int) -> torch.Tensor:
    """A GRF drawn on ``n_low²`` and zero-padded in Fourier space to ``n²`` (same field, finer)."""
    w = gen.sample_grf(spec, n_low, 2, seed, range(count))
    low = torch.fft.rfft2(w)
    half = n_low // 2
    padded = torch.zeros(count, n, n // 2 + 1, dtype=torch.complex128)
    padded[:, :half, : half + 1] = low[:, :half, : half + 1]
    padded[:, -half:, : half + 1] = low[:, -half:, : half + 1]
    return torch.fft.irfft2(padded * (n / n_low) ** 2, s=(n, n))


# ------------------------------------------------------------------------------- random fields


@pytest.mark.parametrize(
    ("spec", "n", "dim", "count"),
    [
        (gen.burgers_grf(), 64, 1, 4000),
        (gen.ns_grf("literal"), 16, 2, 1500),
        (gen.ns_grf("fno"), 16, 2, 1500),
    ],
    ids=["burgers", "ns-literal", "ns-fno"],
)
def test_grf_mode_and_pointwise_variance_match_analytic(
    spec: gen.GRFSpec, n: int, dim: int, count: int
) -> None:
    fields = gen.sample_grf(spec, n, dim, seed=11, indices=range(count))
    axes = tuple(range(-dim, 0))
    coef = torch.fft.rfftn(fields, dim=axes) / n**dim  # c_k of u = sum_k c_k e^{2πik·x}
    expected = spec.mode_variance(gen.wavenumbers(n, dim), n)
    power = coef.abs().pow(2).mean(0)
    live = expected > 0
    # |c_k|²/var_k is Exp(1) for complex modes (sd 1) and χ²₁ for real ones (sd √2).
    ratio = power[live] / expected[live]
    assert (ratio - 1).abs().max() < 5 * math.sqrt(2 / count)
    assert torch.all(power[~live] < 1e-25)  # Nyquist (and for "fno" the mean) modes are absent
    # Pointwise variance: the analytic sum over modes (the per-point estimate's sd is at most
    # sqrt(2/count) relative even when all points are fully correlated).
    analytic = spec.analytic_variance(n, dim)
    empirical = fields.var(dim=0).mean().item()
    assert abs(empirical / analytic - 1) < 4 * math.sqrt(2 / count)


def test_grf_conventions_match_spec_numbers() -> None:
    """SPEC §3: vorticity std ~0.054 (literal) vs ~0.26 (FNO sampler); 37x per-mode variance."""
    literal, fno = gen.ns_grf("literal"), gen.ns_grf("fno")
    assert math.sqrt(literal.analytic_variance(256, 2)) == pytest.approx(0.054, abs=0.001)
    assert math.sqrt(fno.analytic_variance(256, 2)) == pytest.approx(0.26, abs=0.005)
    assert fno.sigma2 / literal.sigma2 == pytest.approx(2 * 7**1.5)
    mean_modes = gen.sample_grf(fno, 32, 2, 0, range(3)).mean(dim=(-2, -1))
    assert mean_modes.abs().max() < 1e-15
    # Burgers literal: the k = 0 mode alone has variance 625 / 25² = 1.
    k = torch.tensor([0.0, 1.0, 3.0], dtype=F64)
    expected = torch.tensor(
        [1.0, 625 / (4 * math.pi**2 + 25) ** 2, 625 / (36 * math.pi**2 + 25) ** 2]
    )
    assert torch.allclose(gen.burgers_grf().mode_variance([k], 8), expected.to(F64))
    k2d = [torch.tensor([[1.0]], dtype=F64), torch.tensor([[2.0]], dtype=F64)]
    ns_mode = 7**1.5 * (4 * math.pi**2 * 5 + 49) ** -2.5
    assert literal.mode_variance(k2d, 8).item() == pytest.approx(ns_mode, rel=1e-14)
    with pytest.raises(ValueError, match="convention"):
        gen.ns_grf("other")


def test_sampling_is_deterministic_and_batch_independent() -> None:
    spec = gen.ns_grf()
    a = gen.sample_grf(spec, 16, 2, seed=5, indices=range(6))
    b = gen.sample_grf(spec, 16, 2, seed=5, indices=range(6))
    assert torch.equal(a, b)
    # The noise of sample i is the same whether drawn alone, in another batch, or with another
    # start index; the coloured field too, up to the rounding of batched vs single FFTs.
    assert torch.equal(
        gen.white_noise((16, 16), 5, [4])[0], gen.white_noise((16, 16), 5, range(6))[4]
    )
    assert torch.allclose(
        gen.sample_grf(spec, 16, 2, seed=5, indices=[4])[0], a[4], rtol=0, atol=1e-15
    )
    assert not torch.allclose(gen.sample_grf(spec, 16, 2, seed=6, indices=[4])[0], a[4])
    kwargs = {"seed": 2, "fine": 16, "resolutions": (8,), "t_final": 2}
    t1, m1 = gen.generate_heat(3, batch_size=2, **kwargs)
    t1_again, _ = gen.generate_heat(3, batch_size=2, **kwargs)
    t2, _ = gen.generate_heat(3, batch_size=3, **kwargs)
    t3, _ = gen.generate_heat(1, start_index=2, **kwargs)
    assert all(torch.equal(t1[k], t1_again[k]) for k in t1)
    assert all(torch.allclose(t1[k], t2[k], rtol=1e-6, atol=1e-7) for k in t1)  # float32 data
    assert torch.allclose(t1["u_8"][2:], t3["u_8"], rtol=1e-6, atol=1e-7)
    assert m1["seed"] == 2 and m1["initial_field"]["convention"] == "literal"


def test_subsample_and_resolution_checks() -> None:
    field = torch.arange(2 * 8 * 8 * 3, dtype=F64).reshape(2, 8, 8, 3)
    sub = gen.subsample(field, 4, 2, time_last=True)
    assert torch.equal(sub, field[:, ::2, ::2, :])
    with pytest.raises(ValueError, match="divide"):
        gen.subsample(field[..., 0], 3, 2)
    with pytest.raises(ValueError, match="divisors"):
        gen.generate_heat(1, fine=16, resolutions=(6,), t_final=1)


# ------------------------------------------------------------------------------------- heat


def _heat_rk4(u0: torch.Tensor, alpha: float, q: torch.Tensor, t_end: float, steps: int):
    """Fine-step classical RK4 of u_t = alpha Δu + q, Δ via the complex FFT (another code path)."""
    n = u0.shape[-1]
    k = torch.fft.fftfreq(n, 1 / n, dtype=F64) * TWO_PI
    symbol = -(k[:, None] ** 2 + k[None, :] ** 2)

    def rhs(u: torch.Tensor) -> torch.Tensor:
        return alpha * torch.fft.ifft2(symbol * torch.fft.fft2(u)).real + q

    u, h = u0.clone(), t_end / steps
    for _ in range(steps):
        k1 = rhs(u)
        k2 = rhs(u + 0.5 * h * k1)
        k3 = rhs(u + 0.5 * h * k2)
        k4 = rhs(u + h * k3)
        u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return u


def test_heat_exact_solution_matches_independent_time_integration() -> None:
    n, alpha = 16, 2e-3
    u0 = gen.sample_grf(gen.ns_grf("fno"), n, 2, 0, range(2))
    x = grid(n)
    q = 0.1 + 0.05 * torch.cos(TWO_PI * x)[:, None] * torch.sin(4 * math.pi * x)[None, :]
    exact = gen.solve_heat(u0, alpha=alpha, source=q, times=(0.5, 1.0))
    for i, t in enumerate((0.5, 1.0)):
        reference = _heat_rk4(u0, alpha, q, t, steps=200)
        assert (exact[..., i] - reference).abs().max() < 1e-11
    # Wrong physics would be far off: no source, or the diffusivity off by 10%.
    assert (
        gen.solve_heat(u0, alpha=alpha, source=0.0, times=(1.0,))[..., 0] - reference
    ).abs().max() > 0.05
    wrong_alpha = gen.solve_heat(u0, alpha=1.1 * alpha, source=q, times=(1.0,))[..., 0]
    assert (wrong_alpha - reference).abs().max() > 1e-4


def test_heat_modes_decay_exactly_and_constant_source_lifts_the_mean() -> None:
    n, alpha, t = 16, 1e-2, 1.5
    u0 = gen.sample_grf(gen.ns_grf(), n, 2, 3, range(1))
    u = gen.solve_heat(u0, alpha=alpha, source=0.0, times=(t,))[..., 0]
    kx, ky = gen.wavenumbers(n, 2)
    expected = torch.exp(-alpha * 4 * math.pi**2 * (kx**2 + ky**2) * t)
    before, after = torch.fft.rfft2(u0)[0], torch.fft.rfft2(u)[0]
    live = before.abs() > 1e-12
    assert torch.allclose(after[live] / before[live], expected.expand_as(before)[live].to(after))
    lifted = gen.solve_heat(u0, alpha=alpha, source=0.1, times=(t,))[..., 0]
    assert torch.allclose(lifted - u, torch.full_like(u, 0.1 * t), atol=1e-13)
    # Defaults: the paper's alpha = 1e-4 barely damps the field over T = 20.
    data, meta = gen.generate_heat(2, fine=32, resolutions=(16,), t_final=20)
    assert data["u_16"].shape == (2, 16, 16, 20) and data["t"].tolist() == list(range(1, 21))
    assert meta["parameters"]["source"] == 0.1


# ---------------------------------------------------------------------------------- Burgers


def _cole_hopf(amplitude: float, nu: float, n: int, t: float, fine: int = 2048) -> torch.Tensor:
    """u = -2 nu φ_x / φ with φ solving the heat equation from exp(A cos(2πx) / (4π nu)).

    This is the exact Burgers solution from u0 = A sin(2πx); φ is resolved spectrally on a fine
    grid (it is analytic), then sampled at the n grid points.
    """
    x = grid(fine)
    phi0 = torch.exp(amplitude * torch.cos(TWO_PI * x) / (4 * math.pi * nu))
    k = torch.fft.fftfreq(fine, 1 / fine, dtype=F64) * TWO_PI
    phi_hat = torch.fft.fft(phi0) * torch.exp(-nu * k**2 * t)
    phi = torch.fft.ifft(phi_hat).real
    phi_x = torch.fft.ifft(1j * k * phi_hat).real
    return (-2 * nu * phi_x / phi)[:: fine // n]


@pytest.mark.parametrize(("nu", "n", "tol"), [(0.1, 128, 1e-9), (0.02, 256, 2e-8)])
def test_burgers_matches_cole_hopf(nu: float, n: int, tol: float) -> None:
    u0 = torch.sin(TWO_PI * grid(n))[None]
    times = (0.25, 0.5)
    u = gen.solve_burgers(u0, nu=nu, times=times)
    for i, t in enumerate(times):
        exact = _cole_hopf(1.0, nu, n, t)
        assert (u[0, i] - exact).abs().max() < tol
        # The nonlinearity matters at this tolerance: pure diffusion is far off.
        linear = torch.exp(torch.tensor(-nu * TWO_PI**2 * t)) * u0[0]
        assert (linear - exact).abs().max() > 1e3 * tol


def test_burgers_conserves_mean_and_dissipates_energy() -> None:
    u0 = gen.sample_grf(gen.burgers_grf(), 256, 1, 7, range(3))
    times = [0.05 * i for i in range(1, 21)]
    u = gen.solve_burgers(u0, times=times)
    assert (u.mean(-1) - u0.mean(-1, keepdim=True)).abs().max() < 1e-13
    energy = torch.cat([u0.pow(2).mean(-1, keepdim=True), u.pow(2).mean(-1)], dim=1)
    assert torch.all(energy[:, 1:] <= energy[:, :-1])
    # Energy leaves only through viscosity: removing the mean, 20 steps drop it a lot.
    fluctuation = u - u.mean(-1, keepdim=True)
    assert torch.all(fluctuation[:, -1].pow(2).mean(-1) < 0.2 * u0.var(-1))


def test_burgers_inviscid_galerkin_conserves_energy() -> None:
    """nu = 0 before the shock: the dealiased nonlinear term is energy-neutral."""
    n = 32  # 2/3 rule keeps |k| <= 10; the mode 9 makes products alias without it
    x = grid(n)
    u0 = (0.3 * torch.sin(TWO_PI * x) + 0.1 * torch.cos(6 * math.pi * x))[None]
    u0 = u0 + 0.05 * torch.sin(18 * math.pi * x)
    u = gen.solve_burgers(u0, nu=0.0, times=(0.1,), dt=1e-3)
    energy0, energy = u0.pow(2).mean(), u[:, -1].pow(2).mean()
    assert abs(energy / energy0 - 1) < 1e-8
    assert (u[:, -1] - u0).abs().max() > 1e-2  # and the field did evolve


def test_burgers_fine_solve_agrees_with_coarser_solve() -> None:
    """8192-solve subsampled vs a 2048-solve of the same (spectrally truncated) initial field."""
    u0 = gen.sample_grf(gen.burgers_grf(), 8192, 1, 3, range(2))
    fine = gen.solve_burgers(u0)[:, 0]
    spectrum = torch.fft.rfft(u0)[:, :1025]
    spectrum[:, 1024] = 0
    coarse0 = torch.fft.irfft(spectrum, n=2048) / 4
    coarse = gen.solve_burgers(coarse0)[:, 0]
    assert (fine[:, ::4] - coarse).abs().max() < 1e-10
    # Subsampling the initial field (aliasing its tail) is measurably worse (SPEC §3's warning).
    aliased = gen.solve_burgers(u0[:, ::4])[:, 0]
    assert (fine[:, ::4] - aliased).abs().max() > 1e-8


# ----------------------------------------------------------------------------- Navier-Stokes


def test_ns_advection_matches_analytic() -> None:
    """w = cos 2πx + cos 4πy: ψ, u, v by hand give -u·∇w = 1.5 sin(2πx) sin(4πy)."""
    x = grid(32)
    w = torch.cos(TWO_PI * x)[:, None] + torch.cos(4 * math.pi * x)[None, :]
    expected = 1.5 * torch.sin(TWO_PI * x)[:, None] * torch.sin(4 * math.pi * x)[None, :]
    assert (gen.navier_stokes_rhs(w) - expected).abs().max() < 1e-12


def test_nonlinear_terms_are_dealiased() -> None:
    """The 2/3 rule: no mode above (n-1)//3 in the advection term, whatever the input."""
    w = gen.sample_grf(gen.ns_grf("fno"), 24, 2, 0, range(1))[0]
    spectrum = torch.fft.rfft2(gen.navier_stokes_rhs(w))
    kx, ky = gen.wavenumbers(24, 2)
    outside = (kx.abs() > 7) | (ky.abs() > 7)
    assert gen.dealias_cutoff(24) == 7 and gen.dealias_cutoff(32) == 10
    assert spectrum[outside.expand_as(spectrum)].abs().max() < 1e-12
    assert spectrum[~outside.expand_as(spectrum)].abs().max() > 1e-3


def test_ns_taylor_green_shell_is_exact() -> None:
    """Fields in the |k|² = 8π² shell have no advection: w(t) = w_s + (w0 - w_s) e^{-8π² nu t}."""
    n, nu = 32, 0.01
    x = grid(n)
    xx, yy = x[:, None], x[None, :]
    w0 = torch.cos(TWO_PI * xx) * torch.cos(TWO_PI * yy) + 0.5 * torch.sin(TWO_PI * (xx - yy))
    forcing = gen.ns_forcing(n)
    steady = forcing / (8 * math.pi**2 * nu)
    t = 2.0
    exact = steady + (w0 - steady) * math.exp(-8 * math.pi**2 * nu * t)
    errors = []
    for dt in (1e-2, 5e-3):
        w, _ = gen.solve_navier_stokes(w0[None], nu=nu, forcing=forcing, times=(t,), dt=dt)
        errors.append((w[0, ..., 0] - exact).abs().max().item())
    assert errors[1] < 2e-6 * exact.abs().max()
    # Only the (2nd-order) time error of Crank-Nicolson remains: halving dt divides it by 4.
    assert 3.5 < errors[0] / errors[1] < 4.5
    # The steady state itself is reproduced to rounding.
    w, _ = gen.solve_navier_stokes(steady[None], nu=nu, forcing=forcing, times=(t,), dt=1e-2)
    assert (w[0, ..., 0] - steady).abs().max() < 1e-12


def _energy_enstrophy(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kinetic energy and enstrophy (about the mean) of (B, n, n) vorticity fields, via ψ."""
    n = w.shape[-1]
    kx, ky = gen.wavenumbers(n, 2)
    k2 = TWO_PI**2 * (kx**2 + ky**2)
    w_hat = torch.fft.rfft2(w)
    psi = torch.where(k2 > 0, w_hat / k2.clamp_min(1e-300), 0)
    u = torch.fft.irfft2(1j * TWO_PI * ky * psi, s=(n, n))
    v = torch.fft.irfft2(-1j * TWO_PI * kx * psi, s=(n, n))
    fluct = w - w.mean(dim=(-2, -1), keepdim=True)
    return 0.5 * (u**2 + v**2).mean(dim=(-2, -1)), 0.5 * fluct.pow(2).mean(dim=(-2, -1))


def test_ns_mean_conserved_and_unforced_flow_dissipates() -> None:
    w0 = gen.sample_grf(gen.ns_grf("literal"), 32, 2, 4, range(2))
    times = [0.5 * i for i in range(1, 7)]
    forced, _ = gen.solve_navier_stokes(w0, forcing=gen.ns_forcing(32), times=times, dt=1e-2)
    mean0 = w0.mean(dim=(-2, -1))
    assert mean0.abs().min() > 1e-3  # the literal measure has a random mean ...
    drift = forced.mean(dim=(1, 2)) - mean0[:, None]
    assert drift.abs().max() < 1e-14  # ... which the dynamics carries unchanged
    free, _ = gen.solve_navier_stokes(w0, nu=5e-3, times=times, dt=1e-2)
    series = torch.cat([w0[..., None], free], dim=-1).permute(0, 3, 1, 2)
    energy, enstrophy = _energy_enstrophy(series)
    assert torch.all(energy[:, 1:] <= energy[:, :-1])
    assert torch.all(enstrophy[:, 1:] <= enstrophy[:, :-1])
    assert torch.all(enstrophy[:, -1] < 0.95 * enstrophy[:, 0])


def test_ns_inviscid_galerkin_conserves_energy_and_enstrophy() -> None:
    # Modes |k_i| <= 9 on 32² (the 2/3 rule keeps <= 10): unfiltered products would alias.
    w0 = band_limited(gen.ns_grf("fno"), 20, 32, 1, 2)
    w, _ = gen.solve_navier_stokes(w0, nu=0.0, times=(1.0, 2.0), dt=1e-2)
    energy0, enstrophy0 = _energy_enstrophy(w0)
    energy, enstrophy = _energy_enstrophy(w.permute(0, 3, 1, 2))
    assert ((energy / energy0[:, None]) - 1).abs().max() < 1e-7
    assert ((enstrophy / enstrophy0[:, None]) - 1).abs().max() < 1e-7
    assert (w[..., -1] - w0).abs().max() > 1e-2 * w0.abs().max()


def test_ns_two_resolutions_agree() -> None:
    w64 = band_limited(gen.ns_grf("fno"), 16, 64, 0, 2)
    w128 = band_limited(gen.ns_grf("fno"), 16, 128, 0, 2)
    assert (w128[:, ::2, ::2] - w64).abs().max() < 1e-14
    times = (1.0, 2.0)
    coarse, _ = gen.solve_navier_stokes(w64, forcing=gen.ns_forcing(64), times=times, dt=1e-2)
    fine, _ = gen.solve_navier_stokes(w128, forcing=gen.ns_forcing(128), times=times, dt=1e-2)
    assert (coarse - fine[:, ::2, ::2]).abs().max() < 1e-9 * coarse.abs().max()


def test_ns_cfl_guard_rejects_too_large_steps() -> None:
    w0 = 50 * gen.sample_grf(gen.ns_grf("fno"), 32, 2, 0, range(1))
    with pytest.raises(RuntimeError, match="CFL"):
        gen.solve_navier_stokes(w0, times=(1.0,), dt=0.5)


# --------------------------------------------------------------------------------- files, CLI


def test_save_load_roundtrip_is_atomic_and_checked(tmp_path: Path) -> None:
    tensors = {"a_8": torch.randn(2, 8), "t": torch.arange(3.0)}
    data_path, json_path = save_dataset(tmp_path / "sub" / "set.pt", tensors, {"equation": "x"})
    assert json_path == sidecar_path(data_path)
    assert sorted(p.name for p in data_path.parent.iterdir()) == ["set.json", "set.pt"]
    loaded, meta = load_dataset(data_path, verify=True)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert meta["equation"] == "x" and meta["tensors"]["a_8"]["shape"] == [2, 8]
    data_path.write_bytes(data_path.read_bytes() + b"x")
    with pytest.raises(ValueError, match="checksum"):
        load_dataset(data_path, verify=True)
    with pytest.raises(ValueError, match=r"\.pt"):
        save_dataset(tmp_path / "set.npz", tensors, {})


def test_the_same_tensors_give_the_same_bytes_under_any_name(tmp_path: Path) -> None:
    # runs record the data file's sha256: a regenerated file with equal tensors must match
    tensors = {"a_8": torch.randn(2, 8)}
    first, _ = save_dataset(tmp_path / "one" / "set.pt", tensors, {})
    second, _ = save_dataset(tmp_path / "two.pt", tensors, {})
    assert first.read_bytes() == second.read_bytes()
    third, _ = save_dataset(tmp_path / "three.pt", {"a_8": tensors["a_8"] + 1e-7}, {})
    assert third.read_bytes() != first.read_bytes()


def _load_cli():
    spec = importlib.util.spec_from_file_location("generate_pde", ROOT / "scripts/generate_pde.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "shapes"),
    [
        (["burgers", "--n", "3", "--fine", "256", "--resolutions", "64", "32"], {"u_32": [3, 32]}),
        (
            ["ns", "--n", "2", "--fine", "32", "--resolutions", "16", "--t-final", "2"],
            {"u_16": [2, 16, 16, 2], "a_16": [2, 16, 16], "t": [2]},
        ),
        (
            ["heat", "--n", "2", "--fine", "16", "--resolutions", "8", "--convention", "fno"],
            {"u_8": [2, 8, 8, 20]},
        ),
    ],
    ids=["burgers", "ns", "heat"],
)
def test_cli_writes_loadable_dataset(tmp_path: Path, argv: list[str], shapes: dict) -> None:
    out = tmp_path / "data.pt"
    written = _load_cli().main([*argv, "--seed", "3", "--out", str(out)])
    tensors, meta = load_dataset(written, verify=True)
    for key, shape in shapes.items():
        assert list(tensors[key].shape) == shape and tensors[key].dtype == torch.float32
    assert meta["seed"] == 3 and meta["n_samples"] == int(argv[2])
    assert meta["equation"] == {"ns": "navier_stokes"}.get(argv[0], argv[0])
    assert meta["timing"]["seconds_per_sample"] > 0
    assert meta["versions"]["torch"] == torch.__version__
    assert "solver" in meta and "initial_field" in meta and meta["command"].endswith(str(out))
    json.loads(sidecar_path(written).read_text())  # plain JSON


# ------------------------------------------------------------------------------- FNO .mat files


def test_fno_mat_reader_names_missing_package(tmp_path: Path, monkeypatch) -> None:
    v5 = tmp_path / "burgers.mat"
    v5.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="'scipy'"):
        load_fno_mat(v5)
    v73 = tmp_path / "ns.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="'h5py'"):
        load_fno_mat(v73)


def test_fno_mat_reader_reverses_hdf5_axes(tmp_path: Path, monkeypatch) -> None:
    """MATLAB v7.3 arrays reach h5py column-major: (T, W, H, N) must come back as (N, H, W, T)."""
    u = np.arange(3 * 4 * 4 * 5, dtype=np.float64).reshape(3, 4, 4, 5)  # (N, H, W, T)
    stored = {"u": u.transpose(3, 2, 1, 0), "a": u[..., 0].transpose(2, 1, 0)}

    class FakeDataset:
        def __init__(self, array: np.ndarray) -> None:
            self.array = array

        def __getitem__(self, item: object) -> np.ndarray:
            return self.array

    class FakeFile(dict):
        def __init__(self, path: Path, mode: str) -> None:
            super().__init__({k: FakeDataset(v) for k, v in stored.items()})

        def __enter__(self) -> FakeFile:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setitem(sys.modules, "h5py", types.SimpleNamespace(File=FakeFile))
    path = tmp_path / "ns.mat"
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n")
    data = load_fno_mat(path)
    assert torch.equal(data["u"], torch.as_tensor(u, dtype=torch.float32))
    assert data["a"].shape == (3, 4, 4)
    with pytest.raises(KeyError, match="no key 'x'"):
        load_fno_mat(path, keys=("x",))


def test_fno_mat_reader_v5_with_scipy(tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "burgers.mat"
    a = np.random.default_rng(0).standard_normal((4, 16))
    scipy_io.savemat(path, {"a": a, "u": 2 * a})
    data = load_fno_mat(path)
    assert data["a"].shape == (4, 16) and torch.allclose(data["u"], 2 * data["a"])
