"""A trained model as a codec: corrupt files detected, wrong models refused, the same image
in every process and thread count, the float32 synthesis option, tiny images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from liclab import LiclabError
from liclab.cli.codec import verify
from liclab.codecs.learned import LearnedCodec

from conftest import smooth_image


@pytest.fixture(scope="module")
def codec(trained_ckpt):
    return LearnedCodec.from_checkpoint(trained_ckpt)


def test_fuzzed_bitstreams_are_all_detected(codec):
    data = codec.encode(smooth_image(96, 160, seed=5))
    rng = np.random.default_rng(1234)
    for trial in range(400):
        corrupt = bytearray(data)
        if trial % 2:
            corrupt = corrupt[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, len(data)))
                corrupt[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(LiclabError, match="x.lic: "):
            codec.decode(bytes(corrupt), "x.lic")


def test_decoding_with_another_model_is_refused(codec, trained_ckpt):
    data = codec.encode(smooth_image(64, 64))
    other = LearnedCodec.from_checkpoint(trained_ckpt)
    with torch.no_grad():
        other.model.g_s[0].weight.add_(1e-3)
    other = LearnedCodec(other.model, "other", "x")
    with pytest.raises(LiclabError, match="made by MeanScaleHyperprior"):
        other.decode(data, "x.lic")


def test_decoding_in_another_process_with_other_threads_is_bit_identical(trained_ckpt, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(smooth_image(200, 264, seed=7)).save(path)
    report = verify(str(path), str(trained_ckpt), threads=(3,))
    assert report["identical"], report


def test_float32_synthesis_decodes_the_same_latents(trained_ckpt):
    exact = LearnedCodec.from_checkpoint(trained_ckpt)
    fast = LearnedCodec.from_checkpoint(trained_ckpt, exact_synthesis=False)
    dtypes = []
    for codec in (exact, fast):
        codec.model.g_s.register_forward_pre_hook(lambda m, args: dtypes.append(args[0].dtype))
    image = smooth_image(96, 160, seed=3)
    data = exact.encode(image)
    assert fast.encode(image) == data, "the bitstream does not depend on g_s"
    a, b = exact.decode(data).astype(int), fast.decode(data).astype(int)
    assert dtypes[-2:] == [torch.float64, torch.float32]
    assert np.abs(a - b).max() <= 1
    assert fast.version() != exact.version(), "results of the two are told apart"


@pytest.mark.parametrize("size", [(1, 1), (63, 65)])
def test_tiny_images_round_trip_through_the_codec(codec, size):
    img = smooth_image(*size)
    decoded = codec.decode(codec.encode(img))
    assert decoded.shape == img.shape
