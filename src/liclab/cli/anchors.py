"""``liclab-anchors``: a traditional codec over its quality sweep (``configs/anchors.yaml``).

``configs/codec/<name>.yaml`` holds the codec's ``_target_`` and its fixed constructor
arguments only, as every config group does. The operating points live in ``anchors.yaml``
under ``sweep.<codec name>`` as ``{argument: [values]}``: each value is passed with that
argument to ``instantiate``, giving one codec object per point. Keeping the sweep out of the
codec group leaves ``instantiate(cfg.codec)`` valid on its own (the training side and tests
build codecs the same way) and lets one override change the points (``sweep.hevc.qp=[22,32]``).

Writes ``<out_dir>/<codec>.json`` (the curve), ``<out_dir>/<codec>/<setting>.json`` (per-image
records) and ``<out_dir>/<codec>.yaml`` (the resolved config).
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from liclab.cli import config_dir, user_errors


def run(cfg: DictConfig) -> dict:
    """Evaluate every operating point of ``cfg.codec``; returns the curve dict."""
    from liclab.anchors import codecs_from_config, evaluate_anchor
    from liclab.datasets import resolve_images

    codecs = codecs_from_config(cfg)
    images = resolve_images(cfg.data.root)
    curve, per_codec, seconds = evaluate_anchor(
        codecs, images, cfg.data.name, cfg.workers, cfg.cache_dir, cfg.progress
    )
    name, out = codecs[0].name, Path(cfg.out_dir)
    (out / name).mkdir(parents=True, exist_ok=True)
    for codec, records in zip(codecs, per_codec, strict=True):
        (out / name / f"{codec.setting}.json").write_text(json.dumps(records, indent=1))
    (out / f"{name}.json").write_text(json.dumps(curve, indent=2))
    (out / f"{name}.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    r = curve["results"]
    print(
        f"{name}: {len(codecs)} points x {curve['num_images']} images in {seconds:.1f} s; "
        f"{r['bpp'][0]:.3f}-{r['bpp'][-1]:.3f} bpp, "
        f"{r['psnr-rgb'][0]:.2f}-{r['psnr-rgb'][-1]:.2f} dB -> {out / name}.json"
    )
    return curve


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="anchors")
@user_errors
def main(cfg: DictConfig) -> None:
    run(cfg)
