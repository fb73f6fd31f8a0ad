"""``liclab-eval``: trained checkpoints or a codec config on a data set, real bitstreams, the
RD report against anchors (``configs/eval/eval.yaml``)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from liclab import LiclabError
from liclab.cli import choice, user_errors
from liclab.configs import search_path


def run(cfg: DictConfig, codec_name: str | None = None) -> dict:
    """Evaluate ``cfg.ckpt`` or ``cfg.codec`` (named ``codec_name``); returns the report."""
    from liclab import evaluate
    from liclab.configs import codec_config
    from liclab.datasets import resolve_images

    images = resolve_images(cfg.data)[: cfg.limit or None]
    out = Path(cfg.out)
    measures = evaluate.Measures(tuple(cfg.metrics), cfg.fid, cfg.weights_dir)
    if cfg.get("codec") is not None:
        points = cfg.points or ({"lmbda": list(cfg.lmbda)} if cfg.lmbda else None)
        points = points or codec_config(codec_name)[1]
        codecs = evaluate.codecs_at_points(cfg.codec, points)
        print(
            f"liclab-eval: {codec_name} at {len(codecs)} points on {len(images)} images -> {out}",
            file=sys.stderr,
        )
        curve, per_codec = evaluate.codec_curve(
            codecs, images, cfg.name or codec_name, cfg.workers, cfg.cache_dir, True, measures
        )
        pairs = zip(codecs, per_codec, strict=True)
        evaluate.save(curve, [{"setting": c.setting, "images": r} for c, r in pairs], out)
        runs = [curve]
    elif cfg.ckpt is not None:
        ckpts = evaluate.find_checkpoints(cfg.ckpt, cfg.which)
        print(
            f"liclab-eval: {len(ckpts)} checkpoint(s) on {len(images)} images -> {out}",
            file=sys.stderr,
        )
        runs = evaluate.checkpoint_curves(
            ckpts, images, out, cfg.name, cfg.exact_synthesis, cfg.cache_dir, measures
        )
    else:
        raise LiclabError("nothing to evaluate: give ckpt=<run folder or .ckpt> or codec=<name>")
    for curve in runs:
        print(evaluate.summary(curve))
    result = evaluate.compare(
        runs, images, cfg.anchors, out, cfg.baseline, cfg.cache_dir, cfg.method, measures=measures
    )
    print(f"wrote {out}")
    return result


@hydra.main(version_base="1.3", config_path=search_path("eval"), config_name="eval")
@user_errors
def _main(cfg: DictConfig) -> None:
    from liclab.cli.codec import log_progress

    log_progress()  # an overfitted codec's fit, when it runs in this process (workers=1)
    run(cfg, choice("codec"))


def main() -> None:
    _main()
