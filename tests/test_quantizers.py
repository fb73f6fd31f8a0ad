import math

import pytest
import torch

from liclab.quantizers import (
    STE,
    Mixed,
    Noise,
    NoisySoftRound,
    Round,
    SoftRound,
    Universal,
    dither,
    round_offset,
    soft_round,
    ste_round,
)


def test_eval_mode_is_true_rounding_for_every_proxy():
    y = torch.randn(2, 4, 5, 5) * 3
    mu = torch.randn_like(y)
    for q in (Noise(), STE(), Mixed(), Round()):
        q.eval()
        y_rate, y_dec = q(y, mu)
        assert torch.equal(y_rate, round_offset(y, mu))
        assert torch.equal(y_dec, round_offset(y, mu))


def test_noise_is_uniform_within_half_and_used_for_both_terms():
    torch.manual_seed(0)
    y = torch.zeros(100_000)
    y_rate, y_dec = Noise().train()(y)
    assert torch.equal(y_rate, y_dec)
    assert y_rate.abs().max() <= 0.5
    assert abs(float(y_rate.mean())) < 0.01
    assert abs(float(y_rate.var()) - 1 / 12) < 0.002


def test_ste_rounds_around_the_mean_with_identity_gradient():
    y = torch.tensor([0.2, 1.7, -2.4], requires_grad=True)
    mu = torch.tensor([0.5, 0.5, 0.5])
    y_rate, y_dec = STE().train()(y, mu)
    assert torch.equal(y_dec.detach(), torch.tensor([0.5, 1.5, -2.5]))
    assert torch.equal(y_rate, y_dec)
    y_dec.sum().backward()
    assert torch.equal(y.grad, torch.ones(3))


def test_ste_with_a_backward_temperature_rounds_and_takes_soft_rounds_gradient():
    # Cool-chic's final-phase "ste": rounding forward, d s_{1/T}/dx backward; at T = 1e-4 the
    # gradient vanishes but within ~T of a half-integer, at T = 1 it is s_1's slope
    y = torch.tensor([0.2, 1.7, -2.4, 0.49999], requires_grad=True)
    y_rate, y_dec = STE(t_backward=1e-4).train()(y)
    assert torch.equal(y_dec.detach(), torch.tensor([0.0, 2.0, -2.0, 0.0]))
    assert torch.equal(y_rate, y_dec)
    y_dec.sum().backward()
    assert torch.equal(y.grad[:3], torch.zeros(3)) and y.grad[3] > 1000
    x = torch.tensor([0.3, 1.0], requires_grad=True)
    STE(t_backward=1.0).train()(x)[1].sum().backward()
    r = torch.tensor([-0.2, -0.5])  # x − ⌊x⌋ − ½
    slope = 0.5 / math.tanh(0.5) / torch.cosh(r) ** 2
    assert torch.allclose(x.grad, slope)
    with pytest.raises(ValueError, match="temperature"):
        STE(t_backward=0.0)


def test_mixed_uses_noise_for_rate_and_rounding_for_decoder():
    torch.manual_seed(0)
    y = torch.randn(1000, requires_grad=True)
    y_rate, y_dec = Mixed().train()(y)
    assert torch.equal(y_dec.detach(), torch.round(y.detach()))
    assert not torch.equal(y_rate.detach(), y_dec.detach())
    assert (y_rate - y).abs().max() <= 0.5
    (y_rate.sum() + y_dec.sum()).backward()
    assert torch.equal(y.grad, torch.full_like(y, 2.0))


def test_offset_gradient_is_stopped():
    mu = torch.tensor([0.3], requires_grad=True)
    y = torch.tensor([1.0], requires_grad=True)
    _, y_dec = STE().train()(y, mu)
    y_dec.sum().backward()
    assert mu.grad is None


def test_ste_round_without_offset():
    assert torch.equal(ste_round(torch.tensor([0.49, 0.51, -1.5])), torch.tensor([0.0, 1.0, -2.0]))


