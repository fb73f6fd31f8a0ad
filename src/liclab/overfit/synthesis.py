"""The synthesis of an overfitted codec: 1×1 layers, then residual 3×3 layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from liclab.overfit.mlp import conv3x3, pointwise_mlp


class Synthesis(nn.Module):
    """Dense latents (1, L, H, W) → image (1, 3, H, W) (Ladune et al. 2023, Cool-chic,
    arXiv:2212.05458; Kim et al. 2024, C3, arXiv:2312.02753)::

        L ─1×1─▶ hidden[0] ─act─ … ─1×1─▶ hidden[-1] ─act─1×1─▶ 3
          ─▶ [x ← act(conv3×3(x) + x)] × (residual_layers − 1) ─▶ x ← conv3×3(x) + x
          (+ 1×1 stabiliser: L ─▶ 3, straight from the input, with ``stabiliser``)

    The 3×3 convolutions pad by replicating the border. Cool-chic 5.0's "hop" synthesis is
    ``hidden=[48], residual_layers=2, stabiliser=True`` with ReLU (4.x's: no stabiliser);
    C3's Kodak one ``hidden=[18, 18]``, ``residual_layers=2`` with GELU.

    Args:
        in_channels: L (the model passes it).
        hidden: widths of the 1×1 hidden layers.
        residual_layers: residual 3×3 layers on the output channels (initialised to zero:
            identity).
        out_channels: 3 for RGB.
        activation: the non-linearity (an ``nn.Module``; in-place ReLU if None).
        init: ``"coolchic"``: the 1×1 layers' weights PyTorch's default divided by
            out_channels² and their biases zero, so x̂ starts near 0 and no ReLU starts dead
            (Cool-chic's); ``"default"``: PyTorch's default (weights and biases uniform in
            ±1/√fan_in).
        stabiliser: a 1×1 convolution from the input straight to the output, added to it
            (Cool-chic 5.0's linear stabiliser: a linear path beside the trunk, which carries
            the latents to x̂ from the first iteration); initialised uniform in
            ±1/(out_channels²·√in_channels), zero bias.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: Sequence[int] = (40,),
        residual_layers: int = 2,
        out_channels: int = 3,
        activation: nn.Module | None = None,
        init: str = "default",
        stabiliser: bool = False,
    ):
        super().__init__()
        if init not in ("default", "coolchic"):
            raise ValueError(f"synthesis init must be 'default' or 'coolchic', not {init!r}")
        widths = [in_channels, *hidden, out_channels]
        self.pointwise = nn.ModuleList(
            nn.Conv2d(a, b, 1) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.residual = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3) for _ in range(residual_layers)
        )
        if init == "coolchic":
            with torch.no_grad():
                for conv in self.pointwise:
                    conv.weight.div_(conv.out_channels**2)
                    conv.bias.zero_()
        for conv in self.residual:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.activation = activation if activation is not None else nn.ReLU(inplace=True)
        self.stabiliser = nn.Conv2d(in_channels, out_channels, 1) if stabiliser else None
        if stabiliser:
            bound = 1 / (out_channels**2 * in_channels**0.5)
            nn.init.uniform_(self.stabiliser.weight, -bound, bound)
            nn.init.zeros_(self.stabiliser.bias)

    def forward(self, x: Tensor) -> Tensor:
        _, c, h, w = x.shape
        skip = self.stabiliser(x) if self.stabiliser is not None else None
        if isinstance(self.activation, nn.ReLU):
            # (H·W, C) rows: a view of channels-last input, and the output is channels-last
            layers = self.pointwise
            x = pointwise_mlp(
                x.permute(0, 2, 3, 1).reshape(h * w, c),
                [conv.weight.flatten(1) for conv in layers],
                [conv.bias for conv in layers],
                residual=[False] * len(layers),
                relu=[i < len(layers) - 1 for i in range(len(layers))],
            )
            x = x.view(1, h, w, -1).permute(0, 3, 1, 2)
        else:
            for i, conv in enumerate(self.pointwise):
                x = conv(x)
                if i < len(self.pointwise) - 1:
                    x = self.activation(x)
        for i, layer in enumerate(self.residual):  # the C kernel or oneDNN: conv3x3 decides
            x = conv3x3(x, layer.weight, layer.bias) + x
            if i < len(self.residual) - 1:
                x = self.activation(x)
        return x if skip is None else x + skip

    def macs_per_pixel(self) -> int:
        convs = [*self.pointwise, *([self.stabiliser] if self.stabiliser is not None else [])]
        return sum(c.in_channels * c.out_channels for c in convs) + sum(
            9 * c.in_channels * c.out_channels for c in self.residual
        )
