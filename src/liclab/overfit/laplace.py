"""Discretised Laplace distributions as integer frequency tables, and their range coding.

The ARM gives every latent a mean μ and a log-scale; an encoder and a decoder must turn them
into the same integer frequencies on every machine. Three steps, each exact:

1. **Snap** μ to a 1/32 grid and ln b to a 1/16 grid, ``ln b = (S − 74)/16`` for the scale
   index S ∈ [0, 154] (ln b ∈ [−4.625, 5], the ARM's clamp [−4.6, 5] on an integer origin):
   the distribution is then one of a finite set, indexed by S and the mean's offset ``m``
   from its nearest integer ``n0`` (``μ = n0 + m/32``, m ∈ [−16, 16)).
2. **Tables** (integer frequencies summing to 2¹⁶, each ≥ 1, from ``⌊p·(2¹⁶ − W)⌋ + 1`` with
   the remainder on the most probable bin, the recipe of :mod:`liclab.entropy.coder`):

   - a *window* table per (S, m): the 15 bins ``n0 − 7 … n0 + 7`` and an escape bin with the
     mass outside (16 entries: constriction's cost per element grows with the width, and a
     wider window saved no bytes on Kodak);
   - a *tail* table per S: beyond the window the Laplace is geometric, so an escaped value is
     a side and a distance d ≥ 1 past the window's edge, P(d) ∝ e^{−d/b} whatever μ;
     d = 1 … 2^c − 1 and an escape bin, where 2^c − 1 ≥ ``TAIL``·b (the scale's class c).
     Past that, d is sent in Elias-gamma style (:func:`liclab.entropy.coder.encode_escapes`).

   The tables depend on constants only and are built once per process; their one
   transcendental (``exp``) may differ by an ulp between CPUs, and the test suite checks that
   such differences move no integer.
3. **Code** with constriction's range coder: a batch of latents is one call with their window
   rows; the few escaped ones follow (a uniform side bit, their tail tables by class). One
   call per batch keeps a wavefront step cheap (:mod:`liclab.overfit.wavefront`).
"""

from __future__ import annotations

import functools
import math

import constriction
import numpy as np

from liclab.entropy.coder import decode_escapes, encode_escapes
from liclab.overfit.arm import LOG_SCALE_RANGE

PRECISION = 16
MU_BITS = 5
MU_STEPS = 1 << MU_BITS  # the mean's grid: 1/32
SCALE_STEPS = 16  # the log-scale's grid: 1/16 in ln b
SCALE_ORIGIN = -math.floor(LOG_SCALE_RANGE[0] * SCALE_STEPS)  # 74: S of ln b = 0
NUM_SCALES = round(LOG_SCALE_RANGE[1] * SCALE_STEPS) + SCALE_ORIGIN + 1
WINDOW_BITS = 4
WINDOW = (1 << WINDOW_BITS) - 1  # bins of the window table, escape excluded
HALF = WINDOW // 2
TAIL = 11.0  # scales a tail table covers: e^{−11} ≈ 2⁻¹⁶, the escape bin's own floor
MAX_CLASS = 12

CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_SIDE = constriction.stream.model.Uniform(2)


def scale_of(s: np.ndarray | int) -> np.ndarray:
    """The scale b of scale index ``S``."""
    return np.exp((np.asarray(s, dtype=np.float64) - SCALE_ORIGIN) / SCALE_STEPS)


def class_of(s: np.ndarray | int) -> np.ndarray:
    """log2 of the tail table's width for scale index ``S``: the smallest power of two with
    ``2^c − 1 ≥ TAIL·b``, at least 2."""
    need = np.ceil(TAIL * scale_of(s)) + 1
    return np.clip(np.ceil(np.log2(need)).astype(np.int64), 2, MAX_CLASS)


CLASSES = class_of(np.arange(NUM_SCALES))
"""The tail class of every scale index (increasing with it)."""


MU_OFFSET = MU_STEPS // 2 - HALF * MU_STEPS
"""The ARM's mean output is ``32·μ + MU_OFFSET``: rounded, its bits above the fifth are the
window's first value n0 − 7, the five below the mean's offset from n0 (+16)."""


def snap(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mq, S) from the ARM's two outputs ``o`` (n, 2) in grid units, ``32·μ + MU_OFFSET`` and
    ``16·ln b + SCALE_ORIGIN`` (:class:`liclab.overfit.exact.ExactARM` folds the units into
    its last layer): ``mq = round(32·μ) + MU_OFFSET`` and the clamped scale index S, int64
    (``o`` is overwritten). Only correctly rounded operations."""
    np.rint(o, out=o)
    np.clip(o[:, 1], 0.0, NUM_SCALES - 1.0, out=o[:, 1])
    q = o.astype(np.int64)
    return q[:, 0], q[:, 1]


def _split(mq: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, window key) of offset means ``mq = 32·(n0 − 7) + m + 16`` (m ∈ [−16, 16), n0 the
    nearest integer to μ): the window's first value and the key ``32·S + m + 16``."""
    return mq >> MU_BITS, (s << MU_BITS) + (mq & (MU_STEPS - 1))


def _frequencies(pmf: np.ndarray) -> np.ndarray:
    """Integer frequencies (each ≥ 1, rows summing to 2¹⁶) of probability rows."""
    total, width = 1 << PRECISION, pmf.shape[1]
    freq = np.floor(np.maximum(pmf, 0.0) * (total - width)).astype(np.int64) + 1
    top = np.argmax(freq, axis=1)
    freq[np.arange(len(freq)), top] += total - freq.sum(axis=1)
    return freq


