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

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck as _CompressAIBottleneck
from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf
from torch import Tensor

SHIFT_STEPS = 16
"""Universal quantization moves the rounding centre c off the mean (or median) μ by its dither;
k = round(y − c) is then coded with the table built for the nearest offset c − μ on this
1/16 grid (at most 1/32 off, a negligible loss)."""


def shift_index(offset: Tensor) -> Tensor:
    """Index j ∈ 0…16 of the table of offset j/16 − ½ nearest to each ``offset`` ∈ [−½, ½]."""
    index = torch.round((offset.double().flatten() + 0.5) * SHIFT_STEPS)
    return index.clamp(0, SHIFT_STEPS).long()


def rans_encode(symbols: Tensor, indexes: Tensor, tables: tuple) -> list[bytes]:
    """One rANS string per image of integer ``symbols`` (B, …), each coded with the table
    ``indexes`` names (same shape)."""
    from compressai.ans import RansEncoder

    return [
        RansEncoder().encode_with_indexes(
            symbols[b].flatten().int().tolist(), indexes[b].flatten().tolist(), *tables
        )
        for b in range(len(symbols))
    ]


def rans_decode(strings: list, indexes: Tensor, tables: tuple, centre: Tensor) -> Tensor:
    """Inverse of :func:`rans_encode`, plus ``centre``: ŷ = k + c."""
    from compressai.ans import RansDecoder

    symbols = [
        RansDecoder().decode_with_indexes(string, indexes[b].flatten().tolist(), *tables)
        for b, string in enumerate(strings)
    ]
    symbols = torch.from_numpy(np.asarray(symbols, dtype=np.int32)).to(centre.dtype)
    return symbols.reshape(centre.shape) + centre


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

    def coding(self, centre: Tensor) -> tuple[Tensor, tuple | None]:
        """(table index of each element, tables) for rounding centres ``centre`` (B, C, H, W).

        Centred on the medians: the channel, and None for CompressAI's own tables. With a
        dither: offset j and channel c, row ``j · C + c`` of :meth:`shifted_tables`.
        """
        channel = self._build_indexes(centre.size()).to(centre.device)
        medians = self._get_medians().detach().reshape(1, -1, 1, 1)
        shift = shift_index(centre - medians)
        if bool((shift == SHIFT_STEPS // 2).all()):
            return channel, None
        return shift.reshape(centre.shape) * self.channels + channel, self.shifted_tables()

    @torch.no_grad()
    def shifted_tables(self) -> tuple[list, list, list]:
        """Quantised CDFs of k = round(z − median − s) per channel, for every offset s of
        the grid, in float64 (the supports one wider each side than CompressAI's)."""
        twin = copy.deepcopy(self).double()
        q = twin.quantiles[:, 0, :]
        medians = q[:, 1]
        minima = torch.ceil(medians - q[:, 0]).clamp_min(0).long() + 1
        maxima = torch.ceil(q[:, 2] - medians).clamp_min(0).long() + 1
        lengths = maxima + minima + 1
        width = int(lengths.max())
        cdfs, cdf_lengths, offsets = [], [], []
        for j in range(SHIFT_STEPS + 1):
            start = medians - minima + (j / SHIFT_STEPS - 0.5)
            samples = torch.arange(width, dtype=torch.float64)[None, :] + start[:, None, None]
            pmf, lower, upper = twin._likelihood(samples, stop_gradient=True)
            tail = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
            table = twin._pmf_to_cdf(pmf[:, 0, :], tail, lengths, width)
            for c in range(self.channels):
                cdfs.append(table[c, : int(lengths[c]) + 2].tolist())
            cdf_lengths += (lengths + 2).tolist()
            offsets += (-minima).tolist()
        return cdfs, cdf_lengths, offsets
