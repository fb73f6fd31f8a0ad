"""Cool-chic's rate-distortion convention as a liclab loss."""

from __future__ import annotations

from torch import Tensor

from liclab.losses import MSE


class CoolChicMSE(MSE):
    """L = MSE + λ·bpp with x in [0, 1] (Cool-chic's and C3's convention: λ ∈ {4e-4, 1e-3,
    4e-3, 2e-2} spans their Kodak curves).

    liclab's :class:`liclab.losses.MSE` is bpp + λ'·255²·MSE; with λ' = 1 / (255²·λ) it is
    L / λ, the same optimum. This loss is that one multiplied by λ, so the loss values (and
    Adam's ε against them) match Cool-chic's. ``lmbda`` is Cool-chic's λ; ``self.lmbda``
    keeps liclab's λ' for the base class.

    Args:
        lmbda: Cool-chic's λ.
    """

    def __init__(self, lmbda: float):
        super().__init__(1.0 / (255.0**2 * lmbda))
        self.lmbda_coolchic = lmbda

    def forward(self, out: dict, x: Tensor) -> dict[str, Tensor]:
        terms = super().forward(out, x)
        terms["loss"] = terms["loss"] * self.lmbda_coolchic
        return terms
