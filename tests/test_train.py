"""The training path end to end, in-process: every model trains, resumes, and fails clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from liclab import LiclabError
from liclab.checkpoint import build_model, load_model
from liclab.train import compile_model, train

from conftest import MODEL_CONFIGS, compose, tiny_train_overrides


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_two_training_steps_and_checkpoint(name, image_folder, tmp_path):
    result = train(compose(tiny_train_overrides(image_folder, tmp_path / "run", name)))
    assert result["global_step"] == 2
    assert (tmp_path / "run" / "config.yaml").exists()
    model, config = load_model(result["last"])
    assert config["model"]["_target_"].endswith(type(model).__name__)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_resume_continues_step_count_and_optimizer(image_folder, tmp_path):
    out = tmp_path / "run"
    first = train(compose(tiny_train_overrides(image_folder, out, steps=3)))
    assert first["global_step"] == 3
    state = torch.load(first["last"], weights_only=False)
    assert state["optimizer_states"][0]["state"], "optimizer state is saved"
    resumed = train(compose(tiny_train_overrides(image_folder, out, steps=5) + ["ckpt_path=auto"]))
    assert resumed["global_step"] == 5
    again = torch.load(resumed["last"], weights_only=False)
    # Adam's step counter continued from 3 rather than restarting at 0.
    assert int(again["optimizer_states"][0]["state"][0]["step"]) == 5


def test_aux_loss_reaches_only_quantiles(image_folder, tmp_path):

    cfg = compose(tiny_train_overrides(image_folder, tmp_path))
    model = build_model(cfg.model)
    model.aux_loss().backward()
    for n, p in model.named_parameters():
        touched = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert touched == n.endswith("quantiles"), n


def test_missing_data_folder_names_the_path(tmp_path):
    cfg = compose(tiny_train_overrides(tmp_path / "nowhere", tmp_path / "run"))
    with pytest.raises(LiclabError, match="nowhere"):
        train(cfg)


def test_folder_without_images_names_the_path(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "notes.png").write_text("not an image")
    (folder / "other.jpg").write_bytes(b"")
    with pytest.raises(LiclabError, match="junk"):
        train(compose(tiny_train_overrides(folder, tmp_path / "run")))


def test_non_image_file_is_skipped_with_a_warning(image_folder, tmp_path, caplog):
    (image_folder / "broken.png").write_text("not an image")
    result = train(compose(tiny_train_overrides(image_folder, tmp_path / "run")))
    assert result["global_step"] == 2
    assert "broken.png" in caplog.text


def test_ms_ssim_loss_refuses_too_small_crops(image_folder, tmp_path):
    cfg = compose(tiny_train_overrides(image_folder, tmp_path) + ["loss=ms_ssim"])
    with pytest.raises(LiclabError, match="crop_size"):
        train(cfg)


@pytest.mark.slow
def test_compile_switch_trains_a_model_that_matches_eager(image_folder, tmp_path):
    overrides = tiny_train_overrides(image_folder, tmp_path / "run", "meanscale")
    result = train(compose(overrides + ["compile=true"]))
    assert result["global_step"] == 2
    # model.compile() compiles in place: the checkpoint keeps plain parameter names.
    state = torch.load(result["last"], weights_only=False)["state_dict"]
    assert not [k for k in state if "_orig_mod" in k]
    eager, _ = load_model(result["last"])
    compiled, _ = load_model(result["last"])
    compiled.train()  # the training-time forward, the path compile=true speeds up
    eager.train()
    compile_model(compiled)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    a, b = eager(x), compiled(x)  # default quantizer: rounding, deterministic
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
    for k in a["likelihoods"]:
        assert torch.allclose(a["likelihoods"][k], b["likelihoods"][k], rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_sigkill_then_resume_finishes_at_the_right_step(image_folder, tmp_path):
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "liclab.cli.train",
        *tiny_train_overrides(image_folder, out, steps=400),
        "callbacks.last.every_n_train_steps=5",
        f"hydra.run.dir={out}",
    ]
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # The event, not a time: the first periodic checkpoint on disk (renamed into place whole).
    # The deadline only keeps a broken run from hanging the suite.
    deadline = time.monotonic() + 600
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr.read()}"
    assert last.exists(), "no checkpoint within 10 minutes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert 5 <= killed_at < 400
    resume = [a if not a.startswith("trainer.max_steps") else "trainer.max_steps=420" for a in args]
    done = subprocess.run(resume + ["ckpt_path=auto"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.load(last, weights_only=False)["global_step"] == 420
    assert not list(last.parent.glob(".*.tmp")), "no temporary checkpoint left behind"
