"""The RD curve type: CompressAI's schema in and out, published files normalised, per-image
tables (Cool-chic's) averaged over any subset of images, points joined into curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_rd import ELIC_MS_SSIM, JPEG2000, MBT2018

from liclab import LiclabError
from liclab.curve import Curve, load_curves


def test_published_files_are_normalised():
    j2k = Curve.from_json(JPEG2000, "jpeg2000.json")
    assert np.all(np.diff(j2k.bpp) > 0) and j2k.get("psnr")[0] == pytest.approx(32.0897400948)
    assert j2k.get("ms_ssim_db")[-1] == pytest.approx(-10 * math.log10(1 - 0.9915901000301043))
    elic = Curve.from_json(ELIC_MS_SSIM)
    assert elic.get("psnr") is None and elic.get("ms_ssim")[0] == pytest.approx(1 - 10**-1.1593)
    mbt = Curve.from_json(MBT2018)
    assert mbt.get("psnr").tolist() == MBT2018["results"]["psnr"]
    assert mbt.get("ms_ssim") is None
    with pytest.raises(LiclabError, match="x.json: not an RD result file"):
        Curve.from_json({"name": "x"}, "x.json")
    with pytest.raises(LiclabError, match=r"y.json: results\['psnr-rgb'\] is not a list"):
        Curve.from_json({"results": {"bpp": [1, 2], "psnr-rgb": [30]}}, "y.json")


def test_folders_load_result_files_only_and_twins_get_their_file_names(tmp_path):
    for stem in ("a_cpu", "a_cuda"):
        (tmp_path / f"{stem}.json").write_text(json.dumps(MBT2018))
    (tmp_path / "config.json").write_text(json.dumps({"lr": 1}))
    curves = load_curves([tmp_path])
    assert [c.name for c in curves] == ["official mbt2018 (a_cpu)", "official mbt2018 (a_cuda)"]


def test_a_curve_survives_its_file(tmp_path):
    curve = Curve(
        "ours", [0.5, 0.2], {"psnr": [30.0, 27.0], "ms_ssim": [0.97, 0.93]},
        {"est_bpp": [0.49, 0.19]}, ["lmbda=0.01", "lmbda=0.001"], images=["a", "b"],
    ).sorted()  # fmt: skip
    again = Curve.load(curve.save(tmp_path / "ours.json"))
    assert again.bpp.tolist() == [0.2, 0.5] and again.settings == ["lmbda=0.001", "lmbda=0.01"]
    assert again.get("psnr").tolist() == [27.0, 30.0]
    assert again.get("ms_ssim_db")[0] == pytest.approx(-10 * math.log10(1 - 0.93))
    assert again.extra["est_bpp"].tolist() == [0.19, 0.49] and again.images == ["a", "b"]


def _table(path, version5=True):
    rows = [
        (lm, img, 0.1 / lm**0.5 * (1 + i), 30 + 3 * np.log10(lm) + i)
        for lm in (1e-3, 4e-3)
        for i, img in enumerate(["kodim01", "kodim02", "kodim03"])
    ]
    if version5:  # Cool-chic 5's columns
        lines = ["lmbda\tseq_name\tn_pixels\tloss\tpsnr_db\trate_bpp"]
        lines += [f"{lm}\t{img}\t393216\t0\t{p}\t{r}" for lm, img, r, p in rows]
    else:  # Cool-chic 1's
        lines = ["seq\tlambda\trate_bpp\tpsnr_db"]
        lines += [f"{img}\t{lm}\t{r}\t{p}" for lm, img, r, p in rows]
    path.write_text("\n".join(lines) + "\n")
    return rows


@pytest.mark.parametrize("version5", [True, False])
def test_per_image_tables_average_over_the_chosen_images(tmp_path, version5):
    rows = _table(tmp_path / "coolchic.tsv", version5)
    every = Curve.load(tmp_path / "coolchic.tsv")
    assert every.settings == ["lmbda=0.004", "lmbda=0.001"]  # sorted by rate
    high = [r for r in rows if r[0] == 1e-3]
    assert every.bpp[1] == pytest.approx(np.mean([r[2] for r in high]))
    assert every.images == ["kodim01", "kodim02", "kodim03"]
    two = Curve.load(tmp_path / "coolchic.tsv", images=["kodim03.png", "kodim01"])
    assert two.get("psnr")[1] == pytest.approx((high[0][3] + high[2][3]) / 2)
    assert two.name == "coolchic (2 images)" and two.images == ["kodim01", "kodim03"]
    with pytest.raises(LiclabError, match="coolchic.tsv: no results for kodim09"):
        Curve.load(tmp_path / "coolchic.tsv", images=["kodim01", "kodim09"])
    (tmp_path / "other.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(LiclabError, match="other.tsv: not a per-image result table"):
        Curve.load(tmp_path / "other.tsv")
