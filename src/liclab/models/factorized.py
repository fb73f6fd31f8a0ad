"""Factorized-prior model (Ballé, Laparra, Simoncelli 2017, arXiv:1611.01704)."""

from __future__ import annotations

from liclab.entropy.bottleneck import EntropyBottleneck
from liclab.models.base import CompressionModel
from liclab.models.layers import gdn_analysis, gdn_synthesis


class FactorizedPrior(CompressionModel):
    """Conv + GDN autoencoder with a fully factorized, learned density on y.

    ::

        x ─g_a─▶ y ─Q─▶ ŷ ─g_s─▶ x̂        rate: −log2 p(ŷ), p per channel (EntropyBottleneck)

    Args:
        N: channels of the hidden layers (128 at paper size for low rates, 192 for high).
        M: channels of the latent y (192 at paper size, 320 for high rates).

    Deviations from the 2017 paper: the transforms are the four-stage 5×5 conv + GDN stack
    that Ballé et al. 2018 (arXiv:1802.01436) use for their factorized baseline (as does
    CompressAI's ``bmshj2018-factorized``), not the 2017 three-stage 9×9/5×5/5×5 stack; total
    stride 16. Rounding is centred on the bottleneck medians (as in tensorflow-compression).
    """

    stride = 16

    def __init__(self, N: int = 128, M: int = 192):
        super().__init__()
        self.N, self.M = N, M
        self.g_a = gdn_analysis(N, M)
        self.g_s = gdn_synthesis(N, M)
        self.entropy_bottleneck = EntropyBottleneck(M)

    def _forward(self, x, q):
        y = self.g_a(x)
        y_rate, y_hat = q(y, self.entropy_bottleneck.medians())
        return y_hat, {"y": self.entropy_bottleneck.likelihood(y_rate)}

    def _compress(self, x, q):
        y = self.g_a(x)
        return [self.entropy_bottleneck.compress(y, q)], y.shape[-2:]

    def _decompress(self, strings, shape, q):
        return self.synthesize(self.entropy_bottleneck.decompress(strings[0], shape, q))
