"""Coding the latent pyramid with the ARM, many latents per step: a wavefront over the grids.

A latent's distribution depends on its already decoded context (the ARM's causal offsets and,
optionally, the coarser grid), so a decoder cannot compute them all at once. It need not go
latent by latent either: latent (y, x) of grid l is decoded at step

    t = x + k·y + o_l,   k = 1 + max ⌊dx / −dy⌋ over the context offsets above the row

(k = 4 for a 24-value context, 2 for 8), and every context position has a smaller t: whole
anti-diagonals of every grid decode together. Without a coarse context every grid starts at
step 0 (o_l = 0), so the pyramid takes as many steps as its finest grid, w + k·(h − 1)
(2 812 for a 768×512 image); with one, grid l waits for its coarser grid, o_l = o_{l+1} + k + 2.
Each step gathers its latents' contexts from one zero-margined canvas holding every grid, runs
the exact ARM (:class:`liclab.overfit.exact.ExactARM`) on them, and range-codes them as one
batch (:mod:`liclab.overfit.laplace`). The decoder's steps run the ARM in C
(``_wavefront.c``: eight latents at a time, vectorised, the GIL released so that the image
worker runs meanwhile); numpy computes the same numbers where the extension is not built.
The encoder computes every latent's parameters in one pass (they are the same numbers) and
codes them in the decoder's order.
"""

from __future__ import annotations

import numpy as np

from liclab.overfit import laplace
from liclab.overfit.arm import COARSE_ORDER, CONTEXT_ORDER
from liclab.overfit.exact import ExactARM

try:  # the C step (built at install where a C compiler is at hand)
    from liclab.overfit import _wavefront
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _wavefront = None

_ROWS = 65536  # latents per chunk of the encoder's one pass
REPORT = 16  # steps between progress reports


