"""The one LightningModule: trains any liclab model with any quantizer and RD loss."""

from __future__ import annotations

import logging
import sys
import time
import warnings

import lightning as L
import torch
from torch import Tensor, nn

from liclab import LiclabError
from liclab.metrics import MS_SSIM_MIN_SIDE, ms_ssim_batch, mse_to_psnr, psnr_batch
from liclab.progress import duration

log = logging.getLogger(__name__)

MONITOR = "val/loss"  # what a ReduceLROnPlateau schedule follows


class LitCodec(L.LightningModule):
    """Rate-distortion training of a :class:`~liclab.models.base.CompressionModel`.

    One Adam optimiser with two parameter groups: the network (``lr``) and the entropy
    bottlenecks' quantiles (``aux_lr``), trained by CompressAI's aux loss. The aux loss
    reaches only the quantiles (CompressAI stops its gradient into the density) and the
    quantizers detach the medians, so neither objective touches the other's parameters.
    Gradient clipping (``clip_max_norm``) applies to the network group only.

    With a ``discriminator`` (HiFiC-style adversarial training, Mentzer et al. 2020,
    arXiv:2006.09965) it has a second Adam optimiser of its own, and each training step is
    two updates on one forward of the codec: first the discriminator, on the loss's
    :meth:`~liclab.losses.PerceptualLoss.discriminator_loss` (x̂ and ŷ detached: nothing
    reaches the codec), then the codec against the updated discriminator, whose parameters
    are frozen meanwhile (the codec's step never updates them). Lightning 2 runs two
    optimisers only under manual optimisation, so with a discriminator this module steps,
    clips and schedules itself as Lightning does in the automatic case: the same clipping,
    aux group, non-finite skips (a non-finite discriminator loss skips the discriminator's
    update, counted apart), and the scheduler on both optimisers (HiFiC decays the
    discriminator's rate with the codec's). ``global_step`` counts codec steps only.

    Checkpoints hold the discriminator and both optimisers, so ``ckpt_path`` resumes a GAN
    stage; the loss's frozen networks (LPIPS, VGG) are rebuilt from the config, not saved.

    Args:
        model: the codec.
        quantizer: the training proxy (:mod:`liclab.quantizers`); rounding in eval mode.
        loss: a :class:`~liclab.losses.RateDistortionLoss`; with a discriminator, one with an
            adversarial term (:class:`~liclab.losses.PerceptualLoss`).
        lr, aux_lr: learning rates of the two groups.
        clip_max_norm: gradient-norm clip of the network group (0 or None: off).
        scheduler: a partial ``torch.optim.lr_scheduler`` class (Hydra ``_partial_``) or None.
        scheduler_interval: ``"step"`` or ``"epoch"``.
        max_bad_steps: consecutive non-finite losses tolerated (each skipped) before stopping.
        run_config: the resolved run config, stored in every checkpoint so that it can be
            rebuilt without the config files (:func:`liclab.checkpoint.load_model`).
        discriminator: a discriminator (:mod:`liclab.discriminators`) or None.
        discriminator_lr: its Adam learning rate.
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
        discriminator: nn.Module | None = None,
        discriminator_lr: float = 1e-4,
    ):
        super().__init__()
        self.model, self.quantizer, self.loss = model, quantizer, loss
        self.lr, self.aux_lr, self.clip_max_norm = lr, aux_lr, clip_max_norm
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.max_bad_steps = max_bad_steps
        self.run_config = run_config or {}
        self.discriminator, self.discriminator_lr = discriminator, discriminator_lr
        if discriminator is not None and getattr(loss, "adversarial", None) is None:
            raise LiclabError(
                f"a discriminator needs a loss with an adversarial term, not "
                f"{type(loss).__name__} (e.g. loss=hific)"
            )
        self.automatic_optimization = discriminator is None
        self._bad_steps = {"loss": 0, "discriminator loss": 0}

    def forward(self, x: Tensor) -> dict:
        return self.model(x, self.quantizer)

    def _aux_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if n.endswith("quantiles")]

    def _main_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if not n.endswith("quantiles")]

    def training_step(self, x: Tensor, batch_idx: int):
        self.quantizer.on_train_step(self.global_step, self.trainer.max_steps)
        out = self(x)
        if self.discriminator is None:
            return self._codec_loss(out, x)  # Lightning backpropagates, clips and steps
        self._discriminator_step(out, x)
        self._codec_step(out, x)
        self._step_schedulers("step")

    def _codec_loss(self, out: dict, x: Tensor, **discriminator) -> Tensor | None:
        """The codec's objective plus the aux loss, logged; None if not finite."""
        terms = self.loss(out, x, **discriminator)
        aux = self.model.aux_loss()
        total = terms["loss"] + aux
        if not self._finite(total, "loss"):
            return None
        terms["aux"] = aux
        terms["psnr"] = mse_to_psnr(terms["mse"].detach(), peak=1.0)
        self._log_terms("train", terms, x.shape[0])
        return total

    def _discriminator_step(self, out: dict, x: Tensor) -> None:
        terms = self.loss.discriminator_loss(self.discriminator, out, x)
        if not self._finite(terms["d_loss"], "discriminator loss"):
            return
        optimizer = self.optimizers()[1]
        optimizer.zero_grad()
        self.manual_backward(terms["d_loss"])
        _step_uncounted(optimizer)
        self._log_terms("train", terms, x.shape[0])

    def _codec_step(self, out: dict, x: Tensor) -> None:
        optimizer = self.optimizers()[0]
        self.toggle_optimizer(optimizer)  # the discriminator's parameters stop requiring grad
        try:
            total = self._codec_loss(out, x, discriminator=self.discriminator)
            if total is not None:
                optimizer.zero_grad()
                self.manual_backward(total)
                self.configure_gradient_clipping(optimizer)
                optimizer.step()
        finally:
            self.untoggle_optimizer(optimizer)

    def _finite(self, value: Tensor, what: str) -> bool:
        """False (a warning) for a non-finite ``value``; stops the run after
        ``max_bad_steps`` consecutive ones of the same kind."""
        if torch.isfinite(value):
            self._bad_steps[what] = 0
            return True
        self._bad_steps[what] += 1
        log.warning("liclab: non-finite %s at step %d, step skipped", what, self.global_step)
        if self._bad_steps[what] >= self.max_bad_steps:
            raise LiclabError(
                f"{self._bad_steps[what]} consecutive non-finite {what}es at step "
                f"{self.global_step}: lower the learning rate or check the data"
            )
        return False

    def _step_schedulers(self, interval: str) -> None:
        """Under manual optimisation, what Lightning does for automatic optimisation."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval != interval:
                continue
            if not config.reduce_on_plateau:
                config.scheduler.step()
            elif MONITOR in self.trainer.callback_metrics:
                config.scheduler.step(self.trainer.callback_metrics[MONITOR])

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self._step_schedulers("epoch")

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
        optimizers = [
            torch.optim.Adam(
                [
                    {"params": self._main_params(), "lr": self.lr, "name": "main"},
                    {"params": self._aux_params(), "lr": self.aux_lr, "name": "aux"},
                ]
            )
        ]
        if self.discriminator is not None:
            group = {"params": self.discriminator.parameters(), "name": "discriminator"}
            optimizers.append(torch.optim.Adam([group], lr=self.discriminator_lr))
        if self.scheduler is None:
            return optimizers
        # Lightning reads "monitor" (ReduceLROnPlateau) only under automatic optimisation.
        monitor = {"monitor": MONITOR} if self.automatic_optimization else {}
        schedulers = [
            {"scheduler": self.scheduler(o), "interval": self.scheduler_interval, **monitor}
            for o in optimizers
        ]
        return optimizers, schedulers

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        if self.clip_max_norm:
            torch.nn.utils.clip_grad_norm_(self._main_params(), self.clip_max_norm)

    def on_fit_start(self) -> None:
        if self.discriminator is not None and str(self.trainer.precision) == "16-mixed":
            # manual optimisation clips before the grad scaler unscales: use bf16-mixed
            raise LiclabError("trainer.precision=16-mixed is not supported with a discriminator")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["liclab_config"] = self.run_config
        # The loss's networks (LPIPS, VGG) are frozen and rebuilt from the config.
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("loss.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        own = {f"loss.{k}": v for k, v in self.loss.state_dict().items()}
        checkpoint["state_dict"].update(own)


def _step_uncounted(optimizer) -> None:
    """``optimizer.step()`` without advancing ``trainer.global_step``.

    Under manual optimisation Lightning counts every optimiser step as a training step
    (Lightning issue #17958): the discriminator's would double the count, and with it
    ``max_steps``, checkpoint intervals and step schedules.
    """
    hooks = optimizer._on_before_step, optimizer._on_after_step
    optimizer._on_before_step = optimizer._on_after_step = _nothing
    try:
        optimizer.step()
    finally:
        optimizer._on_before_step, optimizer._on_after_step = hooks


def _nothing() -> None:
    pass


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
    # The loss's frozen networks (LPIPS, VGG) stay in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # The GAN stage optimises manually; its checkpoints hold the state after both optimisers
    # stepped, which is what resuming needs (tests/test_gan.py resumes mid-GAN).
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
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
