"""Discretized Gaussian mixture model with attention (Cheng et al. 2020)."""

from __future__ import annotations

from compressai.layers import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv1x1,
    conv3x3,
    subpel_conv3x3,
)
from torch import nn

from liclab.entropy.bottleneck import EntropyBottleneck
from liclab.entropy.mixture import GaussianMixtureConditional
from liclab.models.arithmetic import Float64
from liclab.models.context import Checkerboard, ContextModel


class Cheng2020GMM(ContextModel):
    """Cheng, Sun, Takeuchi, Katto 2020, "Learned Image Compression with Discretized Gaussian
    Mixture Likelihoods and Attention Modules" (arXiv:2001.01568).

    ::

        x ─g_a─▶ y ─h_a─▶ z ─Q─▶ ẑ ─h_s─▶ side ─┐
                 │                               ├─ param_aggregation ─▶ (w, μ, σ)_k=1..K
                 └─Q─▶ ŷ ─spatial_context────────┘                        │
                       └──────────────────────────────────────────────────┴─▶ ŷ ─g_s─▶ x̂

    Transforms of residual blocks, sub-pixel upsampling and the simplified attention module;
    ŷ is coded with a K-component discretized Gaussian mixture given the hyperprior and a
    spatial context: a :class:`~liclab.models.context.ContextModel` with one channel group
    (ELIC with one group and these transforms).

    Args:
        N: channels of the transforms (128 for the paper's three lower rates, 192 above).
        M: channels of y (the paper ties M = N).
        context: the spatial context (:mod:`liclab.models.context`): ``Checkerboard()``
            (default; He et al. 2021, two parallel passes) or ``Autoregressive()`` (the
            paper's raster scan).
        entropy: the conditional entropy model of ŷ (:mod:`liclab.entropy`); default
            ``GaussianMixtureConditional(K=3)``; a ``GaussianConditional`` codes with one
            Gaussian (CompressAI's ``cheng2020-anchor`` / ``-attn``).
        attention: the attention blocks of the paper's final model; False gives its anchor
            (CompressAI's ``cheng2020-anchor``).
        arithmetic: how decoder-side networks run when coding (:mod:`liclab.models.arithmetic`;
            default ``Float64()``).

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
        context=None,
        entropy: nn.Module | None = None,
        attention: bool = True,
        arithmetic=None,
    ):
        super().__init__()
        self.N, self.M, self.groups = N, M, [M]
        self.context = context if context is not None else Checkerboard()
        self.arithmetic = arithmetic if arithmetic is not None else Float64()
        self.context.check(self.arithmetic)
        act = nn.LeakyReLU

        def attend(ch: int) -> list[nn.Module]:
            return [AttentionBlock(ch)] if attention else []

        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, N, stride=2), ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2), *attend(N), ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2), ResidualBlock(N, N),
            conv3x3(N, M, stride=2), *attend(M),
        )  # fmt: skip
        self.g_s = nn.Sequential(
            *attend(M), ResidualBlock(M, N), ResidualBlockUpsample(N, N, 2), ResidualBlock(N, N),
            ResidualBlockUpsample(N, N, 2), *attend(N), ResidualBlock(N, N),
            ResidualBlockUpsample(N, N, 2), ResidualBlock(N, N), subpel_conv3x3(N, 3, 2),
        )  # fmt: skip
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
        self.conditional = entropy if entropy is not None else GaussianMixtureConditional(K=3)
        self.spatial_context = nn.ModuleList([self.context.conv(M)])
        self.param_aggregation = nn.ModuleList([nn.Sequential(
            conv1x1(M * 4, M * 10 // 3), act(inplace=True),
            conv1x1(M * 10 // 3, M * 8 // 3), act(inplace=True),
            conv1x1(M * 8 // 3, M * self.conditional.n_params),
        )])  # fmt: skip
        self.channel_context = nn.ModuleList()
        self.entropy_bottleneck = EntropyBottleneck(N)