def test_soft_round_limits():
    x = torch.linspace(-3, 3, 601)
    assert torch.allclose(soft_round(x, 1e-4), x)
    assert torch.allclose(soft_round(x, 0.05), x, atol=1e-3)
    off_half = (x - x.floor() - 0.5).abs() > 0.1  # away from the .5 discontinuities
    assert torch.allclose(soft_round(x, 60.0)[off_half], torch.round(x)[off_half], atol=1e-4)
    assert torch.equal(
        soft_round(torch.tensor([0.0, 1.0, -2.0]), 5.0), torch.tensor([0.0, 1.0, -2.0])
    )


def test_soft_round_alpha_schedule_and_rate_term():
    q = SoftRound(alpha_start=1.0, alpha_end=9.0, anneal_steps=100).train()
    q.on_train_step(50, max_steps=1000)
    assert q.alpha == pytest.approx(5.0)
    q.on_train_step(1000, max_steps=1000)
    assert q.alpha == pytest.approx(9.0)
    whole_run = SoftRound(alpha_start=1.0, alpha_end=9.0)
    whole_run.on_train_step(250, max_steps=1000)
    assert whole_run.alpha == pytest.approx(3.0)
    y = torch.randn(1000)
    y_rate, y_dec = q(y)
    assert torch.allclose(y_dec, soft_round(y, 9.0))
    assert (y_rate - y).abs().max() <= 0.5 and not torch.equal(y_rate, y_dec)
    torch.manual_seed(0)
    soft = SoftRound(alpha_start=9.0, alpha_end=9.0, rate=NoisySoftRound()).train()
    y_rate, y_dec = soft(y)
    assert (y_rate - y_dec).abs().max() <= 0.5 and (y_rate - y).abs().max() > 0.5


def test_universal_dither_is_shared_and_error_is_uniform():
    q = Universal(seed=3).eval()
    y = torch.randn(1, 4, 64, 64) * 5
    mu = torch.randn_like(y)
    c1, c2 = q.coding_offset(y.shape, mu), Universal(seed=3).coding_offset(y.shape, mu.clone())
    assert torch.equal(c1, c2), "encoder and decoder derive the same dither"
    assert not torch.equal(c1, Universal(seed=4).coding_offset(y.shape, mu))
    u = c1 - mu
    assert u.abs().max() <= 0.5 and u.std() > 0.25
    _, y_hat = q(y, mu)
    err = y_hat - y
    assert err.abs().max() <= 0.5 + 1e-6
    assert abs(float(err.mean())) < 0.02 and abs(float(err.var()) - 1 / 12) < 0.005
    q.train()
    y.requires_grad_(True)
    y_rate, y_dec = q(y, mu)
    assert torch.equal(y_rate, y_dec)
    y_dec.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))


def splitmix64_reference(seed: int, n: int) -> list[int]:
    """SplitMix64 as published (Steele, Lea, Flood 2014; Vigna's C code), in Python ints:
    the first ``n`` outputs of the generator seeded with ``seed``."""
    mask, out, state = (1 << 64) - 1, [], seed
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


def test_universal_dither_is_the_documented_splitmix64_stream():
    """The dither is part of the .lic format: it must not depend on a library's generator
    (nor on CPython's hash), so it is recomputed here from its definition."""
    # SplitMix64's first output for seed 0, as in Vigna's reference implementation.
    assert splitmix64_reference(0, 1) == [0xE220A8397B1DCDAF]
    seed, shape = 7, (3, 4, 5)
    key = splitmix64_reference(seed - 0x9E3779B97F4A7C15, 1)[0]  # splitmix64(seed) itself
    for d in shape:
        key = splitmix64_reference((key ^ d) - 0x9E3779B97F4A7C15, 1)[0]
    values = splitmix64_reference(key, 60)
    expected = torch.tensor([(v >> 40) / 2**24 - 0.5 for v in values]).reshape(shape)
    assert torch.equal(dither(seed, shape), expected)
    assert torch.equal(Universal(seed).coding_offset(torch.Size((2, *shape)), None)[1], expected)
    assert not torch.equal(dither(seed, (3, 5, 4)).flatten(), expected.flatten())
