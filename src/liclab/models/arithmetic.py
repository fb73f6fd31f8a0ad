"""How decoder-side networks run when coding: objects a model calls, chosen by ``_target_``.

Encoder and decoder must compute the same entropy parameters to the last bit (why, and the
rest of the design: :mod:`liclab.entropy`). A model runs each decoder-side network (h_s,
context and parameter networks) through its ``arithmetic`` in eval mode, and plainly in
float32 in training:

* :class:`Float64` — the network in float64 (parameters cast on the fly);
* :class:`Integer` — 13-bit fixed point with exact integer sums (:mod:`liclab.models.integer`),
  bit-identical on every machine in any order of summation.

Both return float64.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def stable(module: nn.Module, *inputs: Tensor) -> Tensor:
    """Run ``module`` in float64 (parameters cast on the fly) on ``inputs``; float64 result."""
    params = {k: v.double() for k, v in module.named_parameters()}
    params.update({k: v.double() for k, v in module.named_buffers() if v.is_floating_point()})
    return torch.func.functional_call(module, params, tuple(x.double() for x in inputs))


class Float64:
    """Decoder-side networks in float64: a disagreement between machines needs two float64
    results to straddle a grid point of the entropy parameters."""

    def __call__(self, module: nn.Module, *inputs: Tensor) -> Tensor:
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
        return stable(module, x)


class Integer:
    """Decoder-side networks in integer arithmetic (:func:`liclab.models.integer.integer_net`):
    exact on every machine; each network input is quantised per image, so every call must
    see whole images (no raster scan of windows)."""

    def __call__(self, module: nn.Module, *inputs: Tensor) -> Tensor:
        from liclab.models.integer import integer_net

        return integer_net(module, *inputs)
