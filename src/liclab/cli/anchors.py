"""``liclab-anchors``: a traditional codec at its operating points on a data set
(``configs/eval/anchors.yaml``; the points in ``codec/points/<name>.yaml``).

Writes ``<out_dir>/<codec>.json`` (the curve) and ``<out_dir>/<codec>_images.json`` (per-image
records of each point).
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from liclab.cli import choice, user_errors
from liclab.configs import search_path


def run(cfg: DictConfig, codec_name: str) -> None:
    """Evaluate every operating point of ``cfg.codec``; returns the curve."""
    from liclab import evaluate
    from liclab.datasets import resolve_images

    images = resolve_images(cfg.data)[: cfg.limit or None]
    codecs = evaluate.codecs_at_points(cfg.codec, cfg.points)
    start = time.perf_counter()
    measures = evaluate.Measures(tuple(cfg.metrics), cfg.fid, cfg.weights_dir)
    curve, per_codec = evaluate.codec_curve(
        codecs, images, codec_name, cfg.workers, cfg.cache_dir, True, measures
    )
    seconds = time.perf_counter() - start
    pairs = zip(codecs, per_codec, strict=True)
    path = evaluate.save(
        curve, [{"setting": c.setting, "images": r} for c, r in pairs], Path(cfg.out_dir)
    )
    psnr = curve.get("psnr")
    print(
        f"{codec_name}: {len(codecs)} points x {len(curve.images)} images in {seconds:.1f} s; "
        f"{curve.bpp[0]:.3f}-{curve.bpp[-1]:.3f} bpp, {psnr[0]:.2f}-{psnr[-1]:.2f} dB -> {path}"
    )
    return curve


@hydra.main(version_base="1.3", config_path=search_path("eval"), config_name="anchors")
@user_errors
def main(cfg: DictConfig) -> None:
    run(cfg, choice("codec"))
