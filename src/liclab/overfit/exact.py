"""The overfitted decoder in exact arithmetic: the same bits on every CPU and thread count.

A float sum's rounding depends on the order of its terms, and that order changes with the
vector width, the BLAS kernel and the thread count. Here no sum ever rounds: the networks'
parameters are quantised to powers of two (``w = W·2^−e``), every activation is rounded to a
fixed grid after each layer (``h = H·2^−F``), so every product and partial sum is a dyadic
number with at most 53 significant bits, which float64 holds exactly, in any order, with or
without FMA (the argument of :mod:`liclab.models.integer`, with float64 products in place of
int8 digit products: the matrices here are 2–48 wide). The roundings between layers are
``rint`` of exact values: deterministic. :func:`check` verifies the 53-bit bound on the
encoder's data, whose every intermediate value the decoder recomputes.

Grids: ARM hidden activations 2^−12 (:data:`ARM_BITS`), upsampled latents 2^−12 after every
pass (:data:`UP_BITS`), synthesis activations 2^−16 (:data:`SYN_BITS`). The result differs
from the float32 network by ~1e−4 of a latent and ~1e−5 of a pixel: a slightly different
decoder, which encoder and decoder compute identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liclab.overfit import laplace
from liclab.overfit.arm import LOG_SCALE_SHIFT

ARM_BITS = 12
UP_BITS = 12
SYN_BITS = 16
_EXACT = 2.0**52  # one bit of margin below float64's 53


def fraction_bits(a: np.ndarray | Tensor) -> int:
    """The fewest k with ``a·2^k`` all integers (a dyadic array; at most 60)."""
    a = np.asarray(a, dtype=np.float64)
    for k in range(61):
        s = a * 2.0**k
        if np.array_equal(s, np.rint(s)):
            return k
    raise ValueError("not a dyadic array of at most 60 fraction bits")


def check(bound: float, bits: int, what: str) -> None:
    """Raise unless a sum of terms with ``bits`` fraction bits and total magnitude at most
    ``bound`` is exact in float64."""
    if bound * 2.0**bits >= _EXACT:
        raise ValueError(
            f"{what}: {bound:.3g} at 2^-{bits} exceeds float64's exact range (2^52); "
            "coarser parameter steps would fit"
        )


class ExactARM:
    """The ARM (:class:`liclab.overfit.arm.ARM`) on quantised parameters, exactly::

        H₀ = ŷ·2^12;  Hᵢ₊₁ = max(rint(Hᵢ (Wᵢ + I)ᵀ + bᵢ·2^12), 0);  (μ, s) = H 2^−12 W_oᵀ + b_o

    with the identity of the residual and the 2^12 scales folded into the matrices, and the
    output in the coding grid's units (:func:`liclab.overfit.laplace.snap`):
    ``(32·μ + 16, 16·(s − 4 − LOG_SCALE_MIN))``, the constants in the bias (one correctly
    rounded addition after the exact product).

    Args:
        weights: each layer's (out, in) weights, float64 dyadic (hidden layers, then output).
        biases: each layer's biases.
    """

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray]):
        scale = 2.0**ARM_BITS
        self.hidden = []
        for i, (w, b) in enumerate(zip(weights[:-1], biases[:-1], strict=True)):
            a = (w + np.eye(len(w))).T * (scale if i == 0 else 1.0)
            self.hidden.append((np.ascontiguousarray(a), b * scale))
        units = np.array([laplace.MU_STEPS, laplace.SCALE_STEPS], dtype=np.float64)
        out = weights[-1].T * (1.0 / scale if weights[:-1] else 1.0) * units
        shift = np.array([0.0, LOG_SCALE_SHIFT + laplace.LOG_SCALE_MIN])
        offset = np.array([laplace.MU_STEPS // 2, 0.0])
        self.out = (np.ascontiguousarray(out), (biases[-1] - shift) * units + offset)

    def __call__(self, ctx: np.ndarray, verify: bool = False) -> np.ndarray:
        """The two outputs (n, 2) in grid units for context rows ``ctx`` (n, width) of
        integer latents (float64); ``verify`` checks every sum is exact (the encoder's pass)."""
        h, bits = ctx, 0
        for i, (a, c) in enumerate(self.hidden):
            if verify:
                _check_product(h, a, c, bits, f"ARM layer {i}")
            h = h @ a
            h += c
            np.rint(h, out=h)
            np.maximum(h, 0.0, out=h)
        a, c = self.out
        if verify:
            _check_product(h, a, np.zeros(1), bits, "ARM output layer")
        o = h @ a
        o += c
        return o


def _check_product(x: np.ndarray, a: np.ndarray, c: np.ndarray, x_bits: int, what: str) -> None:
    bound = float((np.abs(x) @ np.abs(a)).max(initial=0.0) + np.abs(c).max(initial=0.0))
    check(bound, max(x_bits + fraction_bits(a), fraction_bits(c)), what)


def round_to(x: Tensor, bits: int) -> Tensor:
    """``x`` rounded (half to even) to the grid 2^−bits, in place."""
    return x.mul_(2.0**bits).round_().mul_(2.0**-bits)


def upsample2(x: Tensor, half: Tensor, verify: bool = False) -> Tensor:
    """:func:`liclab.overfit.upsampling.upsample2` in exact polyphase form (float64; each pass
    rounded to 2^−UP_BITS): with k = [half, reversed(half)] of K taps, along each axis
    ``out[2q] = Σ_t x[q + t − K/4]·k[K−1−2t]`` and ``out[2q+1] = Σ_t x[q + 1 + t − K/4]·k[K−2−2t]``
    (t < K/2, indexes clamped: the edge replication)."""
    kernel = torch.cat([half, half.flip(0)]).tolist()
    for dim in (-1, -2):
        if verify:
            bound = float(x.abs().max()) * sum(map(abs, kernel))
            check(bound, UP_BITS + fraction_bits(half), "upsampling")
        x = round_to(_upsample_axis(x, kernel, dim), UP_BITS)
    return x


def _upsample_axis(x: Tensor, k: list[float], dim: int) -> Tensor:
    taps, n = len(k) // 2, x.shape[dim]
    pad = taps // 2
    idx = torch.arange(-pad, n + pad + 1).clamp_(0, n - 1)
    xp = x.index_select(dim, idx)  # edge-replicated: xp[i] = x[clamp(i − pad)]
    even = torch.zeros_like(x)
    odd = torch.zeros_like(x)
    for t in range(taps):
        even.add_(xp.narrow(dim, t, n), alpha=k[2 * taps - 1 - 2 * t])
        odd.add_(xp.narrow(dim, t + 1, n), alpha=k[2 * taps - 2 - 2 * t])
    shape = list(x.shape)
    shape[dim] = 2 * n
    return torch.stack([even, odd], dim=dim).reshape(shape)  # interleaved


def learned_upsampling(y_hat: list[Tensor], kernels: list[Tensor], verify: bool = False) -> Tensor:
    """:class:`~liclab.overfit.upsampling.LearnedUpsampling` exactly: (1, L, H, W) float64."""
    x = y_hat[-1]
    for level in range(len(y_hat) - 2, -1, -1):
        h, w = y_hat[level].shape[-2:]
        x = upsample2(x, kernels[level], verify)[..., :h, :w]
        x = torch.cat([y_hat[level], x], dim=1)
    return x


def bilinear_upsampling(y_hat: list[Tensor]) -> Tensor:
    """:class:`~liclab.overfit.upsampling.BilinearUpsampling` with interpolation weights
    rounded to 2^−16 (then exact): (1, L, H, W) float64."""
    h, w = y_hat[0].shape[-2:]
    ups = []
    for y in y_hat[1:]:
        for dim, size in ((-1, w), (-2, h)):
            y = round_to(_interpolate_axis(y, size, dim), UP_BITS)
        ups.append(y)
    return torch.cat([y_hat[0], *ups], dim=1)


def _interpolate_axis(x: Tensor, size: int, dim: int) -> Tensor:
    """Linear interpolation with half-pixel centres (``align_corners=False``) along ``dim``."""
    n = x.shape[dim]
    src = ((torch.arange(size, dtype=torch.float64) + 0.5) * (n / size) - 0.5).clamp_(min=0)
    i0 = src.floor().long().clamp_(max=n - 1)
    i1 = (i0 + 1).clamp_(max=n - 1)
    lam = round_to(src - i0, 16)
    shape = [1] * x.dim()
    shape[dim] = size
    lam = lam.view(shape)
    return x.index_select(dim, i0) * (1 - lam) + x.index_select(dim, i1) * lam


GELU_STEP = 8  # the GELU table's points are 2^−8 apart on [−8, 8]
GELU_BITS = 24  # its values are rounded to 2^−24
_GELU_RANGE = 8


def gelu_table() -> Tensor:
    """GELU at every multiple of 2^−8 in [−8, 8], rounded to 2^−24 (float64). The test suite
    checks no entry is near a rounding tie, so every faithful ``erf`` gives this table."""
    x = torch.arange(-_GELU_RANGE * 2**GELU_STEP, _GELU_RANGE * 2**GELU_STEP + 1) / 2**GELU_STEP
    x = x.double()
    return round_to(x * 0.5 * (1 + torch.erf(x / math.sqrt(2))), GELU_BITS)


_GELU = gelu_table()


def relu(h: Tensor) -> Tensor:
    """ReLU of synthesis activations, in place."""
    return h.relu_()


def gelu(h: Tensor) -> Tensor:
    """GELU of synthesis activations ``h = H·2^−16`` (given as H), by linear interpolation in
    :func:`gelu_table` (exact dyadic arithmetic), as H again (rounded). Beyond ±8: identity
    and zero."""
    bits = SYN_BITS
    z = h * 2.0 ** (GELU_STEP - bits)  # in table steps, exact
    lo = -_GELU_RANGE * 2**GELU_STEP
    i = z.floor().clamp_(lo, -lo - 1)
    t = z - i
    idx = (i - lo).long()
    g = _GELU[idx] + (_GELU[idx + 1] - _GELU[idx]) * t
    g = torch.where(z >= -lo, h * 2.0**-bits, torch.where(z < lo, torch.zeros_like(g), g))
    return g.mul_(2.0**bits).round_()


CHUNK = 4096  # pixel rows per chunk of the pointwise layers (in cache)


def synthesis(
    x: Tensor,
    pointwise: list[tuple[Tensor, Tensor]],
    residual: list[tuple[Tensor, Tensor]],
    activation: Callable[[Tensor], Tensor],
    verify: bool = False,
) -> Tensor:
    """:class:`~liclab.overfit.synthesis.Synthesis` exactly, on dense latents ``x`` (1, L, H, W)
    float64 (on the 2^−12 grid) with quantised (weight, bias) pairs and ``activation``
    (:func:`relu` or :func:`gelu`); activations are H·2^−16, rounded after every layer, and
    carried as H.
    Returns x̂ (1, 3, H, W) float64, not clamped. ``verify`` checks every sum is exact."""
    _, c, h, w = x.shape
    s = 2.0**SYN_BITS
    rows = x.permute(0, 2, 3, 1).reshape(h * w, c)
    mats = [(wt.t() * (s if i == 0 else 1.0), b * s) for i, (wt, b) in enumerate(pointwise)]
    bounds = [0.0] * len(mats)
    out = torch.empty(h * w, mats[-1][0].shape[1], dtype=torch.float64)
    for j in range(0, h * w, CHUNK):
        a = rows[j : j + CHUNK]
        for i, (m, b) in enumerate(mats):
            if verify:
                bounds[i] = max(bounds[i], float((a.abs() @ m.abs()).max() + b.abs().max()))
            a = torch.addmm(b, a, m).round_()
            if i < len(mats) - 1:
                a = activation(a)
        out[j : j + CHUNK] = a
    if verify:
        for i, ((m, b), bound) in enumerate(zip(mats, bounds, strict=True)):
            bits = max((UP_BITS if i == 0 else 0) + fraction_bits(m), fraction_bits(b))
            check(bound, bits, f"synthesis layer {i}")
    x_hat = out.t().reshape(1, -1, h, w)
    for i, (wt, b) in enumerate(residual):
        if verify:
            bound = float(x_hat.abs().max()) * (1 + float(wt.abs().sum((1, 2, 3)).max()))
            bits = max(fraction_bits(wt), fraction_bits(b * s))
            check(bound + float(b.abs().max()) * s, bits, f"synthesis residual layer {i}")
        x_hat = F.conv2d(F.pad(x_hat, (1, 1, 1, 1), mode="replicate"), wt, b * s).add_(x_hat)
        x_hat = x_hat.round_()
        if i < len(residual) - 1:
            x_hat = activation(x_hat)
    return x_hat * 2.0**-SYN_BITS
