"""The evaluation loop: records, bad images, cache, parallel workers, aggregation, the CLIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liclab import LiclabError, configs
from liclab.cli.codec import compress_file
from liclab.codecs.jpeg import JPEG
from liclab.curve import Curve
from liclab.evaluate import checkpoint_curves, evaluate_codec, evaluate_codecs, find_checkpoints
from liclab.metrics import ms_ssim_db

from conftest import smooth_image


class CountingJPEG(JPEG):
    """JPEG that counts its encodes (in-process runs only)."""

    encodes = 0

    def encode(self, image):
        CountingJPEG.encodes += 1
        return super().encode(image)


class CroppingJPEG(JPEG):
    def decode(self, data):
        return super().decode(data)[1:]


class EstimatingJPEG(JPEG):
    def details(self, image, data):
        return {"est_bpp": 1.5, "bytes_header": len(data) // 10}


@pytest.fixture
def folder(tmp_path):
    """Three usable images (one grayscale, one big enough for MS-SSIM) and two bad files."""
    root = tmp_path / "imgs"
    root.mkdir()
    Image.fromarray(smooth_image(96, 128, seed=1)).save(root / "a.png")
    Image.fromarray(smooth_image(176, 192, seed=2)).save(root / "b.png")
    Image.fromarray(smooth_image(96, 128, seed=3)[..., 0]).save(root / "c_gray.png")
    Image.fromarray(smooth_image(40, 200, seed=4)).save(root / "d_small.png")
    (root / "e_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def paths(folder):
    return sorted(folder.glob("*.png"))


def test_records_bad_images_reported_and_the_rest_evaluated(folder, capsys):
    records = evaluate_codec(JPEG(quality=50), paths(folder), workers=1, show=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("liclab: d_small.png: 200x40 is smaller than the minimum 64 px")
    assert err[1].startswith("liclab: e_broken.png:")
    assert [r["file"] for r in records] == ["a.png", "b.png", "c_gray.png"]
    a, b, c = records
    assert (a["H"], a["W"]) == (96, 128)
    assert a["bytes"] == len(JPEG(50).encode(np.asarray(Image.open(folder / "a.png"))))
    assert a["bpp"] == pytest.approx(8 * a["bytes"] / (96 * 128))
    assert 25 < a["psnr"] < 45
    assert a["ms_ssim"] is None and 0.9 < b["ms_ssim"] < 1  # MS-SSIM needs sides > 160
    assert b["ms_ssim_db"] == pytest.approx(ms_ssim_db(b["ms_ssim"]))
    assert c["notes"] == ["replicated a grayscale image to RGB"] and a["notes"] == []
    assert "est_bpp" not in a
    (est,) = evaluate_codec(EstimatingJPEG(50), [folder / "a.png"], workers=1, show=False)
    assert est["est_bpp"] == 1.5 and est["bytes_header"] == est["bytes"] // 10


def test_second_run_comes_from_the_cache(folder, tmp_path):
    images, cache = paths(folder)[:3], tmp_path / "cache"
    CountingJPEG.encodes = 0
    first = evaluate_codec(CountingJPEG(40), images, workers=1, cache_dir=cache, show=False)
    assert CountingJPEG.encodes == 3
    again = evaluate_codec(CountingJPEG(40), images, workers=1, cache_dir=cache, show=False)
    assert CountingJPEG.encodes == 3 and again == first
    evaluate_codec(CountingJPEG(41), images, workers=1, cache_dir=cache, show=False)
    assert CountingJPEG.encodes == 6  # another setting is another key
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(images[0].read_bytes())
    (hit,) = evaluate_codec(CountingJPEG(40), [renamed], workers=1, cache_dir=cache, show=False)
    assert CountingJPEG.encodes == 6 and hit["file"] == "renamed.png"  # keyed by content


def test_worker_processes_give_the_same_records(folder):
    images = paths(folder)[:3]
    codecs = [JPEG(20), JPEG(80)]
    serial = evaluate_codecs(codecs, images, workers=1, show=False)
    parallel = evaluate_codecs(codecs, images, workers=2, show=False)
    for ours, theirs in zip(parallel, serial, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert (a["file"], a["bytes"], a["psnr"]) == (b["file"], b["bytes"], b["psnr"])
            if b["ms_ssim"] is None:  # an image below MS-SSIM's minimum side
                assert a["ms_ssim"] is None
            else:  # threads may reorder sums
                assert a["ms_ssim"] == pytest.approx(b["ms_ssim"], rel=1e-6)
    assert serial[0][0]["bytes"] < serial[1][0]["bytes"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_worker_ends_when_its_parent_is_killed(tmp_path):
    """A pool's workers outlive a SIGTERM / SIGKILL to ``liclab-eval``: each watches its
    parent and ends within a second of its death instead of fitting on, unseen."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    worker = (
        "import os, sys, time; from liclab.evaluate import _exit_with; "
        "_exit_with(os.getppid(), every=0.05); "
        "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, "
            f"'-c', {worker!r}, {str(pid_file)!r}])",
        ]
    )
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    os.kill(child, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _running(child):
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its parent by 10 s")


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (an ended one not yet reaped, a zombie, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return not any(line.startswith("State:") and "Z" in line for line in status.splitlines())


def test_decoded_shape_mismatch_names_the_codec(folder):
    with pytest.raises(LiclabError, match=r"jpeg \(quality=50\): decoded a.png to \(95, 128, 3\)"):
        evaluate_codec(CroppingJPEG(50), [folder / "a.png"], workers=1, show=False)


def test_points_are_means_and_a_curve_is_sorted_by_rate(folder, tmp_path):
    images = paths(folder)[1:2]  # b.png, the one with MS-SSIM
    points = []
    for q in (90, 10, 50):
        codec = JPEG(q)
        records = evaluate_codec(codec, images, workers=1, show=False)
        points.append(Curve.from_records("jpeg", records, codec.setting, "test"))
    assert points[-1].bpp.tolist() == [records[0]["bpp"]]
    assert points[-1].get("psnr").tolist() == [records[0]["psnr"]]
    assert points[-1].get("ms_ssim_db")[0] == pytest.approx(ms_ssim_db(records[0]["ms_ssim"]))
    curve = Curve.join(points)
    assert curve.settings == ["quality=10", "quality=50", "quality=90"]
    assert curve.bpp.tolist() == sorted(curve.bpp.tolist())
    assert set(curve.extra) == {"bytes", "encoding_time", "decoding_time"}
    # The file is CompressAI's schema and reads back as the same curve.
    saved = json.loads(curve.save(tmp_path / "jpeg.json").read_text())
    assert set(saved["results"]) == {
        "bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-db-rgb", "bytes", "encoding_time",
        "decoding_time",
    }  # fmt: skip
    again = Curve.load(tmp_path / "jpeg.json")
    assert again.settings == curve.settings and again.images == ["b"]
    assert np.array_equal(again.get("psnr"), curve.get("psnr"))
    two = evaluate_codec(JPEG(50), paths(folder)[:2], workers=1, show=False)
    point = Curve.from_records("jpeg", two)
    assert point.get("psnr")[0] == pytest.approx((two[0]["psnr"] + two[1]["psnr"]) / 2)
    assert point.get("ms_ssim") is None  # a.png is too small for MS-SSIM


def _compose(name, overrides):
    return configs.compose("eval", name, [*overrides, "hydra.run.dir=."])


def test_anchors_then_rd_in_process(folder, tmp_path, capsys):
    from liclab.cli import anchors, rd

    out = tmp_path / "anchors"
    common = [f"data={folder}", f"out_dir={out}", f"cache_dir={tmp_path / 'c'}", "workers=1"]
    anchors.run(_compose("anchors", ["codec=jpeg", "points.quality=[20,80,50]", *common]), "jpeg")
    curve = json.loads((out / "jpeg.json").read_text())
    assert curve["name"] == "jpeg" and curve["num_images"] == 3
    assert curve["settings"] == ["quality=20", "quality=50", "quality=80"]
    per_point = json.loads((out / "jpeg_images.json").read_text())
    assert [p["setting"] for p in per_point] == ["quality=20", "quality=80", "quality=50"]
    assert [r["file"] for r in per_point[2]["images"]] == ["a.png", "b.png", "c_gray.png"]
    anchors.run(_compose("anchors", ["codec=hevc", "points.qp=[40,30,20,10]", *common]), "hevc")
    assert "hevc: 4 points x 3 images" in capsys.readouterr().out

    result = rd.run(_compose("rd", [f"inputs=[{out}]", "baseline=jpeg", f"out={tmp_path / 'rd'}"]))
    rows = {r["curve"]: r for r in result["rows"]}
    assert rows["jpeg"]["BD-rate PSNR (%)"] == 0.0
    assert rows["hevc"]["BD-rate PSNR (%)"] < -20  # HEVC intra beats JPEG by far
    assert "BD-rate MS-SSIM (%)" not in rows["hevc"]  # no curve has MS-SSIM on every image
    assert (tmp_path / "rd" / "rd-psnr.svg").exists()


def test_learned_metrics_and_fid_join_the_records_the_cache_and_the_curve(store, tmp_path):
    from liclab.evaluate import Measures, codec_curve

    images = []
    for i in range(2):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(smooth_image(256, 320, seed=60 + i)).save(images[-1])
    cache = tmp_path / "cache"
    measures = Measures(("lpips",), fid=True, weights_dir=str(store[0]))
    curve, per_point = codec_curve(
        [JPEG(20), JPEG(90)], images, workers=1, cache_dir=cache, show=False, measures=measures
    )
    low, high = per_point
    assert all(0 < r["lpips"] < 1 for r in low) and low[0]["lpips"] > high[0]["lpips"]
    assert low[0]["fid_features"].shape == (1, 2048)  # one 256² patch per image
    assert curve.get("lpips")[0] > curve.get("lpips")[1]  # points sorted by rate
    assert curve.get("fid") is not None and curve.get("kid") is not None
    assert curve.extra["fid_patches"].tolist() == [2.0, 2.0]
    # From the cache, and a metric the cache lacks is measured (so the image encoded) again.
    CountingJPEG.encodes = 0
    again, _ = codec_curve([CountingJPEG(20)], images, workers=1, cache_dir=cache, show=False,
                           measures=measures)  # fmt: skip
    assert CountingJPEG.encodes == 0 and again.get("fid")[0] == curve.get("fid")[0]
    codec_curve([CountingJPEG(20)], images, workers=1, cache_dir=cache, show=False,
                measures=Measures(("dists",), weights_dir=str(store[0])))  # fmt: skip
    assert CountingJPEG.encodes == 2
    with pytest.raises(LiclabError, match="unknown metric"):
        Measures(("vmaf",))


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
