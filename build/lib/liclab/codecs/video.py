"""Still images through video codecs (PyAV): the colour transform and one-frame encode/decode.

The RGB <-> YCbCr transform is done here in numpy, not left to swscale, so that the result is
fixed by this file rather than by the FFmpeg build. It is the full-range BT.601 matrix of JFIF
(ITU-T T.871), which BPG uses by default (``bpgenc -c ycbcr``)::

    Y  =  0.299    R + 0.587    G + 0.114    B
    Cb = -0.168736 R - 0.331264 G + 0.5      B + 128
    Cr =  0.5      R - 0.418688 G - 0.081312 B + 128

    R = Y + 1.402 (Cr - 128)
    G = Y - 0.344136 (Cb - 128) - 0.714136 (Cr - 128)
    B = Y + 1.772 (Cb - 128)

with rounding to the nearest integer and clipping to [0, 255] after each direction.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from liclab import LiclabError

_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
_YCBCR_TO_RGB = np.array(
    [
        [1.0, 0.0, 1.402],
        [1.0, -0.344136, -0.714136],
        [1.0, 1.772, 0.0],
    ]
)


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W, 3)`` uint8 full-range BT.601 YCbCr."""
    ycc = image.astype(np.float64) @ _RGB_TO_YCBCR.T
    ycc[..., 1:] += 128.0
    return np.clip(np.rint(ycc), 0, 255).astype(np.uint8)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`."""
    x = ycc.astype(np.float64)
    x[..., 1:] -= 128.0
    return np.clip(np.rint(x @ _YCBCR_TO_RGB.T), 0, 255).astype(np.uint8)


def encode_frame(
    codec: str, planes: list[np.ndarray], pix_fmt: str, options: dict[str, str]
) -> bytes:
    """Encode one frame given as uint8 planes; returns the raw elementary stream.

    The width and height are those of the first plane; the stream carries them (HEVC SPS with
    its conformance window, AV1 sequence header), so nothing else is needed to decode.
    """
    import av

    height, width = planes[0].shape
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.options = options
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, data in zip(frame.planes, planes, strict=True):
        padded = np.zeros((plane.height, plane.line_size), np.uint8)
        padded[: data.shape[0], : data.shape[1]] = data
        plane.update(padded)
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def decode_frame(codec: str, data: bytes) -> list[np.ndarray]:
    """Decode the single frame in ``data``; returns its planes as 2-D uint8 arrays."""
    import av

    ctx = av.CodecContext.create(codec, "r")
    try:
        frames = [f for p in ctx.parse(data) + ctx.parse(None) for f in ctx.decode(p)]
        frames += ctx.decode(None)
    except av.error.FFmpegError as exc:
        raise LiclabError(f"{codec}: cannot decode the bitstream ({exc})") from None
    if len(frames) != 1:
        raise LiclabError(f"{codec}: expected one frame in the bitstream, got {len(frames)}")
    return [
        np.frombuffer(bytes(p), np.uint8).reshape(p.height, p.line_size)[:, : p.width]
        for p in frames[0].planes
    ]


def pyav_version() -> str:
    """PyAV and libavcodec versions; the wheel pins the codec libraries it bundles."""
    import av

    libavcodec = ".".join(map(str, av.library_versions["libavcodec"]))
    return f"PyAV {av.__version__} libavcodec {libavcodec}"


def fixed_options(options: dict[str, str]) -> str:
    """The encoder options but ``qp`` (the sweep knob), for ``version()`` and cache keys."""
    return " ".join(f"{k}={v}" for k, v in sorted(options.items()) if k != "qp")
