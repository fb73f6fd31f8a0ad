"""The overfitted decoder in exact arithmetic: the same bits on every CPU and thread count.

A float sum's rounding depends on the order of its terms, and that order changes with the
vector width, the BLAS kernel and the thread count. Here no sum ever rounds: the networks'
parameters are quantised to powers of two (``w = W·2^−e``) and every activation is a dyadic
number of bounded precision, so every product and partial sum has at most 53 significant
bits, which float64 holds exactly, in any order, with or without FMA (the argument of
:mod:`liclab.models.integer`, with float64 products in place of int8 digit products: the
matrices here are 2–48 wide). The upsampled latents are rounded to 2^−12 after every pass
(:data:`UP_BITS`), the synthesis's activations to 2^−16 after every layer (:data:`SYN_BITS`),
the ARM's only when its few layers would not fit otherwise (:data:`ARM_BITS`); those roundings
are ``rint`` of exact values, deterministic, and elementwise operations (IEEE-754 correctly
rounded) are the same everywhere. :func:`check` verifies the 53-bit bound on the encoder's
data, whose every intermediate value the decoder recomputes.

On kodim01 (``coolchic_hop`` as it was until the fifth session, ARM 24 and synthesis 40) the
upsampled latents differ from the float32 model's by at most 5e−4, x̂ by at most 1e−4 (mean
1.2e−5), and 0.3 % of the 8-bit pixels by one level: a slightly different decoder, which
encoder and decoder compute identically.
"""

from __future__ import annotations

