"""DISTS, the structure and texture similarity of Ding et al. 2020 (arXiv:2004.07728)."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liclab.perceptual import backbones
from liclab.perceptual.tensors import pick_device, score
from liclab.perceptual.weights import load_into, resolve_weights_dir

CHANNELS = (3, 64, 128, 256, 512, 512)


class L2Pool(nn.Module):
    """DISTS's anti-aliased pooling: sqrt(Hann-window blur of x², stride 2)."""

    def __init__(self, channels: int):
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        kernel = (g / g.sum())[None, None].repeat(channels, 1, 1, 1)
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x**2, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return (y + 1e-12).sqrt()


class DISTS(nn.Module):
    """DISTS (Ding et al. 2020, arXiv:2004.07728): a distance, 0 for identical images.

    ::

        x, y (N, 3, H, W) in [0, 1] ─▶ ImageNet mean / std ─▶ VGG16, max pools → L2Pool
          ─▶ stages f_0 = input, f_1 … f_5 (relu1_2 … relu5_3)
          ─▶ per channel: S1 = (2 μx μy + c) / (μx² + μy² + c),
                          S2 = (2 σxy + c) / (σx² + σy² + c),   c = 1e-6
          ─▶ 1 − Σ (α S1 + β S2) / Σ (α + β) ─▶ (N,)

    As the authors' ``DISTS_pytorch`` at full resolution (its optional resize to 256 px is not
    applied; pyiqa does not apply it either).
    """

    def __init__(self):
        super().__init__()
        self.features = backbones.vgg16_features()
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.MaxPool2d):
                self.features[i] = L2Pool(self.features[i - 2].out_channels)
        self.alpha = nn.Parameter(torch.full((1, sum(CHANNELS), 1, 1), 0.1))
        self.beta = nn.Parameter(torch.full((1, sum(CHANNELS), 1, 1), 0.1))
        backbones.imagenet_normalisation(self)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def pretrained(cls, weights_dir=None) -> DISTS:
        """The published weights, from the cache (``liclab-weights``) or ``weights_dir``."""
        return load_into(cls(), ("vgg16.pth", "dists-vgg16.pth"), "DISTS", weights_dir)

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        return [x, *backbones.tapped(self.features, backbones.VGG16_TAPS, h)]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, CHANNELS, dim=1)
        betas = torch.split(self.beta / total, CHANNELS, dim=1)
        similarity, c = 0, 1e-6
        for fx, fy, alpha, beta in zip(
            self._stages(x), self._stages(y), alphas, betas, strict=True
        ):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            vx = ((fx - mx) ** 2).mean((2, 3), keepdim=True)
            vy = ((fy - my) ** 2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            s1 = (2 * mx * my + c) / (mx**2 + my**2 + c)
            s2 = (2 * cov + c) / (vx + vy + c)
            similarity = similarity + (alpha * s1 + beta * s2).sum(1)
        return 1 - similarity.flatten()


@functools.cache
def _cached(device: str, weights_dir: str) -> DISTS:
    return DISTS.pretrained(weights_dir).to(device, memory_format=torch.channels_last)


def dists(
    a: np.ndarray | torch.Tensor,
    b: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device | None = None,
    weights_dir=None,
) -> float | np.ndarray:
    """DISTS between ``a`` and ``b`` with the published weights (model loaded once, cached).

    Inputs and result as :func:`~liclab.perceptual.lpips.lpips`.
    """
    dev = pick_device(device)
    model = _cached(str(dev), str(resolve_weights_dir(weights_dir)))
    return score(model, a, b, dev)
