"""From the latent pyramid to a dense (1, L, H, W) tensor: learned (Cool-chic) or bilinear (C3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liclab.overfit.mlp import channels_last, replicate_pad


def bicubic_half_kernel(kernel_size: int) -> Tensor:
    """The first half of the symmetric ×2 interpolation kernel that initialises a learned
    upsampling: bicubic (Keys, a = −0.75, as ``F.interpolate(mode="bicubic")``) for 8 taps
    and more (zero-padded outside), bilinear for 4."""
    if kernel_size >= 8:
        core = [-0.03515625, -0.10546875, 0.26171875, 0.87890625]  # Keys at 1.75 … 0.25
    else:
        core = [0.25, 0.75]
    half = torch.zeros(kernel_size // 2)
    half[-len(core) :] = torch.tensor(core)
    return half


def upsample2(x: Tensor, half: Tensor) -> Tensor:
    """×2 upsampling of every channel of ``x`` (1, C, h, w) → (1, C, 2h, 2w) with the separable
    symmetric kernel k = [half, reversed(half)]: a transposed convolution of stride 2 on
    edge-replicated input, horizontally then vertically. Output j sits at input coordinate
    (j + ½)/2 − ½, the half-pixel convention of ``F.interpolate(align_corners=False)``.

    Depthwise, in channels-last layout: oneDNN's fast case for one-channel filters (about 3×
    the NCHW speed on a CPU, forward and backward)."""
    k = 2 * half.numel()
    c, h, w = x.shape[-3:]
    kernel = torch.cat([half, half.flip(0)])
    pad, crop = k // 4, k // 2 - 1 + k // 2
    x = replicate_pad(channels_last(x), (pad, pad, 0, 0))
    x = F.conv_transpose2d(x, kernel.view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, 2), groups=c)
    x = replicate_pad(x[..., crop : crop + 2 * w], (0, 0, pad, pad))
    x = F.conv_transpose2d(x, kernel.view(1, 1, k, 1).expand(c, 1, k, 1), stride=(2, 1), groups=c)
    return x[..., crop : crop + 2 * h, :]


PADDINGS = ("replicate", "zeros")
"""How a pre-concatenation filter sees outside its grid: edges replicated (liclab's until the
tenth session) or zeros (Cool-chic's ``F.conv2d(padding=k // 2)``)."""


def prefilter(x: Tensor, half: Tensor, padding: str = "replicate") -> Tensor:
    """``x + f ∗ x`` for ``x`` (1, C, h, w) and the separable symmetric odd kernel
    f = [half, reversed(half[:-1])] (``half[-1]`` its centre): horizontally then vertically,
    each pass ``c·x[i] + Σ_t a_t·(x[i − t] + x[i + t])`` on input padded as ``padding``
    (:data:`PADDINGS`). Differentiable in both; its own backward pass (the adjoint of each
    pass is the same symmetric filter, with replicated edges folded back), cheaper than
    autograd's (inside a ``torch.compile`` trace, depthwise convolutions that autograd
    differentiates: the same values up to float rounding, and no recompilation as the taps
    train)."""
    zeros = padding == "zeros"
    if not torch.compiler.is_compiling():
        return _Prefilter.apply(x, half, zeros)
    p, c = half.numel() - 1, x.shape[1]
    taps = torch.cat([half, half[:-1].flip(0)])
    across = F.conv2d(_pad(x, p, -1, zeros), taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    down = F.conv2d(
        _pad(across, p, -2, zeros), taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )
    return down + x


def _pad(x: Tensor, p: int, dim: int, zeros: bool) -> Tensor:
    sides = (p, p, 0, 0) if dim == -1 else (0, 0, p, p)
    return F.pad(x, sides) if zeros else replicate_pad(x, sides)


def _pass(x: Tensor, k: list[float], dim: int, zeros: bool) -> tuple[Tensor, Tensor]:
    """(one filtering pass of ``x`` along ``dim``, ``x`` padded along it)."""
    p, n = len(k) - 1, x.shape[dim]
    xp = _pad(x, p, dim, zeros)
    out = x * k[p]
    for t in range(1, p + 1):
        out.add_(xp.narrow(dim, p - t, n), alpha=k[p - t])
        out.add_(xp.narrow(dim, p + t, n), alpha=k[p - t])
    return out, xp


class _Prefilter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, half: Tensor, zeros: bool) -> Tensor:
        k = half.tolist()
        across, _ = _pass(x, k, -1, zeros)
        out, _ = _pass(across, k, -2, zeros)
        ctx.save_for_backward(x, across, half)
        ctx.zeros = zeros
        return out.add_(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, across, half = ctx.saved_tensors
        k, p = half.tolist(), half.numel() - 1
        grad_half = torch.zeros_like(half)
        g = grad
        for dim, inp in ((-2, across), (-1, x)):  # the passes in reverse
            n = inp.shape[dim]
            xp = _pad(inp, p, dim, ctx.zeros)
            flat = g.reshape(-1)
            grad_half[p] += torch.dot(flat, inp.reshape(-1))
            for t in range(1, p + 1):
                pair = xp.narrow(dim, p - t, n) + xp.narrow(dim, p + t, n)
                grad_half[p - t] += torch.dot(flat, pair.reshape(-1))
            gp = torch.zeros_like(xp)  # the gradient of the padded input, then folded
            gp.narrow(dim, p, n).add_(g, alpha=k[p])
            for t in range(1, p + 1):
                gp.narrow(dim, p - t, n).add_(g, alpha=k[p - t])
                gp.narrow(dim, p + t, n).add_(g, alpha=k[p - t])
            g = gp.narrow(dim, p, n).clone()
            if not ctx.zeros:  # the padding's gradient goes to the edge it replicates
                g.narrow(dim, 0, 1).add_(gp.narrow(dim, 0, p).sum(dim, keepdim=True))
                g.narrow(dim, n - 1, 1).add_(gp.narrow(dim, n + p, p).sum(dim, keepdim=True))
        return g.add_(grad), grad_half, None


class LearnedUpsampling(nn.Module):
    """Hierarchical learned upsampling (Cool-chic 3.4+, Leguay et al.; Ladune et al. 2023,
    arXiv:2212.05458), one separable symmetric ×2 kernel per level, initialised bicubic::

        ŷ_{L−1} ─up_{L−2}─▶ cat(g(ŷ_{L−2}), ·) ─up_{L−3}─▶ … ─up_0─▶ cat(g(ŷ_0), ·)

    Each step upsamples every channel gathered so far with that step's kernel and crops to
    the finer grid's size; the result has the L grids as channels, finest first. g is the
    identity, or with ``preconcat`` Cool-chic 5's pre-concatenation filter of each level.

    Args:
        levels: L, the number of latent grids (the model passes it).
        kernel_size: taps of each kernel (a multiple of 4; Cool-chic uses 8).
        preconcat: taps (odd) of a filter on each finer grid before it joins the upsampled
            ones, ``ŷ_l + f_l ∗ ŷ_l`` with f_l separable and symmetric, initialised to a unit
            impulse (Cool-chic 5, 7 taps); 0: none.
        preconcat_padding: what those filters read outside their grid, ``"replicate"`` (its
            edges) or ``"zeros"`` (Cool-chic's).
    """

    def __init__(
        self,
        levels: int,
        kernel_size: int = 8,
        preconcat: int = 0,
        preconcat_padding: str = "replicate",
    ):
        super().__init__()
        if preconcat_padding not in PADDINGS:
            raise ValueError(
                f"upsampling preconcat_padding must be one of {PADDINGS}, not {preconcat_padding!r}"
            )
        self.preconcat_padding = preconcat_padding
        if kernel_size < 4 or kernel_size % 4:
            raise ValueError(f"upsampling kernel_size must be a multiple of 4, not {kernel_size}")
        if preconcat and preconcat % 2 == 0:
            raise ValueError(f"upsampling preconcat must be odd (or 0), not {preconcat}")
        self.kernel_size, self.preconcat = kernel_size, preconcat
        self.kernels = nn.ParameterList(
            nn.Parameter(bicubic_half_kernel(kernel_size)) for _ in range(levels - 1)
        )
        if preconcat:
            impulse = torch.zeros(preconcat // 2 + 1)
            impulse[-1] = 1.0
            self.filters = nn.ParameterList(
                nn.Parameter(impulse.clone()) for _ in range(levels - 1)
            )

    def forward(self, y_hat: list[Tensor]) -> Tensor:
        x = y_hat[-1]
        for level in range(len(y_hat) - 2, -1, -1):
            h, w = y_hat[level].shape[-2:]
            x = upsample2(x, self.kernels[level])[..., :h, :w]
            fine = y_hat[level]
            if self.preconcat:
                fine = prefilter(fine, self.filters[level], self.preconcat_padding)
            x = torch.cat([fine, x], dim=1)
        return x

    def macs(self, shapes: list[tuple[int, int]]) -> int:
        """Multiplications of one decode: per step, a horizontal pass at (h_{l+1}, w_l) and a
        vertical one at (h_l, w_l), k/2 taps per output, for each channel so far; and the
        pre-concatenation filters' taps, twice per latent of every grid but the coarsest."""
        taps = self.kernel_size // 2
        macs = sum(
            (len(shapes) - 1 - lv) * taps * (shapes[lv + 1][0] + shapes[lv][0]) * shapes[lv][1]
            for lv in range(len(shapes) - 1)
        )
        return macs + sum(2 * self.preconcat * h * w for h, w in shapes[:-1])


class BilinearUpsampling(nn.Module):
    """Every grid resized straight to full resolution by bilinear interpolation (half-pixel
    centres), no parameters: C3's upsampling (Kim et al. 2024, arXiv:2312.02753).

    Args:
        levels: L (the model passes it; no parameters depend on it).
    """

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, y_hat: list[Tensor]) -> Tensor:
        size = y_hat[0].shape[-2:]
        ups = [F.interpolate(y, size=size, mode="bilinear", align_corners=False) for y in y_hat[1:]]
        return torch.cat([y_hat[0], *ups], dim=1)

    def macs(self, shapes: list[tuple[int, int]]) -> int:
        """4 multiplications (2 per axis) per output value of each upsampled grid."""
        h, w = shapes[0]
        return 4 * h * w * (len(shapes) - 1)
