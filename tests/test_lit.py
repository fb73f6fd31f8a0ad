"""The LightningModule and its callbacks: progress a log file can show, quiet logs."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from liclab import LiclabError
from liclab.lit import PlainProgress, _not_for_users, wandb_logger
from liclab.losses import MSE
from liclab.progress import progress
from liclab.train import train

from conftest import compose, tiny_train_overrides


def test_a_run_into_a_log_file_says_how_far_it_is(image_folder, tmp_path, capsys):
    train(compose(tiny_train_overrides(image_folder, tmp_path / "run", steps=3)))
    err = capsys.readouterr().err
    assert "step 3/3 (100%) | loss " in err and "steps/s" in err  # stderr is no terminal here
    assert "validation at step" in err


def test_progress_lines_name_step_figures_rate_and_eta(capsys, monkeypatch):
    clock = iter([100.0, 100.0, 140.0])
    monkeypatch.setattr("liclab.lit.time.monotonic", lambda: next(clock))
    metrics = {"train/loss": torch.tensor(1.5), "train/bpp": torch.tensor(0.25),
               "train/psnr": torch.tensor(27.125)}  # fmt: skip
    trainer = SimpleNamespace(global_step=0, max_steps=100, callback_metrics=metrics)
    progress = PlainProgress(every=30)
    progress.on_train_start(trainer, None)
    trainer.global_step = 20
    progress.on_train_batch_end(trainer, None, None, None, 0)  # 0 s later: quiet
    progress.on_train_batch_end(trainer, None, None, None, 0)  # 40 s later
    line = capsys.readouterr().err.strip()
    assert line == (
        "step 20/100 (20%) | loss 1.5000 | bpp 0.2500 | PSNR 27.12 | 0.50 steps/s | ETA 2 min 40 s"
    )


def test_lightning_advertisements_are_dropped():
    def record(msg):
        return logging.LogRecord("lightning.pytorch", logging.INFO, "", 0, msg, None, None)

    assert not _not_for_users(record("💡 Tip: For seamless cloud uploads, try installing x"))
    assert _not_for_users(record("`Trainer.fit` stopped: `max_steps=3` reached."))


def test_wandb_logger_does_not_pass_the_retired_anonymous_setting(tmp_path):
    logger = wandb_logger(save_dir=str(tmp_path), offline=True, project="p")
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["project"] == "p"


class NaNAfter(MSE):
    """An MSE loss that turns non-finite from step ``start`` on (to test the guard)."""

    def __init__(self, lmbda: float, start: int):
        super().__init__(lmbda)
        self.start, self.calls = start, 0

    def forward(self, out, x):
        terms = super().forward(out, x)
        self.calls += 1
        if self.training and self.calls > self.start:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_non_finite_loss_is_skipped_then_stops(image_folder, tmp_path, caplog):
    overrides = tiny_train_overrides(image_folder, tmp_path / "run", steps=50)
    overrides += [
        "loss._target_=test_lit.NaNAfter",
        "+loss.start=3",
        "module.max_bad_steps=4",
    ]
    cfg = compose(overrides)
    with pytest.raises(LiclabError, match="4 consecutive non-finite losses"):
        train(cfg)
    assert "non-finite loss" in caplog.text


def test_progress_of_parallel_items_counts_the_first_as_a_batch(capsys, monkeypatch):
    # two workers, 16 items: the first finishes after 500 s with another about as far along,
    # so the wall time per item is ~250 s and 15 remain: ETA ~62 min, not 2 h
    clock = iter([0.0, 500.0, 510.0])
    monkeypatch.setattr("liclab.progress.time.monotonic", lambda: next(clock))
    monkeypatch.setattr("liclab.progress.is_terminal", lambda stream=None: False)
    with progress(16, "evaluating x", "encodes", every=0, parallel=2) as advance:
        advance()
        advance()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "evaluating x: 1/16 encodes, 250.0 s each, ETA 1 h 02 min",
        "evaluating x: 2/16 encodes, 255.0 s each, ETA 59 min 30 s",
    ]
