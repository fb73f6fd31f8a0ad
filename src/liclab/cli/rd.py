"""``liclab-rd``: RD plots and BD-rate tables from result JSONs (``configs/rd.yaml``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from liclab.cli import config_dir, user_errors


def run(cfg: DictConfig) -> dict:
    """Load ``cfg.inputs`` and ``cfg.references``; write plots and tables to ``cfg.out``."""
    from liclab.rd import load_curves, report

    result = report(
        runs=load_curves(cfg.inputs),
        references=load_curves(cfg.references),
        anchor=cfg.anchor,
        out_dir=cfg.out,
        method=cfg.method,
        title=cfg.title,
        max_bpp=cfg.max_bpp,
    )
    for path in result["files"]:
        print(path)
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="rd")
@user_errors
def main(cfg: DictConfig) -> None:
    run(cfg)
