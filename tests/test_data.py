"""The DataModule: crops that do not depend on the proxy's random draws."""

from __future__ import annotations

import torch


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
