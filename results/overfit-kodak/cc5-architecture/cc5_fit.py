"""Which parts of Cool-chic 5.0's decoder close the gap? Fits (no bitstream) of liclab's hop
preset with Cool-chic 5.0's architectural additions switched on one by one.

Cool-chic 5.0's "hop" decoder (its ``hop.cfg``, 1943 MAC/pixel by its count) differs from
liclab's ``coolchic_hop`` (Cool-chic 4.x's hop layer sizes, 1431 MAC/pixel by liclab's count)
in four ways, each an option here:

``--synthesis-stabiliser``
    a 1×1 convolution from the L upsampled latents straight to RGB, added to the synthesis's
    output (initialised uniform in ±√(1/L)/9, zero bias);
``--arm-stabiliser``
    a Linear layer from the ARM's context straight to its two outputs, added to the MLP's
    (initialised N(0, 1/16), zero bias: as the MLP's output layer);
``--ifce F``
    inter-grid features: the finest three grids' ARM inputs get F more values, a learned
    linear map (per grid, initialised N(0, 1/F⁴), zero bias) of every coarser grid's latent
    at the co-located position; the other grids get F zeros;
``--hyperlatents``
    three more grids at the resolutions of grids 4, 5 and 6, coded by the ARM like the
    others, which feed only the inter-grid features (not the synthesis).

Cool-chic 5.0's hop is ``--context 14 --ifce 6 --arm-stabiliser --synthesis-stabiliser
--hyperlatents``. Each run appends one row (the fit's final loss under rounding, networks
unquantised, as ``screens/screen.py``) to ``<out>/<name>.tsv``. Run from the repository root::

    python results/overfit-kodak/cc5-architecture/cc5_fit.py --image $LIC_DATA/kodak/kodim01.png \\
        --crop 0 512 0 768 --seed 0 --threads 1 --schedule coolchic5 \\
        --out results/overfit-kodak/cc5-architecture --name full --synthesis-stabiliser
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fit import COLUMNS, append_row, arguments, load_crop, parse, preset  # noqa: E402  (results/overfit-kodak/)

from liclab.overfit import encode  # noqa: E402
from liclab.overfit.arm import ARM, _Taps, laplace_likelihood  # noqa: E402
from liclab.overfit.latents import LatentPyramid, grid_shapes  # noqa: E402
from liclab.overfit.mlp import pointwise_mlp  # noqa: E402
from liclab.overfit.model import CoolChic  # noqa: E402

IFCE_GRIDS = 3  # Cool-chic 5's hop: the inter-grid features of grids 0, 1 and 2
HYPER_LEVELS = (4, 5, 6)  # the hyperlatents' resolutions (as these grids')


class Latents(nn.Module):
    """The pyramid's grids and, optionally, the hyperlatents: one module, so that the fit's
    latent parameter group (``model.latents.parameters()``) holds both."""

    def __init__(self, pyramid: LatentPyramid, hyper: bool):
        super().__init__()
        self.pyramid = pyramid
        shapes = [pyramid.shapes[i] for i in HYPER_LEVELS if i < pyramid.levels] if hyper else []
        self.hyper = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in shapes)
        self.gain = pyramid.gains[0]

    @property
    def levels(self) -> int:
        return self.pyramid.levels

    @property
    def size(self):
        return self.pyramid.size

    @property
    def shapes(self):
        return self.pyramid.shapes + [tuple(p.shape[-2:]) for p in self.hyper]

    @property
    def num_latents(self) -> int:
        return sum(h * w for h, w in self.shapes)

    def forward(self, quantizer):
        y_rate, y_hat = self.pyramid(quantizer)
        pairs = [quantizer(self.gain * y, None) for y in self.hyper]
        return y_rate + [p[0] for p in pairs], y_hat + [p[1] for p in pairs]


class CC5(CoolChic):
    """liclab's CoolChic with Cool-chic 5.0's additions (see the module docstring)."""

    def __init__(self, size, *, context, ifce, arm_stabiliser, synthesis_stabiliser, hyper, base):
        model = base(size=size)
        super().__init__(
            size,
            ARM(context=context, hidden_layers=len(model.arm.layers) - 1),
            lambda levels: model.upsampling,
            lambda in_channels: model.synthesis,
            gain=model.latents.gains,
            levels=model.latents.levels,
            clamp=model.clamp,
        )
        self.latents = Latents(self.latents, hyper)
        levels, n_hyper = self.latents.levels, len(self.latents.hyper)
        width = context + ifce
        self.ifce_features = ifce
        if ifce:  # the ARM's MLP as wide as its context and the features
            self.arm.layers = nn.ModuleList(nn.Linear(width, width) for _ in self.arm.layers[:-1])
            self.arm.layers.append(nn.Linear(width, 2))
            for layer in self.arm.layers[:-1]:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            nn.init.normal_(self.arm.layers[-1].weight, std=1 / 4)
            nn.init.zeros_(self.arm.layers[-1].bias)
            self.arm.width = width
            inputs = [levels - 1 - k + n_hyper for k in range(min(IFCE_GRIDS, levels - 1))]
            self.ifce = nn.ModuleList(nn.Linear(n, ifce) for n in inputs)
            for layer in self.ifce:
                nn.init.normal_(layer.weight, std=1 / ifce**2)
                nn.init.zeros_(layer.bias)
        self.arm_stabiliser = nn.Linear(width, 2) if arm_stabiliser else None
        if arm_stabiliser:
            nn.init.normal_(self.arm_stabiliser.weight, std=1 / 4)
            nn.init.zeros_(self.arm_stabiliser.bias)
        self.synthesis_stabiliser = nn.Conv2d(levels, 3, 1) if synthesis_stabiliser else None
        if synthesis_stabiliser:
            bound = math.sqrt(1 / levels) / 9
            nn.init.uniform_(self.synthesis_stabiliser.weight, -bound, bound)
            nn.init.zeros_(self.synthesis_stabiliser.bias)

    def forward(self, quantizer=None):
        from liclab.overfit.model import _ROUND

        y_rate, y_hat = self.latents(quantizer or _ROUND)
        likelihoods, x_hat = self.rate_and_decode(y_rate, y_hat)
        return {"x_hat": x_hat, "likelihoods": likelihoods, "y_hat": y_hat}

    def rate_and_decode(self, y_rate, y_hat):
        params = self.entropy_parameters(y_hat)
        likelihoods = {
            f"y{i}": laplace_likelihood(y, mu, scale)
            for i, (y, (mu, scale)) in enumerate(zip(y_rate, params, strict=True))
        }
        return likelihoods, self.decode(y_hat[: self.latents.levels])

    def entropy_parameters(self, y_hat):
        arm, levels = self.arm, self.latents.levels
        # every grid's coarser grids, finest first: the image grids, then the hyperlatents
        # in Cool-chic's order (L4, H4, L5, H5, L6, H6)
        order = list(range(levels))
        for i, level in enumerate(HYPER_LEVELS[: len(self.latents.hyper)]):
            order.insert(order.index(level) + 1, levels + i)
        out = []
        weights = [layer.weight for layer in arm.layers]
        if arm._residual(0):
            weights[0] = weights[0] + torch.eye(arm.width, device=weights[0].device)
        biases = [layer.bias for layer in arm.layers]
        n = len(arm.layers)
        residual = [i > 0 and arm._residual(i) for i in range(n)]
        relu = [arm._residual(i) for i in range(n)]
        for g, y in enumerate(y_hat):
            h, w = y.shape[-2:]
            r = arm.radius
            padded = F.pad(y[0, 0], (r, r, r, 0))
            taps = _Taps.apply(padded, tuple((dy + r, dx + r) for dy, dx in arm.offsets), h, w)
            cols = [taps]
            if self.ifce_features:
                if g < len(getattr(self, "ifce", [])):
                    coarser = [y_hat[j] for j in order[order.index(g) + 1 :]]
                    planes = [_nearest(c[0, 0], h, w) for c in coarser]
                    raw = torch.stack(planes).reshape(len(planes), h * w)
                    layer = self.ifce[g]
                    cols.append(layer.weight @ raw + layer.bias[:, None])
                else:
                    cols.append(y.new_zeros(self.ifce_features, h * w))
            rows = torch.cat(cols).t()
            out_raw = pointwise_mlp(rows, weights, biases, residual, relu)
            if self.arm_stabiliser is not None:
                out_raw = out_raw + self.arm_stabiliser(rows)
            out.append(arm.distribution(out_raw.t().reshape(2, 1, 1, h, w)))
        return out

    def decode(self, y_hat):
        dense = self.upsampling(y_hat)
        x_hat = self.synthesis(dense)
        if self.synthesis_stabiliser is not None:
            x_hat = x_hat + self.synthesis_stabiliser(dense)
        return x_hat if self.training and self.clamp == "eval" else x_hat.clamp(0, 1)

    def networks(self):
        nets = super().networks()
        for name in ("ifce", "arm_stabiliser", "synthesis_stabiliser"):
            if getattr(self, name, None) is not None:
                nets[name] = getattr(self, name)
        return nets

    def macs_per_pixel(self):
        (h, w), levels = self.size, self.latents.levels
        pixels = h * w
        arm = self.arm.macs_per_latent() + (2 * self.arm.width if self.arm_stabiliser else 0)
        macs = {
            "arm": arm * self.latents.num_latents / pixels,
            "upsampling": self.upsampling.macs(self.latents.shapes[:levels]) / pixels,
            "synthesis": float(self.synthesis.macs_per_pixel())
            + (3 * levels if self.synthesis_stabiliser is not None else 0),
        }
        if self.ifce_features:  # computed at the coarser grid's resolution (constant on 2×2)
            shapes = grid_shapes(h, w, levels)
            macs["arm"] += (
                sum(
                    layer.in_features * layer.out_features * shapes[g + 1][0] * shapes[g + 1][1]
                    for g, layer in enumerate(self.ifce)
                )
                / pixels
            )
        macs["total"] = sum(macs.values())
        return macs


def _nearest(c: Tensor, h: int, w: int) -> Tensor:
    """A coarser grid nearest-upsampled to (h, w): ``c[y >> s, x >> s]``."""
    s = 1
    while -(-h // 2**s) != c.shape[0] or -(-w // 2**s) != c.shape[1]:
        s += 1
    return c.repeat_interleave(2**s, 0).repeat_interleave(2**s, 1)[:h, :w]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[arguments()])
    p.add_argument("--context", type=int, default=16)
    p.add_argument("--ifce", type=int, default=0)
    p.add_argument("--arm-stabiliser", action="store_true")
    p.add_argument("--synthesis-stabiliser", action="store_true")
    p.add_argument("--hyperlatents", action="store_true")
    return p


def main() -> None:
    args = parse(parser())
    model_cfg, schedule_cfg = preset(args.schedule)
    factory = functools.partial(
        CC5,
        context=args.context,
        ifce=args.ifce,
        arm_stabiliser=args.arm_stabiliser,
        synthesis_stabiliser=args.synthesis_stabiliser,
        hyper=args.hyperlatents,
        base=instantiate(model_cfg),
    )
    x = load_crop(args.image, args.crop)
    start = time.perf_counter()
    result = encode.fit(
        x, factory, args.lmbda, instantiate(schedule_cfg), seed=args.seed, log_every=500
    )
    s = result.stats
    flags = [f"context={args.context}", f"ifce={args.ifce}"]
    flags += [
        f for f in ("arm_stabiliser", "synthesis_stabiliser", "hyperlatents") if getattr(args, f)
    ]
    variant = f"schedule={args.schedule} " + " ".join(flags)
    macs = result.model.macs_per_pixel()["total"]
    row = (
        f"{Path(args.image).stem}\t{args.lmbda:g}\t{s['iterations']:.0f}\t{args.name}\t{args.seed}"
        f"\t{variant}\t{s['loss']:.6e}\t{s['bpp']:.4f}\t{s['psnr']:.3f}"
        f"\t{time.perf_counter() - start:.0f}\t{macs:.0f}"
    )
    append_row(args.out, args.name, row, f"image\tlmbda\titerations\t{COLUMNS}\tmacs")


if __name__ == "__main__":
    main()
