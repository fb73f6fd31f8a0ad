"""The learned-codec protocol every liclab model follows.

A model maps tensors to tensors (``forward``, for training and estimation) and latents to
bytes (``compress`` / ``decompress``). It knows nothing of training mechanics: the
quantization proxy is an object passed to ``forward`` (see :mod:`liclab.quantizers`), the
loss, optimiser and logging live in :mod:`liclab.lit`.

Inputs of any size are padded (edge replication) to a multiple of ``stride`` and the output
is cropped back, in ``forward`` and in ``compress``/``decompress`` alike, so the eval-mode
``forward`` reconstruction is exactly what ``decompress(compress(x))`` returns, on any
machine (how: :mod:`liclab.entropy`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liclab.models.arithmetic import stable
from liclab.quantizers import Quantizer, Round

_ROUND = Round().eval()

COMPRESSAI_NAMES = {
    "gaussian_conditional.": "conditional.",
    "context_prediction.": "spatial_context.0.",
    "entropy_parameters.": "param_aggregation.0.",
}
"""CompressAI's module names → liclab's, for loading CompressAI's (and older liclab) weights."""

# Coding tables (rebuilt from the weights), and CompressAI's GaussianConditional.scale_bound
# (liclab's bound is lower_bound_scale.bound, also in CompressAI's weights).
_NOT_WEIGHTS = ("._quantized_cdf", "._offset", "._cdf_length", ".scale_table", ".scale_bound")


class CompressionModel(nn.Module):
    """Base class of liclab's models.

    Subclasses set ``stride`` and implement ``_forward`` (padded x → ŷ and likelihoods),
    ``_compress`` and ``_decompress`` on padded inputs; this class handles padding, the
    synthesis, cropping and the output format:

    * ``forward(x, quantizer)`` → ``{"x_hat": Tensor, "likelihoods": {"y": ..., "z": ...},
      "y_hat": Tensor}`` (ŷ as g_s sees it, of the padded input: what a conditional
      discriminator reads, :mod:`liclab.discriminators`)
    * ``compress(x)`` → ``{"strings": [[bytes per image] per latent], "shape": latent shape,
      "size": (H, W)}``
    * ``decompress(strings, shape, size)`` → ``{"x_hat": Tensor}`` clamped to [0, 1].

    Coding tables are built from the weights by :meth:`update` (or on first use), never
    loaded: :meth:`load_state_dict` drops any it is given, so weights saved by CompressAI or
    by an older liclab load too.
    """

    stride: int = 64

    def forward(self, x: Tensor, quantizer: Quantizer | None = None) -> dict[str, Any]:
        size = x.shape[-2:]
        y_hat, likelihoods = self._forward(self._pad(x), quantizer or _ROUND)
        x_hat = self.synthesize(y_hat)[..., : size[0], : size[1]]
        return {"x_hat": x_hat, "likelihoods": likelihoods, "y_hat": y_hat}

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

    ``False`` runs it in float32 (channels-last), as CompressAI does: faster on a CPU, but x̂
    may then differ by one 8-bit level in a few pixels between machines or thread counts.
    Only the reconstruction is affected: entropy parameters, and so the decoded ŷ, stay exact.
    """

    def update(self, force: bool = False) -> bool:
        """Build the coding tables of every entropy bottleneck (if missing, or ``force``)."""
        from liclab.entropy.bottleneck import EntropyBottleneck

        updated = False
        for module in self.modules():
            if isinstance(module, EntropyBottleneck):
                updated |= module.update(force=force)
        return updated

    def aux_loss(self) -> Tensor:
        """CompressAI's auxiliary loss of the bottlenecks' quantiles (summed)."""
        from liclab.entropy.bottleneck import EntropyBottleneck

        return sum(m.loss() for m in self.modules() if isinstance(m, EntropyBottleneck))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` after renaming CompressAI's module names
        (:data:`COMPRESSAI_NAMES`), dropping coding tables and keeping this model's own
        masks of masked convolutions (a mask is structure, not a weight)."""
        own = self.state_dict()
        state = {}
        for key, value in state_dict.items():
            for old, new in COMPRESSAI_NAMES.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
            if key.endswith(_NOT_WEIGHTS):
                continue
            state[key] = own[key] if key.endswith(".mask") and key in own else value
        result = super().load_state_dict(state, strict=strict, assign=assign)
        self.update(force=True)
        return result

    def synthesize(self, y_hat: Tensor) -> Tensor:
        """g_s: float32 in training; when coding, float64 (:func:`stable`), or float32 in
        channels-last layout if not ``exact_synthesis``."""
        if self.training:
            return self.g_s(y_hat)
        if not self.exact_synthesis:
            # channels-last: oneDNN's CPU convolutions skip layout reorders
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
        """(ŷ as the decoder sees it, likelihoods of every latent) of a padded ``x``."""
        raise NotImplementedError

    def _compress(self, x: Tensor, q: Quantizer) -> tuple[list, tuple]:
        raise NotImplementedError

    def _decompress(self, strings: list, shape: tuple, q: Quantizer) -> Tensor:
        raise NotImplementedError
