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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fit import COLUMNS, arguments, fit_variant  # noqa: E402  (results/overfit-kodak/)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[arguments()])
    p.add_argument("overrides", nargs="*", help="schedule.<key>=<value> or model.<key>=<value>")
    return p


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lines = [COLUMNS, fit_variant(args, args.overrides)[0]]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.tsv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
