"""The networks of an overfitted codec as integers: step sizes by rate-distortion search, coding.

Each module's weights and biases form a *group* (Cool-chic's convention: one step per module
for the weights, one for the biases). A group with step 2^−e sends ``q = round(w·2^e)``.
The integers are coded with a zero-mean Laplace table of :mod:`liclab.overfit.laplace`
(scale index S) after dropping ``r`` low bits, which are sent raw (a scale larger than the
tables' is then coded nearly as well): ``u = ⌊q / 2^r⌋`` under Laplace(μ = −½ if r else 0),
then ``q − u·2^r`` in r uniform bits. (e, S, r) of each group are the parameters' header.

The step search (:func:`search`) is Cool-chic's rate-distortion criterion, MSE + λ·(bits of
the latents + bits of the networks) / pixels, minimised group by group over powers of two:
from a step finer than the best usually is towards coarser ones, until two in a row do worse
than the best. It exploits what each group changes: the ARM only the latents' rate (an ARM
pass over the latents), upsampling and synthesis only the distortion (one decode): 5–7
evaluations per group, seconds for a Kodak image. Cool-chic 5 evaluates a full forward pass
for every (weight, bias) step pair of every module; on this machine that took 17 minutes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from liclab.overfit import laplace
from liclab.overfit.arm import bits as latent_bits
from liclab.overfit.arm import laplace_likelihood

EXPONENTS = {
    ("arm", "weight"): range(0, 13),
    ("arm", "bias"): range(0, 17),
    ("upsampling", "weight"): range(0, 17),
    ("synthesis", "weight"): range(0, 17),
    ("synthesis", "bias"): range(0, 25),
}
"""Candidate exponents e (step 2^−e) per (module, kind); the exact decoder's 53-bit bounds
(:mod:`liclab.overfit.exact`) hold over these ranges for latents up to ±2^9."""
MAX_RAW_BITS = 12
PATIENCE = 2  # candidates worse than the best before the search moves on


@dataclass
class Group:
    """One module's weights or biases.

    Args:
        module: "arm", "upsampling" or "synthesis" (a key of ``CoolChic.networks()``).
        kind: "weight" or "bias".
        names: the parameters' names in the module (``named_parameters`` order).
        shapes: their shapes.
        exponent: e, the step 2^−e.
        ints: the integers sent, all parameters flattened and concatenated (int64).
        scale: S, the coding table's scale index.
        raw: r, the low bits sent raw.
    """

    module: str
    kind: str
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    exponent: int = 0
    ints: np.ndarray | None = None
    scale: int = 0
    raw: int = 0

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def values(self) -> dict[str, np.ndarray]:
        """The quantised parameters by name, float64 (exact multiples of 2^−e)."""
        flat = self.ints.astype(np.float64) * 2.0**-self.exponent
        sizes = np.cumsum([0] + [math.prod(s) for s in self.shapes])
        return {
            n: flat[a:b].reshape(s)
            for n, s, a, b in zip(self.names, self.shapes, sizes[:-1], sizes[1:], strict=True)
        }

    def quantize(self, module: torch.nn.Module, exponent: int) -> None:
        """Set ``ints`` from the module's float parameters at step 2^−exponent, and the coding
        parameters that minimise their code length."""
        params = dict(module.named_parameters())
        flat = torch.cat([params[n].detach().double().reshape(-1) for n in self.names])
        self.exponent = exponent
        self.ints = torch.round(flat * 2.0**exponent).long().numpy()
        self.scale, self.raw, _ = coding(self.ints)


def groups(model) -> list[Group]:
    """The groups of ``model.networks()`` in the bitstream's order: modules as listed, the
    weights (every parameter not named ``*bias``) before the biases; empty groups left out."""
    out = []
    for module, net in model.networks().items():
        named = list(net.named_parameters())
        for kind in ("weight", "bias"):
            chosen = [(n, p) for n, p in named if n.endswith("bias") == (kind == "bias")]
            if chosen:
                names, shapes = zip(*[(n, tuple(p.shape)) for n, p in chosen], strict=True)
                out.append(Group(module, kind, names, shapes))
    return out


def load(model, groups_: list[Group]) -> None:
    """Copy the groups' quantised values into ``model``'s networks (float32: exact for
    integers below 2^24)."""
    nets = model.networks()
    with torch.no_grad():
        for g in groups_:
            params = dict(nets[g.module].named_parameters())
            for name, value in g.values().items():
                params[name].copy_(torch.from_numpy(value))


def _split(ints: np.ndarray, raw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, mq, low): the Laplace-coded high part, its mean in 1/32 (−½ when r > 0: ⌊q/2^r⌋
    is centred there) and the raw low bits."""
    u = ints >> raw
    return u, _mean(len(ints), raw), ints - (u << raw)


