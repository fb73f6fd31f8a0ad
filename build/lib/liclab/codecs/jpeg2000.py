"""JPEG 2000 (ITU-T T.800) anchor through Pillow's OpenJPEG."""

from __future__ import annotations

from liclab.codecs.pillow import PillowCodec


class JPEG2000(PillowCodec):
    """Lossy JPEG 2000: irreversible colour transform and 9/7 wavelet, one quality layer.

    Args:
        ratio: target compression ratio against 24-bit RGB (OpenJPEG's ``rates`` mode), so
            about ``24 / ratio`` bpp; the sweep knob (a higher ratio is a lower quality).

    CompressAI's ``jpeg2000`` reference curve came from FFmpeg's libopenjpeg wrapper with
    ``-compression_level``; OpenJPEG is the same library, so only the rate control differs.
    The file is a raw codestream (``.j2k``), without the JP2 box wrapper.
    """

    name = "jpeg2000"
    fmt = "JPEG2000"
    feature = "jpg_2000"
    knob = "quality_layers"

    def __init__(self, ratio: float = 20.0):
        if not ratio >= 1:
            raise ValueError(f"jpeg2000: ratio must be >= 1, got {ratio}")
        self.ratio = ratio
        self.setting = f"ratio={ratio:g}"

    def options(self) -> dict:
        return {
            "quality_mode": "rates",
            "quality_layers": [self.ratio],
            "irreversible": True,
            "mct": 1,
            "no_jp2": True,
        }
