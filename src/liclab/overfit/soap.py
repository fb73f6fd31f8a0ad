"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024, "SOAP:
Improving and Stabilizing Shampoo using Adam", arXiv:2409.11321). Cool-chic 5.0 trains its
networks with it (its latents with Adam), which is why its fits reach a lower loss than
Adam's in the same number of iterations (results/overfit-kodak/README.md).

For a parameter W of k dimensions, each dimension i of size ≤ ``max_precond_dim`` keeps a
running second moment of the gradient G over every other dimension (for a matrix, the two
Shampoo factors L = E[G Gᵀ] and R = E[Gᵀ G]) and an orthogonal basis Q_i of its
eigenvectors. Adam's two moments are kept for G rotated into that basis
(G' = G ×₁ Q₁ᵀ ×₂ Q₂ᵀ …); its normalised step m / (√v + ε) is rotated back before it is
applied. The bases are refreshed every ``precondition_every`` steps by one power iteration
and a QR decomposition, Adam's second moment following its coordinates' new order.

Details as Cool-chic 5.0's use of it: a parameter's first step only estimates its bases
(it does not move), one-dimensional parameters (biases) and dimensions larger than
``max_precond_dim`` stay in the identity basis, so that ``max_precond_dim=0`` is Adam (with
that first step), the preconditioner's running average uses β₂, and the weight decay is
decoupled (AdamW's), applied after the step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


class SOAP(torch.optim.Optimizer):
    """Adam in Shampoo's eigenbasis; see the module's docstring.

    Args:
        params: parameters or parameter groups (each group may set any option below).
        lr: the learning rate.
        betas: Adam's (β₁, β₂); β₂ also averages the preconditioner's factors.
        eps: Adam's ε.
        weight_decay: decoupled weight decay (the parameter shrinks by lr·weight_decay).
        precondition_every: steps between refreshes of the eigenbases.
        max_precond_dim: dimensions larger than this keep the identity basis (0: Adam).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.95, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        precondition_every: int = 10,
        max_precond_dim: int = 256,
    ):
        if not lr >= 0 or not eps >= 0 or not weight_decay >= 0:
            raise ValueError(
                f"SOAP: lr, eps and weight_decay must be ≥ 0 ({lr}, {eps}, {weight_decay})"
            )
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"SOAP's betas must be two numbers in [0, 1), not {betas}")
        if precondition_every < 1:
            raise ValueError(f"SOAP's precondition_every must be ≥ 1, not {precondition_every}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            precondition_every=precondition_every,
            max_precond_dim=max_precond_dim,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:  # the first step only estimates the bases
                    self._start(state, g, group["max_precond_dim"], beta2)
                    continue
                state["step"] += 1
                t = state["step"]
                bases = state["bases"]
                m, v = state["m"], state["v"]
                g_rot = _rotate(g, bases)
                m.mul_(beta1).add_(g_rot, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g_rot, g_rot, value=1 - beta2)
                size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                p.add_(_rotate(m / (v.sqrt() + group["eps"]), bases, back=True), alpha=-size)
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                if any(f is not None for f in state["factors"]):
                    self._precondition(state, g, beta2, t % group["precondition_every"] == 0)
        return loss

    @staticmethod
    def _start(state: dict, g: Tensor, max_dim: int, beta2: float) -> None:
        state["step"] = 0
        state["m"] = torch.zeros_like(g)
        state["v"] = torch.zeros_like(g)
        dims = g.shape if g.dim() > 1 else ()
        state["factors"] = [
            torch.zeros(n, n, dtype=g.dtype, device=g.device) if n <= max_dim else None
            for n in dims
        ] or [None]
        _accumulate(state["factors"], g, beta2)
        state["bases"] = [None if f is None else _eigenbasis(f) for f in state["factors"]]

    @staticmethod
    def _precondition(state: dict, g: Tensor, beta2: float, refresh: bool) -> None:
        """Average the factors with this gradient; every ``precondition_every`` steps, move
        the bases one power iteration towards the factors' eigenvectors (m follows them)."""
        _accumulate(state["factors"], g, beta2)
        if not refresh:
            return
        m = _rotate(state["m"], state["bases"], back=True)
        v = state["v"]
        bases = []
        for i, (f, q) in enumerate(zip(state["factors"], state["bases"], strict=True)):
            if f is None:
                bases.append(None)
                continue
            # order the basis by its estimated eigenvalues (largest first); v follows
            order = torch.argsort(torch.diagonal(q.T @ f @ q), descending=True)
            v = v.index_select(i, order)
            bases.append(torch.linalg.qr(f @ q[:, order])[0])
        state["v"], state["bases"] = v, bases
        state["m"] = _rotate(m, bases)


def _accumulate(factors: list[Tensor | None], g: Tensor, beta: float) -> None:
    """factor_i ← β·factor_i + (1 − β)·(G contracted with itself over every dim but i)."""
    for i, f in enumerate(factors):
        if f is None:
            continue
        others = [d for d in range(g.dim()) if d != i]
        f.mul_(beta).add_(torch.tensordot(g, g, dims=(others, others)), alpha=1 - beta)


def _eigenbasis(f: Tensor) -> Tensor:
    """The eigenvectors of a symmetric factor, largest eigenvalue first."""
    eye = torch.eye(f.shape[0], dtype=f.dtype, device=f.device)
    try:
        q = torch.linalg.eigh(f + 1e-30 * eye)[1]
    except RuntimeError:  # did not converge in float32
        q = torch.linalg.eigh(f.double() + 1e-30 * eye.double())[1].to(f.dtype)
    return q.flip(1)


def _rotate(x: Tensor, bases: list[Tensor | None], back: bool = False) -> Tensor:
    """x with each dimension i multiplied by bases[i]ᵀ (into the eigenbasis), or by bases[i]
    (``back``: out of it); a None basis leaves its dimension as it is."""
    for i, q in enumerate(bases):
        if q is not None:
            x = torch.movedim(torch.tensordot(x, q, dims=([i], [1 if back else 0])), -1, i)
    return x
