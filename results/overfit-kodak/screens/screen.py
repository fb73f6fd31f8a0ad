"""Screen schedule and model variants on crops at a given iteration budget: one row per fit.

Fits ``coolchic_hop`` with the ``coolchic`` schedule, scaled to ``--iterations`` optimiser
steps in all (as ``codec.iterations`` does), to a crop of one image, with config overrides
``schedule.<key>=<value>`` or ``model.<key>=<value>``, and appends the fit's final loss under
rounding (networks unquantised), the latents' bpp and the PSNR to ``<out>/<name>.tsv``, one
row per run. Crop fits on one thread take 2–5 minutes, so two run side by side on two cores.
Run from the repository root::

    python results/overfit-kodak/screens/screen.py --image $LIC_DATA/kodak/kodim03.png \\
        --seed 0 --iterations 1200 --threads 1 --out results/overfit-kodak/screens \\
        --name budget-1200 schedule.main.lr=0.02
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fit import COLUMNS, append_row, arguments, fit_variant, parse  # noqa: E402  (results/overfit-kodak/)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[arguments()])
    p.add_argument("--iterations", type=int, default=None, help="optimiser steps in all")
    p.add_argument("overrides", nargs="*", help="schedule.<key>=<value> or model.<key>=<value>")
    return p


def main() -> None:
    args = parse(parser())
    row, stats = fit_variant(args, args.overrides, args.iterations)
    line = f"{Path(args.image).stem}\t{args.lmbda:g}\t{stats['iterations']:.0f}\t{row}"
    append_row(args.out, args.name, line, f"image\tlmbda\titerations\t{COLUMNS}")


if __name__ == "__main__":
    main()
