"""Loading trained models back from Lightning checkpoints.

Every checkpoint written by ``liclab-train`` carries the resolved run config
(``checkpoint["liclab_config"]``), so a model is rebuilt from the checkpoint alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from liclab import LiclabError


def load_model(path: str | Path, expect_target: str | None = None):
    """Rebuild the model stored in a liclab checkpoint, in eval mode with CDFs updated.

    Returns ``(model, config)``. ``expect_target`` (a ``_target_`` string) rejects a
    checkpoint of another model class with a clear error.
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
    if expect_target is not None and target != expect_target:
        raise LiclabError(f"{path}: checkpoint of {target}, expected {expect_target}")
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
