"""A multilayer perceptron over the rows of a matrix, computed in cache-sized chunks.

The ARM and the synthesis apply small MLPs (widths 2–48) to every latent or pixel: a few
hundred thousand rows, so each intermediate (N × width) is tens of MB and an eager PyTorch
layer streams it through memory several times (matrix product, bias, residual, ReLU, and as
much again backwards). Here every chunk of rows runs through all the layers while it sits in
the CPU's cache; the chunks' activations are kept for the backward pass (up to
:data:`KEEP_BYTES`; beyond, the backward pass recomputes them chunk by chunk): the same
arithmetic as the layer-by-layer network (equal up to float rounding).

Rows, not columns: the weight gradient is then Gᵀ·A over the chunk, a product BLAS runs ~3×
faster than G·Aᵀ on column-major chunks; and a channels-last image is already (pixels × C).
An input that is a transposed view of columns (the ARM's contexts) is read in place, and the
output and the input's gradient are laid out as the input.

Training passes on a CPU (gradients wanted, float32) go through a C kernel where it is built
(``_mlp.c``, :data:`USE_KERNEL`): eight rows per vector register, a block's activations in
the L1 cache, the backward pass recomputing the forward one instead of storing it, rows split
between ``torch.get_num_threads()`` threads. Forward passes without gradients (the decoder,
validations) keep PyTorch's products. An iteration of ``coolchic_hop`` on kodim01 takes
20–30 % less time with it (``scripts/bench_overfit.py --no-kernel --narrow 0 8 --malloc``,
``results/overfit-speed/bench_overfit_kernel*.txt``: minima and medians, one and two
threads); the ARM's backward pass gains least (its 16 × 16 weight gradients are bound by
loads and stores).

The same library carries the synthesis's 3×3 residual layers (3 channels to 3; oneDNN's
slowest case) for training passes: :func:`conv3x3` (:data:`USE_CONV_KERNEL`), planar, eight
columns per vector (``_conv3_kernel.h``).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

CHUNK = 8192  # rows per chunk: a 48-wide float32 activation of it is 1.5 MB
NARROW = 8  # a product with fewer result columns is computed transposed (_mm)
KEEP_BYTES = 2**30  # activations kept for the backward pass, at most (a Kodak image: ~0.2 GB)
USE_KERNEL = True  # training passes on a CPU through the C kernel where it is built (_kernel)
USE_CONV_KERNEL = True  # and the synthesis's 3x3 residual layers (conv3x3), with USE_KERNEL


def channels_last(x: Tensor) -> Tensor:
    """``x`` in channels-last layout (oneDNN's fast case for the few-channel convolutions of
    the eager CPU path), or as it is inside a ``torch.compile`` trace: Inductor picks its own
    layouts there, and channels-last input to replicate padding's backward breaks its
    compiled graph (a stride assertion in ``replication_pad2d_backward``)."""
    if torch.compiler.is_compiling():
        return x
    return x.contiguous(memory_format=torch.channels_last)


def replicate_pad(x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    """``F.pad(x, pad, mode="replicate")`` (left, right, top, bottom), the same values; inside a
    ``torch.compile`` trace as clamped index gathers, since Inductor's replicate padding
    backward fails its own stride check on the layouts it picks for convolutions."""
    if not torch.compiler.is_compiling():
        return torch.nn.functional.pad(x, pad, mode="replicate")
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    cols = torch.arange(-left, w + right, device=x.device).clamp_(0, w - 1)
    rows = torch.arange(-top, h + bottom, device=x.device).clamp_(0, h - 1)
    return x.index_select(-1, cols).index_select(-2, rows)


def pointwise_mlp(
    x: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    residual: Sequence[bool],
    relu: Sequence[bool],
) -> Tensor:
    """Layers ``a ← relu?(a W_iᵀ + b_i (+ a if residual))`` applied to every row of ``x``
    (N, C₀), which may be a transposed view; returns (N, C_n). Differentiable in ``x``, the
    weights (C_{i+1}, C_i) and the biases."""
    flags = (tuple(residual), tuple(relu))
    params = (*weights, *biases)
    training = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params))
    return _PointwiseMLP.apply(x, (flags, training), len(weights), *params)


def _mm(x: Tensor, y: Tensor) -> Tensor:
    """``x @ y``, computed as ``(yᵀ xᵀ)ᵀ`` (a column-major result) where it has fewer than
    :data:`NARROW` columns: a BLAS's kernels vectorise along the result's rows, and a row of
    2, 3 or 7 values leaves most of a vector idle (MKL on AVX2, 8192 rows: the 48→3 forward
    1.8×, the 7→48 layer's two gradients 6× slower the plain way; ``scripts/bench_overfit.py
    --products``)."""
    if _narrow(x, y):
        return torch.mm(y.t(), x.t()).t()
    return torch.mm(x, y)


def _narrow(x: Tensor, y: Tensor) -> bool:
    return y.shape[1] < NARROW <= x.shape[0]


def _column_major(x: Tensor) -> bool:
    """Whether ``x`` (N, C) is a transposed view of contiguous (C, N) columns."""
    return x.shape[1] > 1 and x.stride(0) == 1 and x.stride(1) >= x.shape[0]


def _like_layout(x: Tensor, width: int) -> Tensor:
    """An empty (N, width) tensor laid out as ``x``: columns or rows."""
    if _column_major(x):
        return x.new_empty(width, x.shape[0]).t()
    return x.new_empty(x.shape[0], width)


def _forward_chunk(a: Tensor, weights_t, biases, flags) -> list[Tensor]:
    """The activations of one chunk: [input, after layer 0, after layer 1, …]. A chunk of a
    column-major input is read in place (the BLAS reads it transposed, faster than a copy to
    rows and the product)."""
    acts = [a]
    for w_t, b, res, act in zip(weights_t, biases, *flags, strict=True):
        z = _mm(a, w_t).add_(b)  # faster than addmm's broadcast of the bias
        if res:
            z.add_(a)
        if act:
            z.relu_()
        acts.append(z)
        a = z
    return acts


class _PointwiseMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, how, n: int, *params: Tensor) -> Tensor:
        weights, biases = params[:n], params[n:]
        flags, training = how
        ctx.flags, ctx.n = flags, n
        ctx.kernel = training and _kernel_fits(x, weights)
        if ctx.kernel:  # a training pass: the C kernel (the decoder keeps PyTorch's products)
            ctx.save_for_backward(x, *params)
            return _kernel_forward(x, weights, biases, flags)
        weights_t = [w.t().contiguous() for w in weights]
        out = _like_layout(x, weights[-1].shape[0])
        widths = x.shape[1] + sum(w.shape[0] for w in weights)
        keep = training and x.shape[0] * widths * x.element_size() <= KEEP_BYTES
        kept = []
        for j in range(0, x.shape[0], CHUNK):
            acts = _forward_chunk(x[j : j + CHUNK], weights_t, biases, flags)
            out[j : j + CHUNK] = acts[-1]
            if keep:
                kept.append(acts)
        ctx.kept = kept  # recomputed in the backward pass where empty
        ctx.save_for_backward(x, *params)
        ctx.flags, ctx.n = flags, n
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, *params = ctx.saved_tensors
        n, flags = ctx.n, ctx.flags
        weights, biases = params[:n], params[n:]
        if ctx.kernel:
            grads = _kernel_backward(x, grad_out, weights, biases, flags, ctx.needs_input_grad[0])
            return grads[0], None, None, *grads[1:]
        weights_t = [w.t().contiguous() for w in weights]
        grad_w = [torch.zeros_like(w) for w in weights]
        grad_b = [torch.zeros_like(b) for b in biases]
        grad_x = _like_layout(x, x.shape[1]) if ctx.needs_input_grad[0] else None
        columns = _column_major(x)
        for j in range(0, x.shape[0], CHUNK):
            if ctx.kept:
                acts = ctx.kept[j // CHUNK]
            else:
                acts = _forward_chunk(x[j : j + CHUNK], weights_t, biases, flags)
            g = grad_out[j : j + CHUNK]
            for i in range(n - 1, -1, -1):
                if flags[1][i]:  # the ReLU's gradient mask, in one fused pass
                    g = torch.ops.aten.threshold_backward(g, acts[i + 1], 0.0)
                grad_w[i].add_(_mm(g.t(), acts[i]))
                grad_b[i].add_(g.sum(dim=0))
                if i == 0 and grad_x is None:
                    break
                if i == 0 and columns:  # computed as columns, written to them in place
                    g_in = torch.mm(weights[i].t(), g.t()).t()
                else:
                    g_in = _mm(g, weights[i])
                if flags[0][i]:
                    g_in.add_(g)
                g = g_in
            if grad_x is None:
                continue
            if columns:  # as rows of the (C, N) columns: PyTorch copies those much faster
                grad_x.t()[:, j : j + CHUNK] = g.t()
            else:
                grad_x[j : j + CHUNK] = g
        ctx.kept = []
        return grad_x, None, None, *grad_w, *grad_b


# The C kernel (_mlp.c): eight rows per vector register, every activation of a block in the
# L1 cache, the backward pass recomputing the forward one block by block. Rows are split
# between torch.get_num_threads() threads (ctypes releases the GIL), each with its own
# weight-gradient accumulators.


@functools.cache
def _kernel():
    """(the loaded library, whether it runs its AVX2 build, (widest layer, most layers)),
    or None where it is not built (no C compiler at install) or cannot be loaded."""
    try:
        spec = importlib.util.find_spec("liclab.overfit._mlp")
        lib = ctypes.CDLL(spec.origin) if spec is not None and spec.origin else None
    except (OSError, ImportError):
        return None
    if lib is None:
        return None
    p, i, long = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    if not all(hasattr(lib, f) for f in ("mlp_forward", "conv3_forward", "conv3_wgrad")):
        return None  # a build older than this module: PyTorch's products until it is rebuilt
    lib.mlp_forward.argtypes = [i, p, long, long, long, p, long, long, i, p, p, p, p]
    lib.mlp_backward.argtypes = [i, p, long, long, long, p, long, long, p, i, p, p, p, p, p, p]
    lib.mlp_forward.restype = lib.mlp_backward.restype = ctypes.c_int
    lib.conv3_forward.argtypes = [i, p, long, long, p, long, long, long, long, long, p, p]
    lib.conv3_wgrad.argtypes = [i, p, long, long, p, long, long, long, long, long, p, p]
    lib.conv3_forward.restype = lib.conv3_wgrad.restype = ctypes.c_int
    maxw, maxl = ctypes.c_int(), ctypes.c_int()
    lib.mlp_limits(ctypes.byref(maxw), ctypes.byref(maxl))
    return lib, int(lib.mlp_avx2()), (maxw.value, maxl.value)


def _kernel_fits(x: Tensor, weights: Sequence[Tensor]) -> bool:
    if torch.compiler.is_compiling():  # a traced graph takes PyTorch's products, not ctypes
        return False
    loaded = _kernel() if USE_KERNEL else None
    if loaded is None or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    maxw, maxl = loaded[2]
    widths = [x.shape[1], *(w.shape[0] for w in weights)]
    return len(weights) <= maxl and max(widths) <= maxw and x.shape[0] > 0


def _pointers(tensors: Sequence[Tensor]):
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


def _row_ranges(rows: int) -> list[tuple[int, int]]:
    """Contiguous ranges of rows, a multiple of 8 each but the last, one per thread."""
    threads = max(1, min(torch.get_num_threads(), rows // 4096))
    step = (-(-rows // threads) + 7) // 8 * 8
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="liclab-mlp")


def _run(calls) -> None:
    calls = list(calls)
    if len(calls) == 1:
        calls[0]()
    else:
        for future in [_pool(len(calls)).submit(call) for call in calls]:
            future.result()


def _network(weights, biases, flags):
    weights = [w.detach().float().contiguous() for w in weights]
    biases = [b.detach().float().contiguous() for b in biases]
    widths = (ctypes.c_int * (len(weights) + 1))(
        weights[0].shape[1], *(w.shape[0] for w in weights)
    )
    codes = [int(res) + 2 * int(act) for res, act in zip(*flags, strict=True)]
    codes = (ctypes.c_int * len(weights))(*codes)
    return weights, biases, widths, codes


def _kernel_forward(x: Tensor, weights, biases, flags) -> Tensor:
    lib, avx2, _ = _kernel()
    weights, biases, widths, codes = _network(weights, biases, flags)
    out = _like_layout(x, weights[-1].shape[0])
    w_p, b_p = _pointers(weights), _pointers(biases)
    xrs, xcs = x.stride()
    yrs, ycs = out.stride()

    def call(r0: int, r1: int):
        return lambda: lib.mlp_forward(
            avx2, x[r0:].data_ptr(), r1 - r0, xrs, xcs, out[r0:].data_ptr(), yrs, ycs,
            len(weights), widths, codes, w_p, b_p,
        )  # fmt: skip

    _run(call(r0, r1) for r0, r1 in _row_ranges(x.shape[0]))
    return out


def _kernel_backward(x: Tensor, grad_out: Tensor, weights, biases, flags, need_x: bool):
    lib, avx2, _ = _kernel()
    n = len(weights)
    weights, biases, widths, codes = _network(weights, biases, flags)
    grad_x = _like_layout(x, x.shape[1]) if need_x else None
    w_p, b_p = _pointers(weights), _pointers(biases)
    xrs, xcs = x.stride()
    grs, gcs = grad_out.stride()
    ranges = _row_ranges(x.shape[0])
    accs = [
        ([x.new_zeros(*w.shape, 8) for w in weights], [x.new_zeros(*b.shape, 8) for b in biases])
        for _ in ranges
    ]

    def call(r0: int, r1: int, gw, gb):
        gw_p, gb_p = _pointers(gw), _pointers(gb)
        gx = grad_x[r0:].data_ptr() if grad_x is not None else None
        return lambda: lib.mlp_backward(
            avx2, x[r0:].data_ptr(), r1 - r0, xrs, xcs, grad_out[r0:].data_ptr(), grs, gcs,
            gx, n, widths, codes, w_p, b_p, gw_p, gb_p,
        )  # fmt: skip

    _run(call(r0, r1, gw, gb) for (r0, r1), (gw, gb) in zip(ranges, accs, strict=True))
    grad_w = [sum(acc[0][i] for acc in accs).sum(-1) for i in range(n)]
    grad_b = [sum(acc[1][i] for acc in accs).sum(-1) for i in range(n)]
    return grad_x, *grad_w, *grad_b


def conv3x3_fits(x: Tensor, weights: Sequence[Tensor]) -> bool:
    """Whether :func:`conv3x3` runs the C kernel for ``x`` and these layers' weights: a
    training pass (gradients wanted, as :func:`pointwise_mlp` decides) on a CPU, float32, one
    image of 3 channels, 3 → 3 kernels of 3 × 3, the kernel built."""
    wanted = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *weights))
    if torch.compiler.is_compiling() or not (USE_KERNEL and USE_CONV_KERNEL and wanted):
        return False
    if _kernel() is None:
        return False
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.shape[:2] == (1, 3)
        and all(w.shape == (3, 3, 3, 3) and w.dtype == torch.float32 for w in weights)
    )


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias)``: where
    :func:`conv3x3_fits` holds, through the C kernel (planar, eight columns per vector, rows
    split between ``torch.get_num_threads()`` threads; PyTorch's replicate padding and its
    backward pass around it; equal to PyTorch's up to float rounding: a 3-channel convolution
    is oneDNN's slowest case), else PyTorch's on channels-last input (oneDNN's fast
    3-channel case); the output keeps the layout its path uses, so a chain of layers converts
    once."""
    pad = torch.nn.functional.pad
    if not conv3x3_fits(x, [weight]):
        x = channels_last(x)
        return torch.nn.functional.conv2d(replicate_pad(x, (1, 1, 1, 1)), weight, bias)
    return _Conv3x3.apply(pad(x.contiguous(), (1, 1, 1, 1), mode="replicate"), weight, bias)


