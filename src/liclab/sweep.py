"""End-of-sweep report: evaluate every run of a multirun, draw the curves, tabulate BD-rates.

Attached to a sweep as a Hydra callback (``configs/hydra/callbacks/report.yaml``; the
``ablate_quantizer`` experiment does this), so ``liclab-train -m …`` ends with, in the sweep
folder's ``report/``:

* one curve JSON per group of runs (model / quantizer / loss; λ varies along a curve),
* anchor curves (JPEG, HEVC) on the same images, RD plots (PSNR, MS-SSIM) and a BD-rate table
  of every curve against ``baseline`` (a curve-name fragment such as ``Noise``, or an anchor),
* ``gap.md``: per run, estimated bpp under the training proxy vs real bytes under rounding,
  and PSNR under the proxy vs under rounding (the train/test mismatch of each proxy),
* ``rows.json``: the BD-rate table's rows.

Failed runs (no checkpoint) are reported and left out; the report still gets drawn. To
draw it again (after an interrupted report, or on other images)::

    python -m liclab.sweep <sweep dir> [--data kodak] [--baseline Noise] [--limit N]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from liclab import LiclabError
from liclab.curve import Curve

log = logging.getLogger(__name__)


def report_sweep(sweep_dir, data, anchors, baseline: str, out=None, limit=None, cache_dir=None):
    """Evaluate ``sweep_dir``'s runs on ``data`` and write the report (see module doc)."""
    from liclab import evaluate
    from liclab.datasets import resolve_images

    out = Path(out or Path(sweep_dir) / "report")
    images = resolve_images(data)[: limit or None]
    runs = evaluate.checkpoint_curves(evaluate.find_checkpoints(str(sweep_dir)), images, out)
    hits = [c.name for c in runs if baseline.lower() in c.name.lower()]
    hits += [a for a in anchors if baseline.lower() == a.lower()]
    if len(hits) != 1:
        raise LiclabError(f"baseline {baseline!r} matches {len(hits)} curves: {hits}")
    # The rate axis spans the runs (anchors reach several bpp and would squash them).
    top = max(float(max(c.bpp)) for c in runs)
    result = evaluate.compare(runs, images, anchors, out, hits[0], cache_dir, max_bpp=1.5 * top)
    write_gap_table(runs, out / "gap.md")
    (out / "rows.json").write_text(json.dumps(result["rows"], indent=2))
    return result


def write_gap_table(curves: list[Curve], path: Path) -> None:
    """Train-vs-eval gap per run: proxy estimates against real bytes and rounding."""
    lines = [
        "| curve | setting | real bpp | est. bpp (rounding) | est. bpp (proxy) "
        "| PSNR rounding | PSNR proxy |",
        "|---|---|---|---|---|---|---|",
    ]
    nan = np.full(1000, np.nan)
    for c in curves:
        for i, setting in enumerate(c.settings):
            rates = [c.bpp[i], c.extra.get("est_bpp", nan)[i], c.extra.get("proxy_bpp", nan)[i]]
            psnrs = [c.get("psnr")[i], c.extra.get("proxy_psnr", nan)[i]]
            lines.append(
                f"| {c.name} | {setting} | "
                + " | ".join(f"{v:.4f}" for v in rates)
                + " | "
                + " | ".join(f"{v:.2f}" for v in psnrs)
                + " |"
            )
    path.write_text("\n".join(lines) + "\n")


class SweepReport(Callback):
    """Hydra callback: :func:`report_sweep` once every job of the multirun has finished."""

    def __init__(
        self, data, anchors=("jpeg", "hevc"), baseline: str = "Noise", limit=None, cache_dir=None
    ):
        self.data, self.anchors, self.baseline = data, list(anchors), baseline
        self.limit, self.cache_dir = limit, cache_dir

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            result = report_sweep(
                sweep_dir,
                self.data,
                self.anchors,
                self.baseline,
                limit=self.limit,
                cache_dir=self.cache_dir,
            )
        except LiclabError as exc:
            log.error("liclab: sweep report failed: %s", exc)
            return
        log.info("sweep report: %s", ", ".join(str(p) for p in result["files"]))


def parser():
    """The arguments of ``python -m liclab.sweep``."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument(
        "--data",
        nargs="+",
        default=[os.path.join(os.environ.get("LIC_DATA", "data"), "kodak"), "skimage"],
        help="data specs, the first that exists is used (default: $LIC_DATA/kodak, skimage)",
    )
    parser.add_argument("--anchors", nargs="*", default=["jpeg", "hevc"])
    parser.add_argument("--baseline", default="Noise")
    parser.add_argument("--limit", type=int)
    parser.add_argument(
        "--cache-dir", default=os.path.join(os.environ.get("LIC_CACHE", ".cache/liclab"), "results")
    )
    return parser


def main(argv=None) -> int:
    """``python -m liclab.sweep SWEEP_DIR``: the end-of-sweep report, drawn again."""
    import sys

    args = parser().parse_args(argv)
    try:
        result = report_sweep(
            args.sweep_dir, args.data, args.anchors, args.baseline, None, args.limit, args.cache_dir
        )
    except LiclabError as exc:
        print(f"liclab: {exc}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in result["files"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
