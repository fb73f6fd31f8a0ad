"""Kumaraswamy noise, Gaussian noise and C3's soft-round∘noise∘soft-round proxies."""

from __future__ import annotations

import pytest
import torch

from liclab.quantizers import GaussianNoise, KumaraswamyNoise, SoftRoundNoise, round_offset


def test_kumaraswamy_noise_with_a_one_is_uniform():
    torch.manual_seed(0)
    n = KumaraswamyNoise(a_start=1.0, a_end=1.0).sample(torch.zeros(200_000))
    assert -0.5 <= float(n.min()) and float(n.max()) <= 0.5
    assert float(n.var()) == pytest.approx(1 / 12, rel=0.02)


def test_kumaraswamy_noise_concentrates_at_zero_as_a_grows():
    torch.manual_seed(0)
    n = KumaraswamyNoise(a_start=2.0, a_end=2.0).sample(torch.zeros(200_000))
    assert -0.5 <= float(n.min()) and float(n.max()) <= 0.5
    counts = torch.histc(n, bins=10, min=-0.5, max=0.5)
    assert int(counts.argmax()) in (4, 5)  # the mode is at ½ − ½ = 0
    assert float(n.var()) < 1 / 12 * 0.7


def test_annealing_reaches_the_end_values_and_steps_the_noise():
    q = SoftRoundNoise(t_start=0.3, t_end=0.1, noise=KumaraswamyNoise(2.0, 1.0))
    q.on_train_step(0, 100)
    assert (q.t, q.noise.a) == (0.3, 2.0)
    q.on_train_step(50, 100)
    assert q.t == pytest.approx(0.2) and q.noise.a == pytest.approx(1.5)
    q.on_train_step(100, 100)
    assert q.t == pytest.approx(0.1) and q.noise.a == pytest.approx(1.0)
    g = GaussianNoise(0.25, 0.1, anneal_steps=10)
    g.on_train_step(20, 100)
    assert g.std == pytest.approx(0.1)


def test_soft_round_noise_without_noise_at_low_temperature_is_rounding():
    x = torch.linspace(-3, 3, 601)
    away = (x - x.floor() - 0.5).abs() > 0.1
    q = SoftRoundNoise(t_start=0.02, t_end=0.02, noise=GaussianNoise(0.0, 0.0)).train()
    y_rate, y_dec = q(x, None)
    assert torch.equal(y_rate, y_dec)
    assert torch.allclose(y_dec[away], torch.round(x)[away], atol=1e-4)


def test_soft_round_noise_passes_gradients_and_centres_on_the_offset():
    torch.manual_seed(0)
    x = torch.randn(1000, requires_grad=True)
    mu = torch.full((1000,), 0.5)
    q = SoftRoundNoise(noise=GaussianNoise(0.0, 0.0)).train()
    _, y = q(x, mu)
    y.sum().backward()
    assert (x.grad > 0).all()
    assert torch.allclose(
        (y - mu).detach(),
        SoftRoundNoise(noise=GaussianNoise(0.0, 0.0))(x - 0.5)[1].detach(),
        atol=1e-6,
    )


@pytest.mark.parametrize("q", [KumaraswamyNoise(), GaussianNoise(), SoftRoundNoise()])
def test_eval_mode_is_true_rounding(q):
    y = torch.randn(3, 4, 5) * 4
    mu = torch.randn_like(y)
    q.eval()
    assert all(torch.equal(t, round_offset(y, mu)) for t in q(y, mu))


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        KumaraswamyNoise(a_start=0.5)
    with pytest.raises(ValueError):
        SoftRoundNoise(t_end=0.0)
