"""Where a trained model's real bytes go beyond its entropy estimate, latent by latent.

For a liclab checkpoint and the first N images of a folder, per latent (y, z):

* ``estimate``  −Σ log2 p(ŷ) of the eval forward: entropy parameters on the coding grids;
* ``float32``   the same with float32 entropy parameters and no grids (what a coder without
  determinism would use): ``estimate − float32`` is the cost of the grids;
* ``tables``    the ideal code length under the coder's integer frequency tables, escapes
  included: ``tables − estimate`` is the cost of quantising the CDFs (and, in the old
  coder, of the 64-scale table);
* ``real``      the bytes of the latent's string: ``real − tables`` is the coder's
  termination (flush) and rounding to whole bytes;

then the ``.lic`` header and CRC, and the total over the estimate. Percentages are of the
summed estimate of every latent.

    python scripts/bench_overhead.py --ckpt <run>/checkpoints/best.ckpt --images 24
    python scripts/bench_overhead.py --ckpt <run>/checkpoints/best.ckpt --data $LIC_DATA/kodak
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from contextlib import contextmanager

import torch

from liclab.bitstream import Bitstream, pack
from liclab.checkpoint import load_model, model_hash
from liclab.datasets import resolve_images
from liclab.entropy.coder import code_length
from liclab.images import load_rgb, to_tensor
from liclab.quantizers import Round


def bits(likelihood: torch.Tensor) -> float:
    return float(-torch.log2(likelihood).sum())


@contextmanager
def recorded_tables(conditional, out: list):
    """Add to ``out`` the ideal code length of every pass the conditional's encoder codes."""
    make = conditional.encoder

    def encoder(batch):
        real = make(batch)
        encode = real.encode

        def measured(symbols, params, centre):
            for b in range(len(symbols)):
                tables = conditional.tables(params[b : b + 1], centre[b : b + 1])
                out.append(code_length(symbols[b], tables))
            encode(symbols, params, centre)

        real.encode = measured
        return real

    conditional.encoder = encoder
    try:
        yield
    finally:
        del conditional.encoder


def measure(model, quantizer, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per latent: estimate, float32, tables, real (bits) for one image."""
    model.train()  # float32 entropy parameters, no grids; the quantizer still rounds
    float32 = {k: bits(v) for k, v in model(x, quantizer)["likelihoods"].items()}
    model.eval()
    estimate = {k: bits(v) for k, v in model(x, quantizer)["likelihoods"].items()}
    y_tables: list[float] = []
    conditional = getattr(model, "conditional", None)
    if conditional is not None:
        with recorded_tables(conditional, y_tables):
            c = model.compress(x, quantizer)
    else:
        c = model.compress(x, quantizer)
    names = ["y", "z"][: len(c["strings"])]
    eb = model.entropy_bottleneck
    latent = model.g_a(model._pad(x))
    if "z" in names:
        latent = model.h_a(model.hyper_input(latent))
    tables = {names[-1]: eb.code_length(latent, quantizer)}  # the bottleneck's latent
    if y_tables:
        tables["y"] = sum(y_tables)
    out = {
        name: {
            "estimate": estimate[name],
            "float32": float32[name],
            "tables": tables[name],
            "real": 8 * len(c["strings"][i][0]),
        }
        for i, name in enumerate(names)
    }
    strings = [s[0] for s in c["strings"]]
    lic = pack(Bitstream(type(model).__name__, model_hash(model), c["size"], c["shape"], strings))
    out["header + CRC"] = {"real": 8 * (len(lic) - sum(len(s) for s in strings))}
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", default="kodak", help="a folder, or a dataset name (kodak)")
    p.add_argument("--images", type=int, default=24, help="the first N images")
    return p


def main():
    args = parser().parse_args()
    model, config = load_model(args.ckpt)
    quantizer = Round()
    if config.get("quantizer"):
        from hydra.utils import instantiate

        quantizer = instantiate(config["quantizer"])
    quantizer.eval()
    paths = resolve_images(args.data)[: args.images]
    total: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with torch.no_grad():
        for path in paths:
            x = to_tensor(load_rgb(path)[0])
            for name, figures in measure(model, quantizer, x).items():
                for k, v in figures.items():
                    total[name][k] += v
    n = len(paths)
    estimate = sum(t["estimate"] for t in total.values() if "estimate" in t)
    print(f"{type(model).__name__}, {n} images of {args.data}, {type(quantizer).__name__}")
    print("bytes per image; in brackets, % of the estimate of all latents")
    print(f"{'':14s}{'float32':>17s}{'estimate':>17s}{'tables':>17s}{'real':>17s}")

    def cell(v: float) -> str:
        return f"{v / 8 / n:9.1f} ({100 * v / estimate:5.2f})"

    for name, t in total.items():
        cells = [cell(t[k]) if k in t else " " * 17 for k in ("float32", "estimate", "tables")]
        print(f"{name:14s}" + "".join(cells) + cell(t["real"]))
    print("overhead, % of the estimate:")
    for name, t in total.items():
        if "estimate" in t:
            print(
                f"  {name}: grids {100 * (t['estimate'] - t['float32']) / estimate:+.3f}, "
                f"tables {100 * (t['tables'] - t['estimate']) / estimate:+.3f}, "
                f"termination {100 * (t['real'] - t['tables']) / estimate:+.3f}"
            )
    real = sum(t["real"] for t in total.values())
    print(f"  header + CRC {100 * total['header + CRC']['real'] / estimate:+.3f}")
    print(f"  total: real bytes {100 * (real / estimate - 1):+.3f} % over the estimate")


if __name__ == "__main__":
    main()
