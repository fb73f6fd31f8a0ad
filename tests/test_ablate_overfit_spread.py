"""scripts/ablate_overfit.py's seed-by-seed table: BD-rates against noise, and a collapsed
proxy (every λ at one point) reported as n/a instead of ending the run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import load_script


class _Curve:
    def __init__(self, bpp, psnr):
        self.bpp, self._psnr = np.asarray(bpp, float), np.asarray(psnr, float)

    def get(self, metric):
        assert metric == "psnr"
        return self._psnr


def test_spread_table_reports_a_collapsed_proxy_as_not_available():
    bpp, psnr = [0.2, 0.5, 1.0], [28.0, 31.0, 34.0]
    curves = {
        ("noise", 0): _Curve(bpp, psnr),
        ("noise", 1): _Curve(bpp, [p + 0.1 for p in psnr]),
        ("ste", 0): _Curve([0.01] * 3, [7.6] * 3),  # collapsed: one point at every λ
        ("ste", 1): _Curve([0.01] * 3, [7.6] * 3),
        ("mixed", 0): _Curve([b / 2 for b in bpp], psnr),  # half the rate everywhere
        ("mixed", 1): _Curve(bpp, psnr),
    }
    rows = load_script("ablate_overfit").spread_table(
        curves, ["noise", "ste", "mixed"], [0, 1], "pchip"
    )
    by = {r["proxy"]: r for r in rows}
    assert by["noise"]["mean (%)"] == pytest.approx(0.0, abs=1e-9)
    assert all(math.isnan(by["ste"][k]) for k in ("seed 0 (%)", "mean (%)", "spread (%)"))
    assert by["mixed"]["seed 0 (%)"] == pytest.approx(-50.0, abs=1e-6)
    assert by["mixed"]["seed 1 (%)"] > 0  # seed 1's noise is 0.1 dB better
    assert by["mixed"]["spread (%)"] == pytest.approx(
        by["mixed"]["seed 1 (%)"] - by["mixed"]["seed 0 (%)"]
    )
    assert by["noise against noise seed 0"]["seed 0 (%)"] == pytest.approx(0.0, abs=1e-9)
