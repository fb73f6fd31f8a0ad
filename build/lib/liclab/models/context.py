"""Spatial context models: checkerboard two-pass coding (He et al. 2021) and raster-scan
autoregressive coding (Minnen et al. 2018), shared by :mod:`~liclab.models.gmm` and
:mod:`~liclab.models.elic`.

Both are written once, as a *schedule* that calls back ``step`` with the entropy parameters
of the elements due next; the forward pass (quantize, score), ``compress`` (round, encode)
and ``decompress`` (decode) differ only in that callback, so the context the entropy model
sees is by construction the one the decoder will have.

Decoder-side networks run through :func:`entropy_net`: as they are in training, in float64
or integer arithmetic when coding (see :mod:`liclab.models.base` on determinism and
:mod:`liclab.models.integer`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liclab.models.base import stable
from liclab.models.integer import integer_net

Step = Callable[..., tuple[Tensor, Tensor | None]]


def entropy_net(
    module: nn.Module, *inputs: Tensor, training: bool, arithmetic: str = "float64"
) -> Tensor:
    """A decoder-side entropy-parameter network: float32 in training; when coding (eval),
    ``arithmetic`` = ``"float64"`` (:func:`~liclab.models.base.stable`) or ``"integer"``
    (:func:`~liclab.models.integer.integer_net`, exact in any order of summation)."""
    if training:
        return module(*inputs)
    if arithmetic == "integer":
        return integer_net(module, *inputs)
    if arithmetic == "float64":
        return stable(module, *inputs)
    raise ValueError(f"arithmetic must be 'integer' or 'float64', not {arithmetic!r}")


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


def checkerboard_pass(
    side: Tensor, context: Callable, aggregate: Callable, ctx_channels: int, step: Step
) -> tuple[Tensor, Tensor | None]:
    """Code one latent in two passes: anchors from ``side`` alone, then non-anchors from
    ``side`` and the anchors' ŷ (He, Zheng, Sun, Wang, Qin 2021, arXiv:2103.15306).

    ::

        side ──────────────┬──────────────────────────┐
        0 ──▶ aggregate ──▶ step(0, ·) ─▶ ŷ_anchor ─▶ context ─▶ aggregate ─▶ step(1, ·)

    Args:
        side: (B, S, H, W) features known before this latent (hyper-synthesis output, channel
            context).
        context: a checkerboard-masked convolution of the anchors-only ŷ.
        aggregate: a pointwise network: ``cat(side, ctx)`` → entropy parameters.
        ctx_channels: output channels of ``context`` (the anchors' context is zero).
        step: ``step(i, params) -> (ŷ_i, extra_i)`` on half-width tensors (i = 0 anchors,
            1 non-anchors); ``extra`` (e.g. likelihoods) is packed back like ŷ, or None.

    Entropy parameters are computed on the half-width tensors only (the aggregation is
    pointwise); the context convolution runs once, at full resolution.
    """
    side_a, side_n = checkerboard_unpack(side)
    zeros = side_a.new_zeros(side_a.shape[0], ctx_channels, *side_a.shape[2:])
    y_a, extra_a = step(0, aggregate(torch.cat([side_a, zeros], dim=1)))
    ctx = checkerboard_unpack(context(checkerboard_pack(y_a, torch.zeros_like(y_a))))[1]
    y_n, extra_n = step(1, aggregate(torch.cat([side_n, ctx], dim=1)))
    extra = None if extra_a is None else checkerboard_pack(extra_a, extra_n)
    return checkerboard_pack(y_a, y_n), extra


def raster_pass(
    side: Tensor, context: nn.Conv2d, aggregate: nn.Module, shape: tuple, step: Callable
) -> Tensor:
    """Serial coding in raster order (Minnen, Ballé, Toderici 2018, arXiv:1809.02736): the
    element at (i, j) is coded with parameters from the masked convolution of the ŷ decoded
    so far and from ``side``. Encoder and decoder run this same loop (and so compute the same
    numbers); in float64 copies of the networks, made once per call.

    Args:
        side: (B, S, H, W) hyper-synthesis features.
        context: a ``MaskedConv2d`` (type A) over ŷ.
        aggregate: the pointwise entropy-parameter network on ``cat(side, ctx)``.
        shape: (B, C, H, W) of ŷ.
        step: ``step(i, j, params) -> ŷ[:, :, i, j]`` of shape (B, C).
    """
    context, aggregate = copy.deepcopy(context).double(), copy.deepcopy(aggregate).double()
    weight, k = context.weight * context.mask, context.kernel_size[0]
    side = side.double()
    b, c, h, w = shape
    p = k // 2
    y_hat = side.new_zeros(b, c, h + 2 * p, w + 2 * p)
    for i in range(h):
        for j in range(w):
            ctx = F.conv2d(y_hat[:, :, i : i + k, j : j + k], weight, context.bias)
            params = aggregate(torch.cat([side[:, :, i : i + 1, j : j + 1], ctx], dim=1))
            y_hat[:, :, i + p, j + p] = step(i, j, params)
    return y_hat[:, :, p : p + h, p : p + w].float()
