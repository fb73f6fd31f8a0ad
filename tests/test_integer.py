"""Integer entropy-parameter networks (liclab.models.integer) and the sub-pixel form of a
transposed convolution they use."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compressai.layers import CheckerboardMaskedConv2d
from torch import nn

from liclab.models.integer import (
    DIGIT,
    LIMIT,
    float64_product,
    int_matmul,
    integer_net,
    quantize,
    supports,
)
from liclab.models.layers import subpixel_transposed_conv, subpixel_weights

LAYERS = {
    "conv5x5": lambda: nn.Conv2d(12, 20, 5, padding=2),
    "conv1x1": lambda: nn.Conv2d(12, 20, 1),
    "conv3x3-nobias": lambda: nn.Conv2d(12, 20, 3, padding=1, bias=False),
    "checkerboard": lambda: CheckerboardMaskedConv2d(12, 24, kernel_size=5, padding=2),
    "deconv5x5/2": lambda: nn.ConvTranspose2d(12, 20, 5, stride=2, padding=2, output_padding=1),
    "deconv3x3/1": lambda: nn.ConvTranspose2d(12, 20, 3, stride=1, padding=1),
    "stack": lambda: nn.Sequential(
        nn.Conv2d(12, 30, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(30, 30, 1),
        nn.LeakyReLU(),
        nn.Conv2d(30, 8, 3, padding=1),
    ),  # fmt: skip
}


def layer(name):
    torch.manual_seed(0)
    return LAYERS[name]().double().eval()


def reference(module, x):
    """The integer network's definition, evaluated op by op in int64 on the CPU (no int8
    kernels, no splitting into digits): what every machine must reproduce bit for bit."""
    if isinstance(module, nn.Sequential):
        for m in module:
            x = reference(m, x)
        return x
    if isinstance(module, nn.ReLU):
        return x.clamp_min(0)
    if isinstance(module, nn.LeakyReLU):
        return F.leaky_relu(x, module.negative_slope)
    weight = module.weight.detach() * getattr(module, "mask", 1)
    if isinstance(module, nn.ConvTranspose2d):
        kernel = subpixel_weights(weight, module.stride, module.padding)[0]
        return subpixel_transposed_conv(
            x, weight, module.bias.detach(), module.stride, module.padding,
            module.output_padding, conv=lambda v: _int_conv(v, kernel, None, (0, 0)),
        )  # fmt: skip
    return _int_conv(x, weight, module.bias, module.padding)


def _int_conv(x, weight, bias, padding):
    o = weight.shape[0]
    ints, sx = quantize(x, (1, 2, 3))
    wints, sw = quantize(weight.reshape(o, -1), (1,))
    cols = F.unfold(ints.double(), weight.shape[-2:], padding=padding).round().long()
    acc = torch.einsum("bkp,ok->bop", cols, wints)  # int64: exact
    h = x.shape[-2] + 2 * padding[0] - weight.shape[-2] + 1
    out = acc.reshape(len(x), o, h, -1).double() * (sx * sw.reshape(1, o, 1, 1))
    return out if bias is None else out + bias.detach().double().reshape(1, o, 1, 1)


def test_int_matmul_is_exact_over_the_whole_range():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-LIMIT, LIMIT + 1, (37, 300), generator=g)
    b = torch.randint(-LIMIT, LIMIT + 1, (300, 11), generator=g)
    a[0], b[:, 0] = LIMIT, -LIMIT  # the extremes
    assert torch.equal(int_matmul(a, b), a @ b)


def test_the_gpu_digit_product_equals_the_int8_kernel():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-DIGIT, DIGIT + 1, (40, 6000), generator=g, dtype=torch.int8)
    b = torch.randint(-DIGIT, DIGIT + 1, (6000, 24), generator=g, dtype=torch.int8)
    a[:, :3000], b[:3000] = DIGIT, DIGIT  # sums far beyond float32's 2^24
    assert torch.equal(float64_product(a, b), torch._int_mm(a, b))


@pytest.mark.parametrize("name", LAYERS)
def test_integer_layers_equal_their_exact_definition(name):
    module = layer(name)
    x = 3 * torch.randn(2, 12, 10, 14, dtype=torch.float64)
    got = integer_net(module, x)
    assert torch.equal(got, reference(module, x))  # bit for bit
    expected = module(x)  # and close to the float network it stands for
    assert (got - expected).abs().max() < 2e-3 * expected.abs().max()


def test_each_image_is_coded_on_its_own():
    """Scales are per image: an image's parameters do not depend on its batch mates."""
    module = layer("stack")
    x = torch.randn(3, 12, 8, 8, dtype=torch.float64)
    x[1] *= 100
    batch = integer_net(module, x)
    for i in range(3):
        assert torch.equal(batch[i : i + 1], integer_net(module, x[i : i + 1]))


def test_thread_count_changes_no_bit():
    module = layer("stack")
    x = torch.randn(1, 12, 32, 48, dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = integer_net(module, x)
        torch.set_num_threads(max(2, threads))
        assert torch.equal(one, integer_net(module, x))
    finally:
        torch.set_num_threads(threads)


def test_cached_weights_follow_weight_updates():
    module = layer("conv5x5")
    x = torch.randn(1, 12, 6, 6, dtype=torch.float64)
    before = integer_net(module, x)
    with torch.no_grad():
        module.weight.mul_(2)
    assert torch.allclose(integer_net(module, x) - module.bias.reshape(1, -1, 1, 1),
                          2 * (before - module.bias.reshape(1, -1, 1, 1)))  # fmt: skip


def test_unsupported_layers_are_named():
    attention = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Sigmoid())
    assert not supports(attention) and supports(layer("stack"))
    with pytest.raises(TypeError, match="Sigmoid"):
        integer_net(attention, torch.zeros(1, 4, 2, 2))
    with pytest.raises(TypeError, match="Conv2d"):
        integer_net(nn.Conv2d(4, 4, 3, stride=2), torch.zeros(1, 4, 4, 4))


@pytest.mark.parametrize(
    "k,s,p,op", [(5, 2, 2, 1), (3, 1, 1, 0), (3, 2, 1, 1), (4, 2, 1, 0), (5, 2, 2, 0), (5, 3, 2, 2)]
)
def test_subpixel_form_equals_the_transposed_convolution(k, s, p, op):
    g = torch.Generator().manual_seed(k * s + p)
    x = torch.randn(2, 4, 7, 9, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    expected = F.conv_transpose2d(x, w, b, s, p, op)
    got = subpixel_transposed_conv(x, w, b, (s, s), (p, p), (op, op))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)
