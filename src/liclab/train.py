"""Training from a composed config: instantiate, fit, optionally evaluate the result."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from liclab import LiclabError

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Train the configured codec; returns ``{"run_dir", "best", "last", "metrics", "rd"}``.

    Writes into ``cfg.paths.output_dir``: the resolved config (``config.yaml``), checkpoints
    (``checkpoints/best.ckpt``, ``last.ckpt``), logs, and with ``eval.data`` set, the RD point
    of the trained model on real bitstreams (``rd.json``).
    """
    import lightning as L
    from hydra.utils import instantiate

    L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))

    model = instantiate(cfg.model)
    if cfg.get("compile"):
        compile_model(model)
    quantizer = instantiate(cfg.quantizer)
    loss = instantiate(cfg.loss)
    datamodule = instantiate(cfg.data)
    min_size = getattr(loss, "min_size", 0)
    if datamodule.crop_size < min_size:
        raise LiclabError(
            f"data.crop_size={datamodule.crop_size} is below the {min_size} px that "
            f"{type(loss).__name__} needs"
        )
    # Objects are passed at call time so that Hydra does not wrap them in its config types.
    module = instantiate(cfg.module, _partial_=True)(
        model=model, quantizer=quantizer, loss=loss, run_config=resolved
    )
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path(cfg, out_dir))

    result = {
        "run_dir": str(out_dir),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "global_step": trainer.global_step,
    }
    if not trainer.fast_dev_run:
        # The periodic last.ckpt may be up to every_n_train_steps old: save the final state.
        result["last"] = str(out_dir / "checkpoints" / "last.ckpt")
        trainer.save_checkpoint(result["last"])
        best = [c.best_model_path for c in trainer.checkpoint_callbacks if c.best_model_path]
        result["best"] = best[0] if best else result["last"]
    if cfg.eval.get("data") is not None and "best" in result:
        result["rd"] = evaluate_run(cfg, result["best"], datamodule, out_dir)
    return result


def compile_model(model) -> None:
    """``torch.compile`` the model in place (its checkpoint keeps plain parameter names).

    Static shapes: training crops have one size, and inductor's dynamic-shape path fails on
    the stride padding; another input size (a validation image) recompiles for that size.
    """
    model.compile(dynamic=False)


def _resume_path(cfg: DictConfig, out_dir: Path) -> str | None:
    """``ckpt_path``: a file, or ``auto`` for this run directory's ``last.ckpt`` if any."""
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        return None
    if ckpt == "auto":
        last = out_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    if not Path(ckpt).is_file():
        raise LiclabError(f"{ckpt}: checkpoint to resume from not found")
    return str(ckpt)


def evaluate_run(cfg: DictConfig, ckpt: str, datamodule, out_dir: Path) -> dict:
    """Compress ``cfg.eval.data`` with the trained model; save and print its RD point."""
    from liclab.codecs.learned import LearnedCodec
    from liclab.datasets import resolve_images
    from liclab.evaluate import aggregate, evaluate_codec

    # "val" stands for the run's own held-out validation images (full size).
    specs = cfg.eval.data if OmegaConf.is_list(cfg.eval.data) else [cfg.eval.data]
    specs = [datamodule.val_paths if s == "val" else s for s in specs]
    images = resolve_images(specs)
    if cfg.eval.get("limit"):
        images = images[: cfg.eval.limit]
    codec = LearnedCodec.from_checkpoint(ckpt, name=cfg.task_name)
    records = evaluate_codec(codec, images, workers=1, cache_dir=None, progress=False)
    point = aggregate(records, name=codec.name, description=f"{codec.setting}, {ckpt}")
    (out_dir / "rd.json").write_text(json.dumps(point, indent=2))
    (out_dir / "rd_images.json").write_text(json.dumps(records, indent=2))
    r = point["results"]
    log.info(
        "RD point on %d images: %.4f bpp (estimate %.4f), %.2f dB PSNR, MS-SSIM %.4f",
        len(records),
        r["bpp"][0],
        r.get("est_bpp", [float("nan")])[0],
        r["psnr-rgb"][0],
        r.get("ms-ssim-rgb", [float("nan")])[0],
    )
    if cfg.eval.get("anchors"):
        draw_against_anchors(point, images, cfg.eval, out_dir / "rd")
    return point


def anchor_curves(names, images, cache_dir, out: Path) -> list:
    """Anchor curves (``names`` from ``anchors.yaml``) on ``images``, saved in ``out``."""
    from liclab.anchors import anchor_codecs, evaluate_anchor
    from liclab.rd import curve_from_dict

    out.mkdir(parents=True, exist_ok=True)
    curves = []
    for name in names:
        curve, _, seconds = evaluate_anchor(
            anchor_codecs(name), images, "eval images", cache_dir=cache_dir
        )
        log.info("%s anchor: %d points in %.1f s", name, len(curve["settings"]), seconds)
        (out / f"{name}.json").write_text(json.dumps(curve, indent=2))
        curves.append(curve_from_dict(curve, name))
    return curves


def draw_against_anchors(point: dict, images, eval_cfg, out: Path) -> dict:
    """Anchor curves on the same images, then the RD plots and BD-rate table in ``out``."""
    from liclab.rd import curve_from_dict, report

    references = anchor_curves(eval_cfg.anchors, images, eval_cfg.get("cache_dir"), out)
    result = report(
        [curve_from_dict(point, point["name"])],
        references,
        anchor=eval_cfg.anchors[0],
        out_dir=out,
        title=f"{len(images)} images",
    )
    log.info("RD plots and BD-rate table: %s", ", ".join(map(str, result["files"])))
    return result
