"""Starting weights (``model.init_from``): CompressAI's models in liclab, and liclab checkpoints.

No download here: CompressAI models with random weights stand in for its zoo, so the mapping of
every weight is tested, and the zoo path runs on a file placed in torch.hub's cache.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from compressai import models as cai

from liclab import LiclabError
from liclab.checkpoint import build_model, load_model
from liclab.images import to_tensor
from liclab.quantizers import Round

from conftest import smooth_image

N, M = 16, 24
FAMILIES = {  # CompressAI class, liclab _target_, extra liclab arguments
    "bmshj2018-factorized": (cai.FactorizedPrior, "liclab.models.factorized.FactorizedPrior"),
    "bmshj2018-hyperprior": (cai.ScaleHyperprior, "liclab.models.hyperprior.ScaleHyperprior"),
    "mbt2018-mean": (cai.MeanScaleHyperprior, "liclab.models.hyperprior.MeanScaleHyperprior"),
}
GAUSSIAN = {"_target_": "liclab.entropy.gaussian.GaussianConditional"}
RASTER = {"_target_": "liclab.models.context.Autoregressive"}


def compressai_model(cls, *sizes):
    """A CompressAI model with random weights whose y follows its density roughly as a
    trained one's does (scaled-up y, σ ≥ 3), so that rates are those of a working codec."""
    torch.manual_seed(0)
    model = cls(*sizes).eval()
    with torch.no_grad():
        for p in model.entropy_bottleneck.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if isinstance(model, cai.FactorizedPrior | cai.ScaleHyperprior):
            model.g_a[-1].weight.mul_(5)
        if isinstance(model, cai.MeanScaleHyperprior):
            model.h_s[-1].bias[: sizes[1]].add_(3)
        elif isinstance(model, cai.ScaleHyperprior):
            model.h_s[-2].bias.add_(3)
    return model


def saved(model, tmp_path) -> str:
    path = tmp_path / "weights.pth.tar"
    torch.save(model.state_dict(), path)
    return str(path)


def image(h=128, w=192):
    return to_tensor(smooth_image(h, w, seed=3))


def to_uint8(x):
    return x.clamp(0, 1).mul(255).round()


