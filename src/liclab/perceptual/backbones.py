"""The ImageNet backbones of LPIPS and DISTS, in torchvision's layout, and their feature taps.

Both metrics read the ReLU outputs at the end of each stage: AlexNet ``relu1``–``relu5``
(``features`` indices 1, 4, 7, 9, 11) and VGG16 ``relu1_2``, ``relu2_2``, ``relu3_3``,
``relu4_3``, ``relu5_3`` (indices 3, 8, 15, 22, 29). The layers past the last tap are dropped.
Parameter names are torchvision's (``features.0.weight`` …), so a state dict of
``torchvision.models.alexnet`` / ``vgg16`` loads as it is.
"""

from __future__ import annotations

import torch
from torch import nn

ALEXNET_TAPS = (1, 4, 7, 9, 11)
VGG16_TAPS = (3, 8, 15, 22, 29)


def alexnet_features(weights: str | None = None) -> nn.Sequential:
    """torchvision's AlexNet convolutions up to ``relu5``; random weights unless ``weights``
    names torchvision's (``"IMAGENET1K_V1"``, downloaded by torchvision)."""
    from torchvision.models import alexnet

    return alexnet(weights=weights).features[: ALEXNET_TAPS[-1] + 1]


def vgg16_features(weights: str | None = None) -> nn.Sequential:
    """torchvision's VGG16 convolutions up to ``relu5_3``; ``weights`` as for AlexNet."""
    from torchvision.models import vgg16

    return vgg16(weights=weights).features[: VGG16_TAPS[-1] + 1]


def conv_indices(features: nn.Sequential) -> list[int]:
    """Positions of the convolutions in ``features`` (their torchvision parameter names)."""
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


def tapped(features: nn.Sequential, taps: tuple[int, ...], x: torch.Tensor) -> list[torch.Tensor]:
    """Run ``features`` on ``x``; the outputs of the layers at ``taps``."""
    out = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            out.append(x)
    return out
