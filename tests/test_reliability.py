"""Corrupt bitstreams, cross-process determinism, crash-safe training, bad input files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from liclab import LiclabError
from liclab.checkpoint import AtomicCheckpointIO
from liclab.cli.codec import verify
from liclab.codecs.learned import LearnedCodec
from liclab.images import load_rgb
from liclab.losses import MSE
from liclab.train import train

from conftest import compose, smooth_image, tiny_train_overrides


@pytest.fixture(scope="module")
def codec(trained_ckpt):
    return LearnedCodec.from_checkpoint(trained_ckpt)


def test_fuzzed_bitstreams_are_all_detected(codec):
    data = codec.encode(smooth_image(96, 160, seed=5))
    rng = np.random.default_rng(1234)
    for trial in range(400):
        corrupt = bytearray(data)
        if trial % 2:
            corrupt = corrupt[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, len(data)))
                corrupt[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(LiclabError, match="x.lic: "):
            codec.decode(bytes(corrupt), "x.lic")


def test_decoding_with_another_model_is_refused(codec, trained_ckpt):
    data = codec.encode(smooth_image(64, 64))
    other = LearnedCodec.from_checkpoint(trained_ckpt)
    with torch.no_grad():
        other.model.g_s[0].weight.add_(1e-3)
    other = LearnedCodec(other.model, "other", "x")
    with pytest.raises(LiclabError, match="made by MeanScaleHyperprior"):
        other.decode(data, "x.lic")


def test_decoding_in_another_process_with_other_threads_is_bit_identical(trained_ckpt, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(smooth_image(200, 264, seed=7)).save(path)
    report = verify(str(path), str(trained_ckpt), threads=(3,))
    assert report["identical"], report


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
        "loss._target_=test_reliability.NaNAfter",
        "+loss.start=3",
        "module.max_bad_steps=4",
    ]
    cfg = compose(overrides)
    with pytest.raises(LiclabError, match="4 consecutive non-finite losses"):
        train(cfg)
    assert "non-finite loss" in caplog.text


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


def test_float32_synthesis_decodes_the_same_latents(trained_ckpt):
    exact = LearnedCodec.from_checkpoint(trained_ckpt)
    fast = LearnedCodec.from_checkpoint(trained_ckpt, exact_synthesis=False)
    dtypes = []
    for codec in (exact, fast):
        codec.model.g_s.register_forward_pre_hook(lambda m, args: dtypes.append(args[0].dtype))
    image = smooth_image(96, 160, seed=3)
    data = exact.encode(image)
    assert fast.encode(image) == data, "the bitstream does not depend on g_s"
    a, b = exact.decode(data).astype(int), fast.decode(data).astype(int)
    assert dtypes[-2:] == [torch.float64, torch.float32]
    assert np.abs(a - b).max() <= 1
    assert fast.version() != exact.version(), "results of the two are told apart"


def test_checkpoint_save_removes_partial_files_of_dead_writers(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".best.ckpt.{dead.pid}.tmp"
    live = tmp_path / f".last.ckpt.{os.getppid()}.tmp"  # a running process: may be mid-write
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    AtomicCheckpointIO().save_checkpoint({"global_step": 7}, tmp_path / "last.ckpt")
    assert not stale.exists()
    assert live.exists()
    assert torch.load(tmp_path / "last.ckpt")["global_step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "last.ckpt"]


def _corpus(folder):
    """The bad-input corpus of the reliability issue, written to ``folder``."""
    rgb = smooth_image(65, 63, seed=2)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(smooth_image(40, 80)).save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(rgb[:1, :1]).save(folder / "one.png")
    Image.fromarray(rgb).save(folder / "odd.png")
    Image.fromarray(np.zeros((6000, 8000), np.uint8)).save(folder / "huge.png")
    png = (folder / "odd.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "readme.png").write_text("not an image")


def test_bad_input_corpus(tmp_path):
    _corpus(tmp_path)
    arr, notes = load_rgb(tmp_path / "cmyk.jpg")
    assert arr.shape == (65, 63, 3) and "converted CMYK to RGB" in notes
    arr, notes = load_rgb(tmp_path / "rotated.jpg")
    assert arr.shape == (80, 40, 3) and any("EXIF" in n for n in notes)
    assert load_rgb(tmp_path / "one.png")[0].shape == (1, 1, 3)
    assert load_rgb(tmp_path / "odd.png")[0].shape == (65, 63, 3)
    for name, problem in [
        ("huge.png", "8000x6000 exceeds the 40000000 pixel limit"),
        ("truncated.png", "unreadable image"),
        ("empty.png", "empty file"),
        ("readme.png", "not an image file"),
    ]:
        with pytest.raises(LiclabError, match=f"^{name}: {problem}"):
            load_rgb(tmp_path / name)


@pytest.mark.parametrize("size", [(1, 1), (63, 65)])
def test_tiny_images_round_trip_through_the_codec(codec, size):
    img = smooth_image(*size)
    decoded = codec.decode(codec.encode(img))
    assert decoded.shape == img.shape


def test_bottleneck_tables_ignore_rounding_noise():
    """Another machine's float kernels round differently. In float32 (CompressAI) noise of
    one ulp in the density moves quantised CDFs; liclab builds them in float64, where noise
    far above float64 rounding leaves them unchanged."""
    import copy

    from compressai.entropy_models import EntropyBottleneck as CompressAIBottleneck

    from liclab.entropy.bottleneck import EntropyBottleneck

    torch.manual_seed(0)
    eb = EntropyBottleneck(64)
    with torch.no_grad():
        for p in eb.parameters():
            p.add_(0.3 * torch.randn_like(p))
    eb.update(force=True)

    def tables(dtype, noise, update):
        twin = copy.deepcopy(eb).to(dtype)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in twin.named_parameters():
                if name != "quantiles":
                    p.mul_(1 + noise * torch.randn(p.shape, generator=gen, dtype=dtype).sign())
        update(twin, force=True)
        return twin._quantized_cdf

    liclab = EntropyBottleneck.update
    assert torch.equal(eb._quantized_cdf, tables(torch.float64, 0.0, liclab))
    assert torch.equal(eb._quantized_cdf, tables(torch.float64, 1e-13, liclab))
    compressai = CompressAIBottleneck.update
    assert not torch.equal(
        tables(torch.float32, 0.0, compressai), tables(torch.float32, 6e-8, compressai)
    )