def _mean(n: int, raw: int) -> np.ndarray:
    """``mq`` (:func:`liclab.overfit.laplace.snap`) of μ = −½ or 0."""
    mq = laplace.MU_OFFSET - (laplace.MU_STEPS // 2 if raw else 0)
    return np.full(n, mq, dtype=np.int64)


def coding(ints: np.ndarray) -> tuple[int, int, float]:
    """(S, r, bits): coding parameters of a group near the least code length: r the fewest
    raw bits that bring the mean |q| / 2^r below 64 (or one more), S around the maximum
    likelihood scale of the rest."""
    best = (0, 0, math.inf)
    spread = float(np.abs(ints).mean()) if len(ints) else 0.0
    first = max(0, math.ceil(math.log2(max(spread, 1.0) / 64)))
    for raw in range(first, min(first + 1, MAX_RAW_BITS) + 1):
        u, mq, _ = _split(ints, raw)
        b = max(float(np.abs(u + (0.5 if raw else 0.0)).mean()), 1e-3)
        guess = round(math.log(b) * laplace.SCALE_STEPS) + laplace.SCALE_ORIGIN
        for s in range(max(guess - 2, 0), min(guess + 3, laplace.NUM_SCALES)):
            bits = laplace.bits(u, mq, np.full(len(u), s)) + raw * len(u)
            if bits < best[2]:
                best = (s, raw, bits)
    return best


def bits(group: Group) -> float:
    """The ideal code length of a quantised group (bits)."""
    u, mq, _ = _split(group.ints, group.raw)
    return laplace.bits(u, mq, np.full(len(u), group.scale)) + group.raw * len(u)


def encode(groups_: list[Group]) -> bytes:
    """One range-coded string of the groups' integers (one module's groups, in order)."""
    coder = laplace.new_encoder()
    for g in groups_:
        u, mq, low = _split(g.ints, g.raw)
        laplace.encode(coder, u, mq, np.full(len(u), g.scale))
        if g.raw:
            coder.encode(low.astype(np.int32), laplace.uniform(1 << g.raw))
    return laplace.finish(coder)


def decode(data: bytes, groups_: list[Group]) -> None:
    """Fill the groups' ``ints`` from :func:`encode`'s string (their header fields set)."""
    coder = laplace.new_decoder(data)
    for g in groups_:
        n = g.size
        u = laplace.decode(coder, _mean(n, g.raw), np.full(n, g.scale))
        low = coder.decode(laplace.uniform(1 << g.raw), n).astype(np.int64) if g.raw else 0
        g.ints = (u << g.raw) + low


def search(model, x: Tensor, lmbda: float, y_hat: list[Tensor]) -> tuple[list[Group], float]:
    """Quantise ``model``'s networks (in place, eval mode) with the steps that minimise
    MSE + λ·bpp, group by group; returns the groups and the seconds it took."""
    start = time.perf_counter()
    pixels = x.shape[-2] * x.shape[-1]
    nets = model.networks()
    chosen = groups(model)
    with torch.no_grad():
        floats = {
            g.module: {n: p.clone() for n, p in nets[g.module].named_parameters()} for g in chosen
        }
        for g in chosen:
            term = (
                _rate_term(model, y_hat, lmbda, pixels)
                if g.module == "arm"
                else (_distortion_term(model, y_hat, x))
            )

            def loss(e: int, g=g, term=term) -> float:
                _restore(nets[g.module], floats[g.module], g.names)
                g.quantize(nets[g.module], e)
                load(model, [g])
                return term() + lmbda * bits(g) / pixels

            best = _minimise(loss, EXPONENTS[(g.module, g.kind)], _guess(nets[g.module], g))
            _restore(nets[g.module], floats[g.module], g.names)
            g.quantize(nets[g.module], best)
            load(model, [g])
    return chosen, time.perf_counter() - start


def _guess(module, group: Group) -> int:
    """A step on the fine side of the best (usually by 1–3 powers of two): 1/64 of the
    parameters' RMS."""
    named = dict(module.named_parameters())
    flat = torch.cat([named[n].detach().reshape(-1) for n in group.names])
    rms = max(float(flat.pow(2).mean().sqrt()), 2.0**-20)
    return math.ceil(math.log2(64 / rms))


def _minimise(loss, candidates: range, start: int) -> int:
    """The candidate of least ``loss``, searched from ``start`` towards coarser steps until
    PATIENCE candidates in a row do worse than the best (the loss is smooth on the fine side
    of its minimum and erratic far on the coarse side), then finer if the best was the
    start."""
    start = min(max(start, candidates.start), candidates.stop - 1)
    values: dict[int, float] = {}

    def walk(e: int, step: int) -> None:
        worse = 0
        while e in candidates and worse < PATIENCE:
            values[e] = loss(e)
            worse = 0 if values[e] <= min(values.values()) else worse + 1
            e += step

    walk(start, -1)
    if min(values, key=values.get) == start:
        walk(start + 1, 1)
    return min(values, key=values.get)


def _restore(module, floats: dict[str, Tensor], names) -> None:
    params = dict(module.named_parameters())
    for n in names:
        params[n].copy_(floats[n])


def _rate_term(model, y_hat, lmbda, pixels):
    def term() -> float:
        params = model.entropy_parameters(y_hat)
        total = sum(
            latent_bits(laplace_likelihood(y, mu, s))
            for y, (mu, s) in zip(y_hat, params, strict=True)
        )
        return lmbda * float(total) / pixels

    return term


def _distortion_term(model, y_hat, x):
    def term() -> float:
        return float(torch.mean((model.decode(y_hat) - x) ** 2))

    return term
