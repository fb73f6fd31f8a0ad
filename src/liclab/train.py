"""Training from a composed config: instantiate, say what runs where, fit."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from liclab import LiclabError

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Train the configured codec; returns ``{"run_dir", "best", "last", "metrics",
    "global_step", "val_images"}`` (``best``/``last``: checkpoint paths, absent after a
    ``fast_dev_run``; ``val_images``: the held-out validation files).

    Writes into ``cfg.paths.output_dir``: the resolved config (``config.yaml``), checkpoints
    (``checkpoints/best.ckpt``, ``last.ckpt``) and logs.
    """
    import lightning as L
    from hydra.utils import instantiate

    from liclab.checkpoint import build_model
    from liclab.progress import is_terminal

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))

    model = build_model(cfg.model)
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
    datamodule.setup("fit")
    # A discriminator (adversarial training) reads the latent ŷ: it is built for the model's M.
    discriminator = None
    if cfg.get("discriminator"):
        discriminator = instantiate(cfg.discriminator, latent_channels=model.M)
        if not cfg.model.get("init_from"):
            log.warning(
                "adversarial training from random weights: two-stage recipes give "
                "the first stage's checkpoint as model.init_from"
            )
    # Objects are passed at call time so that Hydra does not wrap them in its config types.
    module = instantiate(cfg.module, _partial_=True)(
        model=model,
        quantizer=quantizer,
        loss=loss,
        run_config=resolved,
        discriminator=discriminator,
    )
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    bar = cfg.trainer.get("enable_progress_bar", is_terminal())
    if not bar and not cfg.trainer.get("fast_dev_run"):
        from liclab.lit import PlainProgress

        callbacks.append(PlainProgress())
    trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, enable_progress_bar=bar
    )
    _announce(cfg, model, datamodule, trainer, out_dir, discriminator)
    trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path(cfg, out_dir))

    result = {
        "run_dir": str(out_dir),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "global_step": trainer.global_step,
        "val_images": list(datamodule.val_paths),
    }
    if not trainer.fast_dev_run:
        # The periodic last.ckpt may be up to every_n_train_steps old: save the final state.
        result["last"] = str(out_dir / "checkpoints" / "last.ckpt")
        trainer.save_checkpoint(result["last"])
        best = [c.best_model_path for c in trainer.checkpoint_callbacks if c.best_model_path]
        result["best"] = best[0] if best else result["last"]
        log.info("checkpoints: %s (best), %s (last)", result["best"], result["last"])
    return result


def _announce(cfg, model, datamodule, trainer, out_dir: Path, discriminator=None) -> None:
    """The first lines of a run: what trains, on what, where, and where results go."""
    params = sum(p.numel() for p in model.parameters())
    q, loss = cfg.quantizer._target_.rsplit(".", 1)[-1], cfg.loss._target_.rsplit(".", 1)[-1]
    log.info(
        "training %s (%.2f M parameters) with %s, %s λ=%g, for %s steps",
        type(model).__name__,
        params / 1e6,
        q,
        loss,
        cfg.loss.lmbda,
        trainer.max_steps if trainer.max_steps > 0 else "unlimited",
    )
    if cfg.model.get("init_from"):
        log.info("starting from the weights of %s", cfg.model.init_from)
    if discriminator is not None:
        log.info(
            "adversarial: %s (%.2f M parameters), its own Adam at lr %g",
            type(discriminator).__name__,
            sum(p.numel() for p in discriminator.parameters()) / 1e6,
            cfg.module.discriminator_lr,
        )
    log.info("data: %s", datamodule.describe())
    log.info("device: %s, run folder: %s", trainer.strategy.root_device, out_dir)


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
        if last.exists():
            log.info("resuming from %s", last)
            return str(last)
        return None
    if not Path(ckpt).is_file():
        raise LiclabError(f"{ckpt}: checkpoint to resume from not found")
    return str(ckpt)
