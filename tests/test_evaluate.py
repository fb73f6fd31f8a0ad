"""The evaluation loop: records, bad images, cache, parallel workers, aggregation, the CLIs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from liclab import LiclabError
from liclab.cli import config_dir
from liclab.codecs.jpeg import JPEG
from liclab.evaluate import aggregate, combine, evaluate_codec, evaluate_codecs
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
    def estimate_bpp(self, image):
        return 1.5


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
    records = evaluate_codec(JPEG(quality=50), paths(folder), workers=1, progress=False)
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
    (est,) = evaluate_codec(EstimatingJPEG(50), [folder / "a.png"], workers=1, progress=False)
    assert est["est_bpp"] == 1.5


def test_second_run_comes_from_the_cache(folder, tmp_path):
    images, cache = paths(folder)[:3], tmp_path / "cache"
    CountingJPEG.encodes = 0
    first = evaluate_codec(CountingJPEG(40), images, workers=1, cache_dir=cache, progress=False)
    assert CountingJPEG.encodes == 3
    again = evaluate_codec(CountingJPEG(40), images, workers=1, cache_dir=cache, progress=False)
    assert CountingJPEG.encodes == 3 and again == first
    evaluate_codec(CountingJPEG(41), images, workers=1, cache_dir=cache, progress=False)
    assert CountingJPEG.encodes == 6  # another setting is another key
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(images[0].read_bytes())
    (hit,) = evaluate_codec(CountingJPEG(40), [renamed], workers=1, cache_dir=cache, progress=False)
    assert CountingJPEG.encodes == 6 and hit["file"] == "renamed.png"  # keyed by content


def test_worker_processes_give_the_same_records(folder):
    images = paths(folder)[:3]
    codecs = [JPEG(20), JPEG(80)]
    serial = evaluate_codecs(codecs, images, workers=1, progress=False)
    parallel = evaluate_codecs(codecs, images, workers=2, progress=False)
    for ours, theirs in zip(parallel, serial, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert (a["file"], a["bytes"], a["psnr"]) == (b["file"], b["bytes"], b["psnr"])
            if b["ms_ssim"] is None:  # an image below MS-SSIM's minimum side
                assert a["ms_ssim"] is None
            else:  # threads may reorder sums
                assert a["ms_ssim"] == pytest.approx(b["ms_ssim"], rel=1e-6)
    assert serial[0][0]["bytes"] < serial[1][0]["bytes"]


def test_decoded_shape_mismatch_names_the_codec(folder):
    with pytest.raises(LiclabError, match=r"jpeg \(quality=50\): decoded a.png to \(95, 128, 3\)"):
        evaluate_codec(CroppingJPEG(50), [folder / "a.png"], workers=1, progress=False)


def test_aggregate_means_and_combine_sorts_by_rate(folder):
    images = paths(folder)[1:2]  # b.png, the one with MS-SSIM
    points = []
    for q in (90, 10, 50):
        codec = JPEG(q)
        records = evaluate_codec(codec, images, workers=1, progress=False)
        points.append(aggregate(records, "jpeg", "test", codec.setting, codec.version()))
    r = points[-1]["results"]
    assert r["bpp"] == [records[0]["bpp"]] and r["psnr-rgb"] == [records[0]["psnr"]]
    assert r["ms-ssim-db-rgb"][0] == pytest.approx(ms_ssim_db(r["ms-ssim-rgb"][0]))
    curve = combine(points)
    assert curve["settings"] == ["quality=10", "quality=50", "quality=90"]
    assert curve["results"]["bpp"] == sorted(curve["results"]["bpp"])
    assert set(curve["results"]) == {
        "bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-db-rgb", "encoding_time", "decoding_time"
    }  # fmt: skip
    assert curve["versions"]["codec"].startswith("Pillow") and curve["versions"]["liclab"]
    two = evaluate_codec(JPEG(50), paths(folder)[:2], workers=1, progress=False)
    point = aggregate(two, "jpeg")
    assert point["results"]["psnr-rgb"][0] == pytest.approx((two[0]["psnr"] + two[1]["psnr"]) / 2)
    assert "ms-ssim-rgb" not in point["results"]  # a.png is too small for MS-SSIM


def _compose(name, overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=overrides)


def test_anchors_then_rd_in_process(folder, tmp_path, capsys):
    from liclab.cli import anchors, rd

    out = tmp_path / "anchors"
    common = [f"data.root={folder}", f"out_dir={out}", f"cache_dir={tmp_path / 'c'}"]
    common += ["workers=1", "progress=false"]
    anchors.run(_compose("anchors", ["codec=jpeg", "sweep.jpeg.quality=[20,80,50]", *common]))
    curve = json.loads((out / "jpeg.json").read_text())
    assert curve["name"] == "jpeg" and curve["num_images"] == 3
    assert curve["settings"] == ["quality=20", "quality=50", "quality=80"]
    per_image = json.loads((out / "jpeg" / "quality=50.json").read_text())
    assert [r["file"] for r in per_image] == ["a.png", "b.png", "c_gray.png"]
    assert (out / "jpeg.yaml").exists()
    anchors.run(_compose("anchors", ["codec=hevc", "sweep.hevc.qp=[40,30,20,10]", *common]))
    assert "hevc: 4 points x 3 images" in capsys.readouterr().out

    result = rd.run(_compose("rd", [f"inputs=[{out}]", "anchor=jpeg", f"out={tmp_path / 'rd'}"]))
    rows = {r["curve"]: r for r in result["rows"]}
    assert rows["jpeg"]["BD-rate PSNR (%)"] == 0.0
    assert rows["hevc"]["BD-rate PSNR (%)"] < -20  # HEVC intra beats JPEG by far
    assert math.isnan(rows["hevc"]["BD-rate MS-SSIM (%)"])  # not every image has MS-SSIM
    assert (tmp_path / "rd" / "rd-psnr.svg").exists()
