"""The latent pyramid of an overfitted codec: L one-channel grids at full, ½, ¼, … resolution."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from liclab.quantizers import Quantizer

COARSEST_SIDE = 8
"""The coarsest grid's shorter side is at least this many latents (see :func:`num_levels`)."""


def num_levels(height: int, width: int) -> int:
    """L = 1 + ⌊log2(min(H, W) / 8)⌋, at least 1: halve until the coarsest grid's shorter side
    would drop below 8. A Kodak image (768×512) gets 7 grids, as in Cool-chic and C3; a
    1920×1080 image 8; a 64×96 crop 4."""
    return 1 + max(0, int(math.floor(math.log2(min(height, width) / COARSEST_SIDE))))


def grid_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(h, w) of each grid, finest first: ⌈H / 2^l⌉ × ⌈W / 2^l⌉."""
    return [(-(-height // 2**i), -(-width // 2**i)) for i in range(levels)]


class LatentPyramid(nn.Module):
    """The latents y_l (l = 0 finest … L − 1 coarsest), each (1, 1, ⌈H/2^l⌉, ⌈W/2^l⌉),
    initialised to zero and scaled by a gain before quantization (Ladune et al. 2023,
    Cool-chic, arXiv:2212.05458; Kim et al. 2024, C3, arXiv:2312.02753)::

        y_l ─×gain_l─▶ q(·) ─▶ (ŷ_l for the rate, ŷ_l for the decoder)

    The gain makes the latents move by whole quantization steps under a learning rate tuned
    for the networks: Cool-chic uses 16 on every grid, C3 2^l / 0.4 (its gains 2^l and its
    quantization step 0.4).

    With ``hyper`` = n, n more grids follow the L, at the resolutions of the n coarsest
    (Cool-chic 5.0's hyperlatents): coded by the ARM like the others, they reach the image
    only through the ARM's inter-grid features of the finer grids (not the synthesis).

    Args:
        size: the image's (H, W).
        levels: L; None: :func:`num_levels` of the size.
        gain: one gain for every grid, or one per grid (finest first; the hyperlatents take
            the gain of the grid whose resolution they have).
        hyper: n, the hyperlatent grids (0 … L).
    """

    def __init__(
        self,
        size: Sequence[int],
        levels: int | None = None,
        gain: float | Sequence[float] = 16.0,
        hyper: int = 0,
    ):
        super().__init__()
        height, width = size
        levels = levels or num_levels(height, width)
        gains = [float(gain)] * levels if isinstance(gain, int | float) else list(map(float, gain))
        if len(gains) != levels:
            raise ValueError(f"{len(gains)} gains for {levels} latent grids")
        if not 0 <= hyper <= levels:
            raise ValueError(f"{hyper} hyperlatent grids for {levels} latent grids")
        twins = list(range(levels - hyper, levels))  # the grid each hyperlatent grid matches
        self.size, self.gains = (height, width), gains + [gains[t] for t in twins]
        self.twins = twins
        self.shapes = grid_shapes(height, width, levels) + [
            grid_shapes(height, width, levels)[t] for t in twins
        ]
        """(h, w) of every grid: the L, finest first, then the hyperlatents."""
        self.levels = levels
        """L, the grids the synthesis sees (the hyperlatents excluded)."""
        self.grids = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in self.shapes)

    def set_gain(self, gain: float) -> None:
        """One gain for every grid (the hyperlatents included)."""
        self.gains = [float(gain)] * len(self.shapes)

    def resolution(self, grid: int) -> int:
        """l of a grid's resolution 2^−l (a hyperlatent grid's: its twin's)."""
        return grid if grid < self.levels else self.twins[grid - self.levels]

    @property
    def num_latents(self) -> int:
        return sum(h * w for h, w in self.shapes)

    def forward(self, quantizer: Quantizer) -> tuple[list[Tensor], list[Tensor]]:
        """(ŷ for the rate, ŷ for the decoder) per grid: ``quantizer(gain_l · y_l)``, no
        offset (the ARM's mean depends on ŷ itself, so rounding cannot centre on it)."""
        pairs = [quantizer(g * y, None) for g, y in zip(self.gains, self.grids, strict=True)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    @torch.no_grad()
    def rounded(self) -> list[Tensor]:
        """The integers a bitstream carries: round(gain_l · y_l) per grid, float32."""
        return [torch.round(g * y) for g, y in zip(self.gains, self.grids, strict=True)]
