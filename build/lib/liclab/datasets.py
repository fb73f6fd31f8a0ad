"""Named data sets and image lists.

``resolve_images(spec)`` turns a config value into a list of image files. A spec is:

* a folder or a file path (searched recursively for PNG/JPEG/...),
* ``"kodak"`` — the 24 Kodak images: ``$LIC_DATA/kodak`` if present, else downloaded from
  their public home into ``$LIC_CACHE`` (default ``~/.cache/liclab``) and checked against
  the SHA-256 sums below,
* ``"skimage"`` — the colour photographs that ship inside scikit-image (no download), so a
  fresh machine with no data set and no network can still train a toy model,
* a list of specs — the first that resolves wins (``[${data_dir}/photos40, skimage]``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.request
from pathlib import Path

from liclab import LiclabError
from liclab.images import list_images

log = logging.getLogger(__name__)

KODAK_URL = "https://r0k.us/graphics/kodak/kodak/{name}"
KODAK_SHA256 = {
    "kodim01.png": "6b4fbe6f3e8e0e20150d5b0c32248bf072e22b5989d415f96f796c5b7004a70f",
    "kodim02.png": "1788370471429d992750a09caf6702ac74e56962447de02520d4b161738c0369",
    "kodim03.png": "b9c800ee568f0b18c983817df08d9f7f24a7ddb3abfdc31bde9234c4fde83137",
    "kodim04.png": "0c60c62599ad33fd78b29c36013fbe4120946f6c327c0ef0ec6983297fb48d23",
    "kodim05.png": "ccf694ceb6bbf431e0009ed0d5573a8ff0915095b69ddfb527b91d8325897f5e",
    "kodim06.png": "f4212cc927d1d579c712843cf8320c7eccb571e5ea80456022ffe99d67e9cd5d",
    "kodim07.png": "7cdd6d63ae0a245f6f9d983d740e11c6808c2efc24f8351aad9b5f676c27b55a",
    "kodim08.png": "5a6a089bdb47605287c00d89ebf2a5312981eb998c94b5853d917c93a9066cdb",
    "kodim09.png": "4d8d801592aeaf446978bbd1c83b76c498242d0f684769311a4e7248289500bf",
    "kodim10.png": "7aca487dc83db732a5690b7affe8558e9dadf5bb44a4589ba2b607480a07228b",
    "kodim11.png": "c7c02bd6e942d1181518e3ce2d97cf0451e4494a5e9d6ddee276940e4875d746",
    "kodim12.png": "df571f5e66d1aefd764ea77855e81e3be61528c34962a0fd1d50557502162c1e",
    "kodim13.png": "797949ce1152ef157ff0a1231c95cb8ed7641615e0b0f5f77f851a44aee19e8d",
    "kodim14.png": "08a1898d5702f32e7d9f94a94651d74a62cb9325475775a558b388c8d98f1846",
    "kodim15.png": "416c475f39b0eb9203ce7f77d2af8824f5bffc1a86a4605865017f04c41639b9",
    "kodim16.png": "5d03303693decdf7a1e1e930b5ca6684283aa80a9e7d8d6a842a74fa5f790640",
    "kodim17.png": "19d90e98e5835efae20a6e17e22e5ac6814ee2c8efb32d188ea4359abaf9f5bd",
    "kodim18.png": "83df267dfec61e9b9d3756c422502160b2fab595650c73a8b12940540ad09ec5",
    "kodim19.png": "86560efe85a13413b228ef7e42dde0d439b25a94fb8e2d6fb1dc1631cf48853b",
    "kodim20.png": "1ae187d92b3a4483b6717f7fd08592846ffdfc340c6424f6756627a27f3d8ea7",
    "kodim21.png": "26e193795108c4b5ec47206ae4ff07a353d2492947f7a7ae8d380e042b74027b",
    "kodim22.png": "627b76fccf714b4ddffb739b2eb63ba2817cf5b5a8e222079542dcf2cfdda939",
    "kodim23.png": "85c67d7ea758cb0604fb6980ab0c65091a2eefa7b3b50cbb1bc702a60206dfe5",
    "kodim24.png": "9f1c26df52217bd49f998a720a2ffeba41a535cf826f4ae32e355fb2b0bbc0fe",
}

# Colour photographs in scikit-image's package data (the rest are grayscale, synthetic or
# microscopy).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "chelsea.png",
)


def data_root() -> Path:
    return Path(os.environ.get("LIC_DATA", "data"))


def resolve_images(spec) -> list[Path]:
    """The image files a config value names (see the module docstring)."""
    if isinstance(spec, (list, tuple)) or type(spec).__name__ == "ListConfig":
        if spec and all(isinstance(p, Path) for p in spec):
            return list(spec)  # an explicit list of files
        errors = []
        for item in spec:
            try:
                found = resolve_images(item)
            except LiclabError as exc:
                errors.append(str(exc))
                continue
            if errors:  # a fallback: say which source was missing and which one is used
                log.info("liclab: %s; using %s", "; ".join(errors), item)
            return found
        raise LiclabError("none of the data sources exist: " + "; ".join(errors))
    if isinstance(spec, Path):
        return list_images(spec)
    spec = str(spec)
    if spec == "kodak":
        return kodak()
    if spec == "skimage":
        return skimage_photos()
    if not Path(spec).exists():
        raise LiclabError(f"{spec}: no such folder (data is found through $LIC_DATA)")
    return list_images(spec)


def skimage_photos() -> list[Path]:
    import skimage

    root = Path(skimage.__file__).parent / "data"
    files = [root / name for name in SKIMAGE_PHOTOS if (root / name).exists()]
    if not files:
        raise LiclabError(f"{root}: scikit-image ships no sample photographs here")
    return files


def kodak(root: str | os.PathLike | None = None) -> list[Path]:
    """The Kodak test set: ``root`` (default ``$LIC_DATA/kodak``), downloaded if absent."""
    local = Path(root) if root is not None else data_root() / "kodak"
    if all((local / name).exists() for name in KODAK_SHA256):
        return [local / name for name in KODAK_SHA256]
    cache = Path(os.environ.get("LIC_CACHE", Path.home() / ".cache" / "liclab")) / "kodak"
    log.info("liclab: %s has no Kodak images; downloading them into %s", local, cache)
    cache.mkdir(parents=True, exist_ok=True)
    for name, digest in KODAK_SHA256.items():
        target = cache / name
        if target.exists() and _sha256(target) == digest:
            continue
        try:
            with urllib.request.urlopen(KODAK_URL.format(name=name), timeout=30) as r:
                data = r.read()
        except OSError as exc:
            raise LiclabError(
                f"{local}: Kodak not found locally and the download failed ({exc}); "
                "put the images in $LIC_DATA/kodak"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise LiclabError(f"{name}: downloaded file fails its SHA-256 check")
        tmp = target.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return [cache / name for name in KODAK_SHA256]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
