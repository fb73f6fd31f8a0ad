"""Per image: a codec's PSNR minus an anchor's at the same rate, from evaluator records.

Reads two ``*_images.json`` files written by ``liclab-eval`` (every setting's per-image
records) and, for each record of the codec, interpolates the anchor's PSNR on the same image
at the codec's bpp (linearly in log-bpp between the anchor's operating points; outside them
the nearest point's value is used and the line is marked ``*``)::

    python scripts/anchor_gap.py results/overfit-kodak/coolchic_hop_images.json \\
        results/overfit-kodak/anchors/hevc_images.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("codec", help="the codec's *_images.json")
    p.add_argument("anchor", help="the anchor's *_images.json (the same images)")
    return p


def records(path: Path) -> list[tuple[str, dict]]:
    """(setting, record) of every image of every setting in an evaluator's per-image file."""
    try:
        return [(s["setting"], r) for s in json.loads(path.read_text()) for r in s["images"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit(f"{path}: not an evaluator's per-image file ({exc})")


def gaps(codec: list[tuple[str, dict]], anchor: list[tuple[str, dict]]) -> list[dict]:
    """One row per codec record: setting, file, bpp, PSNR, the anchor's PSNR at that bpp."""
    points: dict[str, list[tuple[float, float]]] = {}
    for _, r in anchor:
        points.setdefault(r["file"], []).append((r["bpp"], r["psnr"]))
    rows = []
    for setting, r in codec:
        if r["file"] not in points:
            sys.exit(f"the anchor has no record of {r['file']}")
        rate, quality = np.array(sorted(points[r["file"]])).T
        at = float(np.interp(np.log(r["bpp"]), np.log(rate), quality))
        outside = not rate[0] <= r["bpp"] <= rate[-1]
        rows.append(dict(setting=setting, file=r["file"], bpp=r["bpp"], psnr=r["psnr"],
                         anchor=at, outside=outside))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for row in gaps(records(Path(args.codec)), records(Path(args.anchor))):
        print(
            f"{row['setting']:16s} {row['file']:14s} {row['bpp']:.4f} bpp {row['psnr']:6.2f} dB"
            f"  anchor {row['anchor']:6.2f} dB  gap {row['psnr'] - row['anchor']:+.2f} dB"
            + (" *" if row["outside"] else "")
        )


if __name__ == "__main__":
    main()
