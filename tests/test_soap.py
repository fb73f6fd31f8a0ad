"""SOAP (liclab.overfit.soap): Adam without preconditioners, equivariance under rotations
of a parameter's rows and columns (what Shampoo's eigenbasis buys, Adam lacks), and its use
by an overfitted codec's phases."""

import math

import pytest
import torch

from liclab.overfit.soap import SOAP


def _gradients(n: int, shape, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(n)]


def test_without_preconditioners_soap_is_adam_one_step_later():
    """max_precond_dim=0 (Cool-chic's latents): the first gradient only starts the state,
    the rest take Adam's steps, weight decay decoupled as AdamW's."""
    grads = _gradients(8, (4, 5))
    start = torch.randn(4, 5, dtype=torch.float64)
    p = start.clone().requires_grad_()
    q = start.clone().requires_grad_()
    soap = SOAP([p], lr=0.1, betas=(0.9, 0.99), eps=0.0, weight_decay=0.01, max_precond_dim=0)
    adam = torch.optim.AdamW([q], lr=0.1, betas=(0.9, 0.99), eps=0.0, weight_decay=0.01)
    p.grad = grads[0]
    soap.step()
    assert torch.equal(p.detach(), start)  # the first step does not move
    for g in grads[1:]:
        p.grad, q.grad = g.clone(), g.clone()
        soap.step()
        adam.step()
    # AdamW decays before its step, SOAP after: the same to first order in lr·decay
    assert torch.allclose(p, q, rtol=0, atol=2e-3)
    soap_nodecay = SOAP([r := start.clone().requires_grad_()], lr=0.1, betas=(0.9, 0.99), eps=0.0,
                        max_precond_dim=0)  # fmt: skip
    adam_nodecay = torch.optim.Adam(
        [s := start.clone().requires_grad_()], lr=0.1, betas=(0.9, 0.99), eps=0.0
    )
    r.grad = grads[0]
    soap_nodecay.step()
    for g in grads[1:]:
        r.grad, s.grad = g.clone(), g.clone()
        soap_nodecay.step()
        adam_nodecay.step()
    assert torch.allclose(r, s, rtol=1e-12, atol=1e-12)


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]


def _trajectory(make, w0, x, y, u, v, steps=40):
    """Minimise ½‖X Uᵀ W' Vᵀ − Y‖² over W' = U W V from W'₀ = U W₀ V; returns Uᵀ W' Vᵀ."""
    w = (u @ w0 @ v).clone().requires_grad_()
    opt = make([w])
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((x @ (u.T @ w @ v.T) - y) ** 2).sum()
        loss.backward()
        opt.step()
    return (u.T @ w @ v.T).detach()


def test_soap_is_equivariant_under_rotations_of_rows_and_columns_and_adam_is_not():
    """With an eigenbasis on both sides, SOAP's trajectory for U W V is U times its trajectory
    for W times V (its bases rotate with the problem); Adam's per-coordinate scaling is not,
    on the same least-squares problem. (ε well above the rounding noise of the rotated
    gradient's near-zero coordinates, which Adam's normalisation would otherwise amplify.)"""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64) * torch.logspace(
        0, 1, 6, dtype=torch.float64
    )
    y = torch.randn(20, 5, generator=g, dtype=torch.float64)
    w0 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    eye6, eye5 = torch.eye(6, dtype=torch.float64), torch.eye(5, dtype=torch.float64)
    u, v = _orthogonal(6, 2), _orthogonal(5, 3)

    def soap(ps):
        return SOAP(
            ps, lr=0.05, betas=(0.95, 0.95), eps=1e-3, weight_decay=0.01, precondition_every=3
        )

    def adam(ps):
        return torch.optim.Adam(ps, lr=0.05)

    plain, rotated = _trajectory(soap, w0, x, y, eye6, eye5), _trajectory(soap, w0, x, y, u, v)
    assert not torch.allclose(plain, w0, atol=0.1)  # it moved
    assert torch.allclose(plain, rotated, rtol=0, atol=1e-8)
    a_plain, a_rotated = _trajectory(adam, w0, x, y, eye6, eye5), _trajectory(adam, w0, x, y, u, v)
    assert (a_plain - a_rotated).abs().max() > 1e-2


def test_soap_preconditions_only_small_dimensions_of_tensors_of_two_or_more():
    """A bias keeps Adam's coordinates; a (48, 7, 1, 1) convolution gets four bases; a
    dimension above max_precond_dim keeps the identity. The bases stay orthogonal."""
    bias = torch.zeros(5, requires_grad=True)
    conv = torch.zeros(48, 7, 1, 1, requires_grad=True)
    wide = torch.zeros(300, 4, requires_grad=True)
    opt = SOAP([bias, conv, wide], lr=1e-2, precondition_every=2)
    for g in _gradients(5, (1,), seed=4):
        for p in (bias, conv, wide):
            p.grad = torch.randn(p.shape) * g.float()
        opt.step()
    assert opt.state[bias]["bases"] == [None]
    assert [b.shape for b in opt.state[conv]["bases"]] == [(48, 48), (7, 7), (1, 1), (1, 1)]
    assert opt.state[wide]["bases"][0] is None and opt.state[wide]["bases"][1].shape == (4, 4)
    for b in opt.state[conv]["bases"]:
        assert torch.allclose(b.T @ b, torch.eye(b.shape[0]), atol=1e-5)
    assert opt.state[conv]["step"] == 4  # the first call only started it


@pytest.mark.parametrize(
    "kwargs, reason",
    [({"betas": (0.9, 1.0)}, "betas"), ({"lr": -1.0}, "≥ 0"), ({"precondition_every": 0}, "≥ 1")],
)
def test_soap_refuses_bad_options(kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        SOAP([torch.zeros(2, requires_grad=True)], **kwargs)


def test_soap_lowers_an_ill_conditioned_quadratic_faster_than_adam():
    """The reason Cool-chic 5 uses it: on a least-squares problem with correlated inputs
    SOAP at Adam's settings ends lower than Adam after the same steps."""
    g = torch.Generator().manual_seed(5)
    mix = torch.randn(8, 8, generator=g, dtype=torch.float64)
    x = torch.randn(64, 8, generator=g, dtype=torch.float64) @ (
        mix * torch.logspace(0, 1.5, 8, dtype=torch.float64)
    )
    y = torch.randn(64, 6, generator=g, dtype=torch.float64)
    w0 = torch.zeros(8, 6, dtype=torch.float64)
    eye8, eye6 = torch.eye(8, dtype=torch.float64), torch.eye(6, dtype=torch.float64)

    def loss(w):
        return 0.5 * float(((x @ w - y) ** 2).sum())

    best = loss(torch.linalg.lstsq(x, y).solution)
    soap = _trajectory(lambda ps: SOAP(ps, lr=0.02, betas=(0.9, 0.99)), w0, x, y, eye8, eye6, 200)
    adam = _trajectory(
        lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.9, 0.99)), w0, x, y, eye8, eye6, 200
    )
    assert loss(soap) - best < 0.5 * (loss(adam) - best)
    assert math.isfinite(loss(soap))
