"""Discretized Gaussian mixture model with attention (Cheng et al. 2020)."""

from __future__ import annotations

from functools import partial

import torch
from compressai.layers import (
    AttentionBlock,
    CheckerboardMaskedConv2d,
    MaskedConv2d,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv1x1,
    conv3x3,
    subpel_conv3x3,
)
from torch import Tensor, nn

from liclab.entropy.mixture import GaussianMixtureConditional
from liclab.entropy.tables import EntropyBottleneck
from liclab.models.base import (
    CompressionModel,
    bottleneck_compress,
    bottleneck_decompress,
    bottleneck_likelihood,
    bottleneck_medians,
)
from liclab.models.context import (
    checkerboard_pass,
    checkerboard_unpack,
    entropy_net,
    raster_pass,
)

CONTEXTS = ("checkerboard", "autoregressive")


class Cheng2020GMM(CompressionModel):
    """Cheng, Sun, Takeuchi, Katto 2020, "Learned Image Compression with Discretized Gaussian
    Mixture Likelihoods and Attention Modules" (arXiv:2001.01568).

    ::

        x ─g_a─▶ y ─h_a─▶ z ─Q─▶ ẑ ─h_s─▶ side ─┐
                 │                               ├─ entropy_parameters ─▶ (w, μ, σ)_k=1..K
                 └─Q─▶ ŷ ─context_prediction─────┘                        │
                       └──────────────────────────────────────────────────┴─▶ ŷ ─g_s─▶ x̂

    Transforms of residual blocks, sub-pixel upsampling and the simplified attention module;
    ŷ is coded with a K-component discretized Gaussian mixture (real mixture coding, see
    :mod:`liclab.entropy.mixture`) given the hyperprior and a spatial context:

    * ``checkerboard`` (He et al. 2021, arXiv:2103.15306): two parallel passes, anchors from
      the hyperprior alone, non-anchors also from the anchors' ŷ;
    * ``autoregressive`` (the paper's): a 5×5 masked convolution, decoded serially in raster
      order.

    Args:
        N: channels of the transforms (128 for the paper's three lower rates, 192 above).
        M: channels of y (the paper ties M = N).
        context: ``"checkerboard"`` or ``"autoregressive"``.
        entropy: the conditional entropy model of ŷ (:mod:`liclab.entropy`); default
            ``GaussianMixtureConditional(K=3)``; a ``GaussianConditional`` codes with one
            Gaussian.

    Deviations from the paper: y is rounded around the mixture mean Σ w_k μ_k (the paper
    rounds to integers) — with the autoregressive context around the mean of the parameters
    predicted *before any context* (the hyperprior alone), the only mean known to every
    element in a parallel training pass; M may differ from N (h_s widens to 2M as in Minnen
    et al. 2018); the entropy-parameter network keeps CompressAI's 4M → 10M/3 → 8M/3 widths
    and ends in 3K·M channels; σ ≥ 0.11 and, when coding, parameters on fixed grids.
    """

    stride = 64

    def __init__(
        self,
        N: int = 128,
        M: int = 128,
        context: str = "checkerboard",
        entropy: nn.Module | None = None,
    ):
        super().__init__()
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, not {context!r}")
        self.N, self.M, self.context = N, M, context
        act = nn.LeakyReLU
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, N, stride=2),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            AttentionBlock(N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            ResidualBlock(N, N),
            conv3x3(N, M, stride=2),
            AttentionBlock(M),
        )
        self.g_s = nn.Sequential(
            AttentionBlock(M),
            ResidualBlock(M, N),
            ResidualBlockUpsample(N, N, 2),
            ResidualBlock(N, N),
            ResidualBlockUpsample(N, N, 2),
            AttentionBlock(N),
            ResidualBlock(N, N),
            ResidualBlockUpsample(N, N, 2),
            ResidualBlock(N, N),
            subpel_conv3x3(N, 3, 2),
        )
        self.h_a = nn.Sequential(
            conv3x3(M, N), act(inplace=True), conv3x3(N, N), act(inplace=True),
            conv3x3(N, N, stride=2), act(inplace=True), conv3x3(N, N), act(inplace=True),
            conv3x3(N, N, stride=2),
        )  # fmt: skip
        self.h_s = nn.Sequential(
            conv3x3(N, M), act(inplace=True), subpel_conv3x3(M, M, 2), act(inplace=True),
            conv3x3(M, M * 3 // 2), act(inplace=True),
            subpel_conv3x3(M * 3 // 2, M * 3 // 2, 2), act(inplace=True),
            conv3x3(M * 3 // 2, M * 2),
        )  # fmt: skip
        masked = CheckerboardMaskedConv2d if context == "checkerboard" else MaskedConv2d
        self.context_prediction = masked(M, 2 * M, kernel_size=5, padding=2)
        self.conditional = entropy if entropy is not None else GaussianMixtureConditional(K=3)
        self.entropy_parameters = nn.Sequential(
            conv1x1(M * 4, M * 10 // 3), act(inplace=True),
            conv1x1(M * 10 // 3, M * 8 // 3), act(inplace=True),
            conv1x1(M * 8 // 3, M * self.conditional.n_params),
        )  # fmt: skip
        self.entropy_bottleneck = EntropyBottleneck(N)

    def _net(self, module: nn.Module, *inputs: Tensor) -> Tensor:
        return entropy_net(module, *inputs, training=self.training)

    def _params(self, side: Tensor, ctx: Tensor | None = None) -> Tensor:
        """Entropy parameters from the hyperprior and a context (None: nothing decoded yet)."""
        if ctx is None:
            ctx = side.new_zeros(side.shape[0], 2 * self.M, *side.shape[2:])
        return self._net(self.entropy_parameters, torch.cat([side, ctx], dim=1))

    def forward_y(self, y: Tensor, side: Tensor, q) -> tuple[Tensor, Tensor]:
        """(ŷ as the decoder sees it, likelihood of every element of y) given ``side`` =
        h_s(ẑ), under quantizer ``q``."""
        if self.context == "autoregressive":
            y_rate, y_dec = q(y, self.conditional.mean(self._params(side)))
            ctx = self._net(self.context_prediction, y_dec)
            return y_dec, self.conditional.likelihood(y_rate, self._params(side, ctx))
        halves = checkerboard_unpack(y)

        def step(i, params):
            y_rate, y_dec = q(halves[i], self.conditional.mean(params))
            return y_dec, self.conditional.likelihood(y_rate, params)

        return self._checkerboard(side, step)

    def _checkerboard(self, side, step):
        return checkerboard_pass(
            side,
            partial(self._net, self.context_prediction),
            partial(self._net, self.entropy_parameters),
            2 * self.M,
            step,
        )

    def _forward(self, x, q):
        y = self.g_a(x)
        z = self.h_a(y)
        z_rate, z_hat = q(z, bottleneck_medians(self.entropy_bottleneck))
        y_hat, y_likelihood = self.forward_y(y, self._net(self.h_s, z_hat), q)
        return self.synthesize(y_hat), {
            "y": y_likelihood,
            "z": bottleneck_likelihood(self.entropy_bottleneck, z_rate),
        }

    def _code_y(self, side: Tensor, shape: tuple, q, code) -> Tensor:
        """Run the decoding schedule; ``code(y_index, params, centre) -> symbols``."""
        if self.context == "checkerboard":

            def step(i, params):
                mean = self.conditional.mean(params)
                centre = q.coding_offset(mean, mean)
                return code(i, params, centre) + centre, None

            return self._checkerboard(side, step)[0]
        mean = self.conditional.mean(self._params(side))
        centre = q.coding_offset(mean, mean)

        def position(i, j, params):
            at = (..., slice(i, i + 1), slice(j, j + 1))
            return (code(at, params, centre[at]) + centre[at])[..., 0, 0]

        return raster_pass(side, self.context_prediction, self.entropy_parameters, shape, position)

    def _compress(self, x, q):
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = bottleneck_compress(self.entropy_bottleneck, z, q)
        z_hat = bottleneck_decompress(self.entropy_bottleneck, z_strings, z.shape[-2:], q)
        encoder = self.conditional.encoder(len(x))
        parts = checkerboard_unpack(y) if self.context == "checkerboard" else y

        def code(at, params, centre):
            symbols = torch.round(parts[at] - centre)
            encoder.encode(symbols, params, centre)
            return symbols

        self._code_y(self._net(self.h_s, z_hat), y.shape, q, code)
        return [encoder.finish(), z_strings], z.shape[-2:]

    def _decompress(self, strings, shape, q):
        z_hat = bottleneck_decompress(self.entropy_bottleneck, strings[1], shape, q)
        decoder = self.conditional.decoder(strings[0])
        y_shape = (len(strings[0]), self.M, 4 * shape[0], 4 * shape[1])
        y_hat = self._code_y(
            self._net(self.h_s, z_hat), y_shape, q, lambda at, p, c: decoder.decode(p, c)
        )
        return self.synthesize(y_hat)
