"""Metrics, losses, the .lic container and image loading on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from liclab import LiclabError
from liclab.bitstream import Bitstream, pack, unpack
from liclab.images import load_rgb
from liclab.losses import MSE, bpp_terms
from liclab.metrics import bpp, ms_ssim, ms_ssim_db, psnr


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 16  # MSE = 256 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 256))
    assert psnr(a, a) == math.inf


def test_ms_ssim_identity_and_db():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    assert ms_ssim(a, 255 - a) < 0.5
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert bpp(100, 10, 80) == 1.0


def test_bpp_terms_count_bits():
    lik = {"y": torch.full((1, 2, 4, 4), 0.5), "z": torch.full((1, 1, 2, 2), 0.25)}
    terms = bpp_terms(lik, torch.zeros(1, 3, 4, 4))  # 16 pixels
    assert terms["bpp_y"].item() == pytest.approx(2.0)  # 32 bits / 16 px
    assert terms["bpp_z"].item() == pytest.approx(0.5)  # 8 bits / 16 px
    assert terms["bpp"].item() == pytest.approx(2.5)


def test_mse_loss_is_rate_plus_lambda_distortion():
    x = torch.zeros(1, 3, 4, 4)
    out = {"x_hat": torch.full_like(x, 0.1), "likelihoods": {"y": torch.full((1, 1, 2, 2), 0.5)}}
    terms = MSE(lmbda=0.01)(out, x)
    assert terms["loss"].item() == pytest.approx(4 / 16 + 0.01 * 255**2 * 0.01)  # 4 bits over 16 px


def test_bitstream_roundtrip_and_corruption():
    bs = Bitstream(
        "ScaleHyperprior", b"12345678", (512, 768), (8, 12), [b"abc", b"", b"\x00" * 300]
    )
    data = pack(bs)
    assert unpack(data) == bs
    with pytest.raises(LiclabError, match="truncated|CRC"):
        unpack(data[:-5], "f.lic")
    flipped = bytearray(data)
    flipped[20] ^= 1
    with pytest.raises(LiclabError, match="f.lic"):
        unpack(bytes(flipped), "f.lic")
    with pytest.raises(LiclabError, match="not a liclab bitstream"):
        unpack(b"\x89PNG....", "f.lic")


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


def test_crop_sequence_ignores_the_global_rng():
    from liclab.data import RandomCrops

    images = [torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8) for _ in range(3)]
    a = RandomCrops(images, 16, 10, seed=5)
    b = RandomCrops(images, 16, 10, seed=5)
    first = [a[i] for i in range(10)]
    torch.rand(1000)  # a noise quantizer drawing from the global RNG in between
    second = [b[i] for i in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    assert not torch.equal(first[0], RandomCrops(images, 16, 10, seed=6)[0])
    small = RandomCrops([torch.zeros(3, 8, 12, dtype=torch.uint8)], 16, 1)[0]
    assert small.shape == (3, 16, 16)  # smaller than the crop: upscaled, not padded
