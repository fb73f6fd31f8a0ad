"""Rate-distortion objectives: ``L = R + λ·D`` with R in bits per pixel.

``MSE``:     L = bpp + λ · 255² · MSE   (x in [0, 1]; CompressAI's convention, so the
             standard λ ladder 0.0018 … 0.18 applies unchanged)
``MSSSIM``:  L = bpp + λ · (1 − MS-SSIM)   (ladder 2.40 … 220)
``PerceptualLoss``: L = bpp + λ · (weighted MSE, LPIPS, Charbonnier, style and an adversarial
             term), with the GAN formulations :class:`NonSaturating` and :class:`Hinge`
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


class NonSaturating:
    """The non-saturating GAN loss (Goodfellow et al. 2014, arXiv:1406.2661), HiFiC's choice.

    On logits ``d`` of the discriminator: it minimises softplus(−d_real) + softplus(d_fake)
    (−log D(x) − log(1 − D(x̂))); the generator minimises softplus(−d_fake) (−log D(x̂)).
    Each mean is over all patches of the batch.
    """

    def generator(self, fake: Tensor) -> Tensor:
        return F.softplus(-fake).mean()

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()


class Hinge:
    """The hinge GAN loss (Lim & Ye 2017, arXiv:1705.02894; Miyato et al. 2018,
    arXiv:1802.05957), as in the PO-ELIC reimplementation.

    The discriminator minimises relu(1 − d_real) + relu(1 + d_fake); the generator −d_fake.
    """

    def generator(self, fake: Tensor) -> Tensor:
        return -fake.mean()

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


class PerceptualLoss(MSE):
    """Rate, weighted distortions and an adversarial term, for perceptual codecs (HiFiC,
    Mentzer et al. 2020, arXiv:2006.09965; PO-ELIC, He et al. 2022, arXiv:2205.14501)::

        L = w_R(bpp)·bpp + λ·( w_mse·255²·MSE + w_lpips·LPIPS(x̂, x) + w_char·Charbonnier(x̂ − x)
                               + w_style·Style(x̂, x) + w_adv·G(D(x̂, sg(ŷ))) )

    ``G`` is the generator side of the formulation ``adversarial`` (:class:`NonSaturating`,
    :class:`Hinge`) on the logits of a discriminator D (:mod:`liclab.discriminators`) that
    sees x̂ and, as its condition, ŷ behind a stop-gradient sg (as HiFiC). The discriminator
    term is on only when :class:`~liclab.lit.LitCodec` is given a discriminator
    (``discriminator=…``); without one this is the loss of a first, non-adversarial stage.
    D's own objective is :meth:`discriminator_loss`, on x̂ and ŷ detached: it never reaches
    the codec. Validation reports the loss without the adversarial term.

    The adversarial term is inside λ: both papers move along the rate axis by scaling the
    rate term alone, so with every weight inside λ a λ ladder (``sweep=ladder``,
    ``-m lmbda=…``) gives their rate points. λ follows the MSE ladder of the paper zoo (with
    the other weights 0 this is :class:`MSE`). ``target_bpp`` gives HiFiC's rate
    constraint: above the target bpp counts fully (w_R = 1), at or below it counts
    ``rate_weight_below`` (HiFiC's λ^(b)/λ^(a)), compared on the batch's estimate.

    Args:
        lmbda: λ.
        mse_weight: w_mse.
        lpips: a :class:`~liclab.perceptual.LPIPS` (frozen: in no optimiser, not saved in
            checkpoints) or None.
        lpips_weight: w_lpips.
        charbonnier_weight, charbonnier_eps: w_char and ε of mean √((x̂ − x)² + ε²).
        style: a :class:`~liclab.perceptual.GramStyle` or None; style_weight: w_style.
        adversarial: the GAN formulation, or None; adversarial_weight: w_adv.
        target_bpp, rate_weight_below: the rate constraint (None: w_R = 1 always).
    """

    def __init__(
        self,
        lmbda: float,
        mse_weight: float = 1.0,
        lpips: nn.Module | None = None,
        lpips_weight: float = 0.0,
        charbonnier_weight: float = 0.0,
        charbonnier_eps: float = 1e-6,
        style: nn.Module | None = None,
        style_weight: float = 0.0,
        adversarial: NonSaturating | Hinge | None = None,
        adversarial_weight: float = 0.0,
        target_bpp: float | None = None,
        rate_weight_below: float = 1.0,
    ):
        super().__init__(lmbda)
        self.lpips, self.style, self.adversarial = lpips, style, adversarial
        self.weights = {
            "mse": mse_weight,
            "lpips": lpips_weight,
            "charbonnier": charbonnier_weight,
            "style": style_weight,
            "adversarial": adversarial_weight,
        }
        for name in ("lpips", "style", "adversarial"):
            if self.weights[name] and getattr(self, name) is None:
                raise ValueError(f"{name}_weight={self.weights[name]} needs a {name} object")
        self.charbonnier_eps = charbonnier_eps
        self.target_bpp, self.rate_weight_below = target_bpp, rate_weight_below

    def forward(self, out: dict, x: Tensor, discriminator: nn.Module | None = None) -> dict:
        x_hat = out["x_hat"]
        terms = bpp_terms(out["likelihoods"], x)
        terms["mse"] = torch.mean((x_hat - x) ** 2)
        parts = {"mse": 255.0**2 * terms["mse"]}
        if self.weights["lpips"]:
            parts["lpips"] = self.lpips(x_hat, x).mean()
        if self.weights["charbonnier"]:
            parts["charbonnier"] = ((x_hat - x) ** 2 + self.charbonnier_eps**2).sqrt().mean()
        if self.weights["style"]:
            parts["style"] = self.style(x_hat, x).mean()
        if discriminator is not None and self.weights["adversarial"]:
            fake = discriminator(x_hat, out["y_hat"].detach())
            parts["adversarial"] = self.adversarial.generator(fake)
        terms.update((k, v) for k, v in parts.items() if k != "mse")
        terms["distortion"] = sum(self.weights[k] * v for k, v in parts.items())
        terms["loss"] = self.rate_weight(terms["bpp"]) * terms["bpp"]
        terms["loss"] = terms["loss"] + self.lmbda * terms["distortion"]
        return terms

    def rate_weight(self, bpp: Tensor) -> Tensor | float:
        """w_R: 1, or ``rate_weight_below`` when ``bpp`` is at or below ``target_bpp``."""
        if self.target_bpp is None:
            return 1.0
        above = (bpp.detach() > self.target_bpp).float()  # a tensor: no device sync
        return self.rate_weight_below + (1.0 - self.rate_weight_below) * above

    def discriminator_loss(self, discriminator: nn.Module, out: dict, x: Tensor) -> dict:
        """D's objective on the batch ``x`` and the codec's output ``out``, both detached:
        ``{"d_loss", "d_real", "d_fake"}`` (the last two: mean logits, for the logs)."""
        y_hat = out["y_hat"].detach()
        real = discriminator(x, y_hat)
        fake = discriminator(out["x_hat"].detach(), y_hat)
        d_loss = self.adversarial.discriminator(real, fake)
        return {"d_loss": d_loss, "d_real": real.detach().mean(), "d_fake": fake.detach().mean()}
