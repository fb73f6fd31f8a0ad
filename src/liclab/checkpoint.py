"""Checkpoints: models built from configs and weights, and checkpoints written whole.

Every checkpoint written by ``liclab-train`` carries the resolved run config
(``checkpoint["liclab_config"]``), so a model is rebuilt from the checkpoint alone
(:func:`load_model`). A model config may name starting weights in ``init_from``
(:func:`build_model`):

* ``compressai:<architecture>:<quality>[:<metric>]`` — CompressAI's pretrained zoo
  (``bmshj2018-factorized``, ``bmshj2018-hyperprior``, ``mbt2018-mean``,
  ``cheng2020-anchor``, ``cheng2020-attn``; metric ``mse`` or ``ms-ssim``), downloaded into
  ``torch.hub``'s cache once and checked against the SHA-256 prefix in its file name on
  every load;
* a CompressAI state dict on disk (``.pth.tar`` or ``.pth``, as CompressAI's zoo and its
  ``examples/train.py`` write them);
* a liclab ``.ckpt`` (its model weights only: two-stage recipes).

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers, no
arbitrary objects unpickled. The model class and size come from the config, never from the
weights: weights that do not fit (another architecture, another N or M) are refused with
one line naming the first mismatch.

Checkpoints are written to a temporary file and renamed into place (:func:`save_atomically`,
Lightning's writer through :class:`AtomicCheckpointIO`), so a killed run never leaves half
a checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from liclab import LiclabError

INIT_FROM = "init_from"


def build_model(model_cfg: Mapping):
    """Instantiate ``model_cfg`` (a ``_target_`` and constructor arguments, ``init_from``
    aside) and load the weights its ``init_from`` names, if any. Returns the model in
    training mode, coding tables built."""
    model = _instantiate(model_cfg)
    source = model_cfg.get(INIT_FROM)
    if source:
        state = _init_weights(str(source))
        _load(model, state, f"{INIT_FROM}={source}", model_cfg["_target_"])
    return model


def load_model(path: str | Path):
    """Rebuild the model stored in a liclab checkpoint, in eval mode with coding tables
    built. Returns ``(model, config)``; the config's ``init_from`` is ignored (the
    checkpoint's own weights replace any starting point)."""
    path = Path(path)
    ckpt = _read_liclab_checkpoint(path)
    config = ckpt["liclab_config"]
    model = _instantiate(config["model"])
    _load(model, _model_weights(ckpt), str(path), config["model"]["_target_"])
    return model.eval(), config


def model_hash(model, model_config: dict | None = None) -> bytes:
    """8-byte fingerprint of a model's parameters (and its config), stored in bitstreams."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    if model_config is not None:
        h.update(repr(model_config).encode())
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.digest()[:8]


def _instantiate(model_cfg: Mapping):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if OmegaConf.is_config(model_cfg):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    return instantiate({k: v for k, v in model_cfg.items() if k != INIT_FROM})


def _load(model, state: dict, source: str, target: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        problems = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        first = problems[0] if problems else str(exc)
        raise LiclabError(f"{source}: weights do not fit {target} ({first[:300]})") from None


def _read(path: Path) -> dict:
    if not path.is_file():
        raise LiclabError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for non-checkpoint files
        raise LiclabError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise LiclabError(f"{path}: not a checkpoint (a {type(data).__name__})")
    return data


def _read_liclab_checkpoint(path: Path) -> dict:
    ckpt = _read(path)
    if "liclab_config" not in ckpt or "state_dict" not in ckpt:
        raise LiclabError(f"{path}: not a liclab checkpoint (no liclab_config)")
    return ckpt


def _model_weights(ckpt: dict) -> dict:
    return {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def _init_weights(source: str) -> dict:
    """The state dict ``init_from`` names (see the module docstring)."""
    if source.startswith("compressai:"):
        return _compressai_zoo(source)
    path = Path(source).expanduser()
    if path.suffix == ".ckpt":
        return _model_weights(_read_liclab_checkpoint(path))
    _check_hash_in_name(path)
    state = _read(path)
    state = state.get("state_dict", state)  # CompressAI's training checkpoints nest it
    from compressai.zoo.pretrained import load_pretrained

    return load_pretrained(state)  # CompressAI's renaming of its older key names


def _compressai_zoo(source: str) -> dict:
    from compressai.zoo.image import cfgs, model_urls
    from compressai.zoo.pretrained import load_pretrained

    parts = source.split(":")[1:]
    architecture, quality = (parts + [None, None])[:2]
    metric = parts[2] if len(parts) > 2 else "mse"
    urls = model_urls.get(architecture, {}).get(metric, {})
    if len(parts) > 3 or quality is None or not quality.isdigit() or int(quality) not in urls:
        known = ", ".join(sorted(model_urls))
        raise LiclabError(
            f"{INIT_FROM}={source}: expected compressai:<architecture>:<quality>[:<metric>] "
            f"with an architecture in {known} and a quality and metric it was trained for"
        )
    url = urls[int(quality)]
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path))
        except OSError as exc:
            sizes = cfgs[architecture][int(quality)]
            raise LiclabError(
                f"{INIT_FROM}={source}: cannot download {url} ({str(exc)[:120]}); "
                f"place the file in {path.parent} (its N, M: {sizes})"
            ) from None
    _check_hash_in_name(path)  # downloaded or cached alike
    return load_pretrained(_read(path))


def _check_hash_in_name(path: Path) -> None:
    """torch.hub's convention: ``name-<first hex digits of the SHA-256>.pth[.tar]``."""
    match = re.search(r"-([a-f0-9]{8,64})\.pth", path.name)
    if match is None or not path.is_file():
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise LiclabError(f"{path}: SHA-256 {digest[:16]}… does not match its name (a bad copy)")


def _remove_stale_temporaries(folder: Path) -> None:
    """Deletes the partial checkpoints of writers that died mid-write (``.NAME.PID.tmp``).

    A temporary file whose process is still alive is left alone: it may be mid-write.
    """
    for tmp in folder.glob(".*.ckpt.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_atomically(checkpoint: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file, fsync, then rename into place.

    A process killed mid-write (SIGKILL, OOM, a pre-empted node) leaves the previous file
    intact, never a half-written one; the next save deletes what such a writer left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def __getattr__(name: str):
    # AtomicCheckpointIO subclasses Lightning's plugin; defined on first use so that decoding
    # a file (which imports this module) does not pay for importing Lightning.
    if name != "AtomicCheckpointIO":
        raise AttributeError(name)
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Lightning's checkpoint writer through :func:`save_atomically`, so that
        ``ckpt_path=auto`` can always resume."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            save_atomically(checkpoint, path)

    AtomicCheckpointIO.__module__ = __name__
    globals()[name] = AtomicCheckpointIO
    return AtomicCheckpointIO
