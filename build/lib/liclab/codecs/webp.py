"""WebP (lossy, VP8 intra) anchor through Pillow's libwebp."""

from __future__ import annotations

from liclab.codecs.pillow import PillowCodec


class WebP(PillowCodec):
    """Lossy WebP: VP8 key frame on limited-range BT.601 YCbCr 4:2:0 (libwebp's own conversion).

    Args:
        quality: libwebp quality, 0 to 100; the sweep knob.
        method: libwebp effort, 0 (fast) to 6 (slowest, best); 4 is the libwebp and Pillow
            default, which CompressAI's ``webp`` reference curve used.
    """

    name = "webp"
    fmt = "WEBP"
    feature = "webp"
    knob = "quality"

    def __init__(self, quality: int = 75, method: int = 4):
        if not 0 <= quality <= 100:
            raise ValueError(f"webp: quality must be in [0, 100], got {quality}")
        self.quality, self.method = quality, method
        self.setting = f"quality={quality}"

    def options(self) -> dict:
        return {"quality": self.quality, "method": self.method, "lossless": False}
