"""ELIC: unevenly grouped space-channel contextual coding (He et al. 2022)."""

from __future__ import annotations

from functools import partial

import torch
from compressai.layers import AttentionBlock, CheckerboardMaskedConv2d, sequential_channel_ramp
from compressai.models.sensetime import ResidualBottleneckBlock
from torch import Tensor, nn

from liclab.entropy.gaussian import GaussianConditional
from liclab.entropy.tables import EntropyBottleneck
from liclab.models.base import (
    CompressionModel,
    bottleneck_compress,
    bottleneck_decompress,
    bottleneck_likelihood,
    bottleneck_medians,
)
from liclab.models.context import checkerboard_pass, checkerboard_unpack, entropy_net
from liclab.models.layers import conv, deconv

PAPER_GROUPS = (16, 16, 32, 64, 192)  # for M = 320


def paper_groups(M: int) -> list[int]:
    """The paper's uneven split scaled to M channels (exactly 16, 16, 32, 64, 192 at 320)."""
    ends, total, prev = [], sum(PAPER_GROUPS), 0
    for k in range(1, len(PAPER_GROUPS) + 1):
        end = max(prev + 1, round(M * sum(PAPER_GROUPS[:k]) / total))
        ends.append(end)
        prev = end
    if ends[-1] != M:
        raise ValueError(f"M={M} is too small for {len(PAPER_GROUPS)} channel groups")
    return [b - a for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def _blocks(N: int) -> list[nn.Module]:
    return [ResidualBottleneckBlock(N, N) for _ in range(3)]


class ELIC(CompressionModel):
    """He, Yang, Peng, Ma, Qin, Wang 2022, "ELIC: Efficient Learned Image Compression with
    Unevenly Grouped Space-Channel Contextual Adaptive Coding" (arXiv:2203.10886).

    ::

        x ─g_a─▶ y ─h_a─▶ z ─Q─▶ ẑ ─h_s─▶ side
                 │
                 └ split into groups y⁽¹⁾ … y⁽ᴷ⁾ (16, 16, 32, 64, M − 128 channels); for k = 1…K:
                     channel ctx  = g_ch⁽ᵏ⁾(ŷ⁽¹⁾ … ŷ⁽ᵏ⁻¹⁾)
                     anchors      : params = aggregate⁽ᵏ⁾(side, channel ctx, 0)
                     non-anchors  : params = aggregate⁽ᵏ⁾(side, channel ctx, g_sp⁽ᵏ⁾(ŷ⁽ᵏ⁾ anchors))
                 ŷ = concat(ŷ⁽¹⁾ … ŷ⁽ᴷ⁾) ─g_s─▶ x̂

    Transforms of residual bottleneck blocks and simplified attention (as CompressAI's
    ``Elic2022Official``); each group is coded in two checkerboard passes
    (:func:`~liclab.models.context.checkerboard_pass`), so decoding takes 2K parallel steps.

    Args:
        N: channels of the transforms (192 in the paper).
        M: channels of y (320 in the paper).
        groups: channels per group, summing to M; default the paper's split scaled to M
            (:func:`paper_groups`).
        entropy: the conditional entropy model of ŷ (:mod:`liclab.entropy`); default a
            Gaussian (``GaussianConditional``), or ``GaussianMixtureConditional`` to code with
            the mixture of ``model=gmm``.
        arithmetic: how the entropy-parameter networks (h_s, channel and spatial context,
            aggregation) run when coding: ``"integer"`` (default;
            :mod:`liclab.models.integer`: 13-bit fixed point with exact integer sums,
            bit-identical on every machine; entropy decoding 2.6× faster than in float64 at
            paper size on a CPU, no measurable rate cost) or ``"float64"``
            (:func:`~liclab.models.base.stable`). Training is float32 either way.

    Deviations from the paper: none in the architecture at N = 192, M = 320 (the official
    code's layers: channel context 5×5 convs of 224 and 128 channels, three 1×1 aggregation
    layers); at other N the channel-context widths scale as 7N/6 and 2N/3. y is rounded
    around the predicted mean in both passes of every group; σ ≥ 0.11; when coding, the
    entropy-parameter networks in 13-bit fixed point (``arithmetic``), means on a 1/256 grid
    and σ on CompressAI's scale table.
    """

    stride = 64

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        groups: list[int] | None = None,
        entropy: nn.Module | None = None,
        arithmetic: str = "integer",
    ):
        super().__init__()
        if arithmetic not in ("integer", "float64"):
            raise ValueError(f"arithmetic must be 'integer' or 'float64', not {arithmetic!r}")
        self.arithmetic = arithmetic
        self.groups = list(groups) if groups is not None else paper_groups(M)
        if sum(self.groups) != M or min(self.groups) < 1:
            raise ValueError(f"groups {self.groups} must be positive and sum to M={M}")
        self.N, self.M = N, M
        self.g_a = nn.Sequential(
            conv(3, N), *_blocks(N), conv(N, N), *_blocks(N), AttentionBlock(N),
            conv(N, N), *_blocks(N), conv(N, M), AttentionBlock(M),
        )  # fmt: skip
        self.g_s = nn.Sequential(
            AttentionBlock(M), deconv(M, N), *_blocks(N), deconv(N, N), AttentionBlock(N),
            *_blocks(N), deconv(N, N), *_blocks(N), deconv(N, 3),
        )  # fmt: skip
        relu = partial(nn.ReLU, inplace=True)
        self.h_a = nn.Sequential(conv(M, N, 3, 1), relu(), conv(N, N), relu(), conv(N, N))
        self.h_s = nn.Sequential(
            deconv(N, N), relu(), deconv(N, N * 3 // 2), relu(), deconv(N * 3 // 2, 2 * N, 3, 1)
        )
        wide, narrow = N * 7 // 6, N * 2 // 3
        self.channel_context = nn.ModuleList(
            nn.Sequential(
                conv(sum(self.groups[:k]), wide, 5, 1),
                relu(),
                conv(wide, narrow, 5, 1),
                relu(),
                conv(narrow, 2 * g, 5, 1),
            )  # fmt: skip
            for k, g in enumerate(self.groups)
            if k > 0
        )
        self.spatial_context = nn.ModuleList(
            CheckerboardMaskedConv2d(g, 2 * g, kernel_size=5, padding=2) for g in self.groups
        )
        self.conditional = entropy if entropy is not None else GaussianConditional()
        P = self.conditional.n_params
        self.param_aggregation = nn.ModuleList(
            sequential_channel_ramp(
                2 * N + 2 * g * (k > 0) + 2 * g,
                P * g,
                min_ch=2 * N,
                num_layers=3,
                make_layer=nn.Conv2d,
                make_act=relu,
                kernel_size=1,
            )  # fmt: skip
            for k, g in enumerate(self.groups)
        )
        self.entropy_bottleneck = EntropyBottleneck(N)

    def _net(self, module: nn.Module, *inputs: Tensor) -> Tensor:
        return entropy_net(module, *inputs, training=self.training, arithmetic=self.arithmetic)

    def _code_groups(self, side: Tensor, step) -> tuple[Tensor, Tensor | None]:
        """The 2K-step decoding schedule; ``step(k, i, params) -> (ŷ_i, extra_i)``."""
        y_hats, extras = [], []
        for k, g in enumerate(self.groups):
            s = side
            if k > 0:
                ctx = self._net(self.channel_context[k - 1], torch.cat(y_hats, dim=1))
                s = torch.cat([side, ctx], dim=1)
            y_hat, extra = checkerboard_pass(
                s,
                partial(self._net, self.spatial_context[k]),
                partial(self._net, self.param_aggregation[k]),
                2 * g,
                partial(step, k),
            )
            y_hats.append(y_hat)
            extras.append(extra)
        return torch.cat(y_hats, dim=1), None if extras[0] is None else torch.cat(extras, dim=1)

    def forward_y(self, y: Tensor, side: Tensor, q) -> tuple[Tensor, Tensor]:
        """(ŷ as the decoder sees it, likelihood of every element of y) given ``side`` =
        h_s(ẑ), under quantizer ``q``."""
        halves = [checkerboard_unpack(y_k) for y_k in y.split(self.groups, dim=1)]

        def step(k, i, params):
            y_rate, y_dec = q(halves[k][i], self.conditional.mean(params))
            return y_dec, self.conditional.likelihood(y_rate, params)

        return self._code_groups(side, step)

    def _forward(self, x, q):
        y = self.g_a(x)
        z = self.h_a(y)
        z_rate, z_hat = q(z, bottleneck_medians(self.entropy_bottleneck))
        y_hat, y_likelihood = self.forward_y(y, self._net(self.h_s, z_hat), q)
        return self.synthesize(y_hat), {
            "y": y_likelihood,
            "z": bottleneck_likelihood(self.entropy_bottleneck, z_rate),
        }

    def _coding_step(self, q, code):
        def step(k, i, params):
            mean = self.conditional.mean(params)
            centre = q.coding_offset(mean, mean)
            return code(k, i, params, centre) + centre, None

        return step

    def _compress(self, x, q):
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = bottleneck_compress(self.entropy_bottleneck, z, q)
        z_hat = bottleneck_decompress(self.entropy_bottleneck, z_strings, z.shape[-2:], q)
        encoder = self.conditional.encoder(len(x))
        halves = [checkerboard_unpack(y_k) for y_k in y.split(self.groups, dim=1)]

        def code(k, i, params, centre):
            symbols = torch.round(halves[k][i] - centre)
            encoder.encode(symbols, params, centre)
            return symbols

        self._code_groups(self._net(self.h_s, z_hat), self._coding_step(q, code))
        return [encoder.finish(), z_strings], z.shape[-2:]

    def _decompress(self, strings, shape, q):
        z_hat = bottleneck_decompress(self.entropy_bottleneck, strings[1], shape, q)
        decoder = self.conditional.decoder(strings[0])
        step = self._coding_step(q, lambda k, i, params, centre: decoder.decode(params, centre))
        y_hat, _ = self._code_groups(self._net(self.h_s, z_hat), step)
        return self.synthesize(y_hat)
