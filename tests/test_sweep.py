"""The end-of-sweep report: curves per proxy, anchors, BD-rate table, train-vs-eval gap."""

from __future__ import annotations

import json

from PIL import Image

from liclab.sweep import main, report_sweep
from liclab.train import train

from conftest import compose, smooth_image, tiny_train_overrides


def test_sweep_report(image_folder, tmp_path):
    sweep = tmp_path / "multirun"
    for i, (q, lmbda) in enumerate(
        [("noise", 0.005), ("noise", 0.1), ("mixed", 0.005), ("mixed", 0.1)]
    ):
        overrides = tiny_train_overrides(image_folder, sweep / f"{i}_run", steps=30)
        train(compose(overrides + [f"quantizer={q}", f"lmbda={lmbda}", "module.lr=3e-3"]))
    (sweep / "9_failed").mkdir()
    (sweep / "9_failed" / "config.yaml").write_text("{}")
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    for i in range(2):
        Image.fromarray(smooth_image(176, 192, seed=40 + i)).save(evaluation / f"{i}.png")

    result = report_sweep(sweep, str(evaluation), ["jpeg"], baseline="Noise")
    out = sweep / "report"
    rows = {r["curve"]: r for r in result["rows"]}
    assert set(rows) == {"jpeg", "ScaleHyperprior-Noise-MSE", "ScaleHyperprior-Mixed-MSE"}
    assert rows["ScaleHyperprior-Noise-MSE"]["BD-rate PSNR (%)"] == 0.0  # the baseline
    assert rows["ScaleHyperprior-Mixed-MSE"]["points"] == 2
    files = (
        "rd-psnr.png",
        "rd-psnr.svg",
        "bd-rate.md",
        "bd-rate.csv",
        "gap.md",
        "anchors/jpeg.json",
    )
    for name in files:
        assert (out / name).exists(), name
    gap = (out / "gap.md").read_text().splitlines()
    assert len(gap) == 2 + 4  # header + one row per run
    assert all("nan" not in line for line in gap)

    # Drawn again from the command line (an interrupted report loses nothing): same rows.
    (out / "rows.json").unlink(missing_ok=True)
    argv = [str(sweep), "--data", str(evaluation), "--anchors", "jpeg"]
    assert main(argv + ["--cache-dir", str(tmp_path / "cache")]) == 0
    again = json.loads((out / "rows.json").read_text())
    assert [r["curve"] for r in again] == [r["curve"] for r in result["rows"]]
    assert again[2]["BD-rate PSNR (%)"] == result["rows"][2]["BD-rate PSNR (%)"]
    assert main([str(tmp_path / "nothing"), "--data", str(evaluation)]) == 2
