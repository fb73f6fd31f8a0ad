"""What the crop experiments under results/overfit-kodak/ share (``proxy-gap/proxy_gap.py``,
``final-phase/final_phase.py``): their arguments, the crop, and the preset they fit."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from liclab.configs import config_dir
from liclab.images import load_rgb


def arguments() -> argparse.ArgumentParser:
    """A parent parser: the image, its crop, λ, the seed and where the table goes."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--image", required=True, help="an RGB image (PNG)")
    p.add_argument(
        "--crop",
        type=int,
        nargs=4,
        default=[128, 384, 192, 576],
        metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
        help="rows and columns kept",
    )
    p.add_argument("--lmbda", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", required=True)
    return p


def load_crop(image: str, crop: list[int]) -> torch.Tensor:
    """The crop (rows top:bottom, columns left:right) as a (3, h, w) tensor in [0, 1]."""
    top, bottom, left, right = crop
    rgb = load_rgb(image)[0][top:bottom, left:right]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255


def preset() -> tuple[DictConfig, DictConfig]:
    """(model, schedule) configs: ``coolchic_hop`` with the ``coolchic`` schedule."""
    overfit = config_dir("eval") / "overfit"
    return (
        OmegaConf.load(overfit / "model" / "coolchic_hop.yaml"),
        OmegaConf.load(overfit / "schedule" / "coolchic.yaml"),
    )
