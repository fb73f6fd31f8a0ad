"""Checkpoints: written so that a crash never leaves half a file, read back into models.

Every checkpoint written by ``liclab-train`` carries the resolved run config
(``checkpoint["liclab_config"]``), so a model is rebuilt from the checkpoint alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from liclab import LiclabError


def load_model(path: str | Path):
    """Rebuild the model stored in a liclab checkpoint, in eval mode with CDFs updated.

    Returns ``(model, config)``.
    """
    from hydra.utils import instantiate

    path = Path(path)
    if not path.is_file():
        raise LiclabError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for non-checkpoint files
        raise LiclabError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "liclab_config" not in ckpt or "state_dict" not in ckpt:
        raise LiclabError(f"{path}: not a liclab checkpoint (no liclab_config)")
    config = ckpt["liclab_config"]
    target = config["model"]["_target_"]
    model = instantiate(config["model"])
    state = {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise LiclabError(f"{path}: weights do not fit {target} ({first})") from None
    model.eval()
    model.update(force=True)
    return model, config


def model_hash(model, model_config: dict | None = None) -> bytes:
    """8-byte fingerprint of a model's parameters (and its config), stored in bitstreams."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    if model_config is not None:
        h.update(repr(model_config).encode())
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.digest()[:8]


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
