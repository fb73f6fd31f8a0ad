"""What the crop experiments under results/overfit-kodak/ share (``proxy-gap/proxy_gap.py``,
``final-phase/final_phase.py``, ``screens/screen.py``): their arguments, the crop, the preset
they fit, and a fit of one variant of it."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from liclab.configs import config_dir
from liclab.images import load_rgb
from liclab.overfit import encode

COLUMNS = "name\tseed\tvariant\tloss\tbpp\tpsnr\tseconds"


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
    p.add_argument(
        "--schedule",
        default="coolchic",
        help="a schedule of the eval config group overfit/schedule (coolchic, coolchic5)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line of a script built on :func:`arguments`, with progress logged and the
    torch threads set."""
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def append_row(out: Path, name: str, line: str, header: str) -> None:
    """Append ``line`` to ``<out>/<name>.tsv`` (``header`` first if the file is new), and
    print it."""
    out.mkdir(parents=True, exist_ok=True)
    table = out / f"{name}.tsv"
    new = not table.exists()
    with table.open("a") as f:
        f.write((header + "\n" if new else "") + line + "\n")
    print(line)


def load_crop(image: str, crop: list[int]) -> torch.Tensor:
    """The crop (rows top:bottom, columns left:right) as a (3, h, w) tensor in [0, 1]."""
    top, bottom, left, right = crop
    rgb = load_rgb(image)[0][top:bottom, left:right]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255


def preset(schedule: str = "coolchic") -> tuple[DictConfig, DictConfig]:
    """(model, schedule) configs: ``coolchic_hop`` with the named schedule."""
    overfit = config_dir("eval") / "overfit"
    path = overfit / "schedule" / f"{schedule}.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: no such schedule")
    return OmegaConf.load(overfit / "model" / "coolchic_hop.yaml"), OmegaConf.load(path)


def fit_variant(
    args, overrides: list[str], iterations: int | None = None
) -> tuple[str, dict[str, float]]:
    """Fit the preset to the crop with config overrides ``schedule.<key>=<value>`` or
    ``model.<key>=<value>`` (values in YAML: ``null``, ``0.001``, ``300``), the schedule
    scaled to ``iterations`` in all (None: its own 2000); returns a row under
    :data:`COLUMNS`: the final loss under rounding (networks unquantised: what the fit
    compares), bpp (the latents' estimate), 8-bit PSNR and seconds; and the fit's stats."""
    model, schedule = preset(getattr(args, "schedule", "coolchic"))
    configs = {"schedule": schedule, "model": model}
    for item in overrides:
        key, eq, value = item.partition("=")
        group, _, path = key.partition(".")
        if group not in configs or not path or not eq:
            raise SystemExit(f"{item!r}: expected schedule.KEY=VALUE or model.KEY=VALUE")
        value = OmegaConf.from_dotlist([f"v={value}"]).v  # YAML: null, 0.001, 300
        OmegaConf.update(configs[group], path, value, force_add=True)
    x = load_crop(args.image, args.crop)
    plan = instantiate(configs["schedule"])
    plan = plan.scaled(iterations) if iterations else plan
    start = time.perf_counter()
    result = encode.fit(
        x, instantiate(configs["model"]), args.lmbda, plan, seed=args.seed, log_every=500
    )
    s = result.stats
    variant = " ".join(overrides) or "default"
    if getattr(args, "schedule", "coolchic") != "coolchic":
        variant = f"schedule={args.schedule} {' '.join(overrides)}".strip()
    row = (
        f"{args.name}\t{args.seed}\t{variant}\t{s['loss']:.6e}\t{s['bpp']:.4f}\t{s['psnr']:.3f}"
        f"\t{time.perf_counter() - start:.0f}"
    )
    return row, s
