"""AV1 intra anchor: SVT-AV1 through PyAV on 4:2:0 YCbCr, decoded by dav1d."""

from __future__ import annotations

import os

import numpy as np

from liclab.codecs.video import (
    decode_frame,
    encode_frame,
    fixed_options,
    pyav_version,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)

# SVT-AV1 prints a banner to stderr for every encoder it opens unless this is set before.
os.environ.setdefault("SVT_LOG", "0")


class AV1:
    """One AV1 key frame coded by libsvtav1 at a constant QP.

    RGB goes to full-range BT.601 YCbCr in numpy (the matrix is in :mod:`liclab.codecs.video`);
    chroma is subsampled to 4:2:0 by a 2x2 box filter (odd sizes: the last row/column are
    replicated first) and upsampled after decoding by bilinear interpolation (centre siting, the
    match of the box filter). SVT-AV1 codes only 4:2:0 in its Main profile, and this PyAV build
    has no libaom, so 4:4:4 AV1 is not offered. The bytes are the raw OBU stream (temporal
    delimiter, sequence header with the frame size, one frame), decoded by libdav1d.

    Args:
        qp: the constant quantiser, 1 (best) to 63; the sweep knob. SVT-AV1 by default lowers
            a key frame's quantiser well below ``qp`` (so that ``qp=63`` still costs ~0.3 bpp
            on Kodak); ``use-fixed-qindex-offsets=1`` turns that off and lets the sweep reach
            low rates, at ~1.4 % BD-rate where both settings overlap.
        preset: SVT-AV1 speed preset, 0 (slowest) to 13.

    Not the recipe of CompressAI's ``av1`` reference curve (unstated; this one is ~19 % BD-rate
    above it on Kodak, 4:2:0 chroma costing RGB PSNR at high rates).
    """

    name = "av1"

    def __init__(self, qp: int = 32, preset: int = 6):
        if not 1 <= qp <= 63:
            raise ValueError(f"av1: qp must be in [1, 63], got {qp}")
        self.qp, self.preset = qp, preset
        self.setting = f"qp={qp}"

    def options(self) -> dict[str, str]:
        """The libsvtav1 options of FFmpeg (``-svtav1-params`` as documented by SVT-AV1)."""
        params = "rc=0:use-fixed-qindex-offsets=1:color-range=1:matrix-coefficients=bt601"
        return {"preset": str(self.preset), "qp": str(self.qp), "svtav1-params": params}

    def encode(self, image: np.ndarray) -> bytes:
        ycc = rgb_to_ycbcr(image)
        planes = [ycc[..., 0], _downsample(ycc[..., 1]), _downsample(ycc[..., 2])]
        return encode_frame("libsvtav1", planes, "yuv420p", self.options())

    def decode(self, data: bytes) -> np.ndarray:
        y, cb, cr = decode_frame("libdav1d", data)
        size = y.shape
        return ycbcr_to_rgb(np.stack([y, _upsample(cb, size), _upsample(cr, size)], axis=-1))

    def version(self) -> str:
        return f"{pyav_version()} libsvtav1 {fixed_options(self.options())}"


def _downsample(c: np.ndarray) -> np.ndarray:
    h, w = c.shape
    c = np.pad(c.astype(np.float64), ((0, h % 2), (0, w % 2)), mode="edge")
    c = c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2).mean(axis=(1, 3))
    return np.clip(np.rint(c), 0, 255).astype(np.uint8)


def _upsample(c: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    even = (h + h % 2, w + w % 2)
    up = Image.fromarray(c.astype(np.float32)).resize((even[1], even[0]), Image.BILINEAR)
    return np.clip(np.rint(np.asarray(up)[:h, :w]), 0, 255).astype(np.uint8)
