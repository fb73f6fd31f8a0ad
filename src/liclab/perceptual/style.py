"""The style (Gram-matrix) distance of Gatys et al. 2016 (arXiv:1508.06576), a training loss."""

from __future__ import annotations

import torch
from torch import nn

from liclab.perceptual import backbones
from liclab.perceptual.weights import load_into


class GramStyle(nn.Module):
    """Distance between the Gram matrices of VGG16 features (Gatys, Ecker, Bethge 2016,
    arXiv:1508.06576; as a loss for image restoration, Johnson et al. 2016, arXiv:1603.08155).

    ::

        x, y (N, 3, H, W) in [0, 1] ─▶ ImageNet mean / std ─▶ VGG16
          ─▶ per tapped layer l (C_l channels, H_l × W_l): G_l = F_l F_lᵀ / (C_l H_l W_l)
          ─▶ Σ_l mean |G_l(x) − G_l(y)| ─▶ (N,)

    The layers are ``relu1_2``, ``relu2_2``, ``relu3_3`` and ``relu4_3``, and the distance L1,
    as in the PO-ELIC reimplementation that liclab's ``loss=po_elic`` follows (the PO-ELIC
    paper, arXiv:2205.14501, does not state them). Parameters never require gradients;
    gradients flow to the inputs.

    Args:
        taps: ``features`` indices of the VGG16 layers whose Gram matrices are compared.
    """

    def __init__(self, taps: tuple[int, ...] = backbones.VGG16_TAPS[:4]):
        super().__init__()
        self.taps = tuple(taps)
        self.features = backbones.vgg16_features()[: max(self.taps) + 1]
        backbones.imagenet_normalisation(self)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def pretrained(cls, taps: tuple[int, ...] = backbones.VGG16_TAPS[:4], weights_dir=None):
        """VGG16's ImageNet weights, from the cache (``liclab-weights``) or ``weights_dir``."""
        model, full = cls(taps), nn.Module()
        full.features = backbones.vgg16_features()  # the cached file's layout
        load_into(full, ("vgg16.pth",), "style (VGG16)", weights_dir)
        model.features.load_state_dict(full.features[: len(model.features)].state_dict())
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = backbones.tapped(self.features, self.taps, (x - self.mean) / self.std)
        fy = backbones.tapped(self.features, self.taps, (y - self.mean) / self.std)
        return sum((_gram(a) - _gram(b)).abs().mean((1, 2)) for a, b in zip(fx, fy, strict=True))


def _gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)
