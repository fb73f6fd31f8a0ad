"""Building blocks shared by the model families."""

from __future__ import annotations

from torch import nn


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
