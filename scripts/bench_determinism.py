"""What deterministic coding costs: rate and decode time, side by side in one run.

liclab codes with float64 decoder-side networks and means snapped to a 1/256 grid (see
``liclab.models.base``). This script measures, for a trained checkpoint on a set of images:

* the entropy estimate with float32, unsnapped entropy parameters (what a naive coder uses)
  against the estimate with liclab's coding parameters — the rate cost of the grid;
* the real bytes of the .lic files and their header size;
* the synthesis transform's time in float32 against float64;
* for models with a choice of ``arithmetic`` (ELIC): real bytes, PSNR and decode time with
  the entropy-parameter networks in integer arithmetic against float64.

    python scripts/bench_determinism.py --ckpt run/checkpoints/best.ckpt --data kodak --limit 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from liclab.codecs.learned import LearnedCodec
from liclab.datasets import resolve_images
from liclab.images import load_rgb
from liclab.metrics import psnr
from liclab.models.base import stable
from liclab.quantizers import Round


def bits(model, x) -> float:
    out = model(x, Round().eval())
    return float(sum(-torch.log2(v).sum() for v in out["likelihoods"].values()))


def to_uint8(x) -> np.ndarray:
    return (x[0].permute(1, 2, 0) * 255).round().byte().numpy()


def arithmetic_figures(model, x, quantizer) -> dict:
    """Per arithmetic: (payload bytes, PSNR, decode seconds), float32 g_s for both."""
    out, before = {}, (model.arithmetic, model.exact_synthesis)
    model.exact_synthesis = False
    for arithmetic in ("integer", "float64"):
        model.arithmetic = arithmetic
        c = model.compress(x, quantizer)
        t = time.perf_counter()
        x_hat = model.decompress(c["strings"], c["shape"], c["size"], quantizer)["x_hat"]
        seconds = time.perf_counter() - t
        quality = psnr(to_uint8(x), to_uint8(x_hat))
        out[arithmetic] = (sum(len(s[0]) for s in c["strings"]), quality, seconds)
    model.arithmetic, model.exact_synthesis = before
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", default="kodak")
    p.add_argument("--limit", type=int, default=8)
    args = p.parse_args()
    codec = LearnedCodec.from_checkpoint(args.ckpt)
    model = codec.model
    naive, coded, real, header, t32, t64, arith = [], [], [], [], [], [], []
    with torch.no_grad():
        for path in resolve_images(args.data)[: args.limit]:
            img, _ = load_rgb(path)
            x = codec._to_tensor(img)
            model.train()  # float32 entropy parameters, no grid (the quantizer still rounds)
            naive.append(bits(model, x))
            model.eval()
            coded.append(bits(model, x))
            data = codec.encode(img)
            payload = sum(len(s[0]) for s in model.compress(x, codec.quantizer)["strings"])
            real.append(8 * len(data))
            header.append(len(data) - payload)
            y_hat = torch.round(model.g_a(model._pad(x)))
            t = time.perf_counter()
            model.g_s(y_hat)
            t32.append(time.perf_counter() - t)
            t = time.perf_counter()
            stable(model.g_s, y_hat)
            t64.append(time.perf_counter() - t)
            if hasattr(model, "arithmetic"):
                arith.append(arithmetic_figures(model, x, codec.quantizer))
    n = len(real)
    print(f"{type(model).__name__}, {n} images, threads={torch.get_num_threads()}")
    print(f"estimate, float32 parameters : {sum(naive) / n / 8:.1f} bytes/image")
    print(
        f"estimate, coding parameters  : {sum(coded) / n / 8:.1f} bytes/image "
        f"({100 * (sum(coded) / sum(naive) - 1):+.3f} %)"
    )
    print(
        f"real .lic files              : {sum(real) / n / 8:.1f} bytes/image "
        f"(header + CRC {statistics.mean(header):.0f} bytes)"
    )
    print(
        f"g_s float32 {statistics.median(t32):.3f} s, float64 {statistics.median(t64):.3f} s "
        f"(x{statistics.median(t64) / statistics.median(t32):.2f})"
    )
    if arith:
        total = {a: [sum(f[a][i] for f in arith) for i in range(3)] for a in arith[0]}
        (bi, pi, ti), (bf, pf, tf) = total["integer"], total["float64"]
        print(
            f"entropy networks, integer vs float64 (float32 g_s): payload {bi / n:.1f} vs "
            f"{bf / n:.1f} bytes/image ({100 * (bi / bf - 1):+.3f} %), PSNR {pi / n:.3f} vs "
            f"{pf / n:.3f} dB, decode {ti / n:.3f} vs {tf / n:.3f} s/image"
        )


if __name__ == "__main__":
    main()
