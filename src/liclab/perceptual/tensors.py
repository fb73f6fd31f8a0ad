"""Inputs of the learned metrics: uint8 RGB arrays or float batches, on the chosen device."""

from __future__ import annotations

import numpy as np
import torch

from liclab.images import to_tensor


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, else the GPU when there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_batch(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """An ``(N, 3, H, W)`` float32 batch in [0, 1] on ``device``.

    Accepts a uint8 ``(H, W, 3)`` array (one image) or a float tensor ``(N, 3, H, W)`` /
    ``(3, H, W)`` already in [0, 1].
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
        return to_tensor(image).to(device)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
        raise ValueError(f"expected a float (N, 3, H, W) tensor, got {image.dtype} {image.shape}")
    return image.to(device=device, dtype=torch.float32)


def pair(a, b, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images of a full-reference metric as channels-last batches (the cached models are
    channels-last: ~20 % faster convolutions on this CPU); their shapes must agree."""
    x, y = as_batch(a, device), as_batch(b, device)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    return tuple(t.contiguous(memory_format=torch.channels_last) for t in (x, y))


def score(model: torch.nn.Module, a, b, device: torch.device) -> float | np.ndarray:
    """``model(a, b)`` without gradients: a float for one image, an ``(N,)`` array for a batch."""
    with torch.no_grad():
        d = model(*pair(a, b, device)).double().cpu().numpy()
    return float(d[0]) if isinstance(a, np.ndarray) else d
