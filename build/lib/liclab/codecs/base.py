"""The codec protocol shared by learned models and traditional codecs.

The evaluator, result files, plots and BD-rate code only ever see this interface::

    codec.encode(image) -> bytes      image: (H, W, 3) uint8 RGB
    codec.decode(data)  -> image      the same shape and dtype

A codec object is one operating point: a traditional codec is built with its quality knob
(``JPEG(quality=75)``), a learned codec with its trained weights. ``bytes`` are everything a
decoder needs, so ``8 * len(data) / (H * W)`` is the honest bpp.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Codec(Protocol):
    """One operating point of an image codec.

    Attributes:
        name: the codec family, used as the curve name (``"jpeg"``, ``"hevc"``, a model name).
        setting: the operating point within the family (a quality, a QP, a checkpoint name).
    """

    name: str
    setting: str

    def encode(self, image: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...

    def version(self) -> str:
        """A string that changes whenever the codec's output may change (for result caches)."""
        ...
