"""Discretised Laplace distributions as integer frequency tables, and their range coding.

The ARM gives every latent a mean μ and a log-scale; an encoder and a decoder must turn them
into the same integer frequencies on every machine. Three steps, each exact:

1. **Snap** μ to a 1/32 grid and ln b (clamped as the ARM clamps it) to a 1/16 grid: the
   distribution is then one of a finite set, indexed by the scale index ``S`` and the mean's
   offset ``m`` from its nearest integer ``n0`` (so ``μ = n0 + m/32``, m ∈ [−16, 16)).
2. **Tables**: for each (S, m) the integer frequencies (summing to 2¹⁶, each ≥ 1) of the bins
   ``n0 − h … n0 + h`` and of one *escape* bin, from ``⌊p·(2¹⁶ − W)⌋ + 1`` with the remainder
   on the most probable bin (the recipe of :mod:`liclab.entropy.mixture`). ``W = 2h + 2`` is
   a power of two, the scale's *class*: the support covers ``TAIL`` scales either side. The
   tables are a function of constants only, built once per process and class; the one
   transcendental in them (``exp``) may differ by an ulp between CPUs, so the test suite
   checks that no table entry lies within 1e−9 of a rounding boundary (then every faithful
   ``exp`` gives the same integers).
3. **Code** with constriction's range coder, one call per class present in a batch; values
   outside the support code the escape bin, then their side and Elias-gamma distance
   (:func:`liclab.entropy.mixture._encode_escapes`).

The latents' coder reads its tables from a bank (rows gathered per batch); the network
parameters use single rows (``m = 0``) through :func:`table`.
"""

from __future__ import annotations

import functools

import constriction
import numpy as np

from liclab.entropy.mixture import _decode_escapes, _encode_escapes
from liclab.overfit.arm import LOG_SCALE_RANGE

PRECISION = 16
MU_BITS = 5
MU_STEPS = 1 << MU_BITS  # the mean's grid: 1/32
SCALE_STEPS = 16  # the log-scale's grid: 1/16 in ln b
LOG_SCALE_MIN, LOG_SCALE_MAX = LOG_SCALE_RANGE
NUM_SCALES = round((LOG_SCALE_MAX - LOG_SCALE_MIN) * SCALE_STEPS) + 1
TAIL = 11.0  # scales covered either side of μ: e^{−11} ≈ 2⁻¹⁶, the escape's own floor
MAX_CLASS = 12  # at most 4095 bins + escape: the ARM's largest scale (e^5 ≈ 148) fits
MIN_CLASS = 5  # at least 31 bins: fewer classes per batch (a batch costs per class, and
# constriction's cost per element barely grows below 32 bins)

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def scale_of(s: np.ndarray | int) -> np.ndarray:
    """The scale b of scale index ``S``."""
    return np.exp(LOG_SCALE_MIN + np.asarray(s, dtype=np.float64) / SCALE_STEPS)


def class_of(s: np.ndarray | int) -> np.ndarray:
    """log2 of the table width W (bins + escape) for scale index ``S``: the smallest power of
    two with ``W/2 − 1 ≥ TAIL·b + ½``, at least 2^MIN_CLASS."""
    need = np.ceil(TAIL * scale_of(s) + 0.5) + 1  # h + 1 ≤ W / 2
    return np.clip(np.ceil(np.log2(need)).astype(np.int64) + 1, MIN_CLASS, MAX_CLASS)


CLASSES = class_of(np.arange(NUM_SCALES))
"""The class of every scale index (increasing with it)."""


SCALE_UNITS_MAX = round((LOG_SCALE_MAX - LOG_SCALE_MIN) * SCALE_STEPS)


def snap(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mq, S) from the ARM's two outputs ``o`` (n, 2) in grid units, ``32·μ + 16`` and
    ``16·(ln b − LOG_SCALE_MIN)`` (:class:`liclab.overfit.exact.ExactARM` folds the units into
    its last layer): ``mq = round(32·μ) + 16`` and the clamped scale index S, int64 (``o`` is
    overwritten). Only correctly rounded operations."""
    np.rint(o, out=o)
    np.clip(o[:, 1], 0.0, SCALE_UNITS_MAX, out=o[:, 1])
    q = o.astype(np.int64)
    return q[:, 0], q[:, 1]


def _split(mq: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n0, bank key) of offset means ``mq = 32·n0 + m + 16`` (m ∈ [−16, 16)): the nearest
    integer to μ and the key ``32·S + m + 16``."""
    return mq >> MU_BITS, s * MU_STEPS + (mq & (MU_STEPS - 1))


def table(s: np.ndarray, m: np.ndarray, cls: int, exp=np.exp) -> np.ndarray:
    """(n, 2^cls) int64 frequencies for scale indexes ``s`` and mean offsets ``m`` (rows):
    bins −h … h around n0 (h = 2^(cls−1) − 1), escape last; each ≥ 1, each row 2¹⁶.
    (``exp``: the test suite perturbs it by a few ulps to show the tables do not move.)"""
    width = 1 << cls
    h = width // 2 - 1
    b = scale_of(s)[:, None]
    f = np.asarray(m, dtype=np.float64)[:, None] / MU_STEPS
    edges = np.arange(-h, h + 2, dtype=np.float64)[None, :] - 0.5 - f
    tail = 0.5 * exp(-np.abs(edges) / b)
    cdf = np.where(edges < 0, tail, 1.0 - tail)
    pmf = np.concatenate([np.diff(cdf, axis=1), cdf[:, :1] + (1.0 - cdf[:, -1:])], axis=1)
    total = 1 << PRECISION
    freq = np.floor(np.maximum(pmf, 0.0) * (total - width)).astype(np.int64) + 1
    top = np.argmax(freq, axis=1)
    freq[np.arange(len(freq)), top] += total - freq.sum(axis=1)
    return freq


