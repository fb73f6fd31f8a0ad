"""The quantizer ablation's decoder × schedule grid, in one table.

Reads ``scripts/ablate_overfit.py`` outputs (one folder per decoder and schedule: a
``<proxy>.json`` curve per proxy, the mean over crops and seeds, and ``spread.csv``) and
prints, per proxy, (1) its BD-rate (PSNR, PCHIP) against noise of the same folder, with its
two seeds', as each folder's ``bd-rate.md`` and ``spread.md`` have them, and (2) its BD-rate
against one common curve, the first folder's noise: which decoder and schedule give the best
codec, not only which proxy wins within each; a proxy a folder did not run reads "not run".
Run from the repository root::

    python results/ablation-overfit/crossed.py results/ablation-overfit \\
        results/ablation-overfit/cc5-lop-cc4-schedule \\
        results/ablation-overfit/cc4-lop-cc5-schedule results/ablation-overfit/cc5-lop
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from liclab.rd import bd_rate_or_nan

PROXIES = ["noise", "soft_round_noise", "universal", "mixed", "soft_round", "ste"]


def curve(folder: Path, proxy: str) -> tuple[list[float], list[float]]:
    results = json.loads((folder / f"{proxy}.json").read_text())["results"]
    return results["bpp"], results["psnr-rgb"]


def seeds(folder: Path) -> dict[str, tuple[float, float]]:
    with open(folder / "spread.csv", newline="") as f:
        return {
            row["proxy"]: (float(row["seed 0 (%)"]), float(row["seed 1 (%)"]))
            for row in csv.DictReader(f)
        }


def pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.1f} %"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="ablate_overfit.py --out folders")
    return p


def main() -> None:
    folders = parser().parse_args().folders
    names = [str(f) for f in folders]
    common = curve(folders[0], "noise")
    print("BD-rate (PSNR) against noise of the same folder (seed 0 / seed 1)", end="; ")
    print(f"[against {names[0]}'s noise]")
    print("| proxy | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for proxy in PROXIES:
        cells = []
        for folder in folders:
            if not (folder / f"{proxy}.json").is_file():  # a run of fewer proxies
                cells.append("not run")
                continue
            own, mine = curve(folder, "noise"), curve(folder, proxy)
            s0, s1 = seeds(folder).get(proxy, (math.nan, math.nan))
            within = bd_rate_or_nan(*own, *mine) if proxy != "noise" else 0.0
            against = bd_rate_or_nan(*common, *mine)
            cells.append(f"{pct(within)} ({pct(s0)} / {pct(s1)}) [{pct(against)}]")
        print(f"| {proxy} | " + " | ".join(cells) + " |")
    spread = [seeds(f)["noise against noise seed 0"][1] for f in folders]
    print("| noise seed 1 against seed 0 | " + " | ".join(pct(v) for v in spread) + " |")


if __name__ == "__main__":
    main()
