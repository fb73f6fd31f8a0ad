"""The one LightningModule: trains any liclab model with any quantizer and RD loss."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

from liclab import LiclabError

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
        terms["psnr"] = -10 * torch.log10(terms["mse"].detach().clamp_min(1e-10))
        self._log_terms("train", terms, x.shape[0])
        return total

    def validation_step(self, x: Tensor, batch_idx: int):
        out = self(x)  # eval mode: the quantizer rounds, as the real codec does
        terms = self.loss(out, x)
        metrics = dict(terms)
        # PSNR as the evaluator reports it: per image, on 8-bit rounded RGB, then averaged.
        x8, x_hat8 = torch.round(x * 255), torch.round(out["x_hat"].clamp(0, 1) * 255)
        mse8 = torch.mean((x_hat8 - x8) ** 2, dim=(1, 2, 3)).clamp_min(1e-10)
        metrics["psnr"] = torch.mean(10 * torch.log10(255.0**2 / mse8))
        if min(x.shape[-2:]) >= 161:
            from pytorch_msssim import ms_ssim

            metrics["ms_ssim"] = ms_ssim(x_hat8, x8, data_range=255.0)
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


def _remove_stale_temporaries(folder: Path) -> None:
    """Deletes the partial checkpoints of writers that died mid-write (``.NAME.PID.tmp``).

    A temporary file whose process is still alive is left alone: it may be mid-write.
    """
    for tmp in folder.glob(".*.ckpt.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file, fsyncs it and renames it into place.

    A process killed mid-write (SIGKILL, OOM, a pre-empted node) leaves the previous
    ``last.ckpt`` intact, never a half-written one, so ``ckpt_path=auto`` can always resume;
    the next save deletes what such a writer left behind.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
