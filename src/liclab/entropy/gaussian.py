"""A single Gaussian per latent element: the mixture with K = 1, coded with per-element CDFs."""

from __future__ import annotations

import torch
from torch import Tensor

from liclab.entropy.mixture import GaussianMixtureConditional


class GaussianConditional(GaussianMixtureConditional):
    """N(μ, σ) per element of y (Ballé et al. 2018, arXiv:1802.01436; means as in Minnen et
    al. 2018, arXiv:1809.02736), behind liclab's conditional-entropy-model interface
    (:mod:`liclab.entropy`).

    ``params`` holds ``2·C`` channels: scales then means (CompressAI's ``chunk(2)`` order).
    The rounding centre is μ.

    Args:
        scale_bound: the lower bound on σ.
        likelihood_bound: the lower bound on the likelihood.

    Deviation from CompressAI's ``GaussianConditional``: coding does not map σ to a table of
    64 scales (which rounds each σ up by up to 13 %); each element gets its own quantised
    CDF of N(μ, σ) with μ and log2 σ on fine grids (:mod:`liclab.entropy.coder`).
    """

    def __init__(self, scale_bound: float = 0.11, likelihood_bound: float = 1e-9):
        super().__init__(1, scale_bound, likelihood_bound)

    n_params = 2

    def components(self, params: Tensor) -> tuple[None, Tensor, Tensor]:
        scales, means = params.chunk(2, dim=1)
        return None, means.unsqueeze(1), scales.unsqueeze(1)


class ZeroMeanGaussianConditional(GaussianConditional):
    """N(0, σ) per element of y (Ballé et al. 2018's scale hyperprior): ``params`` holds C
    scales; y is rounded to integers."""

    n_params = 1

    def components(self, params: Tensor) -> tuple[None, Tensor, Tensor]:
        scales = params.unsqueeze(1)
        return None, torch.zeros_like(scales), scales
