"""``liclab-rd``: RD plots and BD tables from result files (``configs/eval/rd.yaml``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from liclab.cli import user_errors
from liclab.configs import search_path


def run(cfg: DictConfig) -> dict:
    """Load ``cfg.inputs`` and ``cfg.references``; write plots and tables to ``cfg.out``.

    Per-image tables among the references are averaged over ``cfg.images``: "auto" takes the
    images every input curve was evaluated on."""
    from liclab.curve import load_curves
    from liclab.rd import report

    runs = load_curves(cfg.inputs)
    images = cfg.images
    if images == "auto":
        known = [set(c.images) for c in runs if c.images]
        images = sorted(set.intersection(*known)) if known else None
    result = report(
        runs,
        load_curves(cfg.references, images),
        cfg.baseline,
        cfg.out,
        method=cfg.method,
        title=cfg.title,
        max_bpp=cfg.max_bpp,
    )
    for path in result["files"]:
        print(path)
    return result


@hydra.main(version_base="1.3", config_path=search_path("eval"), config_name="rd")
@user_errors
def main(cfg: DictConfig) -> None:
    run(cfg)
