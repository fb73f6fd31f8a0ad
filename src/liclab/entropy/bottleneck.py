"""The factorized prior of a hyper-latent z (or of y in the factorized-prior model), coded
with CompressAI's rANS and coding tables liclab builds in float64 (:mod:`liclab.entropy`)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck as _CompressAIBottleneck
from torch import Tensor

SHIFT_STEPS = 16
"""Universal quantization moves the rounding centre c off the median m by its dither; k =
round(z − c) is then coded with the table built for the nearest offset c − m on this 1/16 grid
(at most 1/32 off, a negligible loss)."""

_TABLES = ("_offset", "_quantized_cdf", "_cdf_length")


class EntropyBottleneck(_CompressAIBottleneck):
    """The non-parametric factorized density of Ballé et al. 2018 (arXiv:1802.01436, appendix
    6.1), CompressAI's ``EntropyBottleneck`` (same parameters, density and aux loss), coding
    its own latents.

    * ``likelihood(z)`` — the mass of the unit bin around already-quantized (or noisy) z;
    * ``medians()`` — the per-channel medians, the rounding centre without a dither;
    * ``compress(z, quantizer)`` / ``decompress(strings, shape, quantizer)`` — one rANS
      string per image of k = round(z − c), the rounding centre c =
      ``quantizer.coding_offset(shape, medians)`` (the medians, or a dither around them);
    * ``update()`` — build the coding tables (needed after the weights change).

    Coding tables are a function of the weights, rebuilt by :meth:`update`, never stored in
    a checkpoint. For each channel and each offset s = j/16 − ½ of the rounding centre from
    the median (j = 0 … 16: universal quantization's dither), the quantised CDF of
    k = round(z − m − s) over the quantiles' range widened by one each side, then the escape.

    Deviation from CompressAI: tables built in float64, and at 17 offsets instead of one.
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(channels, **kwargs)
        for name in _TABLES:  # rebuilt from the weights: not part of the state dict
            self.register_buffer(name, torch.IntTensor(), persistent=False)

    def medians(self) -> Tensor:
        """The per-channel medians as a (1, C, 1, 1) tensor, detached."""
        return self._get_medians().detach().reshape(1, -1, 1, 1)

    def likelihood(self, z: Tensor) -> Tensor:
        """Likelihood of already-quantized (or noisy) ``z`` (B, C, H, W).

        CompressAI's ``forward`` quantizes internally; liclab's quantizers do that outside,
        so this evaluates only the density, in float32 whatever the autocast precision.
        """
        b, c, h, w = z.shape
        values = z.float().transpose(0, 1).reshape(c, 1, -1)
        with torch.autocast(z.device.type, enabled=False):
            likelihood, _, _ = self._likelihood(values)
            if self.use_likelihood_bound:
                likelihood = self.likelihood_lower_bound(likelihood)
        return likelihood.reshape(c, b, h, w).transpose(0, 1)

    def compress(self, z: Tensor, quantizer) -> list[bytes]:
        """One rANS string per image of k = round(z − c) (see the class docstring)."""
        from compressai.ans import RansEncoder

        centre = self._centre(z.shape, quantizer).to(z.device)
        indexes = self._indexes(centre)
        symbols = torch.round(z - centre).int()
        tables = self._table_lists()
        return [
            RansEncoder().encode_with_indexes(
                symbols[b].flatten().tolist(), indexes[b].flatten().tolist(), *tables
            )
            for b in range(len(z))
        ]

    def decompress(self, strings: list[bytes], shape: tuple, quantizer) -> Tensor:
        """ẑ = k + c, (B, C, *shape) from the B strings of :meth:`compress`."""
        from compressai.ans import RansDecoder

        centre = self._centre(torch.Size((len(strings), self.channels, *shape)), quantizer)
        indexes = self._indexes(centre)
        tables = self._table_lists()
        symbols = [
            RansDecoder().decode_with_indexes(string, indexes[b].flatten().tolist(), *tables)
            for b, string in enumerate(strings)
        ]
        symbols = torch.from_numpy(np.asarray(symbols, dtype=np.int32))
        return symbols.reshape(centre.shape).to(centre) + centre

    @torch.no_grad()
    def code_length(self, z: Tensor, quantizer) -> float:
        """Bits of :meth:`compress`'s symbols under the coding tables: the ideal length, before
        the coder's termination (escapes: CompressAI's 4-bit bypass chunks)."""
        centre = self._centre(z.shape, quantizer).to(z.device)
        rows = self._indexes(centre).flatten()
        v = torch.round(z - centre).long().cpu().flatten() - self._offset[rows]
        escape = self._cdf_length[rows].long() - 2
        raw = torch.where(v < 0, -2 * v - 1, 2 * (v - escape))
        out = (v < 0) | (v >= escape)
        v = torch.where(out, escape, v)
        cdf = self._quantized_cdf[rows].long()
        freq = cdf.gather(1, v[:, None] + 1) - cdf.gather(1, v[:, None])
        bits = float((self.entropy_coder_precision - torch.log2(freq.double())).sum())
        chunks = torch.ceil(torch.log2(raw[out].double() + 1) / 4)  # 4-bit chunks of the value
        return bits + float((4 * (chunks // 15 + 1 + chunks)).sum())

    def _centre(self, shape: torch.Size, quantizer) -> Tensor:
        return quantizer.coding_offset(shape, self.medians()).expand(shape)

    def _indexes(self, centre: Tensor) -> Tensor:
        """Row ``j · C + c`` of the tables for each element: channel c, offset j."""
        if self._offset.numel() == 0:
            self.update()
        channel = torch.arange(self.channels).reshape(1, -1, 1, 1)
        offset = (centre.double().cpu() - self.medians().double().cpu()).flatten()
        shift = torch.round((offset + 0.5) * SHIFT_STEPS).clamp(0, SHIFT_STEPS).long()
        return shift.reshape(centre.shape) * self.channels + channel

    def _table_lists(self) -> tuple[list, list, list]:
        lengths = self._cdf_length.tolist()
        cdfs = [row[:n] for row, n in zip(self._quantized_cdf.tolist(), lengths, strict=True)]
        return cdfs, lengths, self._offset.tolist()

    @torch.no_grad()
    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        """Build the coding tables (if none yet, or ``force``), in float64."""
        if self._offset.numel() > 0 and not force:
            return False
        if update_quantiles:
            self._update_quantiles()
        twin = copy.deepcopy(self).double()
        q = twin.quantiles[:, 0, :]
        medians = q[:, 1]
        minima = torch.ceil(medians - q[:, 0]).clamp_min(0).long() + 1
        maxima = torch.ceil(q[:, 2] - medians).clamp_min(0).long() + 1
        lengths = maxima + minima + 1
        width = int(lengths.max())
        cdfs = []
        for j in range(SHIFT_STEPS + 1):
            start = medians - minima + (j / SHIFT_STEPS - 0.5)
            samples = torch.arange(width, dtype=torch.float64)[None, :] + start[:, None, None]
            pmf, lower, upper = twin._likelihood(samples, stop_gradient=True)
            tail = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
            cdfs.append(twin._pmf_to_cdf(pmf[:, 0, :], tail, lengths, width))
        self._quantized_cdf = torch.cat(cdfs).int()
        self._cdf_length = (lengths + 2).repeat(SHIFT_STEPS + 1).int()
        self._offset = (-minima).repeat(SHIFT_STEPS + 1).int()
        return True
