"""``liclab-train``: train a codec from the Hydra config (``configs/train/train.yaml``), then,
with ``eval.data`` set, compress those images with it and draw the RD report."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from liclab import LiclabError
from liclab.configs import search_path

log = logging.getLogger("liclab")


def run(cfg: DictConfig) -> dict:
    """Train, then evaluate the best checkpoint on ``cfg.eval.data`` (train → checkpoint →
    codec → evaluate → curve → report); returns the training result."""
    from liclab.train import train

    result = train(cfg)
    if cfg.eval.get("data") is not None and "best" in result:
        result["report"] = evaluate_trained(cfg, result)
    return result


def evaluate_trained(cfg: DictConfig, result: dict) -> dict:
    """The run's RD point on ``cfg.eval.data`` against ``cfg.eval.anchors``, in
    ``<run>/eval/``."""
    from liclab import evaluate
    from liclab.datasets import resolve_images

    # "val" stands for the run's own held-out validation images (full size).
    specs = cfg.eval.data if OmegaConf.is_list(cfg.eval.data) else [cfg.eval.data]
    specs = [result["val_images"] if s == "val" else s for s in specs]
    images = resolve_images(specs)[: cfg.eval.get("limit") or None]
    out = Path(result["run_dir"]) / "eval"
    log.info(
        "evaluating %s on %d images (%s) -> %s", result["best"], len(images), images[0].parent, out
    )
    runs = evaluate.checkpoint_curves([Path(result["best"])], images, out, cfg.task_name)
    log.info("RD point: %s", evaluate.summary(runs[0]))
    report = evaluate.compare(runs, images, cfg.eval.anchors, out, cache_dir=cfg.eval.cache_dir)
    log.info("RD plots and BD table: %s", out)
    return report


@hydra.main(version_base="1.3", config_path=search_path("train"), config_name="train")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from liclab.lit import quiet_lightning

    quiet_lightning()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        run(cfg)
    except LiclabError as exc:
        print(f"liclab: {exc}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
    except Exception:
        if not multirun:
            raise
        # One failing λ must not take the rest of a sweep down with it.
        log.exception("liclab: run %s failed; the sweep goes on", HydraConfig.get().job.num)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
