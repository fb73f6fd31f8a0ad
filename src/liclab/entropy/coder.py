"""Per-element range coding of discretized Gaussian mixtures (liclab's own; CompressAI codes
conditionals with a scale table of 64 zero-mean Gaussians and rANS, and its
``GaussianMixtureConditional`` codes over one global support with Python lists).

Coding an element takes three vectorised steps after its parameters were snapped to their
grids (:mod:`liclab.entropy`), each exactly reproducible by the decoder:

1. **Support**: the integers ``lo … lo+L−1`` around the centre that cover every component
   of weight > 2⁻²⁰ to ±4.5σ; L is the width rounded up to 2ᵏ or 3·2ᵏ (≤ 4096), so
   elements are coded in a few buckets of equal width.
2. **Quantise** the L bin masses plus one *escape* bin (the mass outside the support) to
   integer frequencies summing to 2¹⁶: ``⌊p·(2¹⁶ − L − 1)⌋ + 1`` (so no frequency is zero),
   the remainder to the most probable bin. Integer arithmetic: exact.
3. **Code** with constriction's range coder (batched categorical models, no Python lists).
   A value outside the support codes the escape bin, then its side and Elias-gamma
   distance, with uniform models.

The streams are constriction's range coder words (``queue.RangeEncoder``, 32-bit words,
little-endian): part of the ``.lic`` format.
"""

from __future__ import annotations

import math

import constriction
import numpy as np
import torch
from torch import Tensor

PRECISION = 16
# σ on each side of a component's mean inside the support: the tail beyond (3e-6 a side) is
# below the escape bin's minimum frequency 2⁻¹⁶ anyway, so a wider support buys nothing.
TAIL = 4.5
MIN_WEIGHT = 2.0**-20  # lighter components do not widen the support (the escape covers them)
MAX_WIDTH = 4096
WIDTHS = torch.tensor(sorted({2**k for k in range(1, 13)} | {3 * 2**k for k in range(11)}))

Tables = list[tuple[Tensor, Tensor, Tensor]]


def frequency_tables(weights: Tensor, d: Tensor, scales: Tensor) -> Tables:
    """Integer frequency tables of n elements, in buckets of equal support width.

    Args:
        weights, d, scales: (n, K) float64 mixture weights, component means relative to the
            rounding centre, and scales, on their coding grids.

    Returns ``[(elements, lo, freq)]``: indexes of the bucket's elements, the first integer
    of each support (relative to the centre), and (m, L + 1) int64 frequencies, escape last,
    each ≥ 1, each row summing to 2¹⁶.
    """
    heavy = weights > MIN_WEIGHT
    lo = torch.where(heavy, d - TAIL * scales, torch.inf).amin(1)
    hi = torch.where(heavy, d + TAIL * scales, -torch.inf).amax(1)
    lo, hi = torch.floor(lo + 0.5), torch.floor(hi + 0.5)
    width = (hi - lo + 1).clamp(2, MAX_WIDTH)
    lo = torch.where(
        hi - lo + 1 > MAX_WIDTH, torch.round((weights * d).sum(1)) - MAX_WIDTH // 2, lo
    )
    bucket = torch.searchsorted(WIDTHS, width.long())  # the first bucket wide enough
    order = torch.argsort(bucket, stable=True)
    counts = torch.bincount(bucket, minlength=len(WIDTHS)).tolist()
    out = []
    for L, idx in zip(WIDTHS.tolist(), order.split(counts), strict=True):
        if len(idx):
            step = max(1, 2**22 // (L + 1))  # bounds the (m, L + 1) temporaries
            freq = [_frequencies(weights[i], d[i], scales[i], lo[i], L) for i in idx.split(step)]
            out.append((idx, lo[idx].long(), torch.cat(freq)))
    return out


def code_length(symbols: Tensor, tables: Tables) -> float:
    """Bits the range coder spends on integer ``symbols`` (flat, relative to the centre)
    under ``tables``, escapes included: the ideal length, before the coder's termination."""
    bits = 0.0
    for idx, lo, freq in tables:
        s = symbols.flatten()[idx].long()
        L = freq.shape[1] - 1
        k = s - lo
        out = (k < 0) | (k >= L)
        f = freq.gather(1, torch.where(out, L, k).unsqueeze(1))
        bits += float((PRECISION - torch.log2(f.double())).sum())
        dist = torch.where(k < 0, -k, k - L + 1)[out]
        nb = torch.floor(torch.log2(dist.double()))  # side, ⌊log2 m⌋, the bits below
        bits += float((1 + 5 + nb).sum())
    return bits


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2))


def _frequencies(weights, d, scales, lo, L: int) -> Tensor:
    """(n, L + 1) integer frequencies of the bins lo … lo+L−1 and the escape bin."""
    edges = lo.unsqueeze(1) + (torch.arange(L + 1, dtype=torch.float64) - 0.5)
    # Φ((e − μ)/σ) = ½·erfc(−(e − μ)/(σ√2)), accumulated one component at a time, in place.
    inv = -1 / (scales * math.sqrt(2))
    half_weights = weights / 2
    cdf = torch.zeros_like(edges)
    for k in range(weights.shape[1]):
        t = (edges - d[:, k : k + 1]).mul_(inv[:, k : k + 1]).erfc_()
        cdf.addcmul_(t, half_weights[:, k : k + 1])
    pmf = torch.cat([cdf.diff(dim=1), (cdf[:, :1] + 1 - cdf[:, -1:])], dim=1).clamp_min(0)
    total = 1 << PRECISION
    freq = torch.floor(pmf * (total - L - 1)).long() + 1
    top = freq.argmax(dim=1, keepdim=True)
    return freq.scatter_add(1, top, total - freq.sum(dim=1, keepdim=True))


