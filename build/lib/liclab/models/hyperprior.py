"""Hyperprior models: scale (Ballé et al. 2018) and mean-scale (Minnen et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from liclab.entropy.gaussian import GaussianConditional
from liclab.entropy.tables import EntropyBottleneck
from liclab.models.base import (
    CompressionModel,
    bottleneck_compress,
    bottleneck_decompress,
    bottleneck_likelihood,
    bottleneck_medians,
    gaussian_likelihood,
    snap,
    stable,
)
from liclab.models.layers import conv, deconv, gdn_analysis, gdn_synthesis


class ScaleHyperprior(CompressionModel):
    """Scale hyperprior (Ballé, Minnen, Singh, Hwang, Johnston 2018, arXiv:1802.01436).

    ::

        x ─g_a─▶ y ─|·|─h_a─▶ z ─Q─▶ ẑ ─h_s─▶ σ
                 │                              │
                 └────────Q────▶ ŷ ◀── N(0, σ) ─┘ ─g_s─▶ x̂

    z is coded with a factorized EntropyBottleneck, ŷ with a zero-mean Gaussian whose scale
    comes from the hyper-synthesis. Subclasses change only :meth:`entropy_parameters` and the
    hyper-analysis input.

    Args:
        N: channels of the hidden layers (128 for the low-rate paper models, 192 for high).
        M: channels of y (192, or 320 for high rates).

    Deviations from the paper: none in the transforms (CompressAI's layout, ReLU after the
    last h_s layer so σ ≥ 0); in coding, σ is mapped to CompressAI's 64-entry log-spaced
    scale table (0.11–256), which costs ~0.5–1 % over the estimate.
    """

    def __init__(self, N: int = 128, M: int = 192):
        super().__init__()
        self.N, self.M = N, M
        self.g_a = gdn_analysis(N, M)
        self.g_s = gdn_synthesis(N, M)
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.ReLU(inplace=True), conv(N, N), nn.ReLU(inplace=True), conv(N, N)
        )
        self.h_s = nn.Sequential(
            deconv(N, N),
            nn.ReLU(inplace=True),
            deconv(N, N),
            nn.ReLU(inplace=True),
            conv(N, M, 3, 1),
            nn.ReLU(inplace=True),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()

    def hyper_input(self, y: Tensor) -> Tensor:
        return torch.abs(y)

    def entropy_parameters(self, z_hat: Tensor) -> tuple[Tensor, Tensor | None]:
        """(scales, means) of the Gaussian on y given the decoded hyper-latent.

        When coding (eval mode) h_s runs in float64 and means are snapped to a grid, so the
        decoder reproduces them bit for bit (see :mod:`liclab.models.base`).
        """
        if self.training:
            return self.split_parameters(self.h_s(z_hat))
        return self.split_parameters(stable(self.h_s, z_hat))

    def split_parameters(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        return h.float(), None

    def _forward(self, x, q):
        y = self.g_a(x)
        z = self.h_a(self.hyper_input(y))
        z_rate, z_hat = q(z, bottleneck_medians(self.entropy_bottleneck))
        scales, means = self.entropy_parameters(z_hat)
        y_rate, y_hat = q(y, means)
        x_hat = self.synthesize(y_hat)
        return x_hat, {
            "y": gaussian_likelihood(self.gaussian_conditional, y_rate, scales, means),
            "z": bottleneck_likelihood(self.entropy_bottleneck, z_rate),
        }

    def _compress(self, x, q):
        y = self.g_a(x)
        z = self.h_a(self.hyper_input(y))
        z_strings = bottleneck_compress(self.entropy_bottleneck, z, q)
        z_hat = bottleneck_decompress(self.entropy_bottleneck, z_strings, z.shape[-2:], q)
        scales, means = self.entropy_parameters(z_hat)
        centre = _centre(q, y, means)
        y_strings = self.gaussian_conditional.compress_centred(y, scales, means, centre)
        return [y_strings, z_strings], z.shape[-2:]

    def _decompress(self, strings, shape, q):
        z_hat = bottleneck_decompress(self.entropy_bottleneck, strings[1], shape, q)
        scales, means = self.entropy_parameters(z_hat)
        centre = _centre(q, scales, means)
        y_hat = self.gaussian_conditional.decompress_centred(strings[0], scales, means, centre)
        return self.synthesize(y_hat)


def _centre(q, like: Tensor, means: Tensor | None) -> Tensor:
    """The rounding centre of y (zeros where the quantizer has none), shaped like y."""
    centre = q.coding_offset(like, means)
    return torch.zeros_like(like) if centre is None else centre.expand_as(like)


class MeanScaleHyperprior(ScaleHyperprior):
    """Mean-scale hyperprior (Minnen, Ballé, Toderici 2018, arXiv:1809.02736), without the
    autoregressive context model of the full paper.

    The hyper-synthesis predicts a mean and a scale per element of y; y is rounded around the
    mean (``round(y − μ) + μ``) and coded with N(μ, σ). LeakyReLU in the hyper transforms and
    a hyper-synthesis widening to 2M channels, as in the paper's Figure 4 / CompressAI's
    ``mbt2018-mean``.

    Args:
        N: channels of the hidden and hyper layers.
        M: channels of y.
    """

    def __init__(self, N: int = 128, M: int = 192):
        super().__init__(N, M)
        act = nn.LeakyReLU
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), act(inplace=True), conv(N, N), act(inplace=True), conv(N, N)
        )
        self.h_s = nn.Sequential(
            deconv(N, M),
            act(inplace=True),
            deconv(M, M * 3 // 2),
            act(inplace=True),
            conv(M * 3 // 2, M * 2, 3, 1),
        )

    def hyper_input(self, y):
        return y

    def split_parameters(self, h):
        scales, means = h.chunk(2, dim=1)
        if h.dtype == torch.float64:  # coding: reproducible means
            means = snap(means)
        return scales.float(), means