import functools
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

        h₀ = [1, context];  hᵢ₊₁ = relu(hᵢ Aᵢ),  Aᵢ = [[1, bᵢ], [0, (Wᵢ + I)ᵀ]];
        (32·(μ − 7) + 16, 16·(s − 4) + 74) = h A_o

    A leading column of ones carries the biases (and the output's integer constants) into the
    products, and the identity of the residual is folded into the weights; the output is in
    the coding grid's units (:func:`liclab.overfit.laplace.snap`). Every product is a sum of
    dyadic numbers: exact while it fits 53 bits, which the encoder checks on its data
    (``verify``). Where it would not (deep ARMs, fine steps, large latents), ``rounding=F``
    rounds each hidden activation to 2^−F, carried as integers; the bitstream records which.

    Cool-chic 5.0's additions: a stabiliser (a linear map of the context added to the
    output) is a second product of the same rows, ``h A_o + [1, context] A_s``; inter-grid
    features (``f = V_g r + c_g`` from raw latents r of the coarser grids) are folded into
    the first product: the rows a decoder gathers are ``[1, context, r-blocks, one-hots]``
    and ``P`` (``fold``) maps them to ``[1, context, f]``, so the first matrix is ``P A₀``
    and the stabiliser's ``P A_s`` (exact integer products, checked).

    Args:
        weights: each layer's (out, in) weights, float64 dyadic (hidden layers, then output).
        biases: each layer's biases.
        rounding: None, or F: the hidden activations' grid 2^−F.
        skip: the stabiliser's (weight (2, width), bias (2,)), or None.
        fold: P, (rows' width, 1 + width) float64 dyadic, or None (the rows are the input).
    """

    def __init__(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        rounding=None,
        skip: tuple[np.ndarray, np.ndarray] | None = None,
        fold: np.ndarray | None = None,
    ):
        self.rounding = rounding
        scale = 1.0 if rounding is None else 2.0**rounding
        self.hidden = []
        for i, (w, b) in enumerate(zip(weights[:-1], biases[:-1], strict=True)):
            n = len(w)
            a = np.zeros((n + 1, n + 1))
            a[0, 0] = 1.0
            a[0, 1:] = b * scale
            a[1:, 1:] = (w + np.eye(n)).T * (scale if i == 0 else 1.0)
            self.hidden.append(a)
        units = np.array([laplace.MU_STEPS, laplace.SCALE_STEPS], dtype=np.float64)
        w, b = weights[-1], biases[-1]
        self.out = np.zeros((w.shape[1] + 1, 2))
        shift = LOG_SCALE_SHIFT * laplace.SCALE_STEPS
        self.out[0] = b * units + [laplace.MU_OFFSET, laplace.SCALE_ORIGIN - shift]
        self.out[1:] = w.T * units / (scale if self.hidden else 1.0)
        self.skip = None
        if skip is not None:
            self.skip = np.concatenate([skip[1][None] * units, skip[0].T * units])
        if fold is not None:
            if self.hidden:
                self.hidden[0] = exact_product(fold, self.hidden[0])
            else:
                self.out = exact_product(fold, self.out)
            if self.skip is not None:
                self.skip = exact_product(fold, self.skip)

    def __call__(self, ctx: np.ndarray, verify: bool = False) -> np.ndarray:
        """The two outputs (n, 2) in grid units for context rows ``ctx`` (n, rows' width): a
        column of ones, then integer latents (float64). ``verify`` raises unless every sum is
        exact (the encoder's pass over all latents)."""
        h, bits = ctx, 0
        for i, a in enumerate(self.hidden):
            if verify:
                bits = _check_product(h, a, bits, f"ARM layer {i}")
            h = h @ a
            if self.rounding is not None:
                np.rint(h, out=h)
                bits = 0
            torch.from_numpy(h).relu_()  # in place; numpy's maximum is ~2× slower here
        if self.skip is None:
            if verify:
                _check_product(h, self.out, bits, "ARM output layer")
            return h @ self.out
        if verify:  # the two products and their sum
            bits = max(bits + fraction_bits(self.out), fraction_bits(self.skip))
            bound = (np.abs(h) @ np.abs(self.out) + np.abs(ctx) @ np.abs(self.skip)).max(
                initial=0.0
            )
            check(float(bound), bits, "ARM output layer and stabiliser")
        return h @ self.out + ctx @ self.skip


def feature_fold(context: int, maps: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """P: gathered rows ``[1, context (K + C), r-blocks, one indicator per map]`` to the
    ARM's input ``[1, context, f]``, ``f = V_g r_g + c_g`` for the map (V_g (F, n_g), c_g)
    of the row's grid (the other blocks and indicators read zero)."""
    features = maps[0][0].shape[0]
    blocks = sum(v.shape[1] for v, _ in maps)
    p = np.zeros((1 + context + blocks + len(maps), 1 + context + features))
    p[: 1 + context, : 1 + context] = np.eye(1 + context)
    row = 1 + context
    for g, (v, c) in enumerate(maps):
        p[row : row + v.shape[1], 1 + context :] = v.T
        p[1 + context + blocks + g, 1 + context :] = c
        row += v.shape[1]
    return p


def exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of two dyadic matrices, computed in integers: ValueError unless float64
    holds it exactly."""
    ka, kb = fraction_bits(a), fraction_bits(b)
    ia = np.rint(a * 2.0**ka).astype(np.int64).astype(object)
    ib = np.rint(b * 2.0**kb).astype(np.int64).astype(object)
    prod = ia @ ib
    if any(abs(int(v)) >= 2**53 for v in prod.flat):
        raise ValueError("a folded ARM matrix exceeds float64's exact range")
    return prod.astype(np.float64) * 2.0 ** -(ka + kb)


def _check_product(x: np.ndarray, a: np.ndarray, x_bits: int, what: str) -> int:
    """Check ``x @ a`` is exact; returns its fraction bits."""
    bits = x_bits + fraction_bits(a)
    check(float((np.abs(x) @ np.abs(a)).max(initial=0.0)), bits, what)
    return bits


def round_to(x: Tensor, bits: int) -> Tensor:
    """``x`` rounded (half to even) to the grid 2^−bits, in place."""
    return x.mul_(2.0**bits).round_().mul_(2.0**-bits)


def upsample2(x: Tensor, half: Tensor, verify: bool = False) -> Tensor:
    """:func:`liclab.overfit.upsampling.upsample2` exactly (float64; each pass rounded to
    2^−UP_BITS): ``x`` on that grid, as values."""
    scale = 2.0**UP_BITS
    return _upsample2_units(x * scale, half, verify) / scale


def _upsample2_units(x: Tensor, half: Tensor, verify: bool) -> Tensor:
    """:func:`upsample2` on values in units of 2^−UP_BITS (integers), in polyphase form: with
    k = [half, reversed(half)] of K taps, along each axis ``out[2q] = Σ_t x[q + t − K/4]·k[K−1−2t]``
    and ``out[2q+1] = Σ_t x[q + 1 + t − K/4]·k[K−2−2t]`` (t < K/2, indexes clamped: the edge
    replication), each pass rounded to integers."""
    kernel = torch.cat([half, half.flip(0)]).tolist()
    for dim in (-1, -2):
        if verify:
            check(float(x.abs().max()) * sum(map(abs, kernel)), fraction_bits(half), "upsampling")
        x = _upsample_axis(x, kernel, dim).round_()
    return x


def _upsample_axis(x: Tensor, k: list[float], dim: int) -> Tensor:
    taps, n = len(k) // 2, x.shape[dim]
    pad = taps // 2
    sides = (pad, pad + 1, 0, 0) if dim == -1 else (0, 0, pad, pad + 1)
    xp = F.pad(x, sides, mode="replicate")  # xp[i] = x[clamp(i − pad)]
    return _phases(xp, k, n, dim)


def _phases(xp: Tensor, k: list[float], n: int, dim: int) -> Tensor:
    """The 2n interleaved outputs ``out[2q] = Σ_t xp[q + t]·k[K−1−2t]`` and
    ``out[2q+1] = Σ_t xp[q + 1 + t]·k[K−2−2t]`` (t < K/2) along ``dim`` of the edge-padded
    input ``xp``."""
    taps = len(k) // 2
    even = xp.narrow(dim, 0, n) * k[2 * taps - 1]
    odd = xp.narrow(dim, 1, n) * k[2 * taps - 2]
    for t in range(1, taps):
        even.add_(xp.narrow(dim, t, n), alpha=k[2 * taps - 1 - 2 * t])
        odd.add_(xp.narrow(dim, t + 1, n), alpha=k[2 * taps - 2 - 2 * t])
    shape = list(xp.shape)
    shape[dim] = 2 * n
    return torch.stack([even, odd], dim=dim).reshape(shape)  # interleaved


def prefiltered(
    y: Tensor,
    half: Tensor,
    start: int = 0,
    stop: int | None = None,
    verify: bool = False,
    zeros: bool = False,
) -> Tensor:
    """Rows ``start:stop`` of ``ŷ + f ∗ ŷ`` (:class:`~liclab.overfit.upsampling.LearnedUpsampling`'s
    pre-concatenation filter f = [half, reversed(half[:-1])]) for a grid ``ŷ`` (…, h, w) of
    integers, in units of 2^−UP_BITS (integers): the horizontal pass, then the vertical one,
    each rounded; edges replicated, or zeros outside with ``zeros``. Only rows
    start − p … stop + p − 1 of ``ŷ`` are read (p the kernel's radius), so a band gives the
    rows the whole grid would."""
    h = y.shape[-2]
    stop = h if stop is None else stop
    p, scale = half.numel() - 1, 2.0**UP_BITS
    k = half.tolist()
    rows = torch.arange(start - p, stop + p)
    x = y.index_select(-2, rows.clamp(0, h - 1)) * scale
    if zeros:  # a zero row stays zero through the horizontal pass
        x[..., (rows < 0) | (rows >= h), :] = 0
    if verify:
        gain = 2 * sum(map(abs, k)) - abs(k[p])  # Σ|f|: each pass multiplies the bound by it
        bound = float(x.abs().max()) * max(gain, gain * gain)
        check(bound, fraction_bits(half), "pre-concatenation filter")
    for dim in (-1, -2):
        n = x.shape[dim] - (2 * p if dim == -2 else 0)
        xp = x  # rows already span start − p … stop + p − 1; columns are padded here
        if dim == -1:
            flat = x.flatten(0, -3) if x.dim() > 3 else x  # replicate pads ≤ 3-D input
            mode = "constant" if zeros else "replicate"
            xp = F.pad(flat, (p, p), mode=mode).view(*x.shape[:-1], -1)
        out = xp.narrow(dim, p, n) * k[p]
        for t in range(1, p + 1):
            out.add_(xp.narrow(dim, p - t, n) + xp.narrow(dim, p + t, n), alpha=k[p - t])
        x = out.round_()
    return x.add_(y[..., start:stop, :] * scale)


def upsampled(
    coarse: list[Tensor],
    size: tuple[int, int],
    kernels: list[Tensor] | None,
    verify: bool = False,
    filters: list[Tensor] | None = None,
    zeros: bool = False,
) -> Tensor:
    """The grids ŷ_1 … ŷ_{L−1} (``coarse``) at full resolution, (1, L − 1, H, W) float64: what
    the upsampling (:mod:`liclab.overfit.upsampling`) puts beside ŷ_0 (or beside
    :func:`prefiltered` ŷ_0, with ``filters``). ``kernels``: the learned upsampling's
    (Cool-chic), or None for bilinear (C3, with interpolation weights rounded to 2^−16, then
    exact); ``filters``: its pre-concatenation filters (None: none), padded with zeros with
    ``zeros`` (else edges replicated)."""
    h, w = size
    scale = 2.0**UP_BITS
    if not coarse:
        return torch.zeros(1, 0, h, w, dtype=torch.float64)
    if kernels is None:
        ups = []
        for y in coarse:
            for dim, n in ((-1, w), (-2, h)):
                y = round_to(_interpolate_axis(y, n, dim), UP_BITS)
            ups.append(y)
        return torch.cat(ups, dim=1)
    x = coarse[-1] * scale  # in units of 2^−UP_BITS from here on
    for level in range(len(coarse) - 1, -1, -1):
        th, tw = coarse[level - 1].shape[-2:] if level else size
        x = _upsample2_units(x, kernels[level], verify)[..., :th, :tw]
        if level:
            fine = coarse[level - 1]
            if filters:
                fine = prefiltered(fine, filters[level], verify=verify, zeros=zeros)
            else:
                fine = fine * scale
            x = torch.cat([fine, x], dim=1)
    return x.mul_(1 / scale)


def _vertical_rows(x: Tensor, k: list[float], start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of ``_upsample_axis(x, k, -2)`` for ``x`` (…, n, W), reading only
    the rows of ``x`` they depend on (q − K/4 … q + K/4 for output rows 2q, 2q + 1): the same
    sums of the same terms."""
    taps, n = len(k) // 2, x.shape[-2]
    qa, qb = start // 2, (stop - 1) // 2 + 1
    xp = x.index_select(-2, torch.arange(qa - taps // 2, qb - taps // 2 + taps).clamp_(0, n - 1))
    return _phases(xp, k, qb - qa, -2)[..., start - 2 * qa : stop - 2 * qa, :]


class UpsamplingStream:
    """:func:`upsampled` (learned kernels) row by row, as the grids are decoded: the decoder's
    image worker computes the upsampled rows it needs while the wavefront still decodes the
    rows below. Every level keeps its horizontally upsampled rows and its output rows (the
    concatenation the next finer level upsamples); a row is computed once all the rows it
    reads exist, with the same operations as the whole-image pass, so the values are the
    same (the test suite checks it).

    Args:
        grids: the L grids (h_l, w_l) float64, finest first, views that fill as decoding
            goes on (the finest one is not read).
        kernels: the learned upsampling's kernels (one per coarse level).
        filters: its pre-concatenation filters (None: none).
        zeros: those filters read zeros outside their grid (else its edges).
    """

    def __init__(self, grids: list[Tensor], kernels: list[Tensor], filters=None, zeros=False):
        self.grids, self.filters, self.zeros = grids, filters, zeros
        self.kernels = [torch.cat([half, half.flip(0)]).tolist() for half in kernels]
        levels = len(grids)
        shapes = [tuple(g.shape) for g in grids]
        self.shapes = shapes
        # x[l]: level l's output in units of 2^−UP_BITS, channels: grid l (filtered), then the
        # upsampled coarser levels (level 0: only those); across[l]: level l + 1's output
        # upsampled horizontally (width 2·w_{l+1})
        self.x = [
            torch.empty(levels - l - (1 if l == 0 else 0), h, w, dtype=torch.float64)
            for l, (h, w) in enumerate(shapes)
        ]
        self.across = [
            torch.empty(levels - l - 1, shapes[l + 1][0], 2 * shapes[l + 1][1], dtype=torch.float64)
            for l in range(levels - 1)
        ]
        self.x_done = [0] * levels
        self.across_done = [0] * (levels - 1)

    @property
    def done(self) -> int:
        """Rows of the full-resolution output (:meth:`rows`) computed."""
        return self.x_done[0]

    def rows(self, start: int, stop: int) -> Tensor:
        """Output rows ``start:stop`` (L − 1, rows, W), as values (what :func:`upsampled`
        returns)."""
        return self.x[0][:, start:stop] * (1 / 2.0**UP_BITS)

    def advance(self, decoded: list[int]) -> int:
        """Compute every row that the grids' decoded rows (``decoded[l]`` of grid l) allow;
        returns :attr:`done`."""
        scale = 2.0**UP_BITS
        levels = len(self.grids)
        for level in range(levels - 1, -1, -1):
            h, w = self.shapes[level]
            a = self.x_done[level]
            if level == levels - 1:  # the coarsest grid, as it is
                b = decoded[level]
                self.x[level][0, a:b] = self.grids[level][a:b] * scale
                self.x_done[level] = b
                continue
            # level + 1's new rows, upsampled horizontally
            c, d = self.across_done[level], self.x_done[level + 1]
            if d > c:
                k = self.kernels[level]
                self.across[level][:, c:d] = _upsample_axis(
                    self.x[level + 1][:, c:d], k, -1
                ).round_()
                self.across_done[level] = d
            n = self.shapes[level + 1][0]
            b = h if d == n else max(min(2 * d - 4, h), 0)  # row r reads rows ≤ r//2 + 2
            if level:  # the grid itself (filtered: rows ≤ r + radius)
                p = self.filters[level].numel() - 1 if self.filters else 0
                b = min(b, h if decoded[level] == h else max(decoded[level] - p, 0))
            if b <= a:
                continue
            up = _vertical_rows(self.across[level], self.kernels[level], a, b)[..., :w].round_()
            if level:
                fine = self.grids[level][None]
                if self.filters:
                    fine = prefiltered(fine, self.filters[level], a, b, zeros=self.zeros)
                else:
                    fine = fine[:, a:b] * scale
                self.x[level][:1, a:b] = fine
                self.x[level][1:, a:b] = up
            else:
                self.x[level][:, a:b] = up
            self.x_done[level] = b
        return self.done


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


GELU_RANGE = 5  # |x| ≥ 5: x·Φ(x) is within 2^−17 of ReLU(x), so it rounds to it


@functools.cache
def gelu_table() -> Tensor:
    """``g(x) = round(GELU(x)·2^16) − ReLU(x)·2^16`` at every multiple of 2^−16 in [−5, 5]
    (float64 integers; zero at both ends). The test suite checks no entry is near a rounding
    tie, so every faithful ``erf`` gives this table."""
    x = torch.arange(-GELU_RANGE << SYN_BITS, (GELU_RANGE << SYN_BITS) + 1, dtype=torch.float64)
    x = x * 2.0**-SYN_BITS
    gelu = x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    return torch.round(gelu * 2.0**SYN_BITS) - x.relu() * 2.0**SYN_BITS


def relu(h: Tensor) -> Tensor:
    """ReLU of synthesis activations, in place."""
    return h.relu_()


def gelu(h: Tensor) -> Tensor:
    """GELU of synthesis activations ``h = H·2^−16`` (given as the integers H), rounded to the
    same grid: ``ReLU(H) + g(H)`` with :func:`gelu_table`'s g, clamped at its ends."""
    top = GELU_RANGE << SYN_BITS
    index = (h.clamp(-top, top) + top).long()
    g = gelu_table().index_select(0, index.reshape(-1)).view(h.shape)  # 4× table[index]
    return g.add_(h.relu_())


CHUNK = 4096  # pixel rows per chunk of the pointwise layers (in cache)
BAND_ROWS = 16  # image rows per band of the residual layers (in cache)


class ExactSynthesis:
    """:class:`~liclab.overfit.synthesis.Synthesis` exactly, by pixel rows and image bands:
    activations H·2^−16, rounded after every layer and carried as the integers H.

    Args:
        pointwise: the 1×1 layers' quantised (weight (out, in), bias), float64.
        residual: the residual 3×3 layers' (weight (3, 3, 3, 3), bias).
        activation: :func:`relu` or :func:`gelu`.
        stabiliser: the 1×1 stabiliser's (weight (3, L), bias), or None: its output, rounded
            to the activations' grid, is added to the last layer's.
    """

    def __init__(
        self, pointwise, residual, activation: Callable[[Tensor], Tensor], stabiliser=None
    ):
        s = 2.0**SYN_BITS
        self.pointwise_layers = [
            (w.t() * (s if i == 0 else 1.0), b * s) for i, (w, b) in enumerate(pointwise)
        ]
        self.residual_layers = [(w, b * s) for w, b in residual]
        self.activation = activation
        self.stabiliser = None if stabiliser is None else (stabiliser[0].t() * s, stabiliser[1] * s)

    def __call__(self, dense: Tensor, verify: bool = False) -> Tensor:
        """x̂ (1, 3, H, W) float64 (not clamped) of dense latents (1, L, H, W) on the 2^−12
        grid, in one go; ``verify`` checks every sum is exact (the encoder's pass)."""
        _, c, h, w = dense.shape
        rows = dense.permute(0, 2, 3, 1).reshape(h * w, c)
        x = self.pointwise(rows, verify).t().reshape(3, h, w)
        for i in range(len(self.residual_layers)):
            x = self.residual(i, x, 0, h, verify)
        if self.stabiliser is not None:
            x = x + self.skip(rows, verify).t().reshape(3, h, w)
        return (x * 2.0**-SYN_BITS)[None]

    def skip(self, rows: Tensor, verify: bool = False) -> Tensor:
        """The stabiliser on pixel rows (n, L): (n, 3), as integers H."""
        m, b = self.stabiliser
        if verify:
            bound = float((rows.abs() @ m.abs()).max() + b.abs().max())
            check(bound, max(UP_BITS + fraction_bits(m), fraction_bits(b)), "synthesis stabiliser")
        return torch.addmm(b, rows, m).round_()

    def pointwise(self, rows: Tensor, verify: bool = False) -> Tensor:
        """The 1×1 layers on pixel rows (n, L): (n, 3), as integers H."""
        layers = self.pointwise_layers
        out = torch.empty(len(rows), layers[-1][0].shape[1], dtype=torch.float64)
        bounds = [0.0] * len(layers)
        for j in range(0, len(rows), CHUNK):
            a = rows[j : j + CHUNK]
            for i, (m, b) in enumerate(layers):
                if verify:
                    bounds[i] = max(bounds[i], float((a.abs() @ m.abs()).max() + b.abs().max()))
                a = torch.addmm(b, a, m).round_()
                if i < len(layers) - 1:
                    a = self.activation(a)
            out[j : j + CHUNK] = a
        for i, ((m, b), bound) in enumerate(zip(layers, bounds, strict=True)):
            if verify:
                bits = max((UP_BITS if i == 0 else 0) + fraction_bits(m), fraction_bits(b))
                check(bound, bits, f"synthesis layer {i}")
        return out

    def residual(self, i: int, x: Tensor, start: int, stop: int, verify: bool = False) -> Tensor:
        """Rows ``start:stop`` of residual layer ``i``'s output, (3, stop − start, W), from its
        input planes ``x`` (3, H, W) (rows start − 1 … stop needed; edges replicated), in bands
        of :data:`BAND_ROWS` rows (in cache)."""
        weight, bias = self.residual_layers[i]
        if verify:
            bound = float(x.abs().max()) * (1 + float(weight.abs().sum((1, 2, 3)).max()))
            bits = max(fraction_bits(weight), fraction_bits(bias))
            check(bound + float(bias.abs().max()), bits, f"synthesis residual layer {i}")
        out = torch.cat(
            [
                self._residual_band(weight, bias, x, a, min(a + BAND_ROWS, stop))
                for a in range(start, stop, BAND_ROWS)
            ],
            dim=1,
        )
        return self.activation(out) if i < len(self.residual_layers) - 1 else out

    @staticmethod
    def _residual_band(weight: Tensor, bias: Tensor, x: Tensor, start: int, stop: int) -> Tensor:
        """One float64 convolution, rounded: its sums of exact products are exact in any
        order (the 53-bit bound checked above), so the backend's algorithm (direct or
        im2col and GEMM) does not change the result."""
        h = x.shape[-2]
        window = x[:, max(start - 1, 0) : min(stop + 1, h)]
        pad = (1, 1, int(start == 0), int(stop == h))
        window = F.pad(window[None], pad, mode="replicate")
        return F.conv2d(window, weight, bias)[0].add_(x[:, start:stop]).round_()
