"""Discriminators for adversarial training of codecs (the ``discriminator`` config group).

A discriminator is not part of a codec: :class:`~liclab.lit.LitCodec` trains it beside the
model with its own optimiser, checkpoints carry it under ``discriminator.*``, and
:func:`liclab.checkpoint.load_model`, ``.lic`` files and ``liclab-decompress`` never see it.
The training loss calls it as ``discriminator(x, y_hat) -> logits`` (one logit per patch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class ConditionalPatchDiscriminator(nn.Module):
    """HiFiC's conditional PatchGAN (Mentzer et al. 2020, arXiv:2006.09965, Sec. 3.2 and the
    official ``tensorflow/compression`` ``models/hific/archs.py``)::

        ŷ (N, M, H/s, W/s) ─conv 3×3 → 12, LReLU─▶ nearest ×s ─┐
        x (N, 3, H, W) ────────────────────────────────────concat (3 + 12 channels)
          ─▶ conv 4×4 /2 → 64 ─▶ conv 4×4 /2 → 128 ─▶ conv 4×4 /2 → 256   (each + LReLU)
          ─▶ conv 4×4 → 512, LReLU ─▶ conv 4×4 → 1 ─▶ logits (N, 1, H/8, W/8)

    Every convolution is spectrally normalised (Miyato et al. 2018, arXiv:1802.05957; one
    power iteration per training forward), LeakyReLU slope 0.2, no normalisation layers,
    "same" padding as TensorFlow pads (stride 1, 4×4: one row before, two after).
    ``projected=0`` drops the condition: an unconditional PatchGAN on x alone.

    Deviations from the paper: ŷ is upsampled by the codec's latent stride and cropped to
    the image, rather than resized to the image size; the two agree when H and W are
    multiples of s (training crops are), and this one keeps ŷ aligned with x otherwise.

    Args:
        latent_channels: channels of ŷ (the model's M; ``liclab-train`` passes it).
        projected: channels ŷ is projected to before upsampling (HiFiC: 12).
        width: channels of the first convolution, doubled per downsampling up to 512.
        downsamplings: stride-2 convolutions (HiFiC: 3).
        stride: the latent's downsampling factor s relative to x (16 for liclab's models).
    """

    def __init__(
        self,
        latent_channels: int,
        projected: int = 12,
        width: int = 64,
        downsamplings: int = 3,
        stride: int = 16,
    ):
        super().__init__()
        self.stride = stride
        self.project = _sn_conv(latent_channels, projected, 3, padding=1) if projected else None
        layers, cin, cout = [], 3 + projected, width
        for _ in range(downsamplings):
            layers += [_sn_conv(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin, cout = cout, min(2 * cout, 512)
        layers += [nn.ZeroPad2d((1, 2, 1, 2)), _sn_conv(cin, cout, 4), nn.LeakyReLU(0.2)]
        layers += [nn.ZeroPad2d((1, 2, 1, 2)), _sn_conv(cout, 1, 4)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, y_hat: Tensor) -> Tensor:
        if self.project is not None:
            h, w = x.shape[-2:]
            latent = F.leaky_relu(self.project(y_hat), 0.2)
            latent = F.interpolate(latent, scale_factor=self.stride, mode="nearest")
            x = torch.cat([x, latent[..., :h, :w]], dim=1)
        return self.net(x)


def _sn_conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding))
