"""A single Gaussian per latent element, coded with CompressAI's scale table and rANS."""

from __future__ import annotations

import torch
from compressai.entropy_models import GaussianConditional as _CompressAIGaussian
from torch import Tensor

from liclab.models.base import gaussian_likelihood, snap


class GaussianConditional(_CompressAIGaussian):
    """N(μ, σ) per element of y (Ballé et al. 2018, arXiv:1802.01436; means as in Minnen et
    al. 2018, arXiv:1809.02736), behind liclab's conditional-entropy-model interface
    (:mod:`liclab.entropy`).

    ``params`` holds ``2·C`` channels: scales then means (CompressAI's ``chunk(2)`` order).
    Coding maps σ to CompressAI's 64-entry log-spaced scale table (0.11–256), which costs
    ~0.5–1 % over the estimate, and centres the pmf on the rounding centre; every pass of a
    multi-pass context model writes to one rANS stream per image (``BufferedRansEncoder``).
    ``model.update()`` fills the table, as for any CompressAI model.

    Args:
        scale_bound: the lower bound on σ.
    """

    def __init__(self, scale_bound: float = 0.11):
        super().__init__(None, scale_bound=scale_bound)

    n_params = 2

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

    def indexes(self, params: Tensor) -> list[int]:
        """Scale-table index of each element: ``build_indexes`` by binary search."""
        scales = self.lower_bound_scale(self.parts(params)[0])
        return torch.searchsorted(self.scale_table[:-1], scales.flatten()).tolist()

    def _tables(self) -> tuple[list, list, list]:
        self._check_cdf_size()
        return (
            self._quantized_cdf.tolist(),
            self._cdf_length.reshape(-1).int().tolist(),
            self._offset.reshape(-1).int().tolist(),
        )

    def encoder(self, batch: int) -> _Encoder:
        return _Encoder(self, batch)

    def decoder(self, strings: list[bytes]) -> _Decoder:
        return _Decoder(self, strings)


class _Encoder:
    def __init__(self, gc: GaussianConditional, batch: int):
        from compressai.ans import BufferedRansEncoder

        self.gc, self.tables = gc, gc._tables()
        self.coders = [BufferedRansEncoder() for _ in range(batch)]

    def encode(self, symbols: Tensor, params: Tensor, centre: Tensor) -> None:
        for b, coder in enumerate(self.coders):
            values = symbols[b].reshape(-1).int().tolist()
            coder.encode_with_indexes(values, self.gc.indexes(params[b : b + 1]), *self.tables)

    def finish(self) -> list[bytes]:
        return [coder.flush() for coder in self.coders]


class _Decoder:
    def __init__(self, gc: GaussianConditional, strings: list[bytes]):
        from compressai.ans import RansDecoder

        self.gc, self.tables = gc, gc._tables()
        self.coders = []
        for string in strings:
            self.coders.append(RansDecoder())
            self.coders[-1].set_stream(string)

    def decode(self, params: Tensor, centre: Tensor) -> Tensor:
        out = [
            torch.tensor(coder.decode_stream(self.gc.indexes(params[b : b + 1]), *self.tables))
            for b, coder in enumerate(self.coders)
        ]
        return torch.stack(out).reshape(centre.shape).to(centre.dtype)
