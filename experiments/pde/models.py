"""Neural operators of the KITINet PDE experiments (KITINet §5.4 and App. E; SPEC §3 Table 4/6/7).

Library decision: we write a compact FNO instead of using ``neuraloperator`` (2.0). Its
``FNOBlocks`` hard-codes ``x = x_fno + x_skip_fno`` inside ``forward_with_postactivation`` (between
norms, resampling and channel MLPs), so KITINet could only replace that addition by monkeypatching or
copying the forward; its default FNO is also not the classic one (channel MLPs, soft-gating skips).
Here the addition is a module slot (:class:`FourierLayer`'s ``residual``), and nothing extra is
installed.

Models (registered in :data:`~experiments.core.registry.MODELS` as ``fno1d``, ``fno2d``,
``oformer`` when this module is imported; build them with ``MODELS.create(name, ...)``):

* :class:`FNO` (Li et al. 2021, the classic architecture): lifting ``Linear`` of the input channels
  plus grid coordinates, ``n_layers`` Fourier layers ``act(residual(skip(h), spectral(h)))`` with no
  activation after the last one, then the projection ``Linear-GELU-Linear``. Inputs and outputs are
  channels-last, ``(B, *spatial, C)``, on a uniform periodic grid (coordinates ``j / n``).
  In KITI-FNO (``kitinet`` given) ``residual`` is :class:`kinetics.KITINet` with ``system="sample"``:
  the 1x1-conv skip output is the position ``x``, the spectral-conv output the velocity ``v``
  (KITINet App. E.1), one system per sample of ``D = width * prod(spatial)`` features.
  Module names: ``layers.{i}.spectral`` / ``layers.{i}.skip`` / ``layers.{i}.residual``. Table 7's
  columns ``conv{i}`` / ``linear{i}`` are, we read, the spectral conv / the 1x1 "linear
  transformation" of Fourier layer ``i``.
* Time series (NS, Heat, ``fno2d``): the last ``in_channels`` time steps are the input channels.
  We roll out autoregressively (the classic FNO-2D-time setting): each call predicts the next
  ``out_channels`` steps, which are appended to the input window, until ``t_out`` steps exist;
  gradients flow through the whole rollout. ``out_channels = t_out`` gives the one-shot model.
* :class:`OFormer`: a compact OFormer-style encoder-decoder for the Airfoil mesh (exactness to the
  OFormer paper is not the goal): point tokens ``(values, coordinates)`` -> Galerkin-attention
  encoder blocks -> a cross-attention decoder queried at output coordinates. Every attention and
  feed-forward residual is a slot; with ``kitinet`` it is KITINet with ``system="token"``
  (branch output = ``v``, residual stream = ``x``, KITINet App. E.2).

Practical ``collision_heads`` for FNO (see :func:`practical_collision_heads`): a system of ``D``
features has ``N = D / collision_heads`` particles. Each KITINet layer does ~20 elementwise passes
over ``S x N x N`` pair matrices (selection) plus ``O(K heads)`` work for the ``K`` accepted pairs,
and autograd keeps the ``S N^2`` adjacency for backward. ``collision_heads = width`` is the natural
choice (particle = one grid point's feature vector, ``N`` = grid points: 1024 for Burgers-1024 and
NS-32x32) but costs ~3 s per forward on 2 CPU cores. Measured here (2 threads, batch 20, forward +
backward of the 4-layer model, coll_coef 0.5; vanilla 0.05-0.08 s): Burgers-1024 (D = 65536)
heads 1024 / 256 / 64 / 32 (N = 64 / 256 / 1024 / 2048) cost x6 / x18 / x60 / x190; NS-32x32
(D = 20480) heads 256 / 80 / 20 / 10 (N = 80 / 256 / 1024 / 2048) cost x3 / x4 / x50 / x250.
So on CPU keep ``N <= 256`` (Burgers heads >= 256, NS heads >= 80); on a GPU ``N <= ~2048``
(:data:`DEFAULT_MAX_PARTICLES`). Fig. 2's small heads (down to 1: ``N = 65536``, ``4e9`` pair
elements per sample) are out of reach here. Collision rates at init are ~0 in the first layers and
rise with depth (up to 0.1-0.4 in the last layer): log them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from experiments.core.blocks import make_residual
from experiments.core.errors import ConfigError
from experiments.core.registry import MODELS
from kinetics import KITINet, KITINetConfig

__all__ = [
    "FNO",
    "FourierLayer",
    "GalerkinAttention",
    "OFormer",
    "PointwiseLinear",
    "SpectralConv",
    "check_resolution",
    "fno1d",
    "fno2d",
    "grid_coordinates",
    "oformer",
    "practical_collision_heads",
]

# Keep N = D / collision_heads at or below this many particles per system (see the module doc).
DEFAULT_MAX_PARTICLES = 2048


# --------------------------------------------------------------------------- residual slots


def _kitinet_indices(layers: Sequence[int] | None, count: int, key: str) -> set[int]:
    """Which of ``count`` blocks get KITINet: all for None, else the listed indices."""
    if layers is None:
        return set(range(count))
    chosen = set()
    for index in layers:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise ConfigError(f"model.{key} entry {index!r} is outside [0, {count - 1}]")
        chosen.add(index)
    return chosen


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def practical_collision_heads(
    num_features: int, max_particles: int = DEFAULT_MAX_PARTICLES
) -> list[int]:
    """Divisors ``h`` of ``num_features`` with at most ``max_particles`` particles ``D / h``."""
    return [h for h in _divisors(num_features) if num_features // h <= max_particles]


def check_resolution(
    model: nn.Module,
    spatial_shape: Sequence[int] | None = None,
    *,
    max_particles: int | None = None,
) -> dict[str, tuple[int, int]]:
    """Check the model's KITINet systems for a training resolution, before any forward.

    Args:
        model: a model of this module (anything with ``kitinet_systems(spatial_shape)``).
        spatial_shape: the training grid, e.g. ``(1024,)`` or ``(32, 32)``; ignored by OFormer.
        max_particles: if given, also reject ``N = D / collision_heads`` above it.

    Returns:
        ``{module name: (D, N)}`` for every KITINet module (empty for a vanilla model).

    Raises:
        ConfigError: ``collision_heads`` does not divide ``D``, or ``N > max_particles``; the
            message lists the allowed values.
    """
    systems: dict[str, int] = model.kitinet_systems(spatial_shape)
    modules = dict(model.named_modules())
    report = {}
    for name, features in systems.items():
        heads = modules[name].collision_heads
        if features % heads:
            raise ConfigError(
                f"collision_heads={heads} does not divide the feature size D={features} of {name} "
                f"at resolution {tuple(spatial_shape or ())}; allowed: "
                f"{', '.join(map(str, _divisors(features)))}"
            )
        particles = features // heads
        if max_particles is not None and particles > max_particles:
            allowed = practical_collision_heads(features, max_particles)
            raise ConfigError(
                f"collision_heads={heads} gives N={particles} particles per system in {name} "
                f"(D={features}), more than max_particles={max_particles}: the N x N pair "
                f"matrices are too large; use one of: {', '.join(map(str, allowed))}"
            )
        report[name] = (features, particles)
    return report


# --------------------------------------------------------------------------- FNO


def grid_coordinates(spatial_shape: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Uniform periodic grid on ``[0, 1)^d``: shape ``(*spatial_shape, d)``, coordinate ``j / n``.

    Periodic (``j / n``, not ``linspace(0, 1, n)``) so that every other point of a 2n grid is
    exactly a point of the n grid: the coordinates are resolution-consistent.
    """
    axes = [torch.arange(n, device=device, dtype=torch.float32) / n for n in spatial_shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


class SpectralConv(nn.Module):
    """Fourier integral operator on 1D/2D periodic grids: FFT, truncate, mix channels, inverse FFT.

    ``out = irfft(W(k) rfft(h)(k))`` keeping modes ``|k_1| < modes[0]`` (2D: and
    ``0 <= k_2 < modes[1]`` along the rfft axis). The transforms use the unnormalised forward FFT and
    the 1/n inverse, so a band-limited input gives the same function at every resolution. Grids too
    coarse for all modes use the modes they have.

    The complex weights are stored as a real parameter ``weight`` of shape ``(out, in, *m, 2)``
    (real, imaginary), with ``m = (modes,)`` in 1D and ``(2 * modes[0], modes[1])`` in 2D: the first
    ``modes[0]`` rows hold ``k_1 = 0..modes[0]-1``, the last ``k_1 = -modes[0]..-1``. Real storage
    keeps optimizers, state dicts and metrics free of complex dtypes.

    The layout is a convolution's ``(out, in, *kernel)``, so the condensation metrics treat the
    spectral conv as a conv whose kernel is the kept modes (Table 7's ``conv{i}``): a neuron is an
    output channel, and ``rho`` (KITINet Def. I.2) compares, per input channel, the real vectors
    ``(Re, Im)`` of all kept modes, i.e. ``cos = Re<a, b> / (|a| |b|)`` of the complex kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]) -> None:
        super().__init__()
        if len(modes) not in (1, 2) or any(m < 1 for m in modes):
            raise ConfigError(f"model.modes={list(modes)} must be 1 or 2 integers >= 1")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.modes = tuple(int(m) for m in modes)
        table = self.modes if len(modes) == 1 else (2 * self.modes[0], self.modes[1])
        # Classic FNO initialisation: real and imaginary parts ~ U[0, 1 / (in * out)).
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(out_channels, in_channels, *table, 2))

    def forward(self, h: Tensor) -> Tensor:
        """``(B, in, *spatial) -> (B, out, *spatial)``."""
        dim = len(self.modes)
        spatial = h.shape[2:]
        axes = tuple(range(2, 2 + dim))
        h_ft = torch.fft.rfftn(h, dim=axes)
        weight = torch.view_as_complex(self.weight)
        out_ft = h_ft.new_zeros((h.shape[0], self.out_channels, *h_ft.shape[2:]))
        if dim == 1:
            m = min(self.modes[0], h_ft.shape[-1])
            out_ft[..., :m] = torch.einsum("bix,oix->box", h_ft[..., :m], weight[..., :m])
        else:
            m1 = min(self.modes[0], spatial[0] // 2)
            m2 = min(self.modes[1], h_ft.shape[-1])
            top = weight[:, :, :m1, :m2]
            bottom = weight[:, :, 2 * self.modes[0] - m1 :, :m2]
            mix = "bixy,oixy->boxy"
            out_ft[:, :, :m1, :m2] = torch.einsum(mix, h_ft[:, :, :m1, :m2], top)
            out_ft[:, :, -m1:, :m2] = torch.einsum(mix, h_ft[:, :, -m1:, :m2], bottom)
        return torch.fft.irfftn(out_ft, s=spatial, dim=axes)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"


class PointwiseLinear(nn.Module):
    """The FNO's "linear transformation" ``W``: a 1x1 convolution over channels-first grids.

    Same arithmetic and initialisation as ``nn.Conv1d/2d(in, out, kernel_size=1)``, but the weight
    is stored as a Linear's ``(out, in)``: it is a pointwise linear map, and the condensation
    metrics then use KITINet Def. I.1 for it (Table 7's ``linear{i}``); Def. I.2 on a 1x1 kernel
    would compare scalars and always give 1.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        # nn.Conv's and nn.Linear's default initialisation (fan_in = in_channels for a 1x1 kernel).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(in_channels)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: Tensor) -> Tensor:
        """``(B, in, *spatial) -> (B, out, *spatial)``, spatial of 1 or 2 dimensions."""
        spatial = h.dim() - 2
        if spatial not in (1, 2):
            raise ValueError(f"expected (batch, channels, 1 or 2 spatial dims), got {h.shape}")
        kernel = self.weight.view(*self.weight.shape, *(1,) * spatial)
        conv = F.conv1d if spatial == 1 else F.conv2d
        return conv(h, kernel, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class FourierLayer(nn.Module):
    """``act(residual(skip(h), spectral(h)))``: ``skip`` is a 1x1 conv, ``residual`` adds or collides.

    With KITINet, ``skip(h)`` is the position ``x`` and ``spectral(h)`` the velocity ``v``.
    """

    def __init__(
        self,
        width: int,
        modes: Sequence[int],
        *,
        activation: bool,
        kitinet: KITINetConfig | None,
    ) -> None:
        super().__init__()
        self.spectral = SpectralConv(width, width, modes)
        self.skip = PointwiseLinear(width, width)
        self.residual = make_residual(kitinet)
        self.act = nn.GELU() if activation else nn.Identity()

    def forward(self, h: Tensor) -> Tensor:
        """``(B, width, *spatial) -> (B, width, *spatial)``."""
        return self.act(self.residual(self.skip(h), self.spectral(h)))


class FNO(nn.Module):
    """Classic Fourier neural operator in 1D or 2D, channels-last (see the module docstring).

    Args:
        dim: 1 or 2 spatial dimensions.
        in_channels: input channels (time steps for NS/Heat), grid coordinates not counted.
        out_channels: channels per call (the rollout step when ``t_out`` is set).
        modes: Fourier modes kept per dimension (an int is used for every dimension).
        width: hidden channels of the Fourier layers.
        n_layers: Fourier layers; GELU after each but the last.
        projection_hidden: hidden width of the projection MLP.
        grid: append the grid coordinates to the input channels.
        t_out: roll out autoregressively to this many output steps (None: one call).
        kitinet: KITINet keyword arguments (``collision_heads``, ``coll_coef``, ``dt``,
            ``position_update``, ``mean_free_path``, ...) or None for the vanilla FNO.
        kitinet_layers: indices of the Fourier layers that use KITINet (None: all).
    """

    def __init__(
        self,
        dim: int,
        in_channels: int,
        out_channels: int,
        modes: int | Sequence[int],
        width: int,
        n_layers: int,
        *,
        projection_hidden: int = 128,
        grid: bool = True,
        t_out: int | None = None,
        kitinet: KITINetConfig | None = None,
        kitinet_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ConfigError(f"FNO dim={dim} must be 1 or 2")
        _check_sizes(
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            n_layers=n_layers,
            projection_hidden=projection_hidden,
        )
        modes = (modes,) * dim if isinstance(modes, int) else tuple(modes)
        if len(modes) != dim:
            raise ConfigError(f"model.modes={list(modes)} needs {dim} entries")
        if t_out is not None:
            _check_sizes(t_out=t_out)
        self.dim, self.in_channels, self.out_channels = dim, in_channels, out_channels
        self.width, self.grid, self.t_out = width, grid, t_out
        with_kitinet = _kitinet_indices(kitinet_layers, n_layers, "kitinet_layers")
        self.lift = nn.Linear(in_channels + (dim if grid else 0), width)
        self.layers = nn.ModuleList(
            FourierLayer(
                width,
                modes,
                activation=i < n_layers - 1,
                kitinet=kitinet if i in with_kitinet else None,
            )
            for i in range(n_layers)
        )
        self.proj1 = nn.Linear(width, projection_hidden)
        self.proj_act = nn.GELU()
        self.proj2 = nn.Linear(projection_hidden, out_channels)

    def forward_step(self, u: Tensor) -> Tensor:
        """One operator call: ``(B, *spatial, in_channels) -> (B, *spatial, out_channels)``."""
        if u.dim() != self.dim + 2 or u.shape[-1] != self.in_channels:
            raise ValueError(
                f"FNO{self.dim}d expects input (batch, {'x, ' * self.dim}{self.in_channels} "
                f"channels), channels last; got shape {tuple(u.shape)}"
            )
        if self.grid:
            coords = grid_coordinates(u.shape[1:-1], device=u.device).to(u.dtype)
            u = torch.cat([u, coords.expand(u.shape[0], *coords.shape)], dim=-1)
        # Contiguous channels-first: a channels-last view would make the 1x1 conv return a
        # channels-last tensor, and KITINet's flattening would then copy it every layer.
        h = self.lift(u).movedim(-1, 1).contiguous()
        for layer in self.layers:
            h = layer(h)
        return self.proj2(self.proj_act(self.proj1(h.movedim(1, -1))))

    def forward(self, u: Tensor) -> Tensor:
        """``(B, *spatial, in_channels) -> (B, *spatial, t_out or out_channels)``.

        With ``t_out``, the input window slides: each prediction is appended and the last
        ``in_channels`` steps are the next input. Each call is a training forward of its KITINet
        modules, so ``last_collision_rate`` then holds the last call's rate.
        """
        if self.t_out is None:
            return self.forward_step(u)
        steps, made = [], 0
        while made < self.t_out:
            pred = self.forward_step(u)
            steps.append(pred)
            made += pred.shape[-1]
            u = torch.cat([u, pred], dim=-1)[..., -self.in_channels :]
        return torch.cat(steps, dim=-1)[..., : self.t_out]

    def kitinet_systems(self, spatial_shape: Sequence[int] | None) -> dict[str, int]:
        """``{module name: D}`` of the KITINet modules for a grid ``spatial_shape``."""
        if spatial_shape is None or len(spatial_shape) != self.dim:
            raise ConfigError(
                f"FNO{self.dim}d needs a {self.dim}-d spatial shape, got {spatial_shape!r}"
            )
        features = self.width * math.prod(int(n) for n in spatial_shape)
        return {
            f"layers.{i}.residual": features
            for i, layer in enumerate(self.layers)
            if isinstance(layer.residual, KITINet)
        }


# --------------------------------------------------------------------------- OFormer


class GalerkinAttention(nn.Module):
    """Softmax-free Galerkin attention (Cao 2021, used by OFormer): ``Q (LN(K)^T LN(V)) / n``.

    Linear in the number of points, so whole meshes fit; ``query`` and ``context`` may differ
    (cross-attention). Shapes: ``(B, n_q, dim)``, ``(B, n_k, dim)`` -> ``(B, n_q, dim)``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model.num_heads={num_heads} does not divide model.dim={dim}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.norm_k = nn.LayerNorm(self.head_dim)
        self.norm_v = nn.LayerNorm(self.head_dim)
        self.to_out = nn.Linear(dim, dim)

    def _split(self, t: Tensor) -> Tensor:
        """``(B, n, dim) -> (B, heads, n, head_dim)``."""
        return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """Attend from ``query`` tokens to ``context`` tokens."""
        q = self._split(self.to_q(query))
        k = self.norm_k(self._split(self.to_k(context)))
        v = self.norm_v(self._split(self.to_v(context)))
        kv = k.transpose(-2, -1) @ v / context.shape[1]  # (B, heads, head_dim, head_dim)
        out = (q @ kv).transpose(1, 2).flatten(-2)
        return self.to_out(out)


def _feed_forward(dim: int, ratio: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))


class EncoderBlock(nn.Module):
    """Pre-norm block: ``h = res_attn(h, attn(LN h)); h = res_ffn(h, ffn(LN h))``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: int, kitinet: KITINetConfig | None
    ) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = GalerkinAttention(dim, num_heads)
        self.res_attn = make_residual(kitinet, system="token")
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = _feed_forward(dim, mlp_ratio)
        self.res_ffn = make_residual(kitinet, system="token")

    def forward(self, h: Tensor) -> Tensor:
        """``(B, n, dim) -> (B, n, dim)``."""
        a = self.norm_attn(h)
        h = self.res_attn(h, self.attn(a, a))
        return self.res_ffn(h, self.ffn(self.norm_ffn(h)))


class DecoderBlock(nn.Module):
    """``z = res_attn(z, cross_attn(LN z, LN ctx)); z = res_ffn(z, ffn(LN z))``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: int, kitinet: KITINetConfig | None
    ) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = GalerkinAttention(dim, num_heads)
        self.res_attn = make_residual(kitinet, system="token")
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = _feed_forward(dim, mlp_ratio)
        self.res_ffn = make_residual(kitinet, system="token")

    def forward(self, z: Tensor, context: Tensor) -> Tensor:
        """Queries ``(B, n_q, dim)`` attend to encoder tokens ``(B, n_k, dim)``."""
        z = self.res_attn(z, self.attn(self.norm_query(z), self.norm_context(context)))
        return self.res_ffn(z, self.ffn(self.norm_ffn(z)))


class OFormer(nn.Module):
    """Compact OFormer-style operator transformer on point clouds / irregular meshes.

    ``forward(values, coords, query_coords=None)``: ``values`` ``(B, n, in_channels)`` at
    ``coords`` ``(B, n, coord_dim)`` -> predictions ``(B, n_q, out_channels)`` at ``query_coords``
    (default: ``coords``, the same mesh). All samples of a batch share ``n`` (no padding masks).
    The Airfoil task stacks the input time steps (and variables) as ``in_channels`` and predicts
    all output steps at once as ``out_channels``.

    Args:
        in_channels, out_channels: values per input point / per query point.
        coord_dim: dimension of the coordinates.
        dim: token width (KITINet's D per token: ``collision_heads`` must divide it).
        num_heads: attention heads.
        encoder_layers, decoder_layers: blocks in the encoder / decoder.
        mlp_ratio: hidden width of the feed-forward layers, as a multiple of ``dim``.
        kitinet: KITINet keyword arguments, or None for plain residual additions.
        kitinet_layers: encoder blocks that use KITINet (None: all); the decoder follows
            ``kitinet_decoder``.
        kitinet_decoder: also use KITINet in the decoder blocks.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        coord_dim: int = 2,
        dim: int = 64,
        num_heads: int = 4,
        encoder_layers: int = 4,
        decoder_layers: int = 1,
        mlp_ratio: int = 2,
        kitinet: KITINetConfig | None = None,
        kitinet_layers: Sequence[int] | None = None,
        kitinet_decoder: bool = True,
    ) -> None:
        super().__init__()
        _check_sizes(
            in_channels=in_channels,
            out_channels=out_channels,
            coord_dim=coord_dim,
            dim=dim,
            num_heads=num_heads,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            mlp_ratio=mlp_ratio,
        )
        self.in_channels, self.coord_dim, self.dim = in_channels, coord_dim, dim
        self.out_channels = out_channels
        with_kitinet = _kitinet_indices(kitinet_layers, encoder_layers, "kitinet_layers")
        self.embed = nn.Sequential(
            nn.Linear(in_channels + coord_dim, dim), nn.GELU(), nn.Linear(dim, dim)
        )
        self.encoder = nn.ModuleList(
            EncoderBlock(dim, num_heads, mlp_ratio, kitinet if i in with_kitinet else None)
            for i in range(encoder_layers)
        )
        self.query_embed = nn.Sequential(nn.Linear(coord_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.decoder = nn.ModuleList(
            DecoderBlock(dim, num_heads, mlp_ratio, kitinet if kitinet_decoder else None)
            for _ in range(decoder_layers)
        )
        self.head = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out_channels)
        )
        for module in self.modules():
            if isinstance(module, KITINet) and dim % module.collision_heads:
                raise ConfigError(
                    f"collision_heads={module.collision_heads} does not divide the token width "
                    f"model.dim={dim}; allowed: {', '.join(map(str, _divisors(dim)))}"
                )

    def forward(
        self,
        values: Tensor | Sequence[Tensor],
        coords: Tensor | None = None,
        query_coords: Tensor | None = None,
    ) -> Tensor:
        """Predict ``out_channels`` values at ``query_coords`` (default ``coords``).

        ``values`` may also be the tuple ``(values, coords)`` or ``(values, coords, query_coords)``:
        the shared training loop calls ``model(inputs)`` with one batch object.
        """
        if isinstance(values, tuple | list):
            if coords is not None or not 2 <= len(values) <= 3:
                raise TypeError(
                    "pass (values, coords[, query_coords]) either as one tuple or as arguments"
                )
            values, coords, *rest = values
            query_coords = rest[0] if rest else None
        if coords is None:
            raise TypeError(
                "OFormer needs coords: model(values, coords) or model((values, coords))"
            )
        if values.dim() != 3 or values.shape[-1] != self.in_channels:
            raise ValueError(
                f"values must be (batch, points, {self.in_channels}), got {tuple(values.shape)}"
            )
        if coords.shape != (*values.shape[:2], self.coord_dim):
            raise ValueError(
                f"coords must be (batch, points, {self.coord_dim}) matching values, got "
                f"{tuple(coords.shape)}"
            )
        query_coords = coords if query_coords is None else query_coords
        h = self.embed(torch.cat([values, coords], dim=-1))
        for block in self.encoder:
            h = block(h)
        z = self.query_embed(query_coords)
        for block in self.decoder:
            z = block(z, h)
        return self.head(z)

    def kitinet_systems(self, spatial_shape: Sequence[int] | None = None) -> dict[str, int]:
        """``{module name: D}`` of the KITINet modules; one system per token, D = ``dim``."""
        return {name: self.dim for name, m in self.named_modules() if isinstance(m, KITINet)}


# --------------------------------------------------------------------------- registry


def _check_sizes(**sizes: int) -> None:
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.{key}={value!r} must be an integer >= 1")


@MODELS.register
def fno1d(
    in_channels: int = 1,
    out_channels: int = 1,
    modes: int = 16,
    width: int = 64,
    n_layers: int = 4,
    projection_hidden: int = 128,
    grid: bool = True,
    kitinet: KITINetConfig | None = None,
    kitinet_layers: Sequence[int] | None = None,
) -> FNO:
    """FNO-1D, public Burgers setting (u0 -> u(., 1)): modes 16, width 64, 4 layers."""
    return FNO(
        1,
        in_channels,
        out_channels,
        modes,
        width,
        n_layers,
        projection_hidden=projection_hidden,
        grid=grid,
        kitinet=kitinet,
        kitinet_layers=kitinet_layers,
    )


@MODELS.register
def fno2d(
    in_channels: int = 10,
    out_channels: int = 1,
    t_out: int | None = 10,
    modes: int | Sequence[int] = 12,
    width: int = 20,
    n_layers: int = 4,
    projection_hidden: int = 128,
    grid: bool = True,
    kitinet: KITINetConfig | None = None,
    kitinet_layers: Sequence[int] | None = None,
) -> FNO:
    """FNO-2D for NS / Heat: 10 input steps as channels, rolled out one step at a time to ``t_out``.

    ``out_channels = t_out`` makes it one-shot; ``t_out=None`` returns one call's output.
    Defaults: the classic FNO-2D-time setting (modes 12, width 20, 4 layers).
    """
    return FNO(
        2,
        in_channels,
        out_channels,
        modes,
        width,
        n_layers,
        projection_hidden=projection_hidden,
        grid=grid,
        t_out=t_out,
        kitinet=kitinet,
        kitinet_layers=kitinet_layers,
    )


@MODELS.register
def oformer(
    in_channels: int = 4,
    out_channels: int = 4,
    coord_dim: int = 2,
    dim: int = 64,
    num_heads: int = 4,
    encoder_layers: int = 4,
    decoder_layers: int = 1,
    mlp_ratio: int = 2,
    kitinet: KITINetConfig | None = None,
    kitinet_layers: Sequence[int] | None = None,
    kitinet_decoder: bool = True,
) -> OFormer:
    """Compact OFormer for Airfoil (see :class:`OFormer`); channel counts are set by the dataset."""
    return OFormer(
        in_channels,
        out_channels,
        coord_dim=coord_dim,
        dim=dim,
        num_heads=num_heads,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        mlp_ratio=mlp_ratio,
        kitinet=kitinet,
        kitinet_layers=kitinet_layers,
        kitinet_decoder=kitinet_decoder,
    )
