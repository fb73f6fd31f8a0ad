"""``compile=true`` for the overfitted codecs: the fit's rate-and-decode pass traces as one
graph, does not recompile as its parameters train, and computes what the eager pass does.

Traced with the ``aot_eager`` backend (Dynamo and AOT autograd, as Inductor sees them, without
Inductor's minutes of C++ code generation on a CPU). What these tests guard against came up
on Inductor: the C kernels (ctypes) traced into the graph, the pre-concatenation filter's
taps read as Python floats (a recompilation at every step), and replicate padding's backward
on channels-last input (a stride assertion in Inductor's compiled backward).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

from liclab.codecs.overfit import OverfitCodec
from liclab.overfit.mlp import replicate_pad
from liclab.overfit.upsampling import prefilter

from conftest import smooth_image


@pytest.fixture
def traced(monkeypatch):
    """``torch.compile`` as ``aot_eager`` with ``fullgraph`` (a graph break raises) and any
    recompilation an error; Dynamo's caches emptied before and after."""
    real = torch.compile
    monkeypatch.setattr(
        torch, "compile", functools.partial(real, backend="aot_eager", fullgraph=True)
    )
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "preset,schedule", [("coolchic_lop", "coolchic"), ("coolchic5_lop", "coolchic5"), ("c3", "c3")]
)
def test_a_compiled_fit_traces_once_and_follows_the_eager_fit(traced, preset, schedule):
    image = smooth_image(48, 64)
    losses = {}
    for compiled in (False, True):
        codec = OverfitCodec(
            model=preset,
            schedule=schedule,
            lmbda=1e-3,
            iterations=10,
            compile=compiled,
            name=preset,
        )
        losses[compiled] = codec.fit(image).stats["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-2)


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (3, 3, 0, 0), (0, 0, 2, 2)])
def test_replicate_pad_is_pytorchs_inside_a_trace_values_and_gradients(traced, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 3, 5 + pad[2] + pad[3], 7 + pad[0] + pad[1], generator=g, dtype=x.dtype)
    eager = F.pad(x, pad, mode="replicate")
    (grad,) = torch.autograd.grad((eager * w).sum(), x)
    traced_pad = torch.compile(lambda t: replicate_pad(t, pad))
    out = traced_pad(x)
    (traced_grad,) = torch.autograd.grad((out * w).sum(), x)
    assert torch.equal(out, eager)
    assert torch.allclose(traced_grad, grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_the_traced_prefilter_is_the_eager_one_values_and_gradients(traced, padding):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    half = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 2, 9, 11, generator=g, dtype=torch.float64)
    eager = prefilter(x, half, padding)
    grads = torch.autograd.grad((eager * w).sum(), (x, half))
    out = torch.compile(lambda a, b: prefilter(a, b, padding))(x, half)
    traced_grads = torch.autograd.grad((out * w).sum(), (x, half))
    assert torch.allclose(out, eager, rtol=0, atol=1e-12)
    for a, b in zip(traced_grads, grads, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
