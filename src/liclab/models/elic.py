"""ELIC: unevenly grouped space-channel contextual coding (He et al. 2022)."""

from __future__ import annotations

from functools import partial

from compressai.layers import AttentionBlock, sequential_channel_ramp
from compressai.models.sensetime import ResidualBottleneckBlock
from torch import nn

from liclab.entropy.bottleneck import EntropyBottleneck
from liclab.entropy.gaussian import GaussianConditional
from liclab.models.arithmetic import Integer
from liclab.models.context import Checkerboard, ContextModel
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


class ELIC(ContextModel):
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
    (:class:`~liclab.models.context.Checkerboard`), so decoding takes 2K parallel steps.

    Args:
        N: channels of the transforms (192 in the paper).
        M: channels of y (320 in the paper).
        groups: channels per group, summing to M; default the paper's split scaled to M
            (:func:`paper_groups`).
        entropy: the conditional entropy model of ŷ (:mod:`liclab.entropy`); default a
            Gaussian (``GaussianConditional``), or ``GaussianMixtureConditional`` to code with
            the mixture of ``model=gmm``.
        context: the spatial context inside each group (:mod:`liclab.models.context`),
            default ``Checkerboard()``, the paper's.
        arithmetic: how the decoder-side networks (h_s, channel and spatial context,
            aggregation) run when coding (:mod:`liclab.models.arithmetic`): ``Integer()``
            (default; exact integer sums, faster than float64 on a CPU, see
            ``results/elic-decode``) or ``Float64()``. Training is float32 either way.

    Deviations from the paper: none in the architecture at N = 192, M = 320 (the official
    code's layers: channel context 5×5 convs of 224 and 128 channels, three 1×1 aggregation
    layers); at other N the channel-context widths scale as 7N/6 and 2N/3. y is rounded
    around the predicted mean in both passes of every group; σ ≥ 0.11; when coding, the
    entropy-parameter networks in 13-bit fixed point (``arithmetic``), parameters on fixed
    grids (:mod:`liclab.entropy`).
    """

    stride = 64

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        groups: list[int] | None = None,
        entropy: nn.Module | None = None,
        context=None,
        arithmetic=None,
    ):
        super().__init__()
        self.context = context if context is not None else Checkerboard()
        self.arithmetic = arithmetic if arithmetic is not None else Integer()
        self.context.check(self.arithmetic)
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
        self.spatial_context = nn.ModuleList(self.context.conv(g) for g in self.groups)
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
