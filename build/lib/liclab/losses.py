"""Rate-distortion objectives: ``L = R + λ·D`` with R in bits per pixel.

``MSE``:     L = bpp + λ · 255² · MSE   (x in [0, 1]; CompressAI's convention, so the
             standard λ ladder 0.0018 … 0.18 applies unchanged)
``MSSSIM``:  L = bpp + λ · (1 − MS-SSIM)   (ladder 2.40 … 220)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from liclab.metrics import MS_SSIM_MIN_SIDE


def bpp_terms(likelihoods: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    """Estimated bits per pixel of every latent (``bpp_y``, ``bpp_z``, …) and their sum,
    over the pixels of the batch ``x`` (B, C, H, W): the one place rate is computed from
    likelihoods."""
    num_pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    terms = {
        f"bpp_{k}": torch.log(v).sum() / (-math.log(2) * num_pixels) for k, v in likelihoods.items()
    }
    terms["bpp"] = sum(terms.values())
    return terms


class RateDistortionLoss(nn.Module):
    """Base: adds λ·D to the estimated rate. Subclasses define :meth:`distortion`.

    Args:
        lmbda: the rate-distortion trade-off λ.
    """

    def __init__(self, lmbda: float):
        super().__init__()
        self.lmbda = lmbda

    def forward(self, out: dict, x: Tensor) -> dict[str, Tensor]:
        terms = bpp_terms(out["likelihoods"], x)
        terms["mse"] = torch.mean((out["x_hat"] - x) ** 2)
        terms["distortion"] = self.distortion(out["x_hat"], x, terms["mse"])
        terms["loss"] = terms["bpp"] + self.lmbda * terms["distortion"]
        return terms

    def distortion(self, x_hat: Tensor, x: Tensor, mse: Tensor) -> Tensor:
        raise NotImplementedError


class MSE(RateDistortionLoss):
    """Mean squared error on the 8-bit scale (255² · MSE)."""

    def distortion(self, x_hat, x, mse):
        return 255.0**2 * mse


class MSSSIM(RateDistortionLoss):
    """1 − MS-SSIM (5 scales, Wang et al. 2003). Needs images of at least 161 px a side."""

    min_size = MS_SSIM_MIN_SIDE

    def distortion(self, x_hat, x, mse):
        from pytorch_msssim import ms_ssim

        # on the continuous x̂ (no 8-bit rounding, unlike the metric): gradients must flow
        return 1.0 - ms_ssim(x_hat, x, data_range=1.0)
