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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

CHUNK = 8192  # rows per chunk: a 48-wide float32 activation of it is 1.5 MB
NARROW = 8  # a product with fewer result columns is computed transposed (_mm)
KEEP_BYTES = 2**30  # activations kept for the backward pass, at most (a Kodak image: ~0.2 GB)


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
    return _PointwiseMLP.apply(x, flags, len(weights), *weights, *biases)


def _mm(x: Tensor, y: Tensor) -> Tensor:
    """``x @ y``, computed as ``(yᵀ xᵀ)ᵀ`` (a column-major result) where it has fewer than
    :data:`NARROW` columns: a BLAS's kernels vectorise along the result's rows, and a row of
    2, 3 or 7 values leaves most of a vector idle (MKL on AVX2, 8192 rows: 48→3 forward 4×,
    the 7→48 layer's gradients 3–6× slower the plain way; ``scripts/bench_overfit.py
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
    column-major input is read in place (the BLAS reads it transposed: 3× faster than
    copying it to rows first)."""
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
    def forward(ctx, x: Tensor, flags, n: int, *params: Tensor) -> Tensor:
        weights, biases = params[:n], params[n:]
        weights_t = [w.t().contiguous() for w in weights]
        out = _like_layout(x, weights[-1].shape[0])
        widths = x.shape[1] + sum(w.shape[0] for w in weights)
        keep = x.shape[0] * widths * x.element_size() <= KEEP_BYTES and any(ctx.needs_input_grad)
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
            if columns:  # as rows of the (C, N) columns: PyTorch copies those ~5× faster
                grad_x.t()[:, j : j + CHUNK] = g.t()
            else:
                grad_x[j : j + CHUNK] = g
        ctx.kept = []
        return grad_x, None, None, *grad_w, *grad_b