@pytest.mark.parametrize("name", FAMILIES)
def test_compressai_weights_give_compressai_forward(name, tmp_path):
    """liclab's float32 forward with rounding is CompressAI's eval forward, weight for weight."""
    cls, target = FAMILIES[name]
    theirs = compressai_model(cls, N, M)
    ours = build_model({"_target_": target, "N": N, "M": M, "init_from": saved(theirs, tmp_path)})
    x = image()
    with torch.no_grad():
        expected = theirs(x)
        got = ours.train()(x, Round().eval())  # float32 networks, no coding grids
        assert torch.allclose(got["x_hat"], expected["x_hat"], atol=1e-6)
        for k, v in expected["likelihoods"].items():
            assert torch.allclose(got["likelihoods"][k], v, rtol=1e-5, atol=1e-9), k
        coding = ours.eval()(x)["x_hat"]  # float64 synthesis, entropy parameters on grids
    if name != "mbt2018-mean":  # the means' 1/256 grid moves a few rounded values
        assert torch.allclose(coding, expected["x_hat"], atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_liclab_codes_compressai_weights_at_compressai_rd_point(name, tmp_path):
    cls, target = FAMILIES[name]
    theirs = compressai_model(cls, N, M)
    ours = build_model({"_target_": target, "N": N, "M": M, "init_from": saved(theirs, tmp_path)})
    ours.eval()
    theirs.update(force=True)
    x = image()
    with torch.no_grad():
        c = theirs.compress(x)
        x_theirs = to_uint8(theirs.decompress(c["strings"], c["shape"])["x_hat"])
        ours_c = ours.compress(x)
        x_ours = to_uint8(
            ours.decompress(ours_c["strings"], ours_c["shape"], ours_c["size"])["x_hat"]
        )
        estimate = sum(float(-torch.log2(v).sum()) for v in ours(x)["likelihoods"].values()) / 8
    their_bytes = sum(len(s[0]) for s in c["strings"])
    our_bytes = sum(len(s[0]) for s in ours_c["strings"])
    assert estimate > 800
    assert abs(our_bytes - estimate) <= 0.01 * estimate + 8, (our_bytes, estimate)
    # CompressAI's 64-scale table costs it up to a few % more; never less.
    assert estimate * 0.99 <= their_bytes <= estimate * 1.05 + 8, (their_bytes, estimate)
    assert our_bytes <= their_bytes + 4
    if name == "mbt2018-mean":  # same PSNR: ŷ differs only where a grid point flips a rounding
        mse = [float((xh - to_uint8(x)).square().mean()) for xh in (x_ours, x_theirs)]
        assert abs(mse[0] / mse[1] - 1) < 0.005
        assert (x_ours != x_theirs).float().mean() < 0.01
    else:
        assert torch.equal(x_ours, x_theirs)


@pytest.mark.parametrize("attention", [False, True])
def test_cheng2020_weights_map_onto_the_gmm_model_with_one_gaussian(attention, tmp_path):
    """cheng2020-anchor / -attn: every network computes what CompressAI's does (the coding
    conventions differ: liclab rounds y around its predicted mean, see Cheng2020GMM)."""
    theirs = (cai.Cheng2020Attention if attention else cai.Cheng2020Anchor)(N).eval()
    cfg = {
        "_target_": "liclab.models.gmm.Cheng2020GMM",
        **{"N": N, "M": N, "context": RASTER, "entropy": GAUSSIAN, "attention": attention},
        "init_from": saved(theirs, tmp_path),
    }
    ours = build_model(cfg).eval()
    x = image(64, 64)
    with torch.no_grad():
        y = ours.g_a(x)
        assert torch.equal(y, theirs.g_a(x))
        z_hat = torch.round(ours.h_a(y))
        assert torch.equal(ours.h_s(z_hat), theirs.h_s(z_hat))
        y_hat = torch.round(y)
        assert torch.equal(ours.g_s(y_hat), theirs.g_s(y_hat))
        side, ctx = theirs.h_s(z_hat), theirs.context_prediction(y_hat)
        assert torch.equal(ours.spatial_context[0](y_hat), ctx)
        params = torch.cat([side, ctx], dim=1)
        assert torch.equal(ours.param_aggregation[0](params), theirs.entropy_parameters(params))
        c = ours.compress(x)
        decoded = ours.decompress(c["strings"], c["shape"], c["size"])["x_hat"]
    assert torch.equal(decoded, ours(x)["x_hat"].clamp(0, 1))


def test_the_mask_is_the_models_not_the_weights(tmp_path):
    """Raster-context weights in a checkerboard model keep the checkerboard mask."""
    theirs = cai.Cheng2020Anchor(N)
    cfg = {"_target_": "liclab.models.gmm.Cheng2020GMM", "N": N, "M": N, "entropy": GAUSSIAN}
    ours = build_model({**cfg, "attention": False, "init_from": saved(theirs, tmp_path)})
    mask = ours.spatial_context[0].mask
    assert not torch.equal(mask, theirs.context_prediction.mask)
    assert float(mask[0, 0, 2, 1]) == 1 and float(mask[0, 0, 1, 1]) == 0  # checkerboard


def test_the_zoo_path_loads_from_torch_hub_and_checks_the_hash(tmp_path, monkeypatch):
    from compressai.zoo import image as zoo

    theirs = compressai_model(cai.ScaleHyperprior, N, M)
    data = tmp_path / "w.pth.tar"
    torch.save(theirs.state_dict(), data)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    cached = tmp_path / "hub" / "checkpoints"
    url = f"https://example.invalid/bmshj2018-hyperprior-3-{digest[:8]}.pth.tar"
    data.rename(cached / url.rsplit("/", 1)[1])
    monkeypatch.setitem(zoo.model_urls["bmshj2018-hyperprior"]["mse"], 3, url)
    cfg = {"_target_": FAMILIES["bmshj2018-hyperprior"][1], "N": N, "M": M}
    ours = build_model({**cfg, "init_from": "compressai:bmshj2018-hyperprior:3"})
    assert torch.equal(ours.g_a[0].weight, theirs.g_a[0].weight)
    bad = "https://example.invalid/bmshj2018-hyperprior-3-00000000.pth.tar"
    (cached / url.rsplit("/", 1)[1]).rename(cached / bad.rsplit("/", 1)[1])
    monkeypatch.setitem(zoo.model_urls["bmshj2018-hyperprior"]["mse"], 3, bad)
    with pytest.raises(LiclabError, match="does not match its name"):
        build_model({**cfg, "init_from": "compressai:bmshj2018-hyperprior:3"})


def test_bad_starting_weights_get_one_line(tmp_path):
    scale = {"_target_": FAMILIES["bmshj2018-hyperprior"][1], "N": N, "M": M}
    mean_scale = saved(compressai_model(cai.MeanScaleHyperprior, N, M), tmp_path)
    with pytest.raises(LiclabError, match=r"weights do not fit .*ScaleHyperprior \(size mismatch"):
        build_model({**scale, "init_from": mean_scale})
    with pytest.raises(LiclabError, match="expected compressai:<architecture>:<quality>"):
        build_model({**scale, "init_from": "compressai:bmshj2018-hyperprior:9"})
    with pytest.raises(LiclabError, match="checkpoint not found"):
        build_model({**scale, "init_from": str(tmp_path / "missing.pth.tar")})
    named = tmp_path / "w-0123abcd.pth.tar"
    named.write_bytes(b"not these bytes")
    with pytest.raises(LiclabError, match="does not match its name"):
        build_model({**scale, "init_from": str(named)})


def test_a_liclab_checkpoint_starts_a_model_and_load_model_ignores_init_from(
    trained_ckpt, tmp_path
):
    model, config = load_model(trained_ckpt)
    started = build_model({**config["model"], "init_from": str(trained_ckpt)})
    for (name, a), b in zip(model.state_dict().items(), started.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    ckpt = torch.load(trained_ckpt, map_location="cpu", weights_only=True)
    ckpt["liclab_config"]["model"]["init_from"] = str(tmp_path / "gone.pth.tar")
    torch.save(ckpt, tmp_path / "run.ckpt")
    reloaded, _ = load_model(tmp_path / "run.ckpt")
    assert torch.equal(next(reloaded.parameters()), next(model.parameters()))


def test_the_command_line_override_reaches_build_model(tmp_path):
    from conftest import compose

    theirs = compressai_model(cai.ScaleHyperprior, N, M)
    overrides = ["model=hyperprior", f"model.N={N}", f"model.M={M}"]
    cfg = compose([*overrides, f"+model.init_from={saved(theirs, tmp_path)}"])
    ours = build_model(cfg.model)
    assert torch.equal(ours.h_s[0].weight, theirs.h_s[0].weight)
