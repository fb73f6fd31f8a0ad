"""BD-rate on curves with known answers, result-file normalisation, plots and tables."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from liclab import LiclabError
from liclab.curve import Curve, load_curves
from liclab.rd import bd_quality, bd_rate, bd_table, find_curve, report

# From CompressAI's published Kodak files: jpeg2000.json lists its points by falling rate;
# paper-elic2022_ms-ssim.json has MS-SSIM in dB only; paper-mbt2018.json has PSNR only.
JPEG2000 = {
    "name": "JPEG2000",
    "description": "JPEG2000. ffmpeg version 4.2.2",
    "results": {
        "psnr-rgb": [39.792000990389106, 35.680719121855866, 33.4899612266554, 32.08974009483378],
        "ms-ssim-rgb": [0.9915901000301043, 0.9807158832748731, 0.970682812233766, 0.96090815713],
        "bpp": [2.3973227606879344, 1.198240492078993, 0.7982796563042536, 0.5988286336263021],
    },
}
ELIC_MS_SSIM = {
    "name": "elic2022",
    "description": "official results",
    "meta": {"source": "paper", "opt_metric": "ms-ssim-rgb"},
    "results": {
        "bpp": [0.1242, 0.197, 0.3342, 0.4916, 0.7045, 0.8574],
        "ms-ssim-db-rgb": [11.593, 13.258, 15.456, 17.272, 19.059, 20.116],
    },
}
MBT2018 = {
    "name": "official mbt2018",
    "description": "official results",
    "results": {
        "psnr": [26.804116, 28.880747, 30.927089, 33.028649, 34.998064, 37.053312, 39.120817],
        "bpp": [0.071997, 0.153354, 0.264381, 0.428511, 0.635404, 0.904279, 1.258828],
    },
}
RATE = np.array(MBT2018["results"]["bpp"])
PSNR = np.array(MBT2018["results"]["psnr"])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_on_curves_with_known_answers(method):
    assert bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(RATE, PSNR, 0.9 * RATE, PSNR, method) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(RATE, PSNR, 1.25 * RATE, PSNR, method) == pytest.approx(25.0, abs=1e-6)
    assert bd_quality(RATE, PSNR, RATE, PSNR + 1.0, method) == pytest.approx(1.0, abs=1e-6)
    assert bd_quality(RATE, PSNR, 0.9 * RATE, PSNR, method) > 0
    # Point order does not matter, and curves that do not overlap have no BD.
    assert bd_rate(RATE[::-1], PSNR[::-1], 0.9 * RATE, PSNR, method) == pytest.approx(-10.0)
    assert math.isnan(bd_rate(RATE, PSNR, RATE, PSNR + 20, method))


def test_pchip_and_cubic_differ_only_in_interpolation():
    # A curve with a kink: the cubic fit smooths it, PCHIP follows it.
    r = np.array([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    a = np.array([25.0, 28.0, 31.0, 34.0, 35.0, 36.0])
    b = a + np.array([0.0, 0.5, 1.0, 1.0, 0.5, 0.0])
    pchip, cubic = bd_rate(r, a, r, b, "pchip"), bd_rate(r, a, r, b, "cubic")
    assert pchip < 0 and cubic < 0 and abs(pchip - cubic) > 0.5
    with pytest.raises(LiclabError, match="needs >= 4 points"):
        bd_rate(r[:3], a[:3], r[:3], b[:3], "cubic")


def test_report_writes_plots_and_tables(tmp_path, capsys):
    runs = [Curve("ours", 0.9 * RATE, {"psnr": PSNR, "ms_ssim_db": PSNR / 2})]
    references = [
        Curve("hevc", RATE, {"psnr": PSNR, "ms_ssim_db": PSNR / 2}),
        Curve.from_json(MBT2018, "mbt.json"),
    ]
    out = report(runs, references, "HEVC", tmp_path, title="Kodak")
    names = sorted(p.name for p in out["files"])
    assert names == sorted(
        ["rd-psnr.png", "rd-psnr.svg", "rd-ms-ssim.png", "rd-ms-ssim.svg"]
        + ["bd-rate.md", "bd-rate.csv"]
    )
    rows = {r["curve"]: r for r in csv.DictReader((tmp_path / "bd-rate.csv").open())}
    assert float(rows["ours"]["BD-rate PSNR (%)"]) == pytest.approx(-10.0)
    assert float(rows["ours"]["BD-rate MS-SSIM (%)"]) == pytest.approx(-10.0)
    assert float(rows["hevc"]["BD-PSNR (dB)"]) == 0.0
    assert rows["official mbt2018"]["BD-rate MS-SSIM (%)"] == "nan"
    md = (tmp_path / "bd-rate.md").read_text()
    assert "| ours | 7 | -10.00 |" in md and "| n/a |" in md
    assert "-10.00" in capsys.readouterr().out
    with pytest.raises(LiclabError, match="baseline 'vtm': no curve"):
        find_curve(runs + references, "vtm")


def test_baseline_lookup_by_file_name_or_stem(tmp_path):
    for stem in ("a_cpu", "a_cuda"):
        (tmp_path / f"{stem}.json").write_text(json.dumps(MBT2018))
    curves = load_curves([tmp_path])
    assert find_curve(curves, "a_cuda") is curves[1]
    assert find_curve(curves, str(tmp_path / "a_cpu.json")) is curves[0]
    with pytest.raises(LiclabError, match="baseline 'official mbt2018': 2 curves"):
        find_curve([Curve.from_json(MBT2018), Curve.from_json(MBT2018)], "official mbt2018")


def test_bd_of_a_lower_is_better_metric_says_better_with_the_usual_signs(monkeypatch):
    from liclab import metrics

    monkeypatch.setitem(
        metrics.METRICS, "dist", metrics.Metric("dist", "dist", (), "Dist", "Dist", False)
    )
    dist = np.linspace(0.5, 0.1, len(RATE))  # falls as the rate rises
    anchor = Curve("a", RATE, {"dist": dist})
    better = Curve("b", 0.8 * RATE, {"dist": dist})  # the same distances for 20 % fewer bits
    (row,) = bd_table([better], anchor, metrics=["dist"])
    assert row["BD-rate Dist (%)"] == pytest.approx(-20.0, abs=1e-6)
    assert row["BD-Dist"] > 0  # positive: better, though the distance itself is smaller
