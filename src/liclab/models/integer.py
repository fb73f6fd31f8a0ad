"""Entropy-parameter networks in integer arithmetic: bit-identical on every machine and fast.

A float convolution is a sum whose rounding depends on the order of its terms, and that order
changes with the CPU's vector width, the library's kernel and the thread count (why that
matters: :mod:`liclab.entropy`). Float64 (:class:`liclab.models.arithmetic.Float64`) makes a
disagreement improbable but is several times slower than float32 on a CPU; this module
removes the reason instead: every sum is a sum of integers, which is exact in any order
(Ballé, Johnston, Minnen 2019, "Integer networks for data compression with latent-variable
models", make the same argument; He et al. 2022, "Post-training quantization for
cross-platform learned image compression", apply it after training, as here).

Each convolution of a float64 input ``x`` with weights ``w``:

1. ``x`` is put on a power-of-two grid per image, ``x ≈ s_x · X``, and each output channel's
   weights on their own, ``w ≈ s_w · W``, with integers ``|X|, |W| ≤ LIMIT`` (13 bits);
2. both are split into two 7-bit digits, ``X = 127·X₁ + X₀`` with ``|X₁|, |X₀| ≤ 63``, and
   the four digit products are summed by int8 matrix products with int32 accumulators
   (``torch._int_mm``; float64 products of the digits on a GPU): exact, as no sum can leave
   int32 (fan-in below 541 000). Digits within ±63 also keep the
   int16 pair sums of CPUs without VNNI (u8·s8 with a +128 offset) from saturating;
3. ``acc = 127²·A₁₁ + 127·(A₁₀ + A₀₁) + A₀₀`` in int64, then ``s_x·s_w·acc + b`` in float64:
   element-wise operations on exact inputs, the same on every machine.

ReLUs act on those values; the next convolution quantizes them again. The result differs
from the float network by about 1e-4 of each layer's range — a slightly different network,
which encoder and decoder compute identically.

Supported layers: ``Conv2d`` (any kernel and padding, stride 1, masks such as
``CheckerboardMaskedConv2d`` included), ``ConvTranspose2d`` (as a sub-pixel
convolution), ``ReLU``, ``LeakyReLU``, ``Identity``, ``PixelShuffle``, and ``Sequential``
of these.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liclab.models.layers import subpixel_transposed_conv, subpixel_weights

DIGIT = 63
BASE = 2 * DIGIT + 1  # 127
LIMIT = BASE * DIGIT + DIGIT  # 8064: two digits of ±63 in base 127
_BITS = 12  # scaled values have max |V| in [2^11, 2^12]: 13-bit signed, within LIMIT


def integer_net(module: nn.Module, *inputs: Tensor) -> Tensor:
    """Run ``module`` (a supported layer, or a ``Sequential`` of them) in integer arithmetic
    on the concatenation of ``inputs`` along channels; returns float64."""
    x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
    return _run(module, x.double())


def supports(module: nn.Module) -> bool:
    """Whether :func:`integer_net` can run ``module``."""
    if isinstance(module, nn.Sequential):
        return all(supports(m) for m in module)
    if isinstance(module, nn.Conv2d):
        return module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
    if isinstance(module, nn.ConvTranspose2d):
        return module.dilation == (1, 1) and module.groups == 1
    return isinstance(module, nn.ReLU | nn.LeakyReLU | nn.Identity | nn.PixelShuffle)


def _run(module: nn.Module, x: Tensor) -> Tensor:
    if isinstance(module, nn.Sequential):
        for m in module:
            x = _run(m, x)
        return x
    if isinstance(module, nn.Conv2d) and supports(module):
        if module.padding_mode != "zeros":
            raise TypeError(f"integer_net: padding_mode {module.padding_mode!r} unsupported")
        return _conv(module, x, module.padding, bias=module.bias)
    if isinstance(module, nn.ConvTranspose2d) and supports(module):
        return _conv_transpose(module, x)
    if isinstance(module, nn.ReLU):
        return x.clamp_min(0)
    if isinstance(module, nn.LeakyReLU):
        return F.leaky_relu(x, module.negative_slope)
    if isinstance(module, nn.Identity):
        return x
    if isinstance(module, nn.PixelShuffle):  # moves values only
        return F.pixel_shuffle(x, module.upscale_factor)
    raise TypeError(f"integer_net cannot run {type(module).__name__} ({module})")


def quantize(v: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(integers V, scales s) with ``v ≈ s·V``, ``|V| ≤ LIMIT``, ``s`` a power of two per
    slice over ``dims`` (kept as size-1 dims). Exact and deterministic: the max is exact and
    a power-of-two scale divides without rounding, so only ``round`` rounds."""
    peak = v.abs().amax(dim=dims, keepdim=True)
    _, exponent = torch.frexp(peak)  # peak = m·2^e, m ∈ [0.5, 1)
    scale = torch.ldexp(torch.ones_like(peak), (exponent - _BITS).to(torch.int32))
    scale = torch.where(peak > 0, scale, torch.ones_like(scale))
    ints = torch.round(v / scale).to(torch.int64)
    return ints, scale


def _digits(v: Tensor) -> tuple[Tensor, Tensor]:
    """``v = BASE·high + low`` with both digits in [−63, 63], as int8 (|v| ≤ LIMIT)."""
    # float32 is exact here: (v + 63) / 127 is either an integer, computed exactly, or at
    # least 1/127 from one, far beyond float32's rounding of numbers below 2^14
    high = torch.floor((v + DIGIT).float() / BASE)
    return high.to(torch.int8), (v - BASE * high.to(v.dtype)).to(torch.int8)


