"""Each variant of a screen table against its ``default`` rows, seed by seed.

Prints, per variant: the loss change against the default fit of the same seed (%), their
mean, and the mean bpp and PSNR. Run from the repository root::

    python results/overfit-kodak/screens/compare.py results/overfit-kodak/screens/tuning.tsv
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

COLUMNS = "seed, variant, loss, bpp, psnr"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("table", type=Path, help="a screen table (screen.py's --out/--name .tsv)")
    return p


def main() -> None:
    path = parser().parse_args().table
    try:
        rows = list(csv.DictReader(path.open(), delimiter="\t"))
    except OSError as exc:
        raise SystemExit(f"{path}: {exc.strerror}") from None
    variants: dict[str, dict[int, dict]] = {}
    try:
        for row in rows:
            variants.setdefault(row["variant"], {})[int(row["seed"])] = row
            float(row["loss"]), float(row["bpp"]), float(row["psnr"])
    except (KeyError, TypeError, ValueError):
        raise SystemExit(f"{path}: not a screen table (columns {COLUMNS})") from None
    default = variants.get("default")
    if not default:
        raise SystemExit(f"{path}: no 'default' rows to compare against")
    print("variant\tloss change per seed (%)\tmean\tbpp\tPSNR (dB)")
    for name, fits in variants.items():
        changes = [
            100 * (float(fits[s]["loss"]) / float(default[s]["loss"]) - 1)
            for s in sorted(fits)
            if s in default
        ]
        bpp = statistics.mean(float(r["bpp"]) for r in fits.values())
        psnr = statistics.mean(float(r["psnr"]) for r in fits.values())
        per_seed = " / ".join(f"{c:+.2f}" for c in changes)
        print(f"{name}\t{per_seed}\t{statistics.mean(changes):+.2f}\t{bpp:.4f}\t{psnr:.2f}")


if __name__ == "__main__":
    main()
