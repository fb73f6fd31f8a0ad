"""Hyperprior models: the z path shared by every model with a hyper-latent, and the scale
(Ballé et al. 2018) and mean-scale (Minnen et al. 2018) hyperpriors."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from liclab.entropy.bottleneck import EntropyBottleneck
from liclab.entropy.gaussian import GaussianConditional, ZeroMeanGaussianConditional
from liclab.models.arithmetic import Float64
from liclab.models.base import CompressionModel
from liclab.models.layers import conv, deconv, gdn_analysis, gdn_synthesis

Code = Callable[[Callable[[Tensor], Tensor], Tensor, Tensor], Tensor]
"""``code(select, params, centre) -> symbols``: entropy-code the elements ``select`` picks
from y (encoder) or decode them (decoder), given their entropy parameters and centres."""


class HyperpriorModel(CompressionModel):
    """A model with a hyper-latent z whose decoded value ẑ conditions the density of y
    (Ballé, Minnen, Singh, Hwang, Johnston 2018, arXiv:1802.01436).

    ::

        x ─g_a─▶ y ─hyper_input─h_a─▶ z ─Q─▶ ẑ ─h_s─▶ side ──┐
                 │                   (EntropyBottleneck)      ▼
                 └──────────Q────────────────────▶ ŷ ◀── conditional(params) ─g_s─▶ x̂

    The z path and the two strings per image (y, then z) are written here once. Subclasses
    set g_a, g_s, h_a, h_s, ``entropy_bottleneck``, ``conditional`` (:mod:`liclab.entropy`)
    and ``M``, and say how y's entropy parameters follow from ``side`` = h_s(ẑ) through
    :meth:`forward_y` (training and estimation) and :meth:`code_y` (the decoding schedule,
    run alike by encoder and decoder). Here: params = side, no context. h_s and every other
    decoder-side network run through ``arithmetic`` when coding (:mod:`liclab.models.arithmetic`).
    """

    arithmetic = Float64()

    def hyper_input(self, y: Tensor) -> Tensor:
        return y

    def net(self, module: nn.Module, *inputs: Tensor) -> Tensor:
        """A decoder-side network: float32 in training, ``arithmetic`` when coding."""
        if self.training:
            return module(inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1))
        return self.arithmetic(module, *inputs)

    def forward_y(self, y: Tensor, side: Tensor, q) -> tuple[Tensor, Tensor]:
        """(ŷ as the decoder sees it, likelihood of every element of y) given ``side``."""
        y_rate, y_dec = q(y, self.conditional.mean(side))
        return y_dec, self.conditional.likelihood(y_rate, side)

    def code_y(self, side: Tensor, shape: tuple, q, code: Code) -> Tensor:
        """ŷ of ``shape`` after coding it with ``code`` in the decoder's order."""
        mean = self.conditional.mean(side)
        centre = q.coding_offset(mean.shape, mean).expand(mean.shape)
        return code(lambda t: t, side, centre) + centre

    def _forward(self, x, q):
        y = self.g_a(x)
        z = self.h_a(self.hyper_input(y))
        z_rate, z_hat = q(z, self.entropy_bottleneck.medians())
        y_hat, y_likelihood = self.forward_y(y, self.net(self.h_s, z_hat), q)
        z_likelihood = self.entropy_bottleneck.likelihood(z_rate)
        return y_hat, {"y": y_likelihood, "z": z_likelihood}

    def _compress(self, x, q):
        y = self.g_a(x)
        z = self.h_a(self.hyper_input(y))
        z_strings = self.entropy_bottleneck.compress(z, q)
        z_hat = q(z, self.entropy_bottleneck.medians())[1]  # what the decoder will decode
        encoder = self.conditional.encoder(len(x))

        def code(select, params, centre):
            symbols = torch.round(select(y) - centre)
            encoder.encode(symbols, params, centre)
            return symbols

        self.code_y(self.net(self.h_s, z_hat), y.shape, q, code)
        return [encoder.finish(), z_strings], z.shape[-2:]

    def _decompress(self, strings, shape, q):
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape, q)
        decoder = self.conditional.decoder(strings[0])
        y_shape = (len(z_hat), self.M, 4 * shape[0], 4 * shape[1])  # h_a downsamples by 4

        def code(select, params, centre):
            return decoder.decode(params, centre)

        return self.synthesize(self.code_y(self.net(self.h_s, z_hat), y_shape, q, code))


class ScaleHyperprior(HyperpriorModel):
    """Scale hyperprior (Ballé, Minnen, Singh, Hwang, Johnston 2018, arXiv:1802.01436).

    ::

        x ─g_a─▶ y ─|·|─h_a─▶ z ─Q─▶ ẑ ─h_s─▶ σ
                 │                              │
                 └────────Q────▶ ŷ ◀── N(0, σ) ─┘ ─g_s─▶ x̂

    z is coded with a factorized EntropyBottleneck, ŷ with a zero-mean Gaussian whose scale
    comes from the hyper-synthesis (:class:`HyperpriorModel`).

    Args:
        N: channels of the hidden layers (128 for the low-rate paper models, 192 for high).
        M: channels of y (192, or 320 for high rates).

    Deviations from the paper: none in the transforms (CompressAI's layout, ReLU after the
    last h_s layer so σ ≥ 0). Coding gives each element its own CDF of N(0, σ) with log2 σ
    on a 1/64 grid, where the paper (and CompressAI) use a table of 64 scales.
    """

    stride = 64

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
        self.conditional = ZeroMeanGaussianConditional()

    def hyper_input(self, y: Tensor) -> Tensor:
        return torch.abs(y)


class MeanScaleHyperprior(HyperpriorModel):
    """Mean-scale hyperprior (Minnen, Ballé, Toderici 2018, arXiv:1809.02736), without the
    autoregressive context model of the full paper.

    The hyper-synthesis predicts a scale and a mean per element of y (``chunk(2)``: scales
    first); y is rounded around the mean (``round(y − μ) + μ``) and coded with N(μ, σ).
    LeakyReLU in the hyper transforms and a hyper-synthesis widening to 2M channels, as in
    the paper's Figure 4 / CompressAI's ``mbt2018-mean``.

    Args:
        N: channels of the hidden and hyper layers.
        M: channels of y.

    Deviation from the paper: when coding, μ on a 1/256 grid and log2 σ on a 1/64 grid
    (:mod:`liclab.entropy`).
    """

    stride = 64

    def __init__(self, N: int = 128, M: int = 192):
        super().__init__()
        self.N, self.M = N, M
        act = nn.LeakyReLU
        self.g_a = gdn_analysis(N, M)
        self.g_s = gdn_synthesis(N, M)
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
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.conditional = GaussianConditional()
