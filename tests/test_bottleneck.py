"""The factorized entropy bottleneck's coding tables: the same on every machine."""

from __future__ import annotations

import torch


def test_bottleneck_tables_ignore_rounding_noise():
    """Another machine's float kernels round differently. In float32 (CompressAI) noise of
    one ulp in the density moves quantised CDFs; liclab builds them in float64, where noise
    far above float64 rounding leaves them unchanged."""
    import copy

    from compressai.entropy_models import EntropyBottleneck as CompressAIBottleneck

    from liclab.entropy.bottleneck import EntropyBottleneck

    torch.manual_seed(0)
    eb = EntropyBottleneck(64)
    with torch.no_grad():
        for p in eb.parameters():
            p.add_(0.3 * torch.randn_like(p))
    eb.update(force=True)

    def tables(dtype, noise, update):
        twin = copy.deepcopy(eb).to(dtype)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in twin.named_parameters():
                if name != "quantiles":
                    p.mul_(1 + noise * torch.randn(p.shape, generator=gen, dtype=dtype).sign())
        update(twin, force=True)
        return twin._quantized_cdf

    liclab = EntropyBottleneck.update
    assert torch.equal(eb._quantized_cdf, tables(torch.float64, 0.0, liclab))
    assert torch.equal(eb._quantized_cdf, tables(torch.float64, 1e-13, liclab))
    compressai = CompressAIBottleneck.update
    assert not torch.equal(
        tables(torch.float32, 0.0, compressai), tables(torch.float32, 6e-8, compressai)
    )
