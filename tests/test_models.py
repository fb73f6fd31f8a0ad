"""Every model config × every quantizer: training forward/backward, exact decoding, rate."""

from __future__ import annotations

import pytest
import torch

from liclab.checkpoint import build_model
from liclab.codecs.learned import LearnedCodec
from liclab.images import to_tensor, to_uint8
from liclab.quantizers import (
    STE,
    KumaraswamyNoise,
    Mixed,
    Noise,
    SoftRound,
    SoftRoundNoise,
    Universal,
)

from conftest import MODEL_CONFIGS, TINY, compose, smooth_image


def tiny_model(name: str):
    cfg = compose([f"model={name}"] + [f"model.{k}={v}" for k, v in TINY.items()])
    torch.manual_seed(0)
    return build_model(cfg.model)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.parametrize(
    "quantizer", [Noise, STE, Mixed, Universal, SoftRound, KumaraswamyNoise, SoftRoundNoise]
)
def test_training_forward_backward_reaches_encoder(name, quantizer):
    model = tiny_model(name).train()
    x = to_tensor(smooth_image(64, 64))
    out = model(x, quantizer().train())
    assert out["x_hat"].shape == x.shape
    assert set(out["likelihoods"]) >= {"y"}
    bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
    (bits + ((out["x_hat"] - x) ** 2).sum() * 100).backward()
    first = next(model.g_a.parameters()).grad  # the first layer may be a block
    assert first is not None and float(first.abs().sum()) > 0


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_proxies_differ_in_training_and_agree_in_eval(name):
    model = tiny_model(name)
    x = to_tensor(smooth_image(64, 64))
    outs = {}
    for q in (Noise(), STE(), Mixed()):
        torch.manual_seed(1)
        model.train()
        outs[type(q).__name__] = model(x, q.train())["x_hat"]
    assert not torch.equal(outs["Noise"], outs["STE"])
    # Mixed decodes the same rounded latents as STE (only its rate term is noisy) …
    assert torch.allclose(outs["STE"], outs["Mixed"])
    # … and in eval mode every proxy is the same true rounding.
    model.eval()
    evals = [model(x, q.eval())["x_hat"] for q in (Noise(), STE(), Mixed())]
    assert torch.equal(evals[0], evals[1]) and torch.equal(evals[0], evals[2])


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.parametrize("size", [(64, 64), (97, 131)])
def test_decompress_equals_eval_forward(name, size):
    model = tiny_model(name).eval()
    model.update(force=True)
    x = to_tensor(smooth_image(*size))
    expected = model(x)["x_hat"].clamp(0, 1)
    c = model.compress(x)
    decoded = model.decompress(c["strings"], c["shape"], c["size"])["x_hat"]
    assert decoded.shape == x.shape
    assert torch.equal(decoded, expected)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_universal_quantization_codes_with_the_shared_dither(name):
    model = tiny_model(name).eval()
    model.update(force=True)
    x = to_tensor(smooth_image(64, 96))
    q = Universal(seed=7).eval()
    expected = model(x, q)["x_hat"].clamp(0, 1)
    assert not torch.equal(expected, model(x)["x_hat"].clamp(0, 1))
    c = model.compress(x, q)
    decoded = model.decompress(c["strings"], c["shape"], c["size"], Universal(seed=7))["x_hat"]
    assert torch.equal(decoded, expected)


def test_dithered_coding_matches_the_estimate_under_the_dither(trained_ckpt):
    """Universal quantization codes k = round(y − μ − u): each element of y and z needs the
    table of its offset u, not the zero-offset one (which cost 18 % more bytes of y on a
    trained model)."""
    model = LearnedCodec.from_checkpoint(trained_ckpt).model
    x = to_tensor(smooth_image(256, 384, seed=3))
    q = Universal(seed=3).eval()
    with torch.no_grad():
        out = model(x, q)
        y_estimate = float(-torch.log2(out["likelihoods"]["y"]).sum()) / 8
        payload = model.compress(x, q)
        decoded = model.decompress(payload["strings"], payload["shape"], payload["size"], q)
    z_estimate = float(-torch.log2(out["likelihoods"]["z"]).sum()) / 8
    assert y_estimate > 500
    assert abs(len(payload["strings"][0][0]) - y_estimate) <= 0.01 * y_estimate + 16
    assert abs(len(payload["strings"][1][0]) - z_estimate) <= 0.02 * z_estimate + 8
    assert torch.equal(decoded["x_hat"], out["x_hat"].clamp(0, 1))


def test_trained_model_bytes_match_estimate(trained_ckpt):
    codec = LearnedCodec.from_checkpoint(trained_ckpt)
    img = smooth_image(256, 384, seed=3)
    data = codec.encode(img)
    payload = codec.model.compress(to_tensor(img))
    coded = sum(len(s[0]) for s in payload["strings"])
    estimate = codec.details(img, data)["est_bpp"] * 256 * 384 / 8
    assert estimate > 500, "the trained model should spend a meaningful rate"
    # each coder's termination costs up to ~8 bytes per string; per-element CDFs ~nothing
    assert abs(coded - estimate) <= 0.01 * estimate + 16, (coded, estimate)
    assert len(data) - coded < 64  # the .lic header (model name, hash, sizes) and CRC
    decoded = codec.decode(data)
    expected = codec.model(to_tensor(img))["x_hat"].clamp(0, 1)
    assert (decoded == to_uint8(expected)).all()


def test_dithered_bottleneck_coding_matches_the_estimate():
    """The factorized prior under universal quantization: k = round(z − median − u) coded
    with the table of each element's offset u costs what the density says."""
    from liclab.entropy.bottleneck import EntropyBottleneck

    torch.manual_seed(0)
    eb = EntropyBottleneck(4)
    opt = torch.optim.Adam(eb.parameters(), lr=0.02)
    for _ in range(300):  # fit the density to N(0, 0.6) + U(−½, ½), and the quantiles
        z = 0.6 * torch.randn(1, 4, 16, 16)
        nll = -torch.log2(eb.likelihood(z + torch.rand_like(z) - 0.5)).mean()
        opt.zero_grad()
        (nll + eb.loss()).backward()
        opt.step()
    eb.update(force=True)
    q = Universal(seed=5).eval()
    z = 0.6 * torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        centre = q.coding_offset(z.shape, eb.medians())
        z_hat = torch.round(z - centre) + centre
        estimate = float(-torch.log2(eb.likelihood(z_hat)).sum()) / 8
        strings = eb.compress(z, q)
        decoded = eb.decompress(strings, z.shape[-2:], q)
    assert torch.equal(decoded, z_hat)
    assert estimate > 300
    assert abs(len(strings[0]) - estimate) <= 0.02 * estimate + 8, (len(strings[0]), estimate)
