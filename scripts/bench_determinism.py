"""What deterministic decoding costs in time (its cost in rate: ``bench_overhead.py``).

For a trained checkpoint on a set of images:

* the synthesis transform's time in float32 against float64 (``exact_synthesis``);
* for models with a choice of ``arithmetic`` (ELIC, GMM): real bytes, PSNR and decode time
  with the decoder-side networks in integer arithmetic against float64.

    python scripts/bench_determinism.py --ckpt run/checkpoints/best.ckpt --data kodak --limit 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from liclab.checkpoint import load_model
from liclab.datasets import resolve_images
from liclab.images import load_rgb, to_tensor, to_uint8
from liclab.metrics import psnr
from liclab.models.arithmetic import Float64, Integer, stable
from liclab.models.context import Autoregressive


def arithmetic_figures(model, x) -> dict:
    """Per arithmetic: (payload bytes, PSNR, decode seconds), float32 g_s for both."""
    out, before = {}, (model.arithmetic, model.exact_synthesis)
    model.exact_synthesis = False
    for arithmetic in (Integer(), Float64()):
        model.arithmetic = arithmetic
        c = model.compress(x)
        t = time.perf_counter()
        x_hat = model.decompress(c["strings"], c["shape"], c["size"])["x_hat"]
        seconds = time.perf_counter() - t
        quality = psnr(to_uint8(x), to_uint8(x_hat))
        out[type(arithmetic).__name__] = (sum(len(s[0]) for s in c["strings"]), quality, seconds)
    model.arithmetic, model.exact_synthesis = before
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", default="kodak")
    p.add_argument("--limit", type=int, default=8)
    return p


def main():
    args = parser().parse_args()
    model, _ = load_model(args.ckpt)
    choice = hasattr(model, "context") and not isinstance(model.context, Autoregressive)
    t32, t64, arith = [], [], []
    with torch.no_grad():
        for path in resolve_images(args.data)[: args.limit]:
            x = to_tensor(load_rgb(path)[0])
            y_hat = torch.round(model.g_a(model._pad(x)))
            t = time.perf_counter()
            model.g_s(y_hat)
            t32.append(time.perf_counter() - t)
            t = time.perf_counter()
            stable(model.g_s, y_hat)
            t64.append(time.perf_counter() - t)
            if choice:
                arith.append(arithmetic_figures(model, x))
    n = len(t32)
    print(f"{type(model).__name__}, {n} images, threads={torch.get_num_threads()}")
    print(
        f"g_s float32 {statistics.median(t32):.3f} s, float64 {statistics.median(t64):.3f} s "
        f"(x{statistics.median(t64) / statistics.median(t32):.2f})"
    )
    if arith:
        total = {a: [sum(f[a][i] for f in arith) for i in range(3)] for a in arith[0]}
        (bi, pi, ti), (bf, pf, tf) = total["Integer"], total["Float64"]
        print(
            f"decoder-side networks, integer vs float64 (float32 g_s): payload {bi / n:.1f} vs "
            f"{bf / n:.1f} bytes/image ({100 * (bi / bf - 1):+.3f} %), PSNR {pi / n:.3f} vs "
            f"{pf / n:.3f} dB, decode {ti / n:.3f} vs {tf / n:.3f} s/image"
        )


if __name__ == "__main__":
    main()
