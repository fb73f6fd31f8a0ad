"""Entropy-coding tables that every machine builds identically.

A rANS decoder needs the encoder's quantised CDFs to the last count. CompressAI rebuilds them
on each machine (``model.update()``) in float32: its scale table comes from a float32 ``exp``,
its Gaussian pmfs from a float32 ``erfc`` and its bottleneck pmfs from a float32 density
network, and vectorised float32 kernels differ in the last bit between CPUs (AVX2 and
AVX-512 builds of the same function are not bit-identical). A pmf one ulp off moves a
quantised frequency with probability ~1e-3, and one count off decodes garbage.

liclab builds every table in float64 and rounds the pmfs to float32 only where the coder's
quantisation takes them: two float64 implementations, a few ulps of 1e-16 apart, then yield
the same float32 value unless it lies within ~1e-16 of a rounding boundary (~1e-9 per value).
The scale table is computed in float64 and rounded to 6 significant digits.
"""

from __future__ import annotations

import copy
import math

import torch
from compressai.entropy_models import EntropyBottleneck as _CompressAIBottleneck
from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf


def scale_table(lo: float = 0.11, hi: float = 256.0, levels: int = 64) -> torch.Tensor:
    """CompressAI's log-spaced σ table (0.11 … 256, 64 levels), computed in float64 and
    rounded to 6 significant digits, so that it is the same on every machine."""
    step = math.log(hi / lo) / (levels - 1)
    return torch.tensor([float(f"{lo * math.exp(i * step):.6g}") for i in range(levels)])


def gaussian_table(sigma: float, shift: float, tail_mass: float, precision: int):
    """Quantised CDF of k = round(x − s), x ~ N(0, σ), over the integers within the
    ``tail_mass`` quantiles (one more each side when s ≠ 0); returns (cdf, length, offset)
    as CompressAI's rANS coder takes them."""
    multiplier = -_normal_quantile(tail_mass / 2)
    half = math.ceil(sigma * multiplier) + (shift != 0)
    k = torch.arange(-half, half + 1, dtype=torch.float64)
    pmf = _normal_cdf((k + shift + 0.5) / sigma) - _normal_cdf((k + shift - 0.5) / sigma)
    tail = (1 - pmf.sum()).clamp_min(0).reshape(1)
    cdf = pmf_to_quantized_cdf(torch.cat([pmf, tail]).float(), precision)
    return cdf.tolist(), len(pmf) + 2, -half


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.special.erfc(-x / math.sqrt(2))


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


class EntropyBottleneck(_CompressAIBottleneck):
    """CompressAI's factorized prior (Ballé et al. 2018) with its coding tables built in
    float64 (see the module docstring); same parameters, buffers and coding otherwise."""

    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        if self._offset.numel() > 0 and not force:
            return False
        if update_quantiles:
            self._update_quantiles()
        twin = copy.deepcopy(self).double()
        with torch.no_grad():
            _CompressAIBottleneck.update(twin, force=True)
        self._offset = twin._offset
        self._quantized_cdf = twin._quantized_cdf
        self._cdf_length = twin._cdf_length
        return True
