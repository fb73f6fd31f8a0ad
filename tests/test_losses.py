"""Rate-distortion objectives on known inputs: bits from likelihoods, λ·D."""

from __future__ import annotations

import pytest
import torch

from liclab.losses import MSE, bpp_terms


def test_bpp_terms_count_bits():
    lik = {"y": torch.full((1, 2, 4, 4), 0.5), "z": torch.full((1, 1, 2, 2), 0.25)}
    terms = bpp_terms(lik, torch.zeros(1, 3, 4, 4))  # 16 pixels
    assert terms["bpp_y"].item() == pytest.approx(2.0)  # 32 bits / 16 px
    assert terms["bpp_z"].item() == pytest.approx(0.5)  # 8 bits / 16 px
    assert terms["bpp"].item() == pytest.approx(2.5)


def test_mse_loss_is_rate_plus_lambda_distortion():
    x = torch.zeros(1, 3, 4, 4)
    out = {"x_hat": torch.full_like(x, 0.1), "likelihoods": {"y": torch.full((1, 1, 2, 2), 0.5)}}
    terms = MSE(lmbda=0.01)(out, x)
    assert terms["loss"].item() == pytest.approx(4 / 16 + 0.01 * 255**2 * 0.01)  # 4 bits over 16 px