@functools.cache
def bank(cls: int) -> tuple[int, np.ndarray]:
    """(first key, probabilities) of one class: row ``key − first`` for the key
    ``32·S + m + 16`` of every S of the class and m ∈ [−16, 16), as f / 2¹⁶ (exact)."""
    scales = np.flatnonzero(CLASSES == cls)
    s = np.repeat(scales, MU_STEPS)
    m = np.tile(np.arange(-MU_STEPS // 2, MU_STEPS // 2), len(scales))
    return int(scales[0]) * MU_STEPS, table(s, m, cls) / (1 << PRECISION)


def _groups(s: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
    """(class, indexes) of a batch's elements, classes ascending, indexes in batch order;
    None for a batch of one class."""
    cls = CLASSES[s]
    counts = np.bincount(cls, minlength=MAX_CLASS + 1)
    present = np.flatnonzero(counts)
    if len(present) == 1:
        return [(int(present[0]), None)]
    order = np.argsort(cls, kind="stable")
    ends = np.cumsum(counts[present])
    return [
        (int(c), order[e - n : e]) for c, n, e in zip(present, counts[present], ends, strict=True)
    ]


def _rows(key: np.ndarray, cls: int) -> np.ndarray:
    first, probs = bank(cls)
    return probs[key - first]


def encode(coder, v: np.ndarray, mq: np.ndarray, s: np.ndarray) -> None:
    """Append integers ``v`` (int64) under the snapped distributions (mq, S) to ``coder``
    (a constriction queue RangeEncoder), in the order :func:`decode` reads them."""
    n0, key = _split(mq, s)
    sides, dists = [], []
    for cls, idx in _groups(s):
        h = (1 << (cls - 1)) - 1
        k = v - n0 + h if idx is None else v[idx] - n0[idx] + h
        out = (k < 0) | (k > 2 * h)
        rows = _rows(key if idx is None else key[idx], cls)
        coder.encode(np.where(out, 2 * h + 1, k).astype(np.int32), _CATEGORICAL, rows)
        if out.any():
            above = k[out] > 2 * h
            sides.append(above.astype(np.int32))
            dists.append(np.where(above, k[out] - 2 * h, -k[out]))
    if sides:
        _encode_escapes(coder, np.concatenate(sides), np.concatenate(dists))


def decode(coder, mq: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The integers :func:`encode` appended for these distributions (int64)."""
    n0, key = _split(mq, s)
    groups = _groups(s)
    if groups[0][1] is None:  # one class: no gathering
        cls = groups[0][0]
        k = coder.decode(_CATEGORICAL, _rows(key, cls))
        v = n0 + (k - ((1 << (cls - 1)) - 1))
        if k.max() == (1 << cls) - 1:
            _escaped(coder, v, [(np.flatnonzero(k == (1 << cls) - 1), cls)], n0)
        return v
    v = np.empty(len(s), dtype=np.int64)
    escaped = []
    for cls, idx in groups:
        k = coder.decode(_CATEGORICAL, _rows(key[idx], cls))
        v[idx] = n0[idx] + (k - ((1 << (cls - 1)) - 1))
        if k.max() == (1 << cls) - 1:
            escaped.append((idx[k == (1 << cls) - 1], cls))
    if escaped:
        _escaped(coder, v, escaped, n0)
    return v


def _escaped(coder, v, escaped: list[tuple[np.ndarray, int]], n0) -> None:
    """Decode the escaped values (indexes and class of each group) into ``v``."""
    where = np.concatenate([idx for idx, _ in escaped])
    h = np.concatenate([np.full(len(idx), (1 << (cls - 1)) - 1) for idx, cls in escaped])
    sides, dist = _decode_escapes(coder, len(where))
    v[where] = np.where(sides == 1, n0[where] + h + dist, n0[where] - h - dist)


def bits(v: np.ndarray, mq: np.ndarray, s: np.ndarray) -> float:
    """The ideal code length of ``v`` under the tables, escapes included (bits)."""
    n0, key = _split(mq, s)
    total = 0.0
    for cls, idx in _groups(s):
        idx = slice(None) if idx is None else idx
        h = (1 << (cls - 1)) - 1
        k = v[idx] - n0[idx] + h
        out = (k < 0) | (k > 2 * h)
        p = _rows(key[idx], cls)[np.arange(len(k)), np.where(out, 2 * h + 1, k)]
        total += escape_bits(np.where(k[out] > 2 * h, k[out] - 2 * h, -k[out]))
        total -= float(np.log2(p).sum())
    return total


def escape_bits(dist: np.ndarray) -> float:
    """Bits of escaped values at distances ``dist`` ≥ 1: a side bit, 5 bits of ⌊log2 d⌋ and
    the bits below the leading one."""
    if not len(dist):
        return 0.0
    return float(np.sum(6 + np.floor(np.log2(dist.astype(np.float64)))))


def uniform(size: int):
    """constriction's uniform model over 0 … size − 1."""
    return constriction.stream.model.Uniform(size)


def new_encoder():
    return constriction.stream.queue.RangeEncoder()


def new_decoder(data: bytes):
    return constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))


def finish(coder) -> bytes:
    return coder.get_compressed().astype("<u4").tobytes()
