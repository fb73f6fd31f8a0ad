"""The auto-regressive probability model (ARM) of an overfitted codec, and its Laplace rate."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liclab.overfit.mlp import pointwise_mlp

CONTEXT_ORDER: tuple[tuple[int, int], ...] = (
    (-1, 0), (0, -1), (-1, -1), (-1, 1), (-2, 0), (0, -2),
    (-2, -1), (-2, 1), (-1, -2), (-1, 2), (-2, -2), (-2, 2),
    (-3, 0), (0, -3), (-3, -1), (-3, 1), (-1, -3), (-1, 3),
    (-3, -2), (-3, 2), (-2, -3), (-2, 3), (-3, -3), (-3, 3),
)  # fmt: skip
"""Spatial context offsets (dy, dx) of the ARM, nearest first: a K-value context is the first
K (dy² + dx² ascending, ties in raster order). All lie above the current row or to its left
on it, so they are decoded before the current latent in raster order; the 24 are every such
position of the 7×7 window. Positions outside the grid read as 0."""

COARSE_ORDER: tuple[tuple[int, int], ...] = (
    (0, 0), (-1, 0), (0, -1), (0, 1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1),
)  # fmt: skip
"""Offsets (dy, dx) in the next coarser grid, around the co-located latent (y // 2, x // 2),
of the optional coarse context (the coarser grid is decoded first). The coarsest grid reads
zeros."""

LOG_SCALE_SHIFT = 4.0
LOG_SCALE_RANGE = (-4.6, 5.0)  # scale in [0.01, 148]
MIN_LIKELIHOOD = 2.0**-16  # no latent costs more than 16 bits


class ARM(nn.Module):
    """Auto-regressive module: a discretised Laplace for each latent from K already decoded
    latents of its grid (Ladune et al. 2023, Cool-chic, arXiv:2212.05458; Leguay et al. 2023,
    arXiv:2307.12706), optionally also from the coarser grid (Cool-chic 5's inter-grid context)::

        ctx = [ŷ[y+dy, x+dx] for (dy, dx) in CONTEXT_ORDER[:K]]
            + [ŷ_coarser[y//2+dy, x//2+dx] for (dy, dx) in COARSE_ORDER[:C]]   (width K + C)
        h   = ctx
        h   = ReLU(W_i h + b_i + h)        i = 1 … hidden_layers  (width → width, residual)
        μ, s = W_o h + b_o                  (width → 2)
        scale = exp(clamp(s − 4, −4.6, 5))
        p(ŷ) = Laplace(μ, scale)[ŷ − ½, ŷ + ½], at least 2⁻¹⁶

    One network serves every grid. Only Linear layers, ReLU and residual adds, so a decoder
    can run the same network latent by latent (raster order, or a wavefront) in integer
    arithmetic, as :mod:`liclab.models.integer` does for ELIC. :meth:`contexts` and
    :meth:`mlp` are that serial form; :meth:`forward` computes all positions at once (every
    context as a column, then the layers chunk by chunk in cache,
    :func:`liclab.overfit.mlp.pointwise_mlp`) and equals it.

    Cool-chic 5.0's additions, each an option:

    - ``stabiliser``: a Linear layer from the context straight to the two outputs, added to
      the MLP's (a linear path beside the trunk);
    - ``features`` F: inter-grid features (Cool-chic 5.0's IFCE) for the ``feature_grids``
      finest grids: F more context values per latent, ``V_g · r + c_g``, a learned linear
      map (one per grid) of the latents r of every coarser grid (the hyperlatents included)
      at the co-located position ``(y >> s, x >> s)``; the other grids get F zeros. The model
      tells the ARM its grids (:meth:`attach`), which builds the maps.

    Args:
        context: K, the number of spatial context values (8 … 24).
        hidden_layers: residual hidden layers (0: a linear ARM).
        coarse: C, context values from the coarser grid (0 … 9; 0: none).
        stabiliser: the linear stabiliser.
        features: F, inter-grid features (0: none).
        feature_grids: how many of the finest grids get them (Cool-chic 5.0: 3).

    Initialisation as Cool-chic: hidden layers zero (identity through the residual), output
    weights N(0, 1/16) (Cool-chic's randn / out²), biases zero; the stabiliser as the output
    layer; the feature maps N(0, 1/F⁴) (randn / F²), zero biases.
    """

    def __init__(
        self,
        context: int = 24,
        hidden_layers: int = 2,
        coarse: int = 0,
        stabiliser: bool = False,
        features: int = 0,
        feature_grids: int = 3,
    ):
        super().__init__()
        if not 1 <= context <= len(CONTEXT_ORDER) or not 0 <= coarse <= len(COARSE_ORDER):
            raise ValueError(f"ARM context must be 1…24 and coarse 0…9, not {context}, {coarse}")
        if not 0 <= features <= 16 or not 1 <= feature_grids <= 4:
            raise ValueError(
                f"ARM features must be 0…16 and feature_grids 1…4, not {features}, {feature_grids}"
            )
        self.offsets = CONTEXT_ORDER[:context]
        self.coarse_offsets = COARSE_ORDER[:coarse]
        self.features, self.feature_grids = features, feature_grids
        self.width = width = context + coarse + features
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(hidden_layers))
        self.layers.append(nn.Linear(width, 2))
        for layer in self.layers[:-1]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.layers[-1].weight, std=1 / 4)
        nn.init.zeros_(self.layers[-1].bias)
        self.stabiliser = nn.Linear(width, 2) if stabiliser else None
        if stabiliser:
            nn.init.normal_(self.stabiliser.weight, std=1 / 4)
            nn.init.zeros_(self.stabiliser.bias)
        self.radius = max(max(-dy, abs(dx)) for dy, dx in self.offsets)
        self.ifce = nn.ModuleList()
        self.levels: int | None = None  # set by attach
        self.resolutions: list[int] = []

    def attach(self, levels: int, resolutions: list[int]) -> None:
        """Tell the ARM the model's grids: ``levels`` image grids, then hyperlatent grids;
        ``resolutions[i]``: grid i's l (its resolution 2^−l). Builds the feature maps (grid g
        reads every coarser grid, :meth:`coarser`)."""
        self.levels, self.resolutions = levels, list(resolutions)
        if self.features and not self.ifce:
            self.ifce = nn.ModuleList(
                nn.Linear(len(self.coarser(g)), self.features)
                for g in range(min(self.feature_grids, levels - 1))
            )
            for layer in self.ifce:
                nn.init.normal_(layer.weight, std=1 / self.features**2)
                nn.init.zeros_(layer.bias)

    def coarser(self, grid: int) -> list[tuple[int, int]]:
        """(grid j, shift s ≥ 1) of the values a feature map of ``grid`` reads: every later
        grid of a coarser resolution (the image grids, then the hyperlatents), at
        (y >> s, x >> s)."""
        res = self.resolutions
        return [(j, res[j] - res[grid]) for j in range(grid + 1, len(res)) if res[j] > res[grid]]

    def feature_rows(self, y_hat: list[Tensor], grid: int) -> Tensor | None:
        """The inter-grid features of every latent of ``grid``: (F, h·w), or None (none)."""
        if not self.features:
            return None
        h, w = y_hat[grid].shape[-2:]
        if grid >= len(self.ifce):
            return y_hat[grid].new_zeros(self.features, h * w)
        planes = [_colocated(y_hat[j][0, 0], s, h, w) for j, s in self.coarser(grid)]
        layer = self.ifce[grid]
        return torch.addmm(layer.bias[:, None], layer.weight, torch.stack(planes).view(-1, h * w))

    def macs_per_latent(self) -> int:
        """Multiplications per latent of the network (its Linear layers and stabiliser; the
        feature maps are counted per image by :meth:`feature_macs`)."""
        layers = [*self.layers, *([self.stabiliser] if self.stabiliser is not None else [])]
        return sum(layer.in_features * layer.out_features for layer in layers)

    def feature_macs(self, shapes: list[tuple[int, int]]) -> int:
        """Multiplications of the feature maps over an image of grids ``shapes``: each at its
        next coarser grid's resolution (its values are constant on 2×2 blocks), as Cool-chic."""
        return sum(
            layer.in_features * layer.out_features * shapes[g + 1][0] * shapes[g + 1][1]
            for g, layer in enumerate(self.ifce)
        )

    def forward(self, y_hat: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """(μ, scale) for every latent of every grid (each (1, 1, h, w)), all at once."""
        first, n = self.layers[0], len(self.layers)
        weight = first.weight
        if self._residual(0):  # the identity folded into the first layer's weights
            weight = weight + torch.eye(self.width, device=weight.device)
        weights = [weight, *(layer.weight for layer in self.layers[1:])]
        biases = [layer.bias for layer in self.layers]
        residual = [i > 0 and self._residual(i) for i in range(n)]
        relu = [self._residual(i) for i in range(n)]
        out = []
        levels = self.levels or len(y_hat)
        for level, y in enumerate(y_hat):
            coarser = y_hat[level + 1] if level + 1 < levels else None
            rows = self._window(y, coarser, self.feature_rows(y_hat, level))
            raw = pointwise_mlp(rows, weights, biases, residual, relu)
            if self.stabiliser is not None:
                raw = torch.addmm(self.stabiliser.bias, rows, self.stabiliser.weight.t()) + raw
            out.append(self.distribution(raw.t().reshape(2, 1, 1, *y.shape[-2:])))
        return out

    def _residual(self, i: int) -> bool:
        return i < len(self.layers) - 1

    def _window(self, y: Tensor, coarser: Tensor | None, features: Tensor | None = None) -> Tensor:
        """Every position's context as a row: (h·w, width) in context order, a transposed view
        of contiguous (width, h·w) columns (each tap is then one contiguous copy)."""
        r, (h, w) = self.radius, y.shape[-2:]
        padded = F.pad(y[0, 0], (r, r, r, 0))
        cols = [_Taps.apply(padded, tuple((dy + r, dx + r) for dy, dx in self.offsets), h, w)]
        if self.coarse_offsets:
            c = coarser[0, 0] if coarser is not None else y.new_zeros((h + 1) // 2, (w + 1) // 2)
            up = F.pad(c.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1), (2, 2, 2, 2))
            taps = tuple((2 * dy + 2, 2 * dx + 2) for dy, dx in self.coarse_offsets)
            cols.append(_Taps.apply(up, taps, h, w))
        if features is not None:
            cols.append(features)
        return (torch.cat(cols) if len(cols) > 1 else cols[0]).t()

    def contexts(
        self, y: Tensor, coarser: Tensor | None = None, features: Tensor | None = None
    ) -> Tensor:
        """The serial decoder's view: (h·w, width) context rows in raster order
        (``features``: :meth:`feature_rows` of the grid, where the ARM has them)."""
        h, w = y.shape[-2:]
        rows = [_shifted(y[0, 0], dy, dx) for dy, dx in self.offsets]
        if self.coarse_offsets:
            c = coarser[0, 0] if coarser is not None else y.new_zeros((h + 1) // 2, (w + 1) // 2)
            up = c.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)
            rows += [_shifted(up, 2 * dy, 2 * dx)[:h, :w] for dy, dx in self.coarse_offsets]
        if features is not None:
            rows += list(features.view(-1, h, w))
        return torch.stack(rows, dim=-1).reshape(h * w, self.width)

    def mlp(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, scale) from explicit context rows (n, width): the network as a decoder runs it."""
        h = ctx
        for i, layer in enumerate(self.layers):
            if self._residual(i):
                h = torch.relu(layer(h) + h)
            else:
                h = layer(h)
        if self.stabiliser is not None:
            h = h + self.stabiliser(ctx)
        return self.distribution(h.t())

    @staticmethod
    def distribution(raw: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, scale) from the network's two outputs (stacked on dim 0)."""
        return raw[0], torch.exp(torch.clamp(raw[1] - LOG_SCALE_SHIFT, *LOG_SCALE_RANGE))


class _Taps(torch.autograd.Function):
    """``out[t, y·w + x] = padded[oy_t + y, ox_t + x]`` for taps (oy, ox): every position's
    context as a column, one contiguous copy per tap; the backward pass adds the taps back in
    place (F.unfold's im2col / col2im take ~5× as long for a one-channel grid)."""

    @staticmethod
    def forward(ctx, padded: Tensor, taps: tuple, h: int, w: int) -> Tensor:
        out = padded.new_empty(len(taps), h, w)
        for t, (oy, ox) in enumerate(taps):
            out[t] = padded[oy : oy + h, ox : ox + w]
        ctx.taps, ctx.size, ctx.shape = taps, (h, w), padded.shape
        return out.view(len(taps), h * w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (h, w), g = ctx.size, grad.reshape(len(ctx.taps), *ctx.size)
        out = grad.new_zeros(ctx.shape)
        for t, (oy, ox) in enumerate(ctx.taps):
            out[oy : oy + h, ox : ox + w] += g[t]
        return out, None, None, None


def _colocated(grid: Tensor, shift: int, h: int, w: int) -> Tensor:
    """``out[y, x] = grid[y >> shift, x >> shift]`` for an (h, w) grid (nearest upsampling)."""
    n = 2**shift
    return grid.repeat_interleave(n, dim=0).repeat_interleave(n, dim=1)[:h, :w]


def _shifted(grid: Tensor, dy: int, dx: int) -> Tensor:
    """``out[y, x] = grid[y + dy, x + dx]``, zero outside the grid."""
    h, w = grid.shape
    padded = F.pad(grid, (abs(dx), abs(dx), abs(dy), abs(dy)))
    return padded[abs(dy) + dy : abs(dy) + dy + h, abs(dx) + dx : abs(dx) + dx + w]


def laplace_likelihood(y: Tensor, mu: Tensor, scale: Tensor) -> Tensor:
    """P(ŷ) = F(ŷ + ½) − F(ŷ − ½) for the Laplace CDF F of mean μ and scale b, at least
    2⁻¹⁶: with d = |ŷ − μ|, ½·(e^{−(d−½)/b} − e^{−(d+½)/b}) for d ≥ ½ and
    1 − ½·(e^{−(½−d)/b} + e^{−(½+d)/b}) inside.

    Exponents are clamped at −30 (e^{−30} ≈ 1e−13, far below the 2⁻¹⁶ floor): below about
    −87 float32 results are denormal or zero, and a CPU's vector exp turns ~100× slower there.
    """
    d = (y - mu).abs()
    inv = -1.0 / scale
    upper = torch.exp(torch.clamp((d + 0.5) * inv, min=-30.0))
    lower = torch.exp(torch.clamp((d - 0.5).abs() * inv, min=-30.0))
    p = torch.where(d >= 0.5, 0.5 * (lower - upper), 1.0 - 0.5 * (lower + upper))
    return p.clamp_min(MIN_LIKELIHOOD)


def bits(likelihood: Tensor) -> Tensor:
    """−log2 of the likelihoods, summed."""
    return -torch.log(likelihood).sum() / math.log(2)
