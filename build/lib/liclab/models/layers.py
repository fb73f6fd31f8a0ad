"""Building blocks shared by the model families."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """'Same'-padded convolution; with stride 2 it halves the resolution."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that exactly inverts :func:`conv`'s change of resolution."""
    return nn.ConvTranspose2d(
        in_ch,
        out_ch,
        kernel_size,
        stride=stride,
        output_padding=stride - 1,
        padding=kernel_size // 2,
    )


def gdn_analysis(N: int, M: int) -> nn.Sequential:
    """The four-stage conv + GDN analysis transform g_a of Ballé et al. 2018 (stride 16)."""
    from compressai.layers import GDN

    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def gdn_synthesis(N: int, M: int) -> nn.Sequential:
    """The mirror synthesis transform g_s with inverse GDN (stride 16)."""
    from compressai.layers import GDN

    return nn.Sequential(
        deconv(M, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, 3),
    )


def subpixel_weights(weight: Tensor, stride: tuple, padding: tuple) -> tuple[Tensor, tuple]:
    """The stride-1 convolution kernel (O·s_h·s_w, C, K_h, K_w) equal to a transposed
    convolution with ``weight`` (C, O, k_h, k_w), and its offsets (:func:`subpixel_spans`).

    Output row ``Y = s·u + r`` of the transposed convolution is ``Σ_t x[u + t]·w[r + p − s·t]``
    over the taps that exist: for each phase ``r``, a correlation of x.
    """
    c, o, kh, kw = weight.shape
    index, spans = [], subpixel_spans((kh, kw), stride, padding)
    for k, s, p, (lo, hi) in zip((kh, kw), stride, padding, spans, strict=True):
        taps = torch.tensor(
            [[s * -t + r + p for t in range(lo, hi + 1)] for r in range(s)], dtype=torch.long
        )
        index.append(torch.where((taps >= 0) & (taps < k), taps, k))  # k: a zero tap
    padded = F.pad(weight, (0, 1, 0, 1))  # (C, O, kh + 1, kw + 1), the last row/col zero
    iy, ix = index
    sh, sw = stride
    # W'[o, ry, rx, c, ty, tx] = w[c, o, iy[ry, ty], ix[rx, tx]]
    kernel = padded[:, :, iy[:, None, :, None], ix[None, :, None, :]]  # C, O, sh, sw, Ty, Tx
    kernel = kernel.permute(1, 2, 3, 0, 4, 5).reshape(o * sh * sw, c, *kernel.shape[-2:])
    return kernel, spans


def subpixel_spans(kernel_size, stride, padding) -> tuple:
    """Per axis, the offsets ``t = i − u`` with a valid tap ``s·(−t) + r + p ∈ [0, k)`` for
    some phase ``r``, as (lowest, highest)."""
    return tuple(
        (min(-((k - 1 - r - p) // s) for r in range(s)), max((r + p) // s for r in range(s)))
        for k, s, p in zip(kernel_size, stride, padding, strict=True)
    )


def subpixel_transposed_conv(
    x: Tensor, weight: Tensor, bias, stride, padding, output_padding, conv=None
) -> Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)`` as a
    stride-1 convolution without padding (by default ``F.conv2d`` with
    :func:`subpixel_weights`; ``conv(x)`` if given) and a pixel shuffle."""
    (sh, sw), (ph, pw), (oh, ow) = stride, padding, output_padding
    c, o, kh, kw = weight.shape
    (lo_h, hi_h), (lo_w, hi_w) = subpixel_spans((kh, kw), stride, padding)
    if conv is None:
        conv = partial(F.conv2d, weight=subpixel_weights(weight, stride, padding)[0])
    h, w = x.shape[-2:]
    out_h, out_w = (h - 1) * sh - 2 * ph + kh + oh, (w - 1) * sw - 2 * pw + kw + ow
    uh, uw = -(-out_h // sh), -(-out_w // sw)  # phase rows/cols to compute
    # u + t must index x, zeros outside: pad −lo before, (uh − 1 + hi) − (h − 1) after
    x = F.pad(x, (-lo_w, max(0, uw - w + hi_w), -lo_h, max(0, uh - h + hi_h)))
    y = conv(x)[..., :uh, :uw]
    y = _shuffle(y, sh, sw)[..., :out_h, :out_w]
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def _shuffle(y: Tensor, sh: int, sw: int) -> Tensor:
    """Pixel shuffle with strides (sh, sw): channel o·sh·sw + ry·sw + rx → phase (ry, rx)."""
    b, c, h, w = y.shape
    o = c // (sh * sw)
    return y.reshape(b, o, sh, sw, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, o, h * sh, w * sw)
