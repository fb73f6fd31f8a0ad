"""Seconds per Kodak image (768×512) for each learned metric, with the published weights.

Per image: LPIPS (AlexNet), LPIPS (VGG16), DISTS, and the Inception features of the image's
8 patches (original and reconstruction: the FID/KID cost per image). Per data set: FID and KID
from 192 × 2 feature vectors (Kodak's patch count; random vectors, as timing does not depend
on them). The "reconstruction" is the image through JPEG quality 30. Runs alternate between
the metrics and each figure is the minimum over repeats (this machine is shared), in wall-clock
and in CPU seconds (summed over threads); the first call, which loads the model, is timed apart.

    liclab-weights && LIC_DATA=... python scripts/bench_metrics.py --images 3 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from liclab.images import list_images, load_rgb
from liclab.perceptual import PatchFeatures, dists, fid_kid, lpips
from liclab.perceptual.tensors import pick_device


def _jpeg(image: np.ndarray, quality: int = 30) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _seconds(fn) -> tuple[float, float]:
    """Wall-clock and CPU (all threads) seconds of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="Kodak images timed per metric")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: the GPU when present")
    return parser


def main() -> None:
    args = parser().parse_args()
    device = pick_device(args.device)
    kodak = list_images(Path(os.environ.get("LIC_DATA", "data")) / "kodak")
    pairs = [(x, _jpeg(x)) for x in (load_rgb(p)[0] for p in kodak)]
    real, fake = PatchFeatures(device), PatchFeatures(device)  # loads InceptionV3
    assert real.add(pairs[0][0]) == 8  # Kodak: 6 + 2 shifted patches
    per_image = {
        "LPIPS (AlexNet)": lambda x, y: lpips(x, y, "alex", device=device),
        "LPIPS (VGG16)": lambda x, y: lpips(x, y, "vgg", device=device),
        "DISTS": lambda x, y: dists(x, y, device=device),
        "Inception features, 2 x 8 patches": lambda x, y: (real.add(x), fake.add(y)),
    }
    x, y = pairs[0]
    loads = {name: _seconds(lambda f=fn: f(x, y)) for name, fn in per_image.items()}
    best = dict.fromkeys(per_image, (float("inf"), float("inf")))
    for _ in range(args.repeats):
        for x, y in pairs[: args.images]:
            for name, fn in per_image.items():
                t = _seconds(lambda f=fn, a=x, b=y: f(a, b))
                best[name] = tuple(min(u, v) for u, v in zip(best[name], t, strict=True))
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 8 * len(kodak), 2048))
    seconds = min(_seconds(lambda: fid_kid(a, b))[0] for _ in range(args.repeats))
    print(
        f"{platform.machine()}, {torch.get_num_threads()} threads, {device}, torch "
        f"{torch.__version__}, load average {os.getloadavg()[0]:.1f}, {date.today()}"
    )
    print(f"{'metric':36s} {'s / image':>10s} {'CPU s / image':>14s} {'first call, s':>14s}")
    for name in per_image:
        wall, cpu = best[name]
        print(f"{name:36s} {wall:10.2f} {cpu:14.2f} {loads[name][0]:14.2f}")
    print(f"FID + KID (100 subsets) of {len(a)} vs {len(b)} features: {seconds:.2f} s")


if __name__ == "__main__":
    main()
