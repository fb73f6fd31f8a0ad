"""JPEG XL (ISO/IEC 18181) anchor through libjxl, by the ``pillow-jxl-plugin`` wheel."""

from __future__ import annotations

import numpy as np

from liclab.codecs.pillow import PillowCodec


class JpegXL(PillowCodec):
    """Lossy JPEG XL (VarDCT on XYB), a bare codestream without the ISOBMFF container.

    Args:
        quality: libjxl's quality, 0 to 100 (mapped by libjxl to a Butteraugli distance;
            90 ≈ distance 1, "visually lossless"); the sweep knob.
        effort: encoder effort, 1 (fastest) to 9; 7 is libjxl's default.

    Single-threaded encoding, so that images can be encoded in parallel processes.
    """

    name = "jpegxl"
    fmt = "JXL"
    knob = "quality"

    def __init__(self, quality: int = 75, effort: int = 7):
        if not 0 <= quality < 100:
            raise ValueError(f"jpegxl: lossy quality must be in [0, 100), got {quality}")
        if not 1 <= effort <= 9:
            raise ValueError(f"jpegxl: effort must be in [1, 9], got {effort}")
        self.quality, self.effort = quality, effort
        self.setting = f"quality={quality}"
        _register()  # fail at set-up, not once per image

    def options(self) -> dict:
        return {
            "quality": self.quality,
            "effort": self.effort,
            "lossless": False,
            "use_container": False,
            "num_threads": 1,
        }

    def encode(self, image: np.ndarray) -> bytes:
        _register()
        return super().encode(image)

    def decode(self, data: bytes) -> np.ndarray:
        _register()
        return super().decode(data)

    def library(self) -> str:
        from importlib.metadata import version

        return f"pillow-jxl-plugin {version('pillow-jxl-plugin')}"


def _register() -> None:
    """Registers the JXL format with Pillow, or says what to install."""
    try:
        import pillow_jxl  # noqa: F401
    except ImportError:
        from liclab import LiclabError

        raise LiclabError(
            "jpegxl: needs the pillow-jxl-plugin wheel: pip install 'liclab[jxl]'"
        ) from None
