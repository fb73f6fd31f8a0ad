"""Conditional entropy models (Gaussian, mixture): CDF tables, exact round trips with escapes,
size vs entropy, determinism."""

from __future__ import annotations

import math

import torch

from liclab.entropy.coder import PRECISION
from liclab.entropy.gaussian import GaussianConditional
from liclab.entropy.mixture import GaussianMixtureConditional

C, H, W = 6, 8, 10


def mixture_params(K: int = 3, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Float64 (coding) parameters: bimodal means, scales from 0.05 (below the bound) to 40."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, K * C, H, W, generator=g, dtype=torch.float64)
    means = 4 * torch.randn(batch, K * C, H, W, generator=g, dtype=torch.float64)
    scales = torch.exp(
        torch.empty(batch, K * C, H, W, dtype=torch.float64).uniform_(-3, 3.7, generator=g)
    )
    return torch.cat([logits, means, scales], dim=1)


def sample(mixture, params: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Draw y from the mixture itself, so that the ideal code length is the estimate."""
    g = torch.Generator().manual_seed(seed)
    weights, means, scales = mixture.parts(params, coding=True)
    k = torch.multinomial(weights.movedim(1, -1).reshape(-1, mixture.K), 1, generator=g)

    def pick(t):
        return t.movedim(1, -1).reshape(-1, mixture.K).gather(1, k).reshape(-1, C, H, W)

    return (
        pick(means)
        + pick(scales) * torch.randn(pick(means).shape, generator=g, dtype=torch.float64)
    ).float()


def test_tables_are_monotone_without_zero_frequencies_and_cover_every_element():
    mixture = GaussianMixtureConditional(K=3).eval()
    params = mixture_params()
    tables = mixture.tables(params, mixture.mean(params))
    assert len(tables) > 3, "scales from 0.05 to 40 should fill several width buckets"
    seen = torch.cat([idx for idx, _, _ in tables]).sort().values
    assert torch.equal(seen, torch.arange(C * H * W))
    for _, _, freq in tables:
        assert freq.min() >= 1  # no zero-frequency symbol, escape (last column) included
        assert (freq.sum(dim=1) == 2**PRECISION).all()
        cdf = freq.cumsum(dim=1)
        assert (cdf.diff(dim=1) > 0).all()


def test_k1_likelihood_is_compressai_gaussian_and_sums_to_one():
    mixture, gaussian = GaussianMixtureConditional(K=1), GaussianConditional()
    scales = torch.tensor([[[[0.3, 1.0, 7.5]]]])
    means = torch.tensor([[[[0.2, -1.7, 3.3]]]])
    params = torch.cat([torch.zeros_like(scales), means, scales], dim=1)
    values = torch.arange(-60, 61).float().reshape(-1, 1, 1, 1) + means
    ours = mixture.likelihood(values, params.expand(len(values), -1, -1, -1))
    theirs = gaussian.likelihood(
        values, torch.cat([scales, means], 1).expand(len(values), -1, -1, -1)
    )
    assert torch.allclose(ours, theirs, atol=1e-7)
    assert torch.allclose(ours.sum(0), torch.ones(3), atol=1e-6)


def test_round_trip_is_exact_across_passes_images_and_escapes():
    mixture = GaussianMixtureConditional(K=3).eval()
    params = [mixture_params(seed=s, batch=2) for s in (1, 2)]
    symbols = []
    encoder = mixture.encoder(2)
    for p in params:  # two passes written to one stream per image
        centre = mixture.mean(p)
        s = torch.round(sample(mixture, p) - centre)
        s[0, 0, 0, :3] = torch.tensor([900.0, -70_000.0, 2.0**30])  # far outside any support
        s[1, 2, 3, 4] = -(2.0**20) - 3
        encoder.encode(s, p, centre)
        symbols.append(s)
    strings = encoder.finish()
    decoder = mixture.decoder(strings)
    for p, s in zip(params, symbols, strict=True):
        assert torch.equal(decoder.decode(p, mixture.mean(p)), s)


def coded_and_estimate(model, params, seed: int) -> tuple[int, float]:
    """Bytes of symbols sampled from ``model`` (batch of 8) coded in one stream per image,
    and their entropy estimate in bytes."""
    centre = model.mean(params)
    symbols = torch.round(sample(model, params, seed=seed) - centre)
    estimate = float(-torch.log2(model.likelihood(symbols + centre, params)).sum()) / 8
    encoder = model.encoder(8)
    encoder.encode(symbols, params, centre)
    return sum(len(s) for s in encoder.finish()), estimate


def test_coded_size_matches_the_entropy_estimate():
    mixture = GaussianMixtureConditional(K=3).eval()
    coded, estimate = coded_and_estimate(mixture, mixture_params(seed=3, batch=8), seed=3)
    assert estimate > 1500
    # 16-bit frequencies cost a fraction of a percent; each stream flushes ≤ 8 bytes.
    assert abs(coded - estimate) <= 0.01 * estimate + 8 * 8, (coded, estimate)


def test_tiny_float_differences_do_not_change_the_tables():
    mixture = GaussianMixtureConditional(K=3).eval()
    params = mixture_params(seed=4)
    nudged = params * (1 + 1e-13 * torch.randn(params.shape, dtype=torch.float64))
    a = mixture.tables(params, mixture.mean(params))
    b = mixture.tables(nudged, mixture.mean(nudged))
    assert all(
        torch.equal(x[2], y[2]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )
    assert torch.equal(mixture.mean(params), mixture.mean(nudged))
    assert math.isclose(float(mixture.mean(params).abs().max()) * 256 % 1, 0.0, abs_tol=1e-9)


def gaussian_params(batch: int = 1, seed: int = 5) -> torch.Tensor:
    """Float64 (scales, means) of a Gaussian: scales from 0.05 (below the bound) to 40."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(
        torch.empty(batch, C, H, W, dtype=torch.float64).uniform_(-3, 3.7, generator=g)
    )
    means = 4 * torch.randn(batch, C, H, W, generator=g, dtype=torch.float64)
    return torch.cat([scales, means], dim=1)


def test_a_gaussian_codes_as_the_mixture_with_one_component():
    gaussian, mixture = GaussianConditional().eval(), GaussianMixtureConditional(K=1).eval()
    params = gaussian_params(batch=2)
    scales, means = params.chunk(2, dim=1)
    as_mixture = torch.cat([torch.zeros_like(scales), means, scales], dim=1)
    centre = gaussian.mean(params)
    assert torch.equal(centre, mixture.mean(as_mixture))
    symbols = torch.round(sample(gaussian, params, seed=6) - centre)
    strings = []
    for model, p in ((gaussian, params), (mixture, as_mixture)):
        encoder = model.encoder(2)
        encoder.encode(symbols, p, centre)
        strings.append(encoder.finish())
    assert strings[0] == strings[1]
    assert torch.equal(gaussian.decoder(strings[0]).decode(params, centre), symbols)
    y_hat = symbols + centre
    assert torch.equal(gaussian.likelihood(y_hat, params), mixture.likelihood(y_hat, as_mixture))


def test_gaussian_coded_size_matches_the_estimate():
    """Per-element CDFs: no table of 64 scales rounding σ up (CompressAI's costs 3 % of a
    trained hyperprior's rate)."""
    gaussian = GaussianConditional().eval()
    coded, estimate = coded_and_estimate(gaussian, gaussian_params(batch=8, seed=7), seed=8)
    assert estimate > 1000
    assert abs(coded - estimate) <= 0.005 * estimate + 8 * 8, (coded, estimate)


def test_frequencies_match_an_independent_erfc():
    """Coding tables must not depend on the machine's erfc: liclab's (torch, float64,
    vectorised) equal ones computed element by element with the C library's erfc."""
    mixture = GaussianMixtureConditional(K=3).eval()
    params = mixture_params(seed=9)
    centre = mixture.mean(params)
    weights, means, scales = (
        t.movedim(1, -1).reshape(-1, 3).tolist() for t in mixture.parts(params, coding=True)
    )
    c = centre.double().flatten().tolist()
    for idx, lo, freq in mixture.tables(params, centre):
        L = freq.shape[1] - 1
        for row, i, first in zip(freq.tolist(), idx.tolist(), lo.tolist(), strict=True):
            cdf = [
                sum(
                    w / 2 * math.erfc(-(first + k - 0.5 - (m - c[i])) / (s * math.sqrt(2)))
                    for w, m, s in zip(weights[i], means[i], scales[i], strict=True)
                )
                for k in range(L + 1)
            ]
            pmf = [max(0.0, b - a) for a, b in zip(cdf, cdf[1:], strict=False)]
            pmf.append(max(0.0, cdf[0] + 1 - cdf[-1]))
            expected = [math.floor(p * (2**PRECISION - L - 1)) + 1 for p in pmf]
            top = max(range(L + 1), key=lambda k: (expected[k], -k))
            expected[top] += 2**PRECISION - sum(expected)
            assert row == expected, i
