"""Metrics on known inputs, and the one convention for each: per image, 8-bit, peak 255."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liclab.images import to_tensor
from liclab.metrics import (
    METRICS,
    bpp,
    ms_ssim,
    ms_ssim_batch,
    ms_ssim_db,
    mse_to_psnr,
    psnr,
    psnr_batch,
)


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 16  # MSE = 256 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 256))
    assert psnr(a, a) == math.inf
    assert mse_to_psnr(255.0**2 / 100) == pytest.approx(20.0)
    assert mse_to_psnr(torch.tensor(0.01), peak=1.0).item() == pytest.approx(20.0)


def test_tensor_metrics_measure_what_the_evaluator_measures():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 176, 192, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    x, x_hat = torch.cat([to_tensor(i) for i in a]), torch.cat([to_tensor(i) for i in b])
    x_hat = x_hat + 0.4 / 255  # rounds back to the same 8-bit values
    for i in range(2):
        assert psnr_batch(x_hat, x)[i].item() == pytest.approx(psnr(a[i], b[i]), abs=1e-4)
        assert ms_ssim_batch(x_hat, x)[i].item() == pytest.approx(ms_ssim(a[i], b[i]), abs=1e-5)


def test_ms_ssim_identity_db_and_its_minimum_side():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    assert ms_ssim(a, 255 - a) < 0.5
    assert ms_ssim(a[:160], a[:160]) is None  # five scales need 161 px
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert bpp(100, 10, 80) == 1.0


def test_every_metric_has_one_name_per_place():
    keys = [k for m in METRICS.values() for k in (m.key, *m.aliases)]
    assert len(keys) == len(set(keys)), "a result-file key names two metrics"
    assert all(name == m.name for name, m in METRICS.items())
