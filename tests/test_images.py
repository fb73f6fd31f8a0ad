"""Reading images as 8-bit RGB: conversions said, bad files named in one line, tensors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liclab import LiclabError
from liclab.images import load_rgb

from conftest import smooth_image


@pytest.mark.parametrize(
    ("mode", "note"),
    [("L", "grayscale"), ("RGBA", "alpha"), ("P", "palette"), ("I;16", "16-bit")],
)
def test_load_rgb_converts_and_says_so(tmp_path, mode, note):
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    if mode == "I;16":
        im = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    else:
        im = im.convert(mode)
    im.save(path)
    arr, notes = load_rgb(path)
    assert arr.shape == (20, 30, 3) and arr.dtype == np.uint8
    assert any(note in n for n in notes)
    if mode == "I;16":
        assert np.array_equal(arr[..., 0], rgb[..., 0])


def test_load_rgb_errors_name_the_file(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    for name, msg in [
        ("text.png", "not an image"),
        ("empty.png", "empty"),
        ("gone.png", "no such"),
    ]:
        with pytest.raises(LiclabError, match=f"{name}: .*{msg}"):
            load_rgb(tmp_path / name)
    Image.new("RGB", (40, 70)).save(tmp_path / "small.png")
    with pytest.raises(LiclabError, match="small.png: 40x70 is smaller"):
        load_rgb(tmp_path / "small.png", min_size=64)


def _corpus(folder):
    """The bad-input corpus of the reliability issue, written to ``folder``."""
    rgb = smooth_image(65, 63, seed=2)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(smooth_image(40, 80)).save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(rgb[:1, :1]).save(folder / "one.png")
    Image.fromarray(rgb).save(folder / "odd.png")
    Image.fromarray(np.zeros((6000, 8000), np.uint8)).save(folder / "huge.png")
    png = (folder / "odd.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "readme.png").write_text("not an image")


def test_bad_input_corpus(tmp_path):
    _corpus(tmp_path)
    arr, notes = load_rgb(tmp_path / "cmyk.jpg")
    assert arr.shape == (65, 63, 3) and "converted CMYK to RGB" in notes
    arr, notes = load_rgb(tmp_path / "rotated.jpg")
    assert arr.shape == (80, 40, 3) and any("EXIF" in n for n in notes)
    assert load_rgb(tmp_path / "one.png")[0].shape == (1, 1, 3)
    assert load_rgb(tmp_path / "odd.png")[0].shape == (65, 63, 3)
    for name, problem in [
        ("huge.png", "8000x6000 exceeds the 40000000 pixel limit"),
        ("truncated.png", "unreadable image"),
        ("empty.png", "empty file"),
        ("readme.png", "not an image file"),
    ]:
        with pytest.raises(LiclabError, match=f"^{name}: {problem}"):
            load_rgb(tmp_path / name)