def window_table(s: np.ndarray, m: np.ndarray, exp=np.exp) -> np.ndarray:
    """(n, 16) frequencies of the bins −7 … 7 around n0 and the escape bin, for scale
    indexes ``s`` and mean offsets ``m`` (μ − n0 = m/32). (``exp``: the test suite perturbs it
    by a few ulps to show the integers do not move.)"""
    b = scale_of(s)[:, None]
    f = np.asarray(m, dtype=np.float64)[:, None] / MU_STEPS
    edges = np.arange(-HALF, HALF + 2, dtype=np.float64)[None, :] - 0.5 - f
    tail = 0.5 * exp(-np.abs(edges) / b)
    cdf = np.where(edges < 0, tail, 1.0 - tail)
    return _frequencies(np.concatenate([np.diff(cdf, axis=1), cdf[:, :1] + tail[:, -1:]], 1))


def tail_table(s: np.ndarray, cls: int, exp=np.exp) -> np.ndarray:
    """(n, 2^cls) frequencies of the distances d = 1 … 2^cls − 1 past the window and an escape
    bin: P(d) = (1 − q)·q^{d−1}, q = e^{−1/b}."""
    b = scale_of(s)[:, None]
    d = np.arange(1, 1 << cls, dtype=np.float64)[None, :]
    pmf = (1.0 - exp(-1.0 / b)) * exp(-(d - 1.0) / b)
    return _frequencies(np.concatenate([pmf, exp(-((1 << cls) - 1.0) / b)], 1))


@functools.cache
def window_bank() -> np.ndarray:
    """Window probabilities of every key ``32·S + m + 16``, as f / 2¹⁶ (exact in float64)."""
    s = np.repeat(np.arange(NUM_SCALES), MU_STEPS)
    m = np.tile(np.arange(-MU_STEPS // 2, MU_STEPS // 2), NUM_SCALES)
    return window_table(s, m) / (1 << PRECISION)


@functools.cache
def tail_bank(cls: int) -> tuple[int, np.ndarray]:
    """(first scale index, tail probabilities) of the scales of class ``cls``."""
    scales = np.flatnonzero(CLASSES == cls)
    return int(scales[0]), tail_table(scales, cls) / (1 << PRECISION)


def encode(coder, v: np.ndarray, mq: np.ndarray, s: np.ndarray) -> None:
    """Append integers ``v`` (int64) under the snapped distributions (mq, S) to ``coder``
    (a constriction queue RangeEncoder), in the order :func:`decode` reads them."""
    lo, key = _split(mq, s)
    k = v - lo
    out = (k < 0) | (k >= WINDOW)
    coder.encode(np.where(out, WINDOW, k).astype(np.int32), CATEGORICAL, window_bank()[key])
    if out.any():
        k, s = k[out], s[out]
        above = k >= WINDOW
        coder.encode(above.astype(np.int32), _SIDE)
        d = np.where(above, k - (WINDOW - 1), -k)
        for cls, idx in _classes(s):
            first, probs = tail_bank(cls)
            top = (1 << cls) - 1
            coder.encode(np.minimum(d[idx] - 1, top).astype(np.int32), CATEGORICAL,
                         probs[s[idx] - first])  # fmt: skip
            far = d[idx] > top
            if far.any():
                encode_escapes(coder, np.zeros(int(far.sum()), np.int32), d[idx][far] - top)


def decode(coder, mq: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The integers :func:`encode` appended for these distributions (int64)."""
    lo, key = _split(mq, s)
    k = coder.decode(CATEGORICAL, window_bank()[key])
    if k.max() == WINDOW:
        k = escaped(coder, k, s)
    return lo + k


def escaped(coder, k: np.ndarray, s: np.ndarray) -> np.ndarray:
    """A batch's window symbols ``k`` with every escape replaced by its value's offset from
    the window's first value, read from ``coder`` (side bits, then tails by class)."""
    k = k.astype(np.int64)
    where = np.flatnonzero(k == WINDOW)
    above = coder.decode(_SIDE, len(where)) == 1
    s = s[where]
    d = np.empty(len(where), dtype=np.int64)
    for cls, idx in _classes(s):
        first, probs = tail_bank(cls)
        top = (1 << cls) - 1
        d[idx] = coder.decode(CATEGORICAL, probs[s[idx] - first]) + 1
        far = idx[d[idx] > top]
        if len(far):
            d[far] = top + decode_escapes(coder, len(far))[1]
    k[where] = np.where(above, WINDOW - 1 + d, -d)
    return k


def _classes(s: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(tail class, indexes) of escaped elements, classes ascending, indexes in order."""
    cls = CLASSES[s]
    return [(int(c), np.flatnonzero(cls == c)) for c in np.unique(cls)]


def bits(v: np.ndarray, mq: np.ndarray, s: np.ndarray) -> float:
    """The ideal code length of ``v`` under the tables, escapes included (bits)."""
    lo, key = _split(mq, s)
    k = v - lo
    out = (k < 0) | (k >= WINDOW)
    total = -float(np.log2(window_bank()[key, np.where(out, WINDOW, k)]).sum())
    k, s = k[out], s[out]
    d = np.where(k >= WINDOW, k - (WINDOW - 1), -k)
    total += len(k)  # the side bits
    for cls, idx in _classes(s):
        first, probs = tail_bank(cls)
        top = (1 << cls) - 1
        total -= float(np.log2(probs[s[idx] - first, np.minimum(d[idx] - 1, top)]).sum())
        total += escape_bits(d[idx][d[idx] > top] - top)
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
    if len(data) % 4:
        raise ValueError("a range-coded string is whole 32-bit words")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))


def finish(coder) -> bytes:
    return coder.get_compressed().astype("<u4").tobytes()