def int_matmul(a: Tensor, b: Tensor) -> Tensor:
    """Exact ``a @ b`` (int64) of integer matrices with entries in [−LIMIT, LIMIT]: the
    digit scheme of the convolutions, on its own."""
    acc = _digit_product(torch.cat(_digits(a)), *_digits(b))
    return _combine(acc, len(a), b.shape[1]).to(torch.int64)


def _digit_product(a: Tensor, b1: Tensor, b0: Tensor) -> Tensor:
    """int32 ``[A₁; A₀] @ [B₁ B₀]`` for ``a`` = [A₁; A₀] stacked by rows."""
    rhs = torch.cat([b1, b0], dim=1)
    if a.device.type != "cpu":
        # GPUs: float64 products of the digits, exact too (every partial sum is an integer
        # below 2^53), so CUDA decodes what the CPU encoded; _int_mm's CUDA kernel has layout
        # and size constraints of its own
        return float64_product(a, rhs)
    return torch._int_mm(a, rhs)


def float64_product(a: Tensor, b: Tensor) -> Tensor:
    """int32 ``a @ b`` of int8 digit matrices through float64: exact, as every partial sum is
    an integer of at most k·63² (below int32's range for k < 541 000, let alone 2^53)."""
    return torch.matmul(a.double(), b.double()).to(torch.int32)


def _combine(acc: Tensor, m: int, n: int) -> Tensor:
    """``BASE²·A₁₁ + BASE·(A₁₀ + A₀₁) + A₀₀`` from the four int32 blocks, in float64: exact,
    as every value is an integer below 2^53 (|·| ≤ k·LIMIT² < 2^40 for k < 2^14)."""
    acc = acc.double()
    out = acc[:m, :n].mul(BASE * BASE)
    out.add_(acc[:m, n : 2 * n], alpha=BASE).add_(acc[m : 2 * m, :n], alpha=BASE)
    return out.add_(acc[m : 2 * m, n : 2 * n])


_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prepared(module: nn.Module, make):
    """``make(weight)`` cached per module until its weights (or mask) change."""
    weight = module.weight
    mask = getattr(module, "mask", None)  # CompressAI's masked convolutions mask in forward
    key = (weight.data_ptr(), weight._version, None if mask is None else mask._version)
    hit = _PREPARED.get(module)
    if hit is None or hit[0] != key:
        w = weight.detach().double()
        hit = (key, make(w if mask is None else w * mask.double()))
        _PREPARED[module] = hit
    return hit[1]


def _conv_weights(weight: Tensor):
    o, c, kh, kw = weight.shape
    wints, sw = quantize(weight.reshape(o, -1), (1,))  # per output channel
    wints = wints.reshape(o, c, kh * kw).transpose(1, 2)  # (O, taps, C)
    taps = wints.ne(0).any(dim=2).any(dim=0).nonzero()[:, 0].tolist()  # masks: skip zero taps
    return (kh, kw), taps, _digits(wints[:, taps].reshape(o, -1).t()), sw.reshape(1, o, 1, 1)


def _conv(module: nn.Module, x: Tensor, padding=(0, 0), prepare=_conv_weights, bias=None):
    """Stride-1 convolution of ``x`` with the weights ``prepare`` makes of the module's."""
    (kh, kw), taps, (w1, w0), sw = _prepared(module, prepare)
    o = sw.shape[1]
    b, c, h, w = x.shape
    ph, pw = padding
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    ints, sx = quantize(x, (1, 2, 3))  # per image
    # im2col of both digits at once, channels last: rows (digit, image, y, x), columns (tap, C)
    digits = torch.cat(_digits(ints)).permute(0, 2, 3, 1)
    padded = F.pad(digits, (0, 0, pw, pw, ph, ph))
    cols = torch.stack(
        [padded[:, t // kw : t // kw + ho, t % kw : t % kw + wo] for t in taps], dim=3
    ).reshape(2 * b * ho * wo, len(taps) * c)
    acc = _combine(_digit_product(cols, w1, w0), b * ho * wo, o)  # (B·Ho·Wo, O)
    acc = acc.reshape(b, ho, wo, o).permute(0, 3, 1, 2)
    return _affine(acc, sx * sw, bias)


def _affine(acc: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    """``scale·acc + bias`` in float64 (``scale`` a power of two: exact until the bias)."""
    out = acc * scale
    return out if bias is None else out + bias.detach().double().reshape(1, -1, 1, 1)


def _conv_transpose(module: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    """As a sub-pixel convolution (:func:`liclab.models.layers.subpixel_transposed_conv`):
    the integer convolution of its kernel, then a pixel shuffle (which only moves values)."""

    def prepare(weight: Tensor):
        return _conv_weights(subpixel_weights(weight, module.stride, module.padding)[0])

    def conv(padded: Tensor) -> Tensor:  # the kernel is prepared once per weights
        return _conv(module, padded, prepare=prepare)

    bias = None if module.bias is None else module.bias.detach().double()
    stride, padding, output_padding = module.stride, module.padding, module.output_padding
    return subpixel_transposed_conv(x, module.weight, bias, stride, padding, output_padding, conv)
