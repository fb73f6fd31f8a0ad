"""A single Gaussian per latent element, coded with a scale table and CompressAI's rANS."""

from __future__ import annotations

import numpy as np
import torch
from compressai.entropy_models import GaussianConditional as _CompressAIGaussian
from torch import Tensor

from liclab.entropy.tables import SHIFT_STEPS, gaussian_table, rans_decode, rans_encode, shift_index
from liclab.models.base import gaussian_likelihood, snap


class GaussianConditional(_CompressAIGaussian):
    """N(μ, σ) per element of y (Ballé et al. 2018, arXiv:1802.01436; means as in Minnen et
    al. 2018, arXiv:1809.02736), behind liclab's conditional-entropy-model interface
    (:mod:`liclab.entropy`).

    ``params`` holds ``2·C`` channels: scales then means (CompressAI's ``chunk(2)`` order).
    Coding maps σ to CompressAI's 64-entry log-spaced scale table (0.11–256), which costs
    ~0.5–1 % over the estimate; every pass of a multi-pass context model writes to one rANS
    stream per image (``BufferedRansEncoder``). ``model.update()`` fills the table, as for
    any CompressAI model.

    The symbol is k = round(y − c) for a rounding centre c. With c = μ (every proxy but
    universal quantization) k follows the discretised N(0, σ): CompressAI's tables, built in
    float64 here (:mod:`liclab.entropy.tables`). With a dither, c = μ + u, k follows N(−u, σ)
    discretised, so the offset c − μ selects the table built for the nearest offset on a
    1/16 grid (:data:`~liclab.entropy.tables.SHIFT_STEPS`).

    Args:
        scale_bound: the lower bound on σ.
    """

    def __init__(self, scale_bound: float = 0.11):
        super().__init__(None, scale_bound=scale_bound)

    n_params = 2

    def update(self) -> None:
        """CompressAI's ``update()`` (zero-offset tables of the scale table), in float64 so
        that every machine builds the same tables (:mod:`liclab.entropy.tables`)."""
        cdfs, lengths, offsets = self._cached_tables(False)
        quantized = torch.zeros(len(cdfs), max(lengths), dtype=torch.int32)
        for row, cdf in zip(quantized, cdfs, strict=True):
            row[: len(cdf)] = torch.tensor(cdf, dtype=torch.int32)
        self._quantized_cdf = quantized
        self._cdf_length = torch.tensor(lengths, dtype=torch.int32)
        self._offset = torch.tensor(offsets, dtype=torch.int32)

    def parts(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """(scales, means); means snapped to the coding grid when ``params`` is float64."""
        scales, means = params.chunk(2, dim=1)
        if params.dtype == torch.float64:
            return scales.float(), snap(means)
        return scales, means

    def likelihood(self, y: Tensor, params: Tensor) -> Tensor:
        scales, means = self.parts(params)
        return gaussian_likelihood(self, y, scales, means)

    def mean(self, params: Tensor) -> Tensor:
        return self.parts(params)[1]

    def coding(self, params: Tensor, centre: Tensor) -> tuple[list[int], tuple]:
        """(table index of each element, the tables) for ``params`` and rounding ``centre``."""
        scales, means = self.parts(params)
        indexes, tables = self.coding_indexes(scales, means, centre)
        return indexes.flatten().tolist(), tables

    def coding_indexes(self, scales: Tensor, means: Tensor | None, centre: Tensor):
        """(index of each element into the tables, the tables (CDFs, lengths, offsets)).

        The index is the element's scale (binary search in the scale table, as
        ``build_indexes``) and, when some centre is off its mean, its offset ``centre −
        means`` on the 1/16 grid.
        """
        self._check_cdf_size()
        scales = self.lower_bound_scale(scales)
        scale_index = torch.searchsorted(self.scale_table[:-1], scales.flatten().contiguous())
        shift = shift_index(centre if means is None else centre - means)
        if bool((shift == SHIFT_STEPS // 2).all()):
            return scale_index.reshape(centre.shape), self._cached_tables(False)
        index = shift * len(self.scale_table) + scale_index
        return index.reshape(centre.shape), self._cached_tables(True)

    def _cached_tables(self, shifted: bool) -> tuple[list, list, list]:
        """(CDFs, lengths, offsets) of every σ of the scale table, at offset 0 only or at
        every offset of the grid (row ``j · len(scale_table) + i`` for offset j/16 − ½).
        A function of the scale table alone: built once per table."""
        key = (shifted, tuple(self.scale_table.tolist()))
        cache = self.__dict__.setdefault("_table_cache", {})
        if key not in cache:
            if len(cache) >= 2:  # another scale table: drop the old one
                cache.clear()
            shifts = [j / SHIFT_STEPS - 0.5 for j in range(SHIFT_STEPS + 1)] if shifted else [0]
            rows = [
                gaussian_table(sigma, shift, self.tail_mass, self.entropy_coder_precision)
                for shift in shifts
                for sigma in self.scale_table.double().tolist()
            ]
            cache[key] = tuple(list(column) for column in zip(*rows, strict=True))
        return cache[key]

    def compress_centred(self, y: Tensor, scales: Tensor, means, centre: Tensor) -> list[bytes]:
        """One rANS string per image of k = round(y − centre) (hyperprior models)."""
        indexes, tables = self.coding_indexes(scales, means, centre)
        return rans_encode(torch.round(y - centre), indexes, tables)

    def decompress_centred(self, strings: list, scales: Tensor, means, centre: Tensor):
        """ŷ = k + centre from the strings of :meth:`compress_centred`."""
        indexes, tables = self.coding_indexes(scales, means, centre)
        return rans_decode(strings, indexes, tables, centre)

    def encoder(self, batch: int) -> _Encoder:
        return _Encoder(self, batch)

    def decoder(self, strings: list[bytes]) -> _Decoder:
        return _Decoder(self, strings)


class _Encoder:
    def __init__(self, gc: GaussianConditional, batch: int):
        from compressai.ans import BufferedRansEncoder

        self.gc = gc
        self.coders = [BufferedRansEncoder() for _ in range(batch)]

    def encode(self, symbols: Tensor, params: Tensor, centre: Tensor) -> None:
        for b, coder in enumerate(self.coders):
            values = symbols[b].reshape(-1).int().tolist()
            indexes, tables = self.gc.coding(params[b : b + 1], centre[b : b + 1])
            coder.encode_with_indexes(values, indexes, *tables)

    def finish(self) -> list[bytes]:
        return [coder.flush() for coder in self.coders]


class _Decoder:
    def __init__(self, gc: GaussianConditional, strings: list[bytes]):
        from compressai.ans import RansDecoder

        self.gc = gc
        self.coders = []
        for string in strings:
            self.coders.append(RansDecoder())
            self.coders[-1].set_stream(string)

    def decode(self, params: Tensor, centre: Tensor) -> Tensor:
        out = []
        for b, coder in enumerate(self.coders):
            indexes, tables = self.gc.coding(params[b : b + 1], centre[b : b + 1])
            symbols = coder.decode_stream(indexes, *tables)
            out.append(torch.from_numpy(np.asarray(symbols, dtype=np.int32)))
        return torch.stack(out).reshape(centre.shape).to(centre.dtype)
