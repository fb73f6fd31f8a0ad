"""JPEG anchor (ITU-T T.81) through Pillow's libjpeg-turbo."""

from __future__ import annotations

from liclab.codecs.pillow import PillowCodec


class JPEG(PillowCodec):
    """Baseline JPEG with libjpeg's standard quality scaling of the Annex K tables.

    Args:
        quality: libjpeg quality, 1 to 100 (Pillow advises against above 95); the sweep knob.
        subsampling: chroma subsampling, ``"4:2:0"`` (the default, libjpeg's standard and what
            ``Image.save`` does without the argument, so CompressAI's ``jpeg`` reference curve
            used it), ``"4:2:2"`` or ``"4:4:4"``.

    The colour transform is libjpeg's full-range BT.601 (JFIF) with its own rounding, and the
    decoder upsamples chroma with libjpeg's default ("fancy", triangular) filter. No Huffman
    optimisation and no progressive mode, as in ``Image.save`` defaults.
    """

    name = "jpeg"
    fmt = "JPEG"
    feature = "libjpeg_turbo"
    knob = "quality"

    def __init__(self, quality: int = 75, subsampling: str = "4:2:0"):
        if not 1 <= quality <= 100:
            raise ValueError(f"jpeg: quality must be in [1, 100], got {quality}")
        if subsampling not in ("4:2:0", "4:2:2", "4:4:4"):
            raise ValueError(f"jpeg: subsampling must be 4:2:0, 4:2:2 or 4:4:4, not {subsampling}")
        self.quality, self.subsampling = quality, subsampling
        self.setting = f"quality={quality}"

    def options(self) -> dict:
        return {"quality": self.quality, "subsampling": self.subsampling}