def _escapes(s: np.ndarray, lo: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Side (1: above the support) and distance ≥ 1 from it of escaped values."""
    above = s >= lo + L
    return above.astype(np.int32), np.where(above, s - (lo + L) + 1, lo - s)


def _probabilities(freq: Tensor) -> np.ndarray:
    # f / 2¹⁶ is exact in float64; constriction re-quantises it deterministically.
    return freq.numpy() / (1 << PRECISION)


class Encoder:
    """One range coder per image; each ``encode`` codes every element of one pass with the
    tables ``density.tables(params, centre)`` builds."""

    def __init__(self, density, batch: int):
        self.density = density
        self.coders = [constriction.stream.queue.RangeEncoder() for _ in range(batch)]

    def encode(self, symbols: Tensor, params: Tensor, centre: Tensor) -> None:
        symbols = symbols.cpu()
        for b, coder in enumerate(self.coders):
            s_all = symbols[b].reshape(-1).long().numpy()
            sides, dists = [], []
            for idx, lo, freq in self.density.tables(params[b : b + 1], centre[b : b + 1]):
                s, lo, L = s_all[idx.numpy()], lo.numpy(), freq.shape[1] - 1
                k = s - lo
                out = (k < 0) | (k >= L)
                coder.encode(
                    np.where(out, L, k).astype(np.int32), _CATEGORICAL, _probabilities(freq)
                )
                side, dist = _escapes(s[out], lo[out], L)
                sides.append(side)
                dists.append(dist)
            dist = np.concatenate(dists)
            if len(dist):
                encode_escapes(coder, np.concatenate(sides), dist)

    def finish(self) -> list[bytes]:
        return [coder.get_compressed().astype("<u4").tobytes() for coder in self.coders]


class Decoder:
    """Reads the streams of :class:`Encoder`, pass by pass in the same order."""

    def __init__(self, density, strings: list[bytes]):
        self.density = density
        self.coders = [
            constriction.stream.queue.RangeDecoder(np.frombuffer(s, "<u4").astype(np.uint32))
            for s in strings
        ]

    def decode(self, params: Tensor, centre: Tensor) -> Tensor:
        out = []
        for b, coder in enumerate(self.coders):
            s_all = np.zeros(centre[b].numel(), dtype=np.int64)
            esc_idx, esc_lo, esc_end = [], [], []
            for idx, lo, freq in self.density.tables(params[b : b + 1], centre[b : b + 1]):
                L = freq.shape[1] - 1
                k = coder.decode(_CATEGORICAL, _probabilities(freq)).astype(np.int64)
                idx, lo = idx.numpy(), lo.numpy()
                s_all[idx] = lo + k
                out_ = k == L
                esc_idx.append(idx[out_])
                esc_lo.append(lo[out_])
                esc_end.append(lo[out_] + L - 1)
            idx = np.concatenate(esc_idx)
            if len(idx):
                sides, dist = decode_escapes(coder, len(idx))
                lo, end = np.concatenate(esc_lo), np.concatenate(esc_end)
                s_all[idx] = np.where(sides == 1, end + dist, lo - dist)
            out.append(torch.from_numpy(s_all))
        return torch.stack(out).reshape(centre.shape).to(centre)


_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_CHUNKS = (0, 12, 24)  # the bits below an escape distance's leading one, 12 at a time


def encode_escapes(coder, sides: np.ndarray, dist: np.ndarray) -> None:
    """Side (one uniform bit), then the distance m ≥ 1 in Elias-gamma style: ⌊log2 m⌋
    (uniform over 0…31), then the bits below the leading one in chunks of ≤ 12."""
    if dist.max() >= 2**31:
        raise ValueError("a latent value is out of the codable range (|y| >= 2^31)")
    model = constriction.stream.model
    coder.encode(sides, model.Uniform(2))
    nb = np.array([int(m).bit_length() - 1 for m in dist], dtype=np.int64)
    coder.encode(nb.astype(np.int32), model.Uniform(32))
    rest = dist - (1 << nb)
    for shift in _CHUNKS:
        bits = np.clip(nb - shift, 0, 12)
        sel = bits > 0
        if sel.any():
            chunk = (rest[sel] >> shift) & ((1 << bits[sel]) - 1)
            coder.encode(chunk.astype(np.int32), model.Uniform(), (1 << bits[sel]).astype(np.int32))


def decode_escapes(coder, n: int) -> tuple[np.ndarray, np.ndarray]:
    model = constriction.stream.model
    sides = coder.decode(model.Uniform(2), n)
    nb = coder.decode(model.Uniform(32), n).astype(np.int64)
    dist = 1 << nb
    for shift in _CHUNKS:
        bits = np.clip(nb - shift, 0, 12)
        sel = bits > 0
        if sel.any():
            chunk = coder.decode(model.Uniform(), (1 << bits[sel]).astype(np.int32))
            dist[sel] += chunk.astype(np.int64) << shift
    return sides, dist
