"""The overfitted codec's decoder: exact networks, latents and image decoded side by side.

::

    main thread    range decoder + exact ARM (in C, GIL released), wavefront step by step ──▶ ŷ
                        │ progress (steps done)
    worker thread       └─ rows of ŷ_1 … ŷ_{L−1} done ─▶ their upsampling, row by row
                           rows of ŷ_0 done ──────────▶ (its pre-concatenation filter, a few
                                                        rows behind) ─▶ 1×1 layers ─▶ residual
                                                        3×3 layers (bands) ─▶ x̂

Every grid's wavefront completes its rows at a steady pace (one per k steps), a coarse grid's
rows well ahead of the finer rows they upsample to, so the image is reconstructed band by
band on the second core while the latents are still being decoded: the decoder's time is
about the wavefront's. Every row computes exactly what the whole-image pass
(:meth:`Decoder.image`, the encoder's) computes; C3's bilinear upsampling runs once its coarse
grids are done.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import Tensor

from liclab.overfit import exact
from liclab.overfit.wavefront import Wavefront

BAND = 16  # rows of the finest grid per band of the image
STRIDE = 128  # wavefront steps between the worker's looks at the coarse grids


class Decoder:
    """The exact networks of a file.

    Args:
        values: quantised parameters by ``"{module}.{name}"`` (float64 dyadic arrays).
        hidden_layers: the ARM's hidden layers.
        levels: L.
        learned: learned upsampling (Cool-chic) or bilinear (C3).
        pointwise: number of the synthesis's 1×1 layers.
        residual: number of its residual layers.
        activation: :func:`liclab.overfit.exact.relu` or :func:`~liclab.overfit.exact.gelu`.
        rounding: the ARM's rounding bits (0: none).
        preconcat: the learned upsampling has pre-concatenation filters (Cool-chic 5).
        preconcat_zeros: they read zeros outside their grid (else its edges).
        synthesis_stabiliser: the synthesis has a 1×1 stabiliser (Cool-chic 5).
        arm_stabiliser: the ARM has a linear stabiliser (Cool-chic 5).
        feature_maps: the ARM's inter-grid feature maps (Cool-chic 5; 0: none).
    """

    def __init__(
        self,
        values,
        hidden_layers,
        levels,
        learned,
        pointwise,
        residual,
        activation,
        rounding: int,
        preconcat: bool = False,
        preconcat_zeros: bool = False,
        synthesis_stabiliser: bool = False,
        arm_stabiliser: bool = False,
        feature_maps: int = 0,
    ):
        self.zeros = preconcat_zeros
        arm = [f"arm.layers.{i}" for i in range(hidden_layers + 1)]
        skip = (
            (values["arm.stabiliser.weight"], values["arm.stabiliser.bias"])
            if arm_stabiliser
            else None
        )
        fold = None
        if feature_maps:
            maps = [
                (values[f"arm.ifce.{g}.weight"], values[f"arm.ifce.{g}.bias"])
                for g in range(feature_maps)
            ]
            context = values["arm.layers.0.weight"].shape[1] - maps[0][0].shape[0]
            fold = exact.feature_fold(context, maps)
        self.arm = exact.ExactARM(
            [values[f"{n}.weight"] for n in arm],
            [values[f"{n}.bias"] for n in arm],
            rounding or None,
            skip,
            fold,
        )
        self.levels = levels

        def t(key: str) -> Tensor:
            return torch.from_numpy(values[key])

        self.kernels = (
            [t(f"upsampling.kernels.{i}") for i in range(levels - 1)] if learned else (None)
        )
        self.filters = (
            [t(f"upsampling.filters.{i}") for i in range(levels - 1)] if preconcat else None
        ) or None
        syn = "synthesis.pointwise"
        self.synthesis = exact.ExactSynthesis(
            [(t(f"{syn}.{i}.weight").flatten(1), t(f"{syn}.{i}.bias")) for i in range(pointwise)],
            [
                (t(f"synthesis.residual.{i}.weight"), t(f"synthesis.residual.{i}.bias"))
                for i in range(residual)
            ],
            activation,
            (
                (t("synthesis.stabiliser.weight").flatten(1), t("synthesis.stabiliser.bias"))
                if synthesis_stabiliser
                else None
            ),
        )

    def image(self, y_hat: list[Tensor], verify: bool = False) -> Tensor:
        """x̂ (1, 3, H, W) float64 of the grids (each (1, 1, h, w) float64), in one pass."""
        size = tuple(y_hat[0].shape[-2:])
        y_hat = y_hat[: self.levels]  # the hyperlatents reach the image through the ARM only
        up = exact.upsampled(y_hat[1:], size, self.kernels, verify, self.filters, self.zeros)
        y0 = y_hat[0]
        if self.filters:
            y0 = exact.prefiltered(y0, self.filters[0], verify=verify, zeros=self.zeros)
            y0 = y0 * 2.0**-exact.UP_BITS
        return self.synthesis(torch.cat([y0, up], dim=1), verify)

    def decode(self, wavefront: Wavefront, data: bytes) -> tuple[list[np.ndarray], Tensor]:
        """(grids, x̂ (1, 3, H, W)) of a latent string, the image reconstructed in a worker
        thread as the wavefront completes rows (see the module docstring). Torch's intra-op
        threads are set to one meanwhile (a process-wide setting, restored after): the two
        threads already keep two cores busy, and more would only contend for them."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._decode(wavefront, data)
        finally:
            torch.set_num_threads(threads)

    def _decode(self, wavefront: Wavefront, data: bytes) -> tuple[list[np.ndarray], Tensor]:
        progress = _Progress()
        canvas = wavefront.canvas()
        result: dict = {}
        worker = threading.Thread(
            target=self._reconstruct, args=(wavefront, canvas, progress, result), daemon=True
        )
        worker.start()
        try:
            y_hat = wavefront.decode(data, self.arm, canvas, progress.update)
        finally:
            progress.stop()
            worker.join()
        if "error" in result:
            raise result["error"]
        return y_hat, result["x_hat"]

    def _reconstruct(self, wavefront: Wavefront, canvas, progress: _Progress, result) -> None:
        try:
            result["x_hat"] = self._bands(wavefront, canvas, progress)
        except BaseException as exc:  # handed to the main thread
            result["error"] = exc

    def _bands(self, wavefront: Wavefront, canvas, progress: _Progress) -> Tensor | None:
        (h, w), levels = wavefront.shapes[0], wavefront.levels
        grids = [torch.from_numpy(g) for g in wavefront.views(canvas)[:levels]]
        if self.kernels is not None and levels > 1:  # upsampled row by row as grids decode
            stream = exact.UpsamplingStream(grids, self.kernels, self.filters, self.zeros)
        else:  # bilinear (C3): once the coarse grids are decoded
            stream = None
            if progress.wait(wavefront.finished(range(1, levels))) is None:
                return None
            coarse = [g.clone()[None, None] for g in grids[1:]]
            up = exact.upsampled(coarse, (h, w), self.kernels, filters=self.filters)[0]
        residual = len(self.synthesis.residual_layers)
        planes = [torch.empty(3, h, w, dtype=torch.float64) for _ in range(residual + 1)]
        done = [0] * (residual + 1)  # rows of each stage computed
        skip = (
            torch.empty(3, h, w, dtype=torch.float64)
            if self.synthesis.stabiliser is not None
            else None
        )
        finest = grids[0]
        # a pre-concatenation filter reads `pad` rows below the ones it outputs
        pad = self.filters[0].numel() - 1 if self.filters else 0
        steps = 0
        while done[-1] < h:
            wanted = wavefront.finished([0], done[0] + BAND + pad)
            if stream is not None:  # the coarse grids run ahead of the finest: upsample them
                wanted = min(wanted, steps + STRIDE)
            steps = progress.wait(min(max(wanted, steps + 1), wavefront.steps))
            if steps is None:
                return None
            ready = wavefront.rows_done(0, steps)
            ready = ready if ready == h else max(ready - pad, 0)
            if stream is not None:
                decoded = [wavefront.rows_done(level, steps) for level in range(levels)]
                ready = min(ready, stream.advance(decoded))
            if ready > done[0]:
                if self.filters:
                    y0 = exact.prefiltered(
                        finest, self.filters[0], done[0], ready, zeros=self.zeros
                    )
                    y0 = y0 * 2.0**-exact.UP_BITS
                else:
                    y0 = finest[done[0] : ready]
                rows = stream.rows(done[0], ready) if stream is not None else up[:, done[0] : ready]
                rows = torch.cat([y0[None], rows], 0).permute(1, 2, 0).reshape(-1, levels)
                x = self.synthesis.pointwise(rows)
                planes[0][:, done[0] : ready] = x.t().reshape(3, ready - done[0], w)
                if skip is not None:
                    skip[:, done[0] : ready] = self.synthesis.skip(rows).t().reshape(3, -1, w)
                done[0] = ready
            for i in range(residual):  # each layer one row behind its input (3×3)
                limit = h if done[i] == h else done[i] - 1
                if limit > done[i + 1]:
                    band = self.synthesis.residual(i, planes[i], done[i + 1], limit)
                    planes[i + 1][:, done[i + 1] : limit] = band
                    done[i + 1] = limit
        out = planes[-1] if skip is None else planes[-1] + skip
        return (out * 2.0**-exact.SYN_BITS)[None]


class _Progress:
    """Steps done by the wavefront, shared with the worker (which waits on it)."""

    def __init__(self):
        self.steps, self.final = 0, False
        self.cond = threading.Condition()

    def update(self, steps: int) -> None:
        with self.cond:
            self.steps = steps
            self.cond.notify()

    def stop(self) -> None:
        """No more steps will come (done, or decoding failed)."""
        with self.cond:
            self.final = True
            self.cond.notify()

    def wait(self, steps: int) -> int | None:
        """Steps done once at least ``steps`` are; None if decoding stopped short."""
        with self.cond:
            self.cond.wait_for(lambda: self.steps >= steps or self.final)
            return self.steps if self.steps >= steps else None
