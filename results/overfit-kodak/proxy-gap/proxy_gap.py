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
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from liclab.overfit import encode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fit import arguments, load_crop, preset  # noqa: E402  (results/overfit-kodak/)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[arguments()])
    p.add_argument("--t-end", type=float, default=None, help="main phase's final soft-round T")
    p.add_argument("--std-end", type=float, default=None, help="main phase's final noise σ")
    return p


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    x = load_crop(args.image, args.crop)
    model, schedule = preset()
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
        x, instantiate(model), args.lmbda,
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
