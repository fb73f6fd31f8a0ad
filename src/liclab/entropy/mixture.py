"""Discretized Gaussian mixtures: the conditional entropy models of y (a Gaussian is the
mixture with K = 1, :mod:`liclab.entropy.gaussian`), coded element by element with
:mod:`liclab.entropy.coder`.
"""

from __future__ import annotations

import math

import torch
from compressai.ops import LowerBound
from torch import Tensor, nn

from liclab.entropy.coder import Decoder, Encoder, Tables, frequency_tables

SCALE_MAX = 256.0
MEAN_GRID = 256  # means (and mixture logits) on a 1/256 grid when coding
LOG_SCALE_GRID = 64  # log2 σ on a 1/64 grid when coding


def snap(x: Tensor, steps: int = MEAN_GRID) -> Tensor:
    """``x`` on the 1/``steps`` grid, in float64 (see :mod:`liclab.entropy` on why)."""
    return torch.round(x.double() * steps) / steps


def snap_scales(scales: Tensor) -> Tensor:
    """σ on a 1/64 grid of log2 σ within [2⁻¹⁰, 256], in float64."""
    return torch.exp2(snap(torch.log2(scales.double().clamp(1e-3, SCALE_MAX)), LOG_SCALE_GRID))


class GaussianMixtureConditional(nn.Module):
    """Discretized K-component Gaussian mixture per element of y (Cheng, Sun, Takeuchi, Katto
    2020, arXiv:2001.01568):

    ::

        p(ŷ) = Σ_k w_k · ∫_{ŷ−½}^{ŷ+½} N(t; μ_k, σ_k) dt,   w = softmax(logits)

    ``params`` holds ``3·K·C`` channels: K·C logits, K·C means, K·C scales (component-major).
    The rounding centre is the mixture mean Σ w_k μ_k. In eval mode (coding) the parameters
    are snapped to fixed grids first: means and logits 1/256, log2 σ 1/64, σ ≤ 256.
    Interface: :mod:`liclab.entropy`.

    Args:
        K: number of components (3 in the paper).
        scale_bound: lower bound on every σ_k.
        likelihood_bound: lower bound on the likelihood (CompressAI's 1e-9).

    Deviations from the paper: σ is bounded below by ``scale_bound`` (CompressAI's
    convention); when coding, parameters are on grids and σ is capped at 256.
    """

    def __init__(self, K: int = 3, scale_bound: float = 0.11, likelihood_bound: float = 1e-9):
        super().__init__()
        if K < 1:
            raise ValueError(f"a mixture needs K >= 1 components, not {K}")
        self.K = K
        self.lower_bound_scale = LowerBound(scale_bound)
        self.likelihood_lower_bound = LowerBound(likelihood_bound)

    @property
    def n_params(self) -> int:
        return 3 * self.K

    def components(self, params: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        """(logits or None for K = 1, means, scales) of ``params``, each (B, K, C, H, W)."""
        b, _, h, w = params.shape
        logits, means, scales = params.reshape(b, 3, self.K, -1, h, w).unbind(1)
        return logits, means, scales

    def parts(self, params: Tensor, coding: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(weights, means, scales), each (B, K, C, H, W); on the coding grids (float64) if
        ``coding``, else in float32."""
        params = params.double() if coding else params.float()
        logits, means, scales = self.components(params)
        if coding:
            means, scales = snap(means), snap_scales(scales)
            logits = None if logits is None else snap(logits)
        weights = torch.ones_like(means) if logits is None else logits.softmax(dim=1)
        return weights, means, self.lower_bound_scale(scales)

    def likelihood(self, y: Tensor, params: Tensor) -> Tensor:
        """Probability mass of the unit bin around each ``y`` (coding grids in eval mode)."""
        with torch.autocast(y.device.type, enabled=False):  # erfc tails need float32 or more
            weights, means, scales = self.parts(params, coding=not self.training)
            v = (y.unsqueeze(1).to(means.dtype) - means).abs()
            mass = _normal_cdf((0.5 - v) / scales) - _normal_cdf((-0.5 - v) / scales)
            return self.likelihood_lower_bound((weights * mass).sum(1)).float()

    def mean(self, params: Tensor) -> Tensor:
        """The rounding centre Σ w_k μ_k (on the 1/256 grid in eval mode), float32."""
        coding = not self.training
        weights, means, _ = self.parts(params, coding)
        mean = (weights * means).sum(1)
        return (snap(mean) if coding else mean).float()

    def tables(self, params: Tensor, centre: Tensor) -> Tables:
        """Integer frequency tables of every element of ``centre``'s shape, always on the
        coding grids (:func:`liclab.entropy.coder.frequency_tables`)."""
        parts = self.parts(params.cpu(), coding=True)  # on the CPU whatever the device
        weights, means, scales = (t.movedim(1, -1).reshape(-1, t.shape[1]) for t in parts)
        d = means - centre.cpu().double().reshape(-1, 1)
        return frequency_tables(weights, d, scales)

    def encoder(self, batch: int) -> Encoder:
        return Encoder(self, batch)

    def decoder(self, strings: list[bytes]) -> Decoder:
        return Decoder(self, strings)


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2))
