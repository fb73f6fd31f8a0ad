"""The one LightningModule: trains any liclab model with any quantizer and RD loss."""

from __future__ import annotations

import logging
import sys
import time

import lightning as L
import torch
from torch import Tensor, nn

from liclab import LiclabError
from liclab.metrics import MS_SSIM_MIN_SIDE, ms_ssim_batch, mse_to_psnr, psnr_batch
from liclab.progress import duration

log = logging.getLogger(__name__)


class LitCodec(L.LightningModule):
    """Rate-distortion training of a :class:`~liclab.models.base.CompressionModel`.

    One Adam optimiser with two parameter groups: the network (``lr``) and the entropy
    bottlenecks' quantiles (``aux_lr``), trained by CompressAI's aux loss. The aux loss
    reaches only the quantiles (CompressAI stops its gradient into the density) and the
    quantizers detach the medians, so neither objective touches the other's parameters.
    Gradient clipping (``clip_max_norm``) applies to the network group only.

    Args:
        model: the codec.
        quantizer: the training proxy (:mod:`liclab.quantizers`); rounding in eval mode.
        loss: a :class:`~liclab.losses.RateDistortionLoss`.
        lr, aux_lr: learning rates of the two groups.
        clip_max_norm: gradient-norm clip of the network group (0 or None: off).
        scheduler: a partial ``torch.optim.lr_scheduler`` class (Hydra ``_partial_``) or None.
        scheduler_interval: ``"step"`` or ``"epoch"``.
        max_bad_steps: consecutive non-finite losses tolerated (each skipped) before stopping.
        run_config: the resolved run config, stored in every checkpoint so that it can be
            rebuilt without the config files (:func:`liclab.checkpoint.load_model`).
    """

    def __init__(
        self,
        model: nn.Module,
        quantizer: nn.Module,
        loss: nn.Module,
        lr: float = 1e-4,
        aux_lr: float = 1e-3,
        clip_max_norm: float | None = 1.0,
        scheduler=None,
        scheduler_interval: str = "epoch",
        max_bad_steps: int = 10,
        run_config: dict | None = None,
    ):
        super().__init__()
        self.model, self.quantizer, self.loss = model, quantizer, loss
        self.lr, self.aux_lr, self.clip_max_norm = lr, aux_lr, clip_max_norm
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.max_bad_steps = max_bad_steps
        self.run_config = run_config or {}
        self._bad_steps = 0

    def forward(self, x: Tensor) -> dict:
        return self.model(x, self.quantizer)

    def _aux_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if n.endswith("quantiles")]

    def _main_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if not n.endswith("quantiles")]

    def training_step(self, x: Tensor, batch_idx: int):
        self.quantizer.on_train_step(self.global_step, self.trainer.max_steps)
        terms = self.loss(self(x), x)
        aux = self.model.aux_loss()
        total = terms["loss"] + aux
        if not torch.isfinite(total):
            self._bad_steps += 1
            log.warning("liclab: non-finite loss at step %d, step skipped", self.global_step)
            if self._bad_steps >= self.max_bad_steps:
                raise LiclabError(
                    f"{self._bad_steps} consecutive non-finite losses at step "
                    f"{self.global_step}: lower the learning rate or check the data"
                )
            return None
        self._bad_steps = 0
        terms["aux"] = aux
        terms["psnr"] = mse_to_psnr(terms["mse"].detach(), peak=1.0)
        self._log_terms("train", terms, x.shape[0])
        return total

    def validation_step(self, x: Tensor, batch_idx: int):
        out = self(x)  # eval mode: the quantizer rounds, as the real codec does
        terms = self.loss(out, x)
        metrics = dict(terms)
        # As the evaluator reports them: per image, on 8-bit rounded RGB, then averaged.
        metrics["psnr"] = psnr_batch(out["x_hat"], x).mean()
        if min(x.shape[-2:]) >= MS_SSIM_MIN_SIDE:
            metrics["ms_ssim"] = ms_ssim_batch(out["x_hat"], x).mean()
        self._log_terms("val", metrics, x.shape[0])

    def _log_terms(self, stage: str, terms: dict[str, Tensor], batch_size: int) -> None:
        for k, v in terms.items():
            if k != "distortion":  # logged under its own name (mse, ms_ssim)
                shown = k in ("loss", "bpp", "psnr")
                self.log(f"{stage}/{k}", v.detach(), prog_bar=shown, batch_size=batch_size)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(
            [
                {"params": self._main_params(), "lr": self.lr, "name": "main"},
                {"params": self._aux_params(), "lr": self.aux_lr, "name": "aux"},
            ]
        )
        if self.scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": self.scheduler(optimizer),
                "interval": self.scheduler_interval,
                "monitor": "val/loss",
            },
        }

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        if self.clip_max_norm:
            torch.nn.utils.clip_grad_norm_(self._main_params(), self.clip_max_norm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["liclab_config"] = self.run_config


class PlainProgress(L.Callback):
    """Progress as plain lines, for runs whose output is not a terminal (a log file, a
    cluster job): every ``every`` seconds, ``step 300/1500 (20%) | loss … | bpp … | PSNR … |
    4.1 steps/s | ETA 4 min 52 s``, and the validation figures after each validation."""

    def __init__(self, every: float = 30.0):
        self.every = every
        self._start = self._last = 0.0
        self._first_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        step, total = trainer.global_step, trainer.max_steps
        if now - self._last < self.every and step != total:
            return
        self._last = now
        rate = (step - self._first_step) / max(now - self._start, 1e-9)
        line = f"step {step}/{total} ({100 * step / total:.0f}%)" if total > 0 else f"step {step}"
        line += _figures(trainer.callback_metrics, "train")
        line += f" | {rate:.2f} steps/s"
        if total > 0 and rate > 0:
            line += f" | ETA {duration((total - step) / rate)}"
        print(line, file=sys.stderr, flush=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            figures = _figures(trainer.callback_metrics, "val")
            print(f"validation at step {trainer.global_step}{figures}", file=sys.stderr, flush=True)


def _figures(metrics: dict, stage: str) -> str:
    shown = [("loss", "loss", ".4f"), ("bpp", "bpp", ".4f"), ("psnr", "PSNR", ".2f")]
    return "".join(
        f" | {label} {float(metrics[f'{stage}/{k}']):{fmt}}"
        for k, label, fmt in shown
        if f"{stage}/{k}" in metrics
    )


def quiet_lightning() -> None:
    """Lightning's log lines through Hydra's handlers only (Lightning adds its own on import,
    which doubles every line), without its advertisements and its notes on its own defaults."""
    import lightning  # noqa: F401  (import first so that its handlers exist)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    # filters act where a record is logged, not on the loggers it propagates through
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.trainer.connectors.checkpoint_connector",
    ):
        logging.getLogger(name).addFilter(_not_for_users)


def _not_for_users(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(s in message for s in ("💡 Tip", "`weights_only` was not set"))


def wandb_logger(**kwargs):
    """Lightning's ``WandbLogger``, less the ``anonymous=None`` it always passes to
    ``wandb.init``, which wandb ≥ 0.19 answers with a warning on every run."""
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(**kwargs)
    logger._wandb_init.pop("anonymous", None)
    return logger
