"""Per encode: the file's loss (MSE + λ·bpp, Cool-chic's λ) of one run against another's.

Reads two ``*_images.json`` files written by ``liclab-eval`` for the same images and λ
(settings ``lmbda=…``), computes each record's loss from its 8-bit PSNR and its bpp (every
byte of the file), and prints the change per (image, λ), how many encodes are lower and the
mean change. Run from the repository root, e.g. the eighth session's Kodak run against the
sixth's::

    git show 3f48d4a:results/overfit-kodak/coolchic_hop_images.json > /tmp/sixth.json
    python results/overfit-kodak/loss_change.py /tmp/sixth.json \\
        results/overfit-kodak/coolchic_hop_images.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from anchor_gap import records  # noqa: E402  (scripts/anchor_gap.py)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path, help="the earlier run's *_images.json")
    p.add_argument("after", type=Path, help="the later run's *_images.json (same images and λ)")
    return p


def losses(path: Path) -> dict[tuple[str, float], float]:
    """(file, λ) → 10^(−PSNR/10) + λ·bpp of every record."""
    out = {}
    for setting, r in records(path):
        lmbda = float(setting.partition("=")[2])
        out[(r["file"], lmbda)] = 10 ** (-r["psnr"] / 10) + lmbda * r["bpp"]
    return out


def main() -> None:
    args = parser().parse_args()
    before, after = losses(args.before), losses(args.after)
    common = sorted(before.keys() & after.keys())
    if not common:
        sys.exit(f"{args.after}: no (image, λ) in common with {args.before}")
    change = {k: 100 * (after[k] / before[k] - 1) for k in common}
    for key, c in change.items():
        name, lmbda = key
        print(f"{name:<16} λ={lmbda:<8g} {before[key]:.4e} → {after[key]:.4e}  {c:+.1f} %")
    lower = sum(c < 0 for c in change.values())
    print(f"{lower} of {len(change)} lower, mean {statistics.mean(change.values()):+.2f} %")


if __name__ == "__main__":
    main()
