"""How far the training proxy's loss and the rounded loss part during a Cool-chic fit.

Fits ``coolchic_hop`` with the ``coolchic`` schedule (2000 iterations) to a crop of one image
and, at every validation (each 100 iterations of a phase), records beside the loss under true
rounding (what the encoder keeps and the file costs, networks unquantised) the loss under the
phase's training proxy at the same state (the mean of 4 noise draws; these draws shift the
random stream, so a run is not the same trajectory as an uninstrumented one). Writes
``<out>/<name>.tsv`` and prints it. Run from the repository root::

    python results/overfit-kodak/proxy-gap/proxy_gap.py --image $LIC_DATA/kodak/kodim01.png \
        --out results/overfit-kodak/proxy-gap --name default
    python results/overfit-kodak/proxy-gap/proxy_gap.py --image $LIC_DATA/kodak/kodim01.png \
        --t-end 0.05 --std-end 0.05 --out results/overfit-kodak/proxy-gap --name sharp
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
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
    p.add_argument("--t-end", type=float, default=None, help="main phase's final soft-round T")
    p.add_argument("--std-end", type=float, default=None, help="main phase's final noise σ")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", required=True)
    return p


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    top, bottom, left, right = args.crop
    rgb = load_rgb(args.image)[0][top:bottom, left:right]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255
    overfit = config_dir("eval") / "overfit"
    schedule = OmegaConf.load(overfit / "schedule" / "coolchic.yaml")
    if args.t_end is not None:
        schedule.main.quantizer.t_end = args.t_end
    if args.std_end is not None:
        schedule.main.quantizer.noise.std_end = args.std_end

    rows = []
    phase, validate = encode.Fitter.phase, encode.Fitter.validate

    def instrumented_phase(self, state, ph, name):
        self.current = (ph.quantizer, name)
        return phase(self, state, ph, name)

    def instrumented_validate(self):
        record = validate(self)
        if getattr(self, "current", None) and self.model.training:
            q, name = self.current
            with torch.no_grad():
                proxy = np.mean([float(self.loss(self.model(q), self.x)["loss"]) for _ in range(4)])
            rows.append((self.done, name, proxy, record["loss"]))
        return record

    encode.Fitter.phase, encode.Fitter.validate = instrumented_phase, instrumented_validate
    result = encode.fit(
        x, instantiate(OmegaConf.load(overfit / "model" / "coolchic_hop.yaml")), args.lmbda,
        instantiate(schedule), seed=args.seed,
    )  # fmt: skip
    lines = ["iteration\tphase\tproxy_loss\trounded_loss\tgap_%"]
    lines += [f"{i}\t{n}\t{a:.6e}\t{b:.6e}\t{100 * (b / a - 1):+.2f}" for i, n, a, b in rows]
    lines.append(f"end\tkept\t\t{result.stats['loss']:.6e}\t")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.tsv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
