"""The learned-codec protocol every liclab model follows.

A model maps tensors to tensors (``forward``, for training and estimation) and latents to
bytes (``compress`` / ``decompress``). It knows nothing of training mechanics: the
quantization proxy is an object passed to ``forward`` (see :mod:`liclab.quantizers`), the
loss, optimiser and logging live in :mod:`liclab.lit`.

Inputs of any size are padded (edge replication) to a multiple of ``stride`` and the output
is cropped back, in ``forward`` and in ``compress``/``decompress`` alike, so the eval-mode
``forward`` reconstruction is exactly what ``decompress(compress(x))`` returns.

Deterministic decoding: the decoder recomputes the entropy parameters (scales, means) that
select each symbol's CDF, and float32 convolutions give different last bits with a different
thread count or CPU, which silently selects another CDF and decodes garbage. So in eval mode
(``compress``, ``decompress`` and the eval ``forward`` alike) the decoder-side networks run
in float64 (:func:`stable`) and means are snapped to a 1/256 grid (:func:`snap`): a
disagreement then needs two float64 results to straddle a grid point, ~1e-12 per element.
ELIC's entropy-parameter networks can instead run in integer arithmetic, exact in any order
of summation (:mod:`liclab.models.integer`). Training runs in float32 as usual.

Built on CompressAI's ``CompressionModel`` (entropy-bottleneck CDF updates, buffer-resizing
``load_state_dict``, ``aux_loss``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from compressai.models.base import CompressionModel as _CompressAIModel
from torch import Tensor, nn

from liclab.quantizers import Quantizer, Round

_ROUND = Round().eval()


class CompressionModel(_CompressAIModel):
    """Base class of liclab's models.

    Subclasses set ``stride`` and implement ``_forward``, ``_compress`` and ``_decompress``
    on padded inputs; this class handles padding, cropping and the output format:

    * ``forward(x, quantizer)`` → ``{"x_hat": Tensor, "likelihoods": {"y": ..., "z": ...}}``
    * ``compress(x)`` → ``{"strings": [[bytes per image] per latent], "shape": latent shape,
      "size": (H, W)}``
    * ``decompress(strings, shape, size)`` → ``{"x_hat": Tensor}`` clamped to [0, 1].
    """

    stride: int = 64

    def forward(self, x: Tensor, quantizer: Quantizer | None = None) -> dict[str, Any]:
        size = x.shape[-2:]
        x_hat, likelihoods = self._forward(self._pad(x), quantizer or _ROUND)
        return {"x_hat": x_hat[..., : size[0], : size[1]], "likelihoods": likelihoods}

    @torch.no_grad()
    def compress(self, x: Tensor, quantizer: Quantizer | None = None) -> dict[str, Any]:
        """Code ``x``; the quantizer only supplies rounding centres (``coding_offset``)."""
        strings, shape = self._compress(self._pad(x), (quantizer or _ROUND).eval())
        return {"strings": strings, "shape": tuple(shape), "size": tuple(x.shape[-2:])}

    @torch.no_grad()
    def decompress(
        self, strings: list, shape: tuple, size: tuple, quantizer: Quantizer | None = None
    ) -> dict[str, Tensor]:
        x_hat = self._decompress(strings, shape, (quantizer or _ROUND).eval())
        return {"x_hat": x_hat[..., : size[0], : size[1]].clamp(0, 1)}

    exact_synthesis: bool = True
    """Eval-mode g_s in float64, so that x̂ is bit-identical across thread counts and CPUs.

    ``False`` runs it in float32 (channels-last), as CompressAI does: ~5× faster at paper size
    on a CPU, but x̂ may then differ by one 8-bit level in a few pixels between machines or
    thread counts.
    Only the reconstruction is affected: entropy parameters, and so the decoded ŷ, stay exact.
    """

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False):
        """Build the coding tables (CompressAI's ``update``), from a scale table and in
        arithmetic that every machine reproduces (:mod:`liclab.entropy.tables`)."""
        from liclab.entropy.tables import scale_table as portable_scale_table

        if scale_table is None:
            scale_table = portable_scale_table()
        return super().update(scale_table, force=force, update_quantiles=update_quantiles)

    def synthesize(self, y_hat: Tensor) -> Tensor:
        """g_s: float32 in training; when coding, float64 (:func:`stable`), or float32 in
        channels-last layout if not ``exact_synthesis``."""
        if self.training:
            return self.g_s(y_hat)
        if not self.exact_synthesis:
            # channels-last: oneDNN's CPU convolutions skip layout reorders (ELIC's g_s on a
            # Kodak image: 1.51 s vs 1.91 s for CompressAI's, results/elic-decode)
            return self.g_s(y_hat.contiguous(memory_format=torch.channels_last)).contiguous()
        return stable(self.g_s, y_hat).float()

    def _pad(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph == 0 and pw == 0:
            return x
        # Replicated edges cost fewer bits than zeros and are cropped away after decoding.
        return F.pad(x, (0, pw, 0, ph), mode="replicate")

    def _forward(self, x: Tensor, q: Quantizer) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def _compress(self, x: Tensor, q: Quantizer) -> tuple[list, tuple]:
        raise NotImplementedError

    def _decompress(self, strings: list, shape: tuple, q: Quantizer) -> Tensor:
        raise NotImplementedError


MEAN_GRID = 256


def stable(module: nn.Module, *inputs: Tensor) -> Tensor:
    """Run ``module`` in float64 (parameters cast on the fly) and return the float64 result.

    Used on the decoder side in eval mode so that encoder and decoder, in any process with
    any thread count, compute the same entropy parameters and reconstruction.
    """
    params = {k: v.double() for k, v in module.named_parameters()}
    params.update({k: v.double() for k, v in module.named_buffers() if v.is_floating_point()})
    return torch.func.functional_call(module, params, tuple(x.double() for x in inputs))


def snap(means: Tensor) -> Tensor:
    """Means on a 1/256 grid, computed in float64: exactly reproducible by the decoder."""
    return (torch.round(means.double() * MEAN_GRID) / MEAN_GRID).float()


def bottleneck_medians(eb) -> Tensor:
    """The entropy bottleneck's per-channel medians as a (1, C, 1, 1) tensor."""
    return eb._get_medians().reshape(1, -1, 1, 1)


def bottleneck_compress(eb, z: Tensor, q: Quantizer) -> list[bytes]:
    """EntropyBottleneck coding centred on ``q.coding_offset(z, medians)``.

    CompressAI's ``EntropyBottleneck.compress`` always centres on the medians; calling the
    base ``EntropyModel.compress`` with explicit centres, or for a dither liclab's tables of
    each offset (:meth:`liclab.entropy.tables.EntropyBottleneck.coding`), lets universal
    quantization dither.
    """
    from compressai.entropy_models import EntropyModel

    from liclab.entropy.tables import rans_encode

    centre = q.coding_offset(z, bottleneck_medians(eb).detach()).expand_as(z)
    indexes, tables = eb.coding(centre)
    if tables is None:
        return EntropyModel.compress(eb, z, indexes, centre)
    return rans_encode(torch.round(z - centre), indexes, tables)


def bottleneck_decompress(eb, strings: list, shape, q: Quantizer) -> Tensor:
    from compressai.entropy_models import EntropyModel

    from liclab.entropy.tables import rans_decode

    size = (len(strings), eb.channels, *shape)
    medians = bottleneck_medians(eb).detach()
    centre = q.coding_offset(medians.new_zeros(size), medians).expand(size)
    indexes, tables = eb.coding(centre)
    if tables is None:
        return EntropyModel.decompress(eb, strings, indexes, medians.dtype, centre)
    return rans_decode(strings, indexes, tables, centre)


def bottleneck_likelihood(eb, z: Tensor) -> Tensor:
    """Likelihood of already-quantized (or noisy) ``z`` under a CompressAI EntropyBottleneck.

    CompressAI's ``EntropyBottleneck.forward`` quantizes internally; liclab's quantizers do
    that outside, so this evaluates only the density, in the (C, 1, N) layout it expects.
    """
    b, c, h, w = z.shape
    values = z.float().transpose(0, 1).reshape(c, 1, -1)
    with torch.autocast(z.device.type, enabled=False):  # float32 under bf16 training
        likelihood, _, _ = eb._likelihood(values)
        if eb.use_likelihood_bound:
            likelihood = eb.likelihood_lower_bound(likelihood)
    return likelihood.reshape(c, b, h, w).transpose(0, 1)


def gaussian_likelihood(gc, y: Tensor, scales: Tensor, means: Tensor | None = None) -> Tensor:
    """Likelihood of already-quantized ``y`` under a CompressAI GaussianConditional, in
    float32 whatever the autocast precision (bf16 erfc tails would be far off)."""
    means = None if means is None else means.float()
    with torch.autocast(y.device.type, enabled=False):
        likelihood = gc._likelihood(y.float(), scales.float(), means)
        if gc.use_likelihood_bound:
            likelihood = gc.likelihood_lower_bound(likelihood)
    return likelihood
