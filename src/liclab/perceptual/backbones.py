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


def alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` up to ``relu5``, random weights.

    Built here rather than sliced from ``torchvision.models.alexnet()``, which would first
    initialise the 58 M-parameter classifier (VGG16's takes 3 s on a CPU).
    """
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True),
    )


def vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 ``features`` up to ``relu5_3``, random weights."""
    layers, cin = [], 3
    for stage, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if stage:
            layers.append(nn.MaxPool2d(2, stride=2))
        for _ in range(convs):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
    return nn.Sequential(*layers)


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


def imagenet_normalisation(module: nn.Module) -> None:
    """Register torchvision's ImageNet input normalisation on ``module`` as non-persistent
    buffers ``mean`` and ``std`` (1, 3, 1, 1): the VGG16 metrics compute ``(x − mean) / std``."""
    for name, values in (("mean", (0.485, 0.456, 0.406)), ("std", (0.229, 0.224, 0.225))):
        module.register_buffer(name, torch.tensor(values).view(1, 3, 1, 1), persistent=False)