def _conv_ranges(rows: int) -> list[tuple[int, int]]:
    threads = max(1, min(torch.get_num_threads(), rows // 16))
    step = -(-rows // threads)
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]


def _valid_conv3(padded: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The valid 3 × 3 convolution of contiguous (1, 3, H + 2, W + 2) float32 input."""
    lib, avx2, _ = _kernel()
    h, w = padded.shape[-2] - 2, padded.shape[-1] - 2
    out = padded.new_empty(1, 3, h, w)
    weight, bias = weight.detach().contiguous(), bias.detach().contiguous()
    ips, irs = padded.stride()[1:3]
    ops, ors = out.stride()[1:3]

    def call(y0: int, y1: int):
        return lambda: lib.conv3_forward(
            avx2, padded.data_ptr(), ips, irs, out.data_ptr(), ops, ors, y0, y1, w,
            weight.data_ptr(), bias.data_ptr(),
        )  # fmt: skip

    _run(call(y0, y1) for y0, y1 in _conv_ranges(h))
    return out


class _Conv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, padded: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(padded, weight)
        return _valid_conv3(padded, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        padded, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_in = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # the full correlation: flipped, transposed kernels
            flipped = weight.detach().transpose(0, 1).flip(2, 3)
            zeros = torch.zeros(3, dtype=grad.dtype)
            grad_in = _valid_conv3(torch.nn.functional.pad(grad, (2, 2, 2, 2)), flipped, zeros)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            lib, avx2, _ = _kernel()
            h, w = grad.shape[-2:]
            ips, irs = padded.stride()[1:3]
            gps, grs = grad.stride()[1:3]
            ranges = _conv_ranges(h)
            accs = [(torch.zeros(81, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
                    for _ in ranges]  # fmt: skip

            def call(y0: int, y1: int, gw: Tensor, gb: Tensor):
                return lambda: lib.conv3_wgrad(
                    avx2, padded.data_ptr(), ips, irs, grad.data_ptr(), gps, grs, y0, y1, w,
                    gw.data_ptr(), gb.data_ptr(),
                )  # fmt: skip

            _run(call(y0, y1, gw, gb) for (y0, y1), (gw, gb) in zip(ranges, accs, strict=True))
            grad_w = sum(a[0] for a in accs).view(3, 3, 3, 3).to(weight.dtype)
            grad_b = sum(a[1] for a in accs).to(weight.dtype)
        return grad_in, grad_w, grad_b
