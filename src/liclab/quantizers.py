"""Quantization proxies: objects the models call, never flags they branch on.

A model hands every latent to its quantizer as ``q(x, offset)`` and gets back two tensors:

* ``x_rate`` — what the entropy model scores (the likelihood / rate term),
* ``x_dec``  — what the synthesis transform (or the hyper-synthesis) receives.

``offset`` is the value rounding is centred on: the predicted mean where the model has one,
the entropy bottleneck's median for factorized latents, else ``None`` (zero).

In ``eval()`` mode every proxy is true rounding, ``round(x - offset) + offset`` for both
outputs, which is exactly what ``compress``/``decompress`` code. So evaluation never sees
the training proxy, whichever one was configured.

CompressAI has the noise and ``quantize_ste`` primitives but no proxy objects; these are
written here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def round_offset(x: Tensor, offset: Tensor | None) -> Tensor:
    """``round(x - offset) + offset``: the decoder's reconstruction of a coded latent."""
    if offset is None:
        return torch.round(x)
    return torch.round(x - offset) + offset


def ste_round(x: Tensor, offset: Tensor | None = None) -> Tensor:
    """Rounding in the forward pass, identity gradient in the backward pass."""
    return x + (round_offset(x, offset) - x).detach()


def add_noise(x: Tensor) -> Tensor:
    """Additive uniform noise U(-1/2, 1/2), the continuous relaxation of Ballé et al. 2017."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


class Quantizer(nn.Module):
    """Base class: true rounding in eval mode; subclasses define :meth:`proxy` for training."""

    def forward(self, x: Tensor, offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if offset is not None:
            # The offset is a prediction of the model, not a quantity to optimise through
            # the rounding (and bottleneck medians are trained only by the aux loss).
            offset = offset.detach()
        if not self.training:
            x_hat = round_offset(x, offset)
            return x_hat, x_hat
        return self.proxy(x, offset)

    def proxy(self, x: Tensor, offset: Tensor | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class Round(Quantizer):
    """Hard rounding everywhere (zero gradient); the default when no quantizer is passed."""

    def proxy(self, x, offset):
        x_hat = round_offset(x, offset)
        return x_hat, x_hat


class Noise(Quantizer):
    """Uniform noise for both the rate term and the decoder input (Ballé et al. 2017,
    arXiv:1611.01704)."""

    def proxy(self, x, offset):
        x_tilde = add_noise(x)
        return x_tilde, x_tilde


class STE(Quantizer):
    """Straight-through rounding ``round(x - μ) + μ`` for the rate and the decoder input
    (Theis et al. 2017, arXiv:1703.00395; centred on μ as in Minnen & Singh 2020)."""

    def proxy(self, x, offset):
        x_hat = ste_round(x, offset)
        return x_hat, x_hat


class Mixed(Quantizer):
    """Noise for the rate term, straight-through rounding for the decoder (Minnen & Singh
    2020, arXiv:2007.08739): the entropy model trains on a smooth density while the synthesis
    learns to decode the integers it will see at test time."""

    def proxy(self, x, offset):
        return add_noise(x), ste_round(x, offset)
