"""HEVC intra anchor: x265 through PyAV, on 4:4:4 YCbCr, the recipe of BPG (Bellard 2014).

Learned-compression papers since Ballé et al. 2018 (arXiv:1802.01436) compare against "BPG
4:4:4", i.e. one HEVC intra picture coded by x265 from full-range BT.601 YCbCr 4:4:4. This
module reproduces it without the ``bpgenc`` binary.
"""

from __future__ import annotations

import numpy as np

from liclab.codecs.video import (
    decode_frame,
    encode_frame,
    fixed_options,
    pyav_version,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)


class HEVC:
    """One HEVC (H.265) intra frame coded by libx265 at a constant QP.

    ``encode`` converts RGB to full-range BT.601 YCbCr in numpy (the matrix is in
    :mod:`liclab.codecs.video`), codes it as ``yuv444p`` (Main 4:4:4 profile), and returns the
    raw Annex-B stream (VPS, SPS, PPS, one IDR slice; no SEI). The SPS carries the size: x265
    pads to its minimum CU size internally and signals the crop in the SPS conformance window, so
    any width and height round-trip and nothing is added to the bytes. ``decode`` uses
    FFmpeg's native ``hevc`` decoder.

    Args:
        qp: the constant quantiser, 0 (best) to 51; the sweep knob.
        preset: x265 speed preset.
        tune: x265 tuning.

    Deviations from BPG (``bpgenc -f 444 -e x265 -c ycbcr -b 8``), which CompressAI's
    ``bpg_444_x265_ycbcr`` reference curve used:

    - ``qp`` is x265's QP; ``bpgenc -q q`` passes ``q + 1`` to x265.
    - BPG's default ``-m 8`` runs x265's ``placebo`` preset with tune ``ssim``; the default here
      is ``slow``, which on Kodak is within 0.1 % BD-rate of the reference curve at a fraction
      of the time (``results/anchors-kodak/README.md``). With a constant QP, x265 turns adaptive
      quantisation off, so tunes ``psnr`` and ``ssim`` give the same bytes.
    - BPG replaces the VPS and SPS with its own compact header; here the parameter sets stay
      in (about 80 bytes per image, 0.002 bpp on Kodak) so that the bytes are a standard HEVC
      stream, and the VUI signals full range and the BT.601 matrix.
    """

    name = "hevc"

    def __init__(self, qp: int = 32, preset: str = "slow", tune: str = "psnr"):
        if not 0 <= qp <= 51:
            raise ValueError(f"hevc: qp must be in [0, 51], got {qp}")
        self.qp, self.preset, self.tune = qp, preset, tune
        self.setting = f"qp={qp}"

    def options(self) -> dict[str, str]:
        """The libx265 options of FFmpeg (``-x265-params`` as documented by x265)."""
        params = "keyint=1:info=0:log-level=none:range=full:colormatrix=bt470bg"
        return {"preset": self.preset, "tune": self.tune, "qp": str(self.qp), "x265-params": params}

    def encode(self, image: np.ndarray) -> bytes:
        ycc = rgb_to_ycbcr(image)
        return encode_frame("libx265", [ycc[..., c] for c in range(3)], "yuv444p", self.options())

    def decode(self, data: bytes) -> np.ndarray:
        return ycbcr_to_rgb(np.stack(decode_frame("hevc", data), axis=-1))

    def version(self) -> str:
        return f"{pyav_version()} libx265 {fixed_options(self.options())}"
