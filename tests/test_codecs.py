"""Traditional codecs: round trip, rate and quality monotone in the knob, bitstream facts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from liclab.codecs.av1 import AV1
from liclab.codecs.hevc import HEVC
from liclab.codecs.jpeg import JPEG
from liclab.codecs.jpeg2000 import JPEG2000
from liclab.codecs.jpegxl import JpegXL
from liclab.codecs.video import rgb_to_ycbcr, ycbcr_to_rgb
from liclab.codecs.webp import WebP
from liclab.configs import codec_config, config_dir
from liclab.evaluate import codecs_at_points
from liclab.metrics import psnr

from conftest import smooth_image

# Each codec at three settings, from low to high quality.
SWEEPS = {
    "jpeg": [JPEG(quality=q) for q in (10, 50, 90)],
    "webp": [WebP(quality=q) for q in (10, 50, 90)],
    "jpeg2000": [JPEG2000(ratio=r) for r in (100, 20, 4)],
    "hevc": [HEVC(qp=q, preset="fast") for q in (45, 32, 20)],
    "av1": [AV1(qp=q, preset=8) for q in (55, 35, 15)],
    "jpegxl": [JpegXL(quality=q, effort=3) for q in (20, 60, 95)],
}
CODEC_CONFIGS = sorted(p.stem for p in (config_dir("eval") / "codec").glob("*.yaml"))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return smooth_image(97, 131, seed=3)  # odd sizes: padding and cropping must be exact


@pytest.mark.parametrize("name", SWEEPS)
def test_round_trip_with_rate_and_psnr_rising_with_quality(name, image, capfd):
    sizes, psnrs = [], []
    for codec in SWEEPS[name]:
        data = codec.encode(image)
        decoded = pickle.loads(pickle.dumps(codec)).decode(data)  # decoders need only the bytes
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        sizes.append(len(data))
        psnrs.append(psnr(image, decoded))
    assert sizes == sorted(sizes) and len(set(sizes)) == 3, sizes
    assert psnrs == sorted(psnrs) and psnrs[0] > 24 and psnrs[-1] > max(30, psnrs[0] + 2.5), psnrs
    out, err = capfd.readouterr()
    assert out == err == "", "codec libraries must not write to the terminal"


def test_hevc_near_lossless_and_a_plain_annex_b_stream(image):
    data = HEVC(qp=0, preset="ultrafast").encode(image)
    assert psnr(image, HEVC().decode(data)) > 45  # bounded by the 8-bit YCbCr round trip
    nal_types = [
        (data[i + 3] >> 1) & 0x3F for i in range(len(data) - 3) if data[i : i + 3] == b"\0\0\1"
    ]
    assert nal_types == [32, 33, 34, 19] or nal_types == [32, 33, 34, 20]  # VPS SPS PPS IDR


def test_ycbcr_is_full_range_bt601():
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]], np.uint8)
    ycc = rgb_to_ycbcr(rgb)
    assert ycc.tolist() == [[[255, 128, 128], [0, 128, 128], [76, 85, 255], [29, 255, 107]]]
    img = smooth_image(64, 64, seed=1)
    pil = np.asarray(Image.fromarray(img).convert("YCbCr")).astype(int)  # JFIF, fixed point
    assert np.abs(rgb_to_ycbcr(img).astype(int) - pil).max() <= 1
    assert psnr(img, ycbcr_to_rgb(rgb_to_ycbcr(img))) > 50


def test_jpeg_defaults_to_what_pillow_writes(image):
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=75)
    assert JPEG(quality=75).encode(image) == buf.getvalue()
    assert len(JPEG(75, subsampling="4:4:4").encode(image)) > len(buf.getvalue())


@pytest.mark.parametrize("name", CODEC_CONFIGS)
def test_every_codec_config_instantiates_at_its_operating_points(name, image):
    codecs = codecs_at_points(*codec_config(name))
    assert len(codecs) >= 4 and {c.name for c in codecs} == {name}
    assert len({c.setting for c in codecs}) == len(codecs)
    codec = codecs[len(codecs) // 2]
    if getattr(codec, "self_contained", False):  # an overfitted codec: a fit of a few steps
        codec.iterations = 8
    assert codec.decode(codec.encode(image)).shape == image.shape


def test_jpegxl_without_its_wheel_says_what_to_install(monkeypatch):
    from liclab import LiclabError

    monkeypatch.setitem(__import__("sys").modules, "pillow_jxl", None)  # import fails
    with pytest.raises(LiclabError, match=r"pillow-jxl-plugin.*liclab\[jxl\]"):
        JpegXL(quality=50)
