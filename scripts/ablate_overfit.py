"""The quantizer ablation on an overfitted codec: every proxy, a few images and λ, two seeds.

Each (proxy, λ, seed, image) is one fit of the preset with the proxy in its warm-up and main
phases (the final straight-through phase is the same for all; ``OverfitCodec(quantizer=)``),
coded to a real ``.lic`` file. The report is ``liclab.rd.report``'s, as for
``experiment=ablate_quantizer``: a curve per proxy (each point the mean over images and
seeds), JPEG and HEVC on the same crops, BD-rates against ``noise``; and ``spread.md``: each
proxy's BD-rate against noise seed by seed (noise of the same seed), so that the run-to-run
spread stands beside the differences it has to explain.

    python scripts/ablate_overfit.py --data $LIC_DATA/kodak --images 2 --crop 256 \\
        --iterations 600 --workers 2 --out results/ablation-overfit

Encodes are cached (``--cache-dir``): a rerun with more seeds or proxies fits only the new ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

PROXIES = ["noise", "ste", "mixed", "universal", "soft_round", "soft_round_noise"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="kodak", help="a data spec: folder, file, kodak, …")
    p.add_argument("--images", type=int, default=2, help="the first N images")
    p.add_argument("--crop", type=int, default=256, help="centre crops of this side (0: none)")
    p.add_argument("--proxies", nargs="+", default=PROXIES, help="train/quantizer/ configs")
    p.add_argument("--lmbda", type=float, nargs="+", default=[1e-3, 4e-3, 2e-2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--preset", default="coolchic_lop", help="eval/overfit/model/ config")
    p.add_argument("--schedule", default="coolchic", help="eval/overfit/schedule/ config")
    p.add_argument("--iterations", type=int, default=600, help="optimiser steps per fit")
    p.add_argument("--anchors", nargs="*", default=["jpeg", "hevc"])
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--cache-dir", default=".cache/liclab/results")
    p.add_argument("--out", default="outputs/ablation-overfit")
    return p


def crops(data: str, n: int, side: int, folder: Path) -> list[Path]:
    """The first ``n`` images of ``data``, centre-cropped to ``side``² (PNGs in ``folder``,
    named by the image and the crop)."""
    from liclab.datasets import resolve_images
    from liclab.images import load_rgb, save_rgb

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for path in resolve_images(data)[:n]:
        rgb, _ = load_rgb(path)
        if side:
            h, w = rgb.shape[:2]
            if min(h, w) < side:
                raise SystemExit(f"liclab: {Path(path).name}: {w}x{h} is smaller than the crop")
            top, left = (h - side) // 2, (w - side) // 2
            rgb = rgb[top : top + side, left : left + side]
        out = folder / f"{Path(path).stem}-{side}.png"
        save_rgb(rgb, out)
        paths.append(out)
    return paths


def spread_table(curves: dict, proxies, seeds, method: str) -> list[dict]:
    """Per proxy: BD-rate (PSNR) against noise of the same seed, for each seed; NaN (n/a)
    where a curve has no BD-rate (a collapsed proxy: every λ at one point), left out of the
    mean and spread."""
    from liclab.rd import bd_rate_or_nan as bd_rate

    def summary(row: dict, values: list[float]) -> None:
        kept = [v for v in values if not np.isnan(v)]
        row["mean (%)"] = float(np.mean(kept)) if kept else float("nan")
        row["spread (%)"] = float(np.max(kept) - np.min(kept)) if kept else float("nan")

    rows = []
    for proxy in proxies:
        row = {"proxy": proxy}
        values = []
        for seed in seeds:
            base, c = curves[("noise", seed)], curves[(proxy, seed)]
            v = bd_rate(base.bpp, base.get("psnr"), c.bpp, c.get("psnr"), method)
            row[f"seed {seed} (%)"] = v
            values.append(v)
        summary(row, values)
        rows.append(row)
    if len(seeds) > 1:  # the seed alone: noise seed k against noise seed 0
        row = {"proxy": f"noise against noise seed {seeds[0]}"}
        first = curves[("noise", seeds[0])]
        values = []
        for seed in seeds:
            c = curves[("noise", seed)]
            values.append(bd_rate(first.bpp, first.get("psnr"), c.bpp, c.get("psnr"), method))
            row[f"seed {seed} (%)"] = values[-1]
        summary(row, values)
        rows.append(row)
    return rows


def main() -> None:
    args = parser().parse_args()
    from liclab import evaluate
    from liclab.codecs.overfit import OverfitCodec
    from liclab.configs import config_dir
    from liclab.curve import Curve
    from liclab.rd import write_table

    if "noise" not in args.proxies:
        raise SystemExit("liclab: the ablation's BD-rates are against noise: keep it in --proxies")
    out = Path(args.out)
    images = crops(args.data, args.images, args.crop, Path(args.cache_dir) / "crops")
    print(
        f"ablate_overfit: {len(args.proxies)} proxies x {len(args.lmbda)} λ x "
        f"{len(args.seeds)} seeds x {len(images)} images, {args.preset} at "
        f"{args.iterations} iterations -> {out}",
        file=sys.stderr,
    )
    folder = config_dir("train") / "quantizer"
    grid, codecs = [], []
    for proxy in args.proxies:
        path = folder / f"{proxy}.yaml"
        if not path.is_file():
            raise SystemExit(f"liclab: {proxy}: no such quantizer config ({path.name})")
        q = OmegaConf.to_container(OmegaConf.load(path))
        for seed in args.seeds:
            for lmbda in args.lmbda:
                grid.append((proxy, seed))
                codecs.append(
                    OverfitCodec(
                        args.preset,
                        args.schedule,
                        lmbda,
                        iterations=args.iterations,
                        quantizer=q,
                        seed=seed,
                        name=proxy,
                    )
                )
    records = evaluate.evaluate_codecs(codecs, images, args.workers, args.cache_dir)
    by_run: dict[tuple[str, int], list] = {}
    for key, codec, recs in zip(grid, codecs, records, strict=True):
        by_run.setdefault(key, []).append(
            Curve.from_records(codec.name, recs, codec.setting, codec.version())
        )
    curves = {key: Curve.join(points, key[0]) for key, points in by_run.items()}
    # a curve per proxy: at each λ the mean over images and seeds
    runs = []
    for proxy in args.proxies:
        points = []
        for lmbda in args.lmbda:
            recs = [r for (p, _), c, rs in zip(grid, codecs, records, strict=True)
                    if p == proxy and c.lmbda == lmbda for r in rs]  # fmt: skip
            points.append(Curve.from_records(proxy, recs, f"lmbda={lmbda:g}"))
        runs.append(Curve.join(points, proxy))
    for curve in runs:
        curve.save(out / f"{curve.name}.json")
        print(evaluate.summary(curve))
    per_seed = {f"{p}-seed{s}": c.to_json() for (p, s), c in curves.items()}
    (out / "runs.json").write_text(json.dumps(per_seed, indent=1))
    evaluate.compare(runs, images, args.anchors, out, "noise", args.cache_dir)
    rows = spread_table(curves, args.proxies, args.seeds, "pchip")
    caption = "BD-rate (PSNR) against noise of the same seed, seed by seed"
    write_table(rows, out / "spread", caption)
    print((out / "spread.md").read_text())


if __name__ == "__main__":
    main()
