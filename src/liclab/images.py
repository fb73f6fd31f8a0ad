"""Reading and writing images as 8-bit RGB arrays, with clear errors for bad input.

Every codec in liclab (learned or traditional) takes and returns ``uint8`` arrays of shape
``(H, W, 3)``. :func:`load_rgb` converts what can be converted (grayscale, RGBA, 16-bit,
palette, CMYK, EXIF rotation) and says so in the returned notes; it refuses the rest with a
:class:`~liclab.LiclabError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from liclab import LiclabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")

# 8000 x 6000 x 3 is ~144 M samples; the models' activations are ~(N / 3) x larger at stride 2,
# which is several GiB on a 24 GiB machine. Refuse above this rather than die in the allocator.
MAX_PIXELS = int(os.environ.get("LICLAB_MAX_PIXELS", 40_000_000))


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files below ``root`` (recursive), sorted; an error if there are none."""
    root = Path(root)
    if not root.exists():
        raise LiclabError(f"{root}: no such folder")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LiclabError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def load_rgb(path: str | os.PathLike, min_size: int = 1) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` as an ``(H, W, 3)`` uint8 array.

    Returns the array and a list of notes describing any conversion that was applied.
    Raises :class:`LiclabError` (message starts with the file name) for unreadable files,
    images smaller than ``min_size`` on a side, or images over ``MAX_PIXELS``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    name = path.name
    notes: list[str] = []
    try:
        if path.stat().st_size == 0:
            raise LiclabError(f"{name}: empty file")
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise LiclabError(
                    f"{name}: {im.width}x{im.height} exceeds the {MAX_PIXELS} pixel limit "
                    "(set LICLAB_MAX_PIXELS to raise it if you have the memory)"
                )
            transposed = ImageOps.exif_transpose(im)
            if transposed.size != im.size or transposed is not im:
                if im.getexif().get(0x0112, 1) != 1:
                    notes.append("rotated by its EXIF orientation")
            im = transposed
            im.load()
            arr = _to_rgb8(im, notes)
    except LiclabError:
        raise
    except FileNotFoundError:
        raise LiclabError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise LiclabError(f"{name}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise LiclabError(f"{name}: unreadable image ({exc})") from None
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise LiclabError(f"{name}: {w}x{h} is smaller than the minimum {min_size} px side")
    return arr, notes


def _to_rgb8(im, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 or mode.startswith("I;16") else 255.0
        a = np.clip(np.round(a / peak * 255.0), 0, 255).astype(np.uint8)
        notes.append(f"converted 16-bit ({mode}) to 8-bit")
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        notes.append(f"dropped the alpha channel of a {mode} image")
    elif mode == "P":
        notes.append("expanded a palette image to RGB")
    elif mode in ("L", "1"):
        notes.append("replicated a grayscale image to RGB")
    elif mode == "CMYK":
        notes.append("converted CMYK to RGB")
    else:
        notes.append(f"converted {mode} to RGB")
    if mode in ("RGBA", "LA", "PA", "P"):
        im = im.convert("RGBA")
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def to_chw(arr: np.ndarray):
    """``(H, W, 3)`` uint8 array → ``(3, H, W)`` uint8 tensor (what training keeps in memory)."""
    import torch

    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. np.asarray of a PIL image: torch wants to own it
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_tensor(arr: np.ndarray):
    """``(H, W, 3)`` uint8 array → ``(1, 3, H, W)`` float tensor in [0, 1] (a model's input)."""
    return to_chw(arr)[None].float().div_(255.0)


def to_uint8(x) -> np.ndarray:
    """``(1, 3, H, W)`` float tensor in [0, 1] → ``(H, W, 3)`` uint8 array, rounding to nearest."""
    return x[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def save_rgb(arr: np.ndarray, path: str | os.PathLike) -> None:
    """Write an ``(H, W, 3)`` uint8 array as a lossless image (format from the suffix)."""
    from PIL import Image

    Image.fromarray(arr).save(path)
