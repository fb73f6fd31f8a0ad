"""Screen variants of the Cool-chic fit on a crop: the loss it ends on, one line per run.

Fits ``coolchic_hop`` with the ``coolchic`` schedule (2000 iterations) to a crop of one image
at λ = 1e-3, with config overrides given as ``schedule.<key>=<value>`` or
``model.<key>=<value>`` (values in YAML: ``null``, ``0.001``, ``300``), and writes the final
loss under rounding (networks unquantised: what the fit compares), bpp (the latents'
estimate) and PSNR to ``<out>/<name>.tsv``. Run from the repository root::

    python results/overfit-kodak/final-phase/final_phase.py --image $LIC_DATA/kodak/kodim01.png \
        --seed 0 --out results/overfit-kodak/final-phase --name coolchic-s0
    python results/overfit-kodak/final-phase/final_phase.py --image $LIC_DATA/kodak/kodim01.png \
        --seed 0 --out results/overfit-kodak/final-phase --name identity-s0 \
        schedule.final.quantizer.t_backward=null
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from liclab.configs import config_dir
from liclab.images import load_rgb
from liclab.overfit import encode


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    p.add_argument("overrides", nargs="*", help="schedule.<key>=<value> or model.<key>=<value>")
    return p


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overfit = config_dir("eval") / "overfit"
    configs = {
        "schedule": OmegaConf.load(overfit / "schedule" / "coolchic.yaml"),
        "model": OmegaConf.load(overfit / "model" / "coolchic_hop.yaml"),
    }
    for item in args.overrides:
        key, eq, value = item.partition("=")
        group, _, path = key.partition(".")
        if group not in configs or not path or not eq:
            raise SystemExit(f"final_phase.py: {item!r}: expected schedule.KEY=V or model.KEY=V")
        OmegaConf.update(configs[group], path, yaml.safe_load(value), force_add=True)

    top, bottom, left, right = args.crop
    rgb = load_rgb(args.image)[0][top:bottom, left:right]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255
    start = time.perf_counter()
    result = encode.fit(
        x, instantiate(configs["model"]), args.lmbda, instantiate(configs["schedule"]),
        seed=args.seed, log_every=500,
    )  # fmt: skip
    s = result.stats
    variant = " ".join(args.overrides) or "default"
    lines = [
        "name\tseed\tvariant\tloss\tbpp\tpsnr\tseconds",
        f"{args.name}\t{args.seed}\t{variant}\t{s['loss']:.6e}\t{s['bpp']:.4f}\t{s['psnr']:.3f}"
        f"\t{time.perf_counter() - start:.0f}",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.tsv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