class Wavefront:
    """The decoding schedule and canvas of a latent pyramid.

    With the ARM's inter-grid features (Cool-chic 5.0), each latent of a feature grid g also
    gathers the raw latents its feature map reads (grid j at (y >> s, x >> s) for each
    (j, s) of ``feature_inputs[g]``) into a block of its own, the other feature grids' blocks
    reading the zero cell, and one indicator per feature grid (the ones cell for its own
    grid): the rows :class:`~liclab.overfit.exact.ExactARM` folds the feature maps into.
    Hyperlatent grids (after the ``levels`` image grids) start with the image grid of their
    resolution; the grids wait for their coarser ones as with a coarse context. The C step
    computes those canvas indexes from each latent's position and :attr:`grid`; the numpy
    steps and the encoder's one pass read them from :attr:`coarse_pos`, built on first use.

    Args:
        shapes: (h, w) of each grid, finest first (the image grids, then the hyperlatents).
        context: K, the ARM's spatial context values (its first K of ``CONTEXT_ORDER``).
        coarse: C, its coarse context values (0: none).
        levels: the image grids (None: every grid).
        resolutions: each grid's l (resolution 2^−l); None: its index.
        feature_inputs: per feature grid, the (grid, shift) pairs its map reads
            (:meth:`liclab.overfit.arm.ARM.coarser`); empty: no features.
    """

    def __init__(
        self,
        shapes: list[tuple[int, int]],
        context: int,
        coarse: int = 0,
        levels: int | None = None,
        resolutions: list[int] | None = None,
        feature_inputs: list[list[tuple[int, int]]] = (),
    ):
        self.shapes = shapes
        self.levels = levels = levels or len(shapes)
        resolutions = list(resolutions) if resolutions is not None else list(range(len(shapes)))
        self.feature_inputs = [list(f) for f in feature_inputs]
        offsets, coarse_offsets = CONTEXT_ORDER[:context], COARSE_ORDER[:coarse]
        above = [(dy, dx) for dy, dx in offsets if dy < 0]
        self.k = 1 + max((dx // -dy for dy, dx in above), default=0)
        top = max((-dy for dy, _ in offsets), default=0)
        margin = max(1, max(abs(dx) for _, dx in offsets))
        heights = [h for h, _ in shapes]
        self.cols = np.cumsum([margin] + [w + margin for _, w in shapes])[:-1]
        self.top = max(top, 1)
        self.width = int(self.cols[-1] + shapes[-1][1] + margin)
        self.cells = (self.top + max(heights) + 1) * self.width
        self.size = 2 * self.cells  # the second half holds ones: the ARM's bias input
        self.offsets = np.array(
            [self.cells] + [dy * self.width + dx for dy, dx in offsets], dtype=np.int32
        )

        self.starts = starts = np.zeros(len(shapes), dtype=np.int64)  # o_l
        gathered = coarse or self.feature_inputs
        if gathered:
            for level in range(levels - 2, -1, -1):
                starts[level] = starts[level + 1] + self.k + 2
            for grid in range(levels, len(shapes)):
                starts[grid] = starts[resolutions[grid]]
        pos, step, cidx = [], [], []
        for level, (h, w) in enumerate(shapes):
            y, x = np.divmod(np.arange(h * w, dtype=np.int64), w)
            pos.append(self._flat(level, y, x))
            step.append(x + self.k * y + starts[level])
            if coarse:
                cidx.append(self._coarse(level, y, x, coarse_offsets))
        steps = np.concatenate(step)
        if steps.max() < 2**16:  # numpy's stable sort of 16-bit keys is a radix sort, ~5× faster
            steps = steps.astype(np.uint16)
        order = np.argsort(steps, kind="stable")
        counts = np.bincount(steps)
        self.order = order
        """Latents (indexes into the grids flattened and concatenated, finest first) in
        decoding order."""
        self.bounds = np.concatenate([[0], np.cumsum(counts)])
        """Step s decodes ``order[bounds[s]:bounds[s + 1]]``."""
        self.pos = np.concatenate(pos)[order]
        """Canvas index of each latent, in decoding order."""
        self.coarse_context = np.concatenate(cidx)[order] if coarse else None
        """Canvas indexes of each latent's coarse context, in decoding order; None without."""
        sizes = [h * w for h, w in shapes]
        grid = np.repeat(np.arange(len(shapes), dtype=np.int32), sizes)[order]
        self.grid = np.where(grid < len(self.feature_inputs), grid, -1).astype(np.int32)
        """Each latent's feature grid (its grid where that has inter-grid features, else −1),
        in decoding order: the C step computes the feature inputs' canvas indexes from it and
        the latent's position instead of reading a table of them."""
        self._gathered = bool(gathered)
        self._coarse_pos: np.ndarray | None = None

    @property
    def coarse_pos(self) -> np.ndarray | None:
        """Canvas indexes of each latent's gathered values after its spatial context (coarse
        context, feature blocks, indicators), in decoding order; None without. Built on first
        use (the encoder's one pass, the numpy steps): with Cool-chic 5's features it holds
        27 indexes per latent, which the C step computes instead."""
        if not self._gathered or self._coarse_pos is not None:
            return self._coarse_pos
        features = None
        if self.feature_inputs:
            parts = []
            for level, (h, w) in enumerate(self.shapes):
                y, x = np.divmod(np.arange(h * w, dtype=np.int64), w)
                parts.append(np.concatenate(self._features(level, y, x), axis=1))
            features = np.concatenate(parts)[self.order]
        columns = [c for c in (self.coarse_context, features) if c is not None]
        self._coarse_pos = np.concatenate(columns, axis=1)
        return self._coarse_pos

    @property
    def steps(self) -> int:
        return len(self.bounds) - 1

    def finished(self, levels, rows: int | None = None) -> int:
        """Steps after which the first ``rows`` rows (all if None) of every grid in ``levels``
        are decoded: row y of grid l ends at step w_l − 1 + k·y + o_l."""
        return max(
            (
                w + self.k * (min(rows or h, h) - 1) + int(self.starts[level])
                for level in levels
                for h, w in [self.shapes[level]]
            ),
            default=0,
        )

    def rows_done(self, level: int, steps: int) -> int:
        """Rows of grid ``level`` entirely decoded after ``steps`` steps."""
        h, w = self.shapes[level]
        return min(max((steps - w - int(self.starts[level])) // self.k + 1, 0), h)

    def _flat(self, level: int, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Canvas indexes (int32, as ``pos``: a canvas is far below 2^31 cells)."""
        return ((self.top + y) * self.width + self.cols[level] + x).astype(np.int32)

    def _coarse(self, level, y, x, coarse_offsets) -> np.ndarray:
        """Canvas indexes of the coarse context (the coarser grid around (y//2, x//2); the
        margins read zero, and the coarsest grid reads the zero cell 0)."""
        if level + 1 >= self.levels:
            return np.zeros((len(y), len(coarse_offsets)), dtype=np.int32)
        return np.stack(
            [self._flat(level + 1, y // 2 + dy, x // 2 + dx) for dy, dx in coarse_offsets], 1
        )

    def _features(self, level, y, x) -> list[np.ndarray]:
        """Canvas indexes of a grid's feature blocks and indicators (see the class)."""
        n, blocks, flags = len(y), [], []
        for g, inputs in enumerate(self.feature_inputs):
            if g == level:
                blocks.append(np.stack([self._flat(j, y >> s, x >> s) for j, s in inputs], 1))
            else:
                blocks.append(np.zeros((n, len(inputs)), dtype=np.int32))
            flags.append(np.full((n, 1), self.cells if g == level else 0, dtype=np.int32))
        return blocks + flags

    def canvas(self, y_hat: list[np.ndarray] | None = None) -> np.ndarray:
        """The flat float64 canvas: zero (or holding the grids ``y_hat``), then ones."""
        canvas = np.concatenate([np.zeros(self.cells), np.ones(self.cells)])
        if y_hat is not None:
            canvas[self.pos] = np.concatenate([y.reshape(-1) for y in y_hat])[self.order]
        return canvas

    def contexts(self, canvas: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Context rows (n, 1 + K + gathered) of the latents ``start:stop`` of the decoding
        order: a one (:class:`~liclab.overfit.exact.ExactARM`'s bias input), then the
        context."""
        ctx = canvas.take(self.pos[start:stop, None] + self.offsets)
        if self.coarse_pos is None:
            return ctx
        return np.concatenate([ctx, canvas[self.coarse_pos[start:stop]]], axis=1)

    def parameters(self, y_hat: list[np.ndarray], arm: ExactARM, verify: bool = False):
        """(mq, S) of every latent in decoding order (:func:`liclab.overfit.laplace.snap`),
        in one pass; ``verify`` checks the ARM's sums are exact."""
        canvas, n = self.canvas(y_hat), len(self.pos)
        out = [
            laplace.snap(arm(self.contexts(canvas, j, j + _ROWS), verify))
            for j in range(0, n, _ROWS)
        ]
        return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))

    def symbols(self, y_hat: list[np.ndarray]) -> np.ndarray:
        """The latents' integers in decoding order (int64)."""
        return np.concatenate([y.reshape(-1) for y in y_hat])[self.order].astype(np.int64)

    def encode(self, y_hat: list[np.ndarray], arm: ExactARM) -> bytes:
        """The latents ``y_hat`` (integer-valued arrays, finest first) as one range-coded
        string, in the decoder's order, with the decoder's distributions."""
        mq, s = self.parameters(y_hat, arm, verify=True)
        v = self.symbols(y_hat)
        coder = laplace.new_encoder()
        b = self.bounds
        for i in range(self.steps):
            sl = slice(b[i], b[i + 1])
            laplace.encode(coder, v[sl], mq[sl], s[sl])
        return laplace.finish(coder)

    def decode(self, data: bytes, arm: ExactARM, canvas=None, progress=None) -> list[np.ndarray]:
        """The grids (float64, finest first) from :meth:`encode`'s string, decoded into
        ``canvas`` (a fresh one if None); ``progress(steps done)`` is called every REPORT steps
        and at the end. Each step's ARM runs in C (:mod:`liclab.overfit._wavefront`, the GIL
        released) where the extension was built, else in numpy: the same numbers."""
        coder = laplace.new_decoder(data)
        canvas = self.canvas() if canvas is None else canvas
        report = progress or (lambda steps: None)
        make = self._c_step if _wavefront is not None else self._numpy_step
        step = make(canvas, arm, coder)
        for i in range(self.steps):
            step(i)
            if i % REPORT == REPORT - 1:
                report(i + 1)
        report(self.steps)
        return self.grids(canvas)

    def _numpy_step(self, canvas: np.ndarray, arm: ExactARM, coder):
        b, pos = self.bounds.tolist(), self.pos

        def step(i: int) -> None:
            o = arm(self.contexts(canvas, b[i], b[i + 1]))
            canvas[pos[b[i] : b[i + 1]]] = laplace.decode(coder, *laplace.snap(o))

        return step

    def c_stepper(self, canvas: np.ndarray, arm: ExactARM):
        """(stepper, table, lo, scale): the C extension's steps over ``canvas``;
        ``stepper.prepare(i)`` returns step i's n latents and fills ``table[:n]`` (window
        probabilities), ``lo[:n]`` (window starts) and ``scale[:n]`` (scale indexes)."""
        rows = int(np.diff(self.bounds).max(initial=1))
        bank = laplace.window_bank()
        table, lo, scale = (
            np.empty((rows, bank.shape[1])),
            np.empty(rows, np.int64),
            np.empty(rows, np.int64),
        )
        coarse = self.coarse_context if self.coarse_context is not None else np.empty(0, np.int32)
        features = None
        if self.feature_inputs:  # (g, j, s) rows grouped by g: the C step gathers them
            inputs = [(g, j, s) for g, pairs in enumerate(self.feature_inputs) for j, s in pairs]
            features = (
                self.grid, np.array(inputs, np.int32).reshape(-1, 3),
                self.cols.astype(np.int64), self.width, self.top, len(self.feature_inputs),
            )  # fmt: skip
        stepper = _wavefront.Stepper(
            canvas, self.pos, self.offsets, np.ascontiguousarray(coarse, np.int32),
            self.bounds.astype(np.int64), bank, table, lo, scale, [*arm.hidden, arm.out],
            arm.rounding is not None, laplace.MU_BITS, arm.skip, features,
        )  # fmt: skip
        return stepper, table, lo, scale

    def _c_step(self, canvas: np.ndarray, arm: ExactARM, coder):
        stepper, table, _, scale = self.c_stepper(canvas, arm)
        prepare, store, decode = stepper.prepare, stepper.store, coder.decode
        categorical = laplace.CATEGORICAL

        def step(i: int) -> None:
            n = prepare(i)
            k = decode(categorical, table[:n])
            if store(k, True):  # rare: an escape; its value follows the window symbols
                store(laplace.escaped(coder, k, scale[:n]), False)

        return step

    def grids(self, canvas: np.ndarray) -> list[np.ndarray]:
        """The grids, finest first, read back from a canvas (copies)."""
        return [view.copy() for view in self.views(canvas)]

    def views(self, canvas: np.ndarray) -> list[np.ndarray]:
        """The grids, finest first, as views into a canvas (they fill as it is decoded)."""
        rows = canvas[: self.cells].reshape(-1, self.width)
        r0 = self.top
        return [
            rows[r0 : r0 + h, c0 : c0 + w]
            for (h, w), c0 in zip(self.shapes, self.cols.tolist(), strict=True)
        ]
