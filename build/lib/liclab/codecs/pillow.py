"""The part shared by the codecs that Pillow links (JPEG, WebP, JPEG 2000)."""

from __future__ import annotations

import io

import numpy as np


class PillowCodec:
    """Encode with ``Image.save(format=fmt, **options)``, decode with ``Image.open``.

    Subclasses set ``name``, ``fmt``, ``feature`` (the ``PIL.features`` name of the library),
    ``knob`` (the save option that ``setting`` sweeps) and ``setting``, and return the save
    options from ``options()``; ``version()`` names the library and the other options. The
    bytes are the whole file Pillow writes, headers included, as CompressAI's reference curves
    count them.
    """

    name: str
    fmt: str
    feature: str
    knob: str
    setting: str

    def options(self) -> dict:
        raise NotImplementedError

    def encode(self, image: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=self.fmt, **self.options())
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).copy()

    def library(self) -> str:
        """The codec library and its version, as Pillow reports it."""
        from PIL import features

        return f"{self.feature} {features.version(self.feature)}"

    def version(self) -> str:
        import PIL

        opts = " ".join(f"{k}={v}" for k, v in sorted(self.options().items()) if k != self.knob)
        return f"Pillow {PIL.__version__} {self.library()} {opts}"
