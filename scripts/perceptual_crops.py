"""Crops of one image region side by side: the original, learned codecs, and JPEG and HEVC at
about the rate of one of them (what researchers look at beside the perceptual metrics).

Every panel is decoded from real bytes (``.lic`` files, JPEG, x265); JPEG's quality and HEVC's
QP are searched for the bpp closest to the learned codec named by ``--match`` on this image.
Each label gives the codec, its bpp and PSNR on the whole image.

    python scripts/perceptual_crops.py $LIC_DATA/kodak/kodim23.png \\
        --ckpt runs/mse/checkpoints/last.ckpt runs/gan/checkpoints/last.ckpt --names MSE GAN \\
        --box 300 120 160 160 --out crops.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from liclab.codecs.hevc import HEVC
from liclab.codecs.jpeg import JPEG
from liclab.codecs.learned import LearnedCodec
from liclab.images import load_rgb
from liclab.metrics import bpp, psnr


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image")
    p.add_argument("--ckpt", nargs="+", required=True, help="liclab checkpoints")
    p.add_argument("--names", nargs="+", help="their labels (default: model class)")
    p.add_argument("--match", type=int, default=-1, help="which checkpoint JPEG/HEVC match")
    p.add_argument("--box", nargs=4, type=int, default=(0, 0, 128, 128), metavar="X Y W H".split())
    p.add_argument("--zoom", type=int, default=2, help="nearest-neighbour magnification")
    p.add_argument("--out", default="crops.png")
    return p


def closest(make, settings: list[int], image: np.ndarray, target: float):
    """(codec, bytes) of the setting whose bpp is closest to ``target``, by bisection over
    ``settings`` ordered by increasing rate."""
    lo, hi, tried = 0, len(settings) - 1, {}
    while lo <= hi:
        mid = (lo + hi) // 2
        codec = make(settings[mid])
        data = codec.encode(image)
        tried[mid] = (codec, data)
        if bpp(len(data), *image.shape[:2]) < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return min(tried.values(), key=lambda t: abs(bpp(len(t[1]), *image.shape[:2]) - target))


def panel(name: str, decoded: np.ndarray, image: np.ndarray, data: bytes | None, box, zoom):
    x, y, w, h = box
    crop = Image.fromarray(decoded[y : y + h, x : x + w]).resize((w * zoom, h * zoom), 0)
    label = name
    if data is not None:
        label += f"  {bpp(len(data), *image.shape[:2]):.3f} bpp  {psnr(image, decoded):.2f} dB"
    canvas = Image.new("RGB", (crop.width, crop.height + 18), "white")
    canvas.paste(crop, (0, 18))
    ImageDraw.Draw(canvas).text((2, 3), label, fill="black")
    return canvas


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    image, _ = load_rgb(args.image)
    names = args.names or [None] * len(args.ckpt)
    panels = [panel("original", image, image, None, args.box, args.zoom)]
    rates = []
    for ckpt, name in zip(args.ckpt, names, strict=True):
        codec = LearnedCodec.from_checkpoint(ckpt, name)
        data = codec.encode(image)
        rates.append(bpp(len(data), *image.shape[:2]))
        panels.append(panel(codec.name, codec.decode(data), image, data, args.box, args.zoom))
    target = rates[args.match]
    for label, make, settings in (
        ("JPEG", lambda q: JPEG(quality=q), list(range(1, 96))),
        ("HEVC", lambda qp: HEVC(qp=qp), list(range(51, -1, -1))),
    ):
        codec, data = closest(make, settings, image, target)
        name = f"{label} {codec.setting}"
        panels.append(panel(name, codec.decode(data), image, data, args.box, args.zoom))
    width = sum(p.width for p in panels) + 4 * (len(panels) - 1)
    sheet, x = Image.new("RGB", (width, panels[0].height), "white"), 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 4
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"{args.out}: {len(panels)} crops of {args.image} at {tuple(args.box)}")


if __name__ == "__main__":
    main()
