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
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from liclab.overfit import encode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fit import arguments, load_crop, preset  # noqa: E402  (results/overfit-kodak/)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[arguments()])
    p.add_argument("overrides", nargs="*", help="schedule.<key>=<value> or model.<key>=<value>")
    return p


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model, schedule = preset()
    configs = {"schedule": schedule, "model": model}
    for item in args.overrides:
        key, eq, value = item.partition("=")
        group, _, path = key.partition(".")
        if group not in configs or not path or not eq:
            raise SystemExit(f"final_phase.py: {item!r}: expected schedule.KEY=V or model.KEY=V")
        value = OmegaConf.from_dotlist([f"v={value}"]).v  # YAML: null, 0.001, 300
        OmegaConf.update(configs[group], path, value, force_add=True)

    x = load_crop(args.image, args.crop)
    start = time.perf_counter()
    result = encode.fit(
        x, instantiate(configs["model"]), args.lmbda, instantiate(configs["schedule"]),
        seed=args.seed, log_every=500,
    )  # fmt: skip
    s = result.stats
    variant = " ".join(args.overrides) or "default"
    lines = [
        "name\tseed\tvariant\tloss\tbpp\tpsnr\tseconds",
        f"{args.name}\t{args.seed}\t{variant}\t{s['loss']:.6e}\t{s['bpp']:.4f}\t{s['psnr']:.3f}"
        f"\t{time.perf_counter() - start:.0f}",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.tsv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
