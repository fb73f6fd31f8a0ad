"""LPIPS, the learned perceptual distance of Zhang et al. 2018 (arXiv:1801.03924)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from liclab.perceptual import backbones
from liclab.perceptual.tensors import pick_device, score
from liclab.perceptual.weights import load_into, resolve_weights_dir

# net -> (backbone, its taps, the cache file of its heads)
NETS = {
    "alex": ("alexnet", backbones.ALEXNET_TAPS, "lpips-alex-v0.1.pth"),
    "vgg": ("vgg16", backbones.VGG16_TAPS, "lpips-vgg-v0.1.pth"),
}


class LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018, arXiv:1801.03924): a distance, 0 for identical images.

    ::

        x, y (N, 3, H, W) in [0, 1] ─▶ 2x − 1 ─▶ (· − shift) / scale ─▶ backbone
          ─▶ per tapped layer l: unit-normalise over channels, (f_l(x) − f_l(y))²
          ─▶ 1×1 conv w_l (no bias) ─▶ mean over H, W ─▶ Σ_l ─▶ (N,)

    As the ``lpips`` package with ``lpips=True, spatial=False, version="0.1"``; the heads'
    dropout (a no-op in evaluation) is left out. Parameters never require gradients, but
    gradients flow to the inputs (a training loss can use the module).

    Args:
        net: ``"alex"`` (AlexNet, the paper's default) or ``"vgg"`` (VGG16).
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"net must be one of {sorted(NETS)}, got {net!r}")
        arch, self.taps, self.heads_file = NETS[net]
        self.backbone_file = f"{arch}.pth"
        self.features = getattr(backbones, f"{arch}_features")()
        channels = [self.features[i - 1].out_channels for i in self.taps]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        shift, scale = [-0.030, -0.088, -0.188], [0.458, 0.448, 0.450]
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def pretrained(cls, net: str = "alex", weights_dir=None) -> LPIPS:
        """The published weights, from the cache (``liclab-weights``) or ``weights_dir``."""
        model = cls(net)
        return load_into(model, (model.backbone_file, model.heads_file), "LPIPS", weights_dir)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = backbones.tapped(self.features, self.taps, (2 * x - 1 - self.shift) / self.scale)
        fy = backbones.tapped(self.features, self.taps, (2 * y - 1 - self.shift) / self.scale)
        d = 0
        for a, b, head in zip(fx, fy, self.heads, strict=True):
            d = d + head((_unit(a) - _unit(b)) ** 2).mean((2, 3))
        return d.flatten()


def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + eps)


@functools.cache
def _cached(net: str, device: str, weights_dir: str) -> LPIPS:
    return LPIPS.pretrained(net, weights_dir).to(device, memory_format=torch.channels_last)


def lpips(
    a: np.ndarray | torch.Tensor,
    b: np.ndarray | torch.Tensor,
    net: str = "alex",
    *,
    device: str | torch.device | None = None,
    weights_dir=None,
) -> float | np.ndarray:
    """LPIPS between ``a`` and ``b`` with the published weights (model loaded once, cached).

    ``a``, ``b``: uint8 ``(H, W, 3)`` arrays (returns a float) or float ``(N, 3, H, W)``
    tensors in [0, 1] (returns an ``(N,)`` array). Runs on ``device``, by default the GPU
    when present.
    """
    dev = pick_device(device)
    model = _cached(net, str(dev), str(resolve_weights_dir(weights_dir)))
    return score(model, a, b, dev)
