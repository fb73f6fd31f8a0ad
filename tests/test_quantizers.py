import torch

from liclab.quantizers import STE, Mixed, Noise, Round, round_offset, ste_round


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
