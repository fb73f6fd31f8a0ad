"""Context models: y coded in channel groups, each in the order of a spatial context.

:class:`ContextModel` is the structure ELIC (He et al. 2022) and Cheng et al. 2020 share — a
hyperprior model whose y is split into channel groups, each conditioned on the groups before
it (a channel context) and, inside the group, on the elements already decoded (a spatial
context). Cheng 2020 is the case of one group.

The spatial context is an object chosen by ``_target_``: :class:`Checkerboard` (two
parallel passes, He et al. 2021) or :class:`Autoregressive` (a raster scan, Minnen et al.
2018). Each is written once, as a *schedule* that calls back ``step`` with the entropy
parameters of the elements due next; the forward pass (quantize, score), ``compress``
(round, encode) and ``decompress`` (decode) differ only in that callback, so the context
the entropy model sees is by construction the one the decoder will have.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liclab.models.arithmetic import Float64
from liclab.models.hyperprior import Code, HyperpriorModel


class Nets(NamedTuple):
    """The networks of one channel group and how to run them."""

    context: nn.Module  # masked convolution over the group's ŷ
    aggregate: nn.Module  # cat(side, ctx) → entropy parameters
    run: Callable[..., Tensor]  # run(module, *inputs): the model's arithmetic


def _centre(q, mean: Tensor) -> Tensor:
    return q.coding_offset(mean.shape, mean).expand(mean.shape)


class Checkerboard:
    """Two passes per latent (He, Zheng, Sun, Wang, Qin 2021, arXiv:2103.15306): anchors
    ((i + j) even) from the side information alone, then non-anchors also from the anchors'
    ŷ through a checkerboard-masked 5×5 convolution.

    ::

        side ──────────────┬──────────────────────────┐
        0 ──▶ aggregate ──▶ step(anchors) ─▶ ŷ_anchor ─▶ context ─▶ aggregate ─▶ step(non-anchors)

    Entropy parameters are computed on the half-width tensors only (the aggregation is
    pointwise); the context convolution runs once, at full resolution.
    """

    def conv(self, channels: int) -> nn.Module:
        from compressai.layers import CheckerboardMaskedConv2d

        return CheckerboardMaskedConv2d(channels, 2 * channels, kernel_size=5, padding=2)

    def check(self, arithmetic) -> None:
        """Any arithmetic: every network call sees whole images."""

    def forward(self, y: Tensor, side: Tensor, nets: Nets, q, conditional) -> tuple[Tensor, Tensor]:
        halves = checkerboard_unpack(y)

        def step(i, params):
            y_rate, y_dec = q(halves[i], conditional.mean(params))
            return y_dec, conditional.likelihood(y_rate, params)

        return self._passes(side, nets, 2 * y.shape[1], step)

    def code(self, side: Tensor, shape: tuple, nets: Nets, q, conditional, code: Code) -> Tensor:
        def step(i, params):
            centre = _centre(q, conditional.mean(params))
            return code(lambda t: checkerboard_unpack(t)[i], params, centre) + centre, None

        return self._passes(side, nets, 2 * shape[1], step)[0]

    @staticmethod
    def _passes(side, nets: Nets, ctx_channels: int, step) -> tuple[Tensor, Tensor | None]:
        side_a, side_n = checkerboard_unpack(side)
        zeros = side_a.new_zeros(side_a.shape[0], ctx_channels, *side_a.shape[2:])
        y_a, extra_a = step(0, nets.run(nets.aggregate, side_a, zeros))
        ctx = nets.run(nets.context, checkerboard_pack(y_a, torch.zeros_like(y_a)))
        y_n, extra_n = step(1, nets.run(nets.aggregate, side_n, checkerboard_unpack(ctx)[1]))
        extra = None if extra_a is None else checkerboard_pack(extra_a, extra_n)
        return checkerboard_pack(y_a, y_n), extra


class Autoregressive:
    """Serial coding in raster order (Minnen, Ballé, Toderici 2018, arXiv:1809.02736): the
    element at (i, j) is coded with parameters from a 5×5 masked convolution (type A) of the
    ŷ decoded so far and from the side information.

    Training and estimation run the masked convolution in parallel over the whole of ŷ. ŷ is
    rounded around the mean predicted from the side information alone (the only mean known
    to every element in a parallel pass); the density uses the full context.

    Coding visits one position at a time, in float64 copies of the networks made once per
    call (integer arithmetic quantises each input per image and so cannot see one window).
    """

    def conv(self, channels: int) -> nn.Module:
        from compressai.layers import MaskedConv2d

        return MaskedConv2d(channels, 2 * channels, kernel_size=5, padding=2)

    def check(self, arithmetic) -> None:
        if not isinstance(arithmetic, Float64):
            raise ValueError("an autoregressive context codes in float64 (arithmetic: Float64)")

    def forward(self, y: Tensor, side: Tensor, nets: Nets, q, conditional) -> tuple[Tensor, Tensor]:
        zeros = side.new_zeros(side.shape[0], 2 * y.shape[1], *side.shape[2:])
        y_rate, y_dec = q(y, conditional.mean(nets.run(nets.aggregate, side, zeros)))
        params = nets.run(nets.aggregate, side, nets.run(nets.context, y_dec))
        return y_dec, conditional.likelihood(y_rate, params)

    def code(self, side: Tensor, shape: tuple, nets: Nets, q, conditional, code: Code) -> Tensor:
        zeros = side.new_zeros(side.shape[0], 2 * shape[1], *side.shape[2:])
        centre = _centre(q, conditional.mean(nets.run(nets.aggregate, side, zeros)))
        context = copy.deepcopy(nets.context).double()
        aggregate = copy.deepcopy(nets.aggregate).double()
        weight, k = context.weight * context.mask, context.kernel_size[0]
        side = side.double()
        b, c, h, w = shape
        p = k // 2
        y_hat = side.new_zeros(b, c, h + 2 * p, w + 2 * p)
        for i in range(h):
            for j in range(w):
                ctx = F.conv2d(y_hat[:, :, i : i + k, j : j + k], weight, context.bias)
                params = aggregate(torch.cat([side[:, :, i : i + 1, j : j + 1], ctx], dim=1))
                at = (..., slice(i, i + 1), slice(j, j + 1))
                symbols = code(lambda t, at=at: t[at], params, centre[at])
                y_hat[:, :, i + p, j + p] = (symbols + centre[at])[..., 0, 0]
        return y_hat[:, :, p : p + h, p : p + w].float()


class ContextModel(HyperpriorModel):
    """A hyperprior model coding y in channel groups with a spatial context in each.

    ::

        side = h_s(ẑ); y split into groups y⁽¹⁾ … y⁽ᴷ⁾; for k = 1 … K:
            side⁽ᵏ⁾ = cat(side, channel_context⁽ᵏ⁾(ŷ⁽¹⁾ … ŷ⁽ᵏ⁻¹⁾))      (side alone for k = 1)
            ŷ⁽ᵏ⁾    = context schedule over y⁽ᵏ⁾ with spatial_context⁽ᵏ⁾ and param_aggregation⁽ᵏ⁾
        ŷ = cat(ŷ⁽¹⁾ … ŷ⁽ᴷ⁾)

    Subclasses build the transforms and set ``groups``, ``context`` (a spatial context
    object), ``conditional``, and the module lists ``spatial_context`` (one masked
    convolution per group, ``context.conv``), ``param_aggregation`` (one per group) and
    ``channel_context`` (one per group after the first).
    """

    def _nets(self, k: int) -> Nets:
        return Nets(self.spatial_context[k], self.param_aggregation[k], self.net)

    def _groups(self, side: Tensor, run) -> tuple[Tensor, Tensor | None]:
        """``run(k, side⁽ᵏ⁾) -> (ŷ⁽ᵏ⁾, extra⁽ᵏ⁾)`` for each group in decoding order."""
        y_hats, extras = [], []
        for k in range(len(self.groups)):
            s = side
            if k > 0:
                s = torch.cat([side, self.net(self.channel_context[k - 1], *y_hats)], dim=1)
            y_hat, extra = run(k, s)
            y_hats.append(y_hat)
            extras.append(extra)
        return torch.cat(y_hats, dim=1), None if extras[0] is None else torch.cat(extras, dim=1)

    def forward_y(self, y, side, q):
        parts = y.split(self.groups, dim=1)
        return self._groups(
            side, lambda k, s: self.context.forward(parts[k], s, self._nets(k), q, self.conditional)
        )

    def code_y(self, side, shape, q, code):
        def run(k, s):
            def group_code(select, params, centre):
                return code(lambda t: select(t.split(self.groups, dim=1)[k]), params, centre)

            shape_k = (shape[0], self.groups[k], *shape[2:])
            nets = self._nets(k)
            return self.context.code(s, shape_k, nets, q, self.conditional, group_code), None

        return self._groups(side, run)[0]


def checkerboard_unpack(x: Tensor) -> tuple[Tensor, Tensor]:
    """Split (B, C, H, W) into anchors ((i + j) even) and non-anchors, each (B, C, H, W/2).

    ::

        a n a n        a a   n n
        n a n a  ───▶  a a   n n
    """
    b, c, h, w = x.shape
    anchors, non_anchors = x.new_empty(b, c, h, w // 2), x.new_empty(b, c, h, w // 2)
    anchors[..., 0::2, :], anchors[..., 1::2, :] = x[..., 0::2, 0::2], x[..., 1::2, 1::2]
    non_anchors[..., 0::2, :], non_anchors[..., 1::2, :] = x[..., 0::2, 1::2], x[..., 1::2, 0::2]
    return anchors, non_anchors


def checkerboard_pack(anchors: Tensor, non_anchors: Tensor) -> Tensor:
    """Inverse of :func:`checkerboard_unpack`."""
    b, c, h, w = anchors.shape
    x = anchors.new_empty(b, c, h, 2 * w)
    x[..., 0::2, 0::2], x[..., 1::2, 1::2] = anchors[..., 0::2, :], anchors[..., 1::2, :]
    x[..., 0::2, 1::2], x[..., 1::2, 0::2] = non_anchors[..., 0::2, :], non_anchors[..., 1::2, :]
    return x
