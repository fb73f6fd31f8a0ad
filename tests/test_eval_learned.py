"""liclab-eval on checkpoints: run discovery, real-byte bpp, the result schema."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from liclab import LiclabError
from liclab.cli.codec import compress_file
from liclab.evaluate import checkpoint_curves, find_checkpoints

from conftest import smooth_image


@pytest.fixture
def sweep_dir(trained_ckpt, tmp_path):
    """A sweep folder: two finished runs and one that failed before checkpointing."""
    root = tmp_path / "multirun"
    for i, name in enumerate(["0_loss.lmbda=0.01", "1_loss.lmbda=0.05", "2_loss.lmbda=9"]):
        run = root / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text("{}")
        if i < 2:
            shutil.copy(trained_ckpt, run / "checkpoints" / "last.ckpt")
    return root


def test_find_checkpoints_in_a_sweep_skips_failed_runs(sweep_dir, capsys):
    found = find_checkpoints(str(sweep_dir), which="best")
    assert [p.parent.parent.name for p in found] == ["0_loss.lmbda=0.01", "1_loss.lmbda=0.05"]
    assert "2_loss.lmbda=9: no checkpoint" in capsys.readouterr().err
    with pytest.raises(LiclabError, match="nowhere"):
        find_checkpoints(str(sweep_dir / "nowhere"))


def test_evaluate_counts_every_byte_of_the_file(trained_ckpt, tmp_path):
    images = []
    for i, size in enumerate([(192, 256), (200, 170)]):
        images.append(tmp_path / f"img{i}.png")
        Image.fromarray(smooth_image(*size, seed=20 + i)).save(images[-1])
    (curve,) = checkpoint_curves([trained_ckpt], images, tmp_path / "out", name="tiny")
    saved = json.loads((tmp_path / "out" / "tiny.json").read_text())
    r = saved["results"]
    assert set(r) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-db-rgb", "est_bpp"}
    per_image = json.loads((tmp_path / "out" / "tiny_images.json").read_text())[0]["images"]
    for rec, path in zip(per_image, images, strict=True):
        info = compress_file(path, tmp_path / "x.lic", str(trained_ckpt))
        assert rec["bytes"] == info["bytes"] == (tmp_path / "x.lic").stat().st_size
    expected = sum(rec["bpp"] for rec in per_image) / 2
    assert r["bpp"][0] == pytest.approx(expected)
    assert 0 < r["est_bpp"][0] < r["bpp"][0]  # the estimate has no header, no coder overhead
    assert saved["name"] == "tiny" and saved["images"] == ["img0", "img1"]
    assert saved["settings"] == ["lmbda=0.05"] and curve.bpp[0] == r["bpp"][0]
