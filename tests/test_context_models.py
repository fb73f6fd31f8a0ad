"""Context models (gmm, elic): exact decoding, causality, decoder-side context, real rate."""

from __future__ import annotations

import pytest
import torch

from liclab.entropy.gaussian import GaussianConditional
from liclab.entropy.mixture import GaussianMixtureConditional
from liclab.images import to_tensor
from liclab.models.arithmetic import Float64, Integer
from liclab.models.context import Autoregressive
from liclab.models.elic import ELIC, paper_groups
from liclab.models.gmm import Cheng2020GMM
from liclab.quantizers import STE, Mixed, Noise

from conftest import smooth_image

N, M = 16, 32
VARIANTS = {
    "gmm-checkerboard": lambda: Cheng2020GMM(N, M),
    "gmm-autoregressive": lambda: Cheng2020GMM(N, M, context=Autoregressive()),
    "gmm-gaussian": lambda: Cheng2020GMM(N, M, entropy=GaussianConditional()),
    "gmm-anchor-integer": lambda: Cheng2020GMM(N, M, attention=False, arithmetic=Integer()),
    "elic-gaussian": lambda: ELIC(N, M),
    "elic-float64": lambda: ELIC(N, M, arithmetic=Float64()),
    "elic-mixture": lambda: ELIC(N, M, entropy=GaussianMixtureConditional(K=3)),
    "elic-autoregressive": lambda: ELIC(N, M, context=Autoregressive(), arithmetic=Float64()),
}


def make(name: str):
    torch.manual_seed(0)
    return VARIANTS[name]()


def as_tensor(*images):
    return torch.cat([to_tensor(i) for i in images])


@pytest.mark.parametrize("name", VARIANTS)
def test_decompress_equals_eval_forward_for_every_context(name):
    model = make(name).eval()
    model.update(force=True)
    x = as_tensor(smooth_image(64, 96, seed=1), smooth_image(64, 96, seed=2))
    expected = model(x)["x_hat"].clamp(0, 1)
    c = model.compress(x)
    assert len(c["strings"]) == 2 and all(len(s) == 2 for s in c["strings"])  # y, z per image
    decoded = model.decompress(c["strings"], c["shape"], c["size"])["x_hat"]
    assert torch.equal(decoded, expected)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("quantizer", [Noise, STE, Mixed])
def test_every_proxy_trains_the_context_model(name, quantizer):
    model = make(name).train()
    out = model(as_tensor(smooth_image(64, 64)), quantizer().train())
    bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
    assert torch.isfinite(bits) and bits > 0
    (bits + out["x_hat"].square().sum()).backward()
    assert float(model.spatial_context[-1].weight.grad.abs().sum()) > 0


def probe(x, offset):
    """A 'quantizer' whose rate input is constant: the likelihood then shows the entropy
    parameters alone, while the decoder side (and so the context) sees x itself."""
    return torch.zeros_like(x), x


def decoding_rank(name: str, shape) -> torch.Tensor:
    """The step at which each element of y (C, H, W) is decoded."""
    c, h, w = shape
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    within = (i * w + j) if name.endswith("autoregressive") else (i + j) % 2
    steps = h * w if name.endswith("autoregressive") else 2
    if name.startswith("gmm"):
        return within.expand(c, h, w)
    group = torch.repeat_interleave(torch.arange(5), torch.tensor(paper_groups(c)))
    return steps * group.reshape(-1, 1, 1) + within


@pytest.mark.parametrize("name", VARIANTS)
def test_later_latents_never_change_earlier_entropy_parameters(name):
    model = make(name).train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        side = model.h_s(torch.randn(1, N, 2, 2, generator=g))
        y = 3 * torch.randn(1, M, 8, 8, generator=g)
        base = model.forward_y(y, side, probe)[1]
        rank = decoding_rank(name, y.shape[1:])
        positions = [(0, 3, 4), (0, 3, 3)] if name.startswith("gmm") else [(6, 3, 4), (6, 3, 3)]
        for c, i, j in positions:
            at = rank == rank[c, i, j]  # the element and everything decoded in its step
            y2 = y.clone()
            y2[0, at[:, i, j], i, j] += 5.0
            changed = model.forward_y(y2, side, probe)[1] != base
            assert not changed[0][rank <= rank[c, i, j]].any(), (c, i, j)
        assert changed.any(), "the context should matter to some later element"


@pytest.mark.parametrize("name", VARIANTS)
def test_context_sees_what_the_decoder_sees(name):
    model = make(name).train()
    with torch.no_grad():
        side = model.h_s(torch.randn(1, N, 2, 2))
        y = 3 * torch.randn(1, M, 8, 8)
        shifted = model.forward_y(y, side, lambda x, off: (torch.zeros_like(x), x + 3))[1]
        assert torch.equal(shifted, model.forward_y(y + 3, side, probe)[1])
        assert not torch.equal(shifted, model.forward_y(y, side, probe)[1])


def test_group_split_and_bad_arguments():
    assert paper_groups(320) == [16, 16, 32, 64, 192]
    assert sum(paper_groups(24)) == 24 and min(paper_groups(24)) >= 1
    with pytest.raises(ValueError, match="sum to M=24"):
        ELIC(16, 24, groups=[8, 8])
    with pytest.raises(ValueError, match="autoregressive context codes in float64"):
        ELIC(16, 24, context=Autoregressive(), arithmetic=Integer())


def widen_scales(model, sigma: float = 4.0) -> None:
    """Add ``sigma`` to every predicted σ: with random weights y then lies well inside each
    support, so the rate is that of a working codec (~4 bits per element), not of escapes
    scored at the likelihood floor."""
    gaussian = model.conditional.n_params == 2
    for net in model.param_aggregation:
        n = net[-1].out_channels
        with torch.no_grad():
            net[-1].bias[slice(0, n // 2) if gaussian else slice(2 * n // 3, n)] += sigma


@pytest.mark.parametrize("name", VARIANTS)
def test_coded_bytes_match_the_estimate(name):
    model = make(name).eval()
    widen_scales(model)
    model.update(force=True)
    x = as_tensor(smooth_image(256, 384, seed=3))
    with torch.no_grad():
        estimate = sum(float(-torch.log2(v).sum()) for v in model(x)["likelihoods"].values()) / 8
        coded = sum(len(s[0]) for s in model.compress(x)["strings"])
    assert estimate > 2000, "the rate should be meaningful"
    assert abs(coded - estimate) <= 0.01 * estimate + 16, (coded, estimate)
