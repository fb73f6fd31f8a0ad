"""Real coding speed and size of the context models on Kodak (768×512).

``gmm``:  encode + decode seconds of the checkerboard GMM model coding with its K = 3
          mixture vs the *same model and weights* coding with one Gaussian (each mixture
          moment-matched, per-element CDFs too); target ≤ 2×. Real bytes of ŷ vs
          the mixture's entropy estimate −Σ log2 p(ŷ) (target within 1 %; meaningful only
          for a trained model: pass ``--checkpoint``).
``elic``: decode seconds per image of liclab's ELIC vs CompressAI's ``Elic2022Official``
          (same N, M; target ≤ 1.1×) and ``Cheng2020Attention`` (same N, raster
          autoregressive; target ELIC ≥ 5× faster).

Runs alternate between the codecs compared and each figure is the minimum over repeats, so
all see the same machine state (this machine is shared). Weights are random unless a
checkpoint is given: timing does not depend on them, but rates do.

    LIC_DATA=<data folder> python scripts/bench_codec.py gmm --checkpoint last.ckpt
    LIC_DATA=<data folder> python scripts/bench_codec.py elic --N 192 --M 320
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch

from liclab.entropy.gaussian import GaussianConditional
from liclab.images import to_tensor


class SingleGaussian(GaussianConditional):
    """The baseline coder: each element's mixture replaced by the Gaussian of the same mean
    and variance (same rounding centres, so the same ŷ)."""

    def __init__(self, mixture):
        super().__init__()
        self.mixture = mixture
        self.n_params = mixture.n_params

    def components(self, params):
        logits, means, scales = self.mixture.components(params)
        weights, scales = logits.softmax(dim=1), self.mixture.lower_bound_scale(scales)
        mean = (weights * means).sum(1, keepdim=True)
        var = (weights * (scales**2 + means**2)).sum(1, keepdim=True) - mean**2
        return None, mean, var.clamp_min(0).sqrt()

    def mean(self, params):
        return self.mixture.mean(params)


def kodak(n: int) -> list[torch.Tensor]:
    from liclab.images import list_images, load_rgb

    root = Path(os.environ.get("LIC_DATA", "data")) / "kodak"
    images = [load_rgb(p)[0] for p in list_images(root)[:n]]
    return [to_tensor(i) for i in images]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def race(codecs: dict, images: list, repeats: int) -> dict:
    """Per codec: min over repeats of the summed seconds over images (encode, decode)."""
    best = {name: [float("inf"), float("inf")] for name in codecs}
    for _ in range(repeats):
        for name, (encode, decode) in codecs.items():
            enc = dec = 0.0
            for x in images:
                payload, t = timed(lambda x=x, encode=encode: encode(x))
                enc += t
                dec += timed(lambda p=payload, decode=decode: decode(p))[1]
            best[name] = [min(best[name][0], enc), min(best[name][1], dec)]
            print(f"  {name:28s} encode {enc:7.2f} s  decode {dec:7.2f} s", flush=True)
    return {k: {"encode_s": v[0], "decode_s": v[1]} for k, v in best.items()}


def liclab_codec(model):
    return (
        lambda x: model.compress(x),
        lambda c: model.decompress(c["strings"], c["shape"], c["size"]),
    )


def bench_gmm(args, images) -> dict:
    from liclab.models.gmm import Cheng2020GMM

    if args.checkpoint:
        from liclab.checkpoint import load_model

        model = load_model(args.checkpoint)[0]
    else:
        torch.manual_seed(0)
        model = Cheng2020GMM(args.N, args.M or args.N).eval()
        model.update(force=True)
    mixture = model.conditional
    baseline = copy.deepcopy(model)
    baseline.conditional = SingleGaussian(baseline.conditional)
    baseline.update(force=True)
    rates = []
    with torch.no_grad():
        for x in images:
            estimate = float(-torch.log2(model(x)["likelihoods"]["y"]).sum()) / 8
            coded = len(model.compress(x)["strings"][0][0])
            rates.append((estimate, coded, len(baseline.compress(x)["strings"][0][0])))
        codecs = {f"mixture (K={mixture.K})": liclab_codec(model)}
        codecs["single Gaussian"] = liclab_codec(baseline)
        times = race(codecs, images, args.repeats)
    estimate, coded, gauss_bytes = (sum(r[i] for r in rates) for i in range(3))
    total = {k: v["encode_s"] + v["decode_s"] for k, v in times.items()}
    mix, single = total.values()
    result = {
        "model": f"Cheng2020GMM N={model.N} M={model.M} checkerboard",
        "weights": args.checkpoint or "random",
        "times": times,
        "ratio_mixture_over_gaussian": mix / single,
        "y_bytes_mixture": coded,
        "y_bytes_single_gaussian": gauss_bytes,
        "y_estimate_bytes": estimate,
        "mixture_bytes_over_estimate_pct": 100 * (coded / estimate - 1),
    }
    print(
        f"gmm: encode+decode mixture / single Gaussian = {mix:.2f} / {single:.2f} s = "
        f"{mix / single:.2f}x (target <= 2x)\n"
        f"     ŷ bytes: mixture {coded}, estimate {estimate:.0f} "
        f"({result['mixture_bytes_over_estimate_pct']:+.2f} %, target within 1 %), "
        f"single Gaussian {gauss_bytes}"
    )
    return result


def synthesis_seconds(model, images, repeats: int) -> float:
    """Min over repeats of the summed g_s seconds on the rounded latents of ``images``."""
    g_s = getattr(model, "synthesize", model.g_s)  # liclab's picks float64 or float32
    ys = [torch.round(model.g_a(x)) for x in images]
    return min(sum(timed(lambda y=y: g_s(y))[1] for y in ys) for _ in range(repeats))


def bench_elic(args, images) -> dict:
    from compressai.models import Cheng2020Attention
    from compressai.models.sensetime import Elic2022Official

    from liclab.models.arithmetic import Float64, Integer
    from liclab.models.elic import ELIC

    torch.manual_seed(0)
    ours = ELIC(args.N, args.M).eval()
    elic = Elic2022Official(N=args.N, M=args.M).eval()
    cheng = Cheng2020Attention(N=args.N).eval()
    for m in (ours, elic, cheng):
        m.update(force=True)

    def compressai_codec(model):
        return model.compress, lambda c: model.decompress(c["strings"], c["shape"])

    def variant(arithmetic, exact_synthesis: bool):
        model = copy.deepcopy(ours)
        model.arithmetic, model.exact_synthesis = arithmetic, exact_synthesis
        return model

    # liclab's default runs g_s in float64 so that x̂ is bit-identical across processes and
    # CPUs (liclab.entropy); CompressAI runs it in float32, as the second variant does.
    # The third is the entropy networks in float64, liclab's design before integer ones.
    models = {
        "liclab ELIC": ours,
        "liclab ELIC, float32 g_s": variant(Integer(), False),
        "liclab ELIC, float64 entropy, f32 g_s": variant(Float64(), False),
        "CompressAI Elic2022Official": elic,
        "CompressAI Cheng2020Attention": cheng,
    }
    codecs = {
        name: liclab_codec(m) if name.startswith("liclab") else compressai_codec(m)
        for name, m in models.items()
    }
    with torch.no_grad():
        times = race(codecs, images, args.repeats)
        # The synthesis transform alone, so that decode = g_s + entropy decoding is visible
        # (Kodak sizes are multiples of 64: no padding).
        synth = {name: synthesis_seconds(m, images, args.repeats) for name, m in models.items()}
    n = len(images)
    per_image = {k: v["decode_s"] / n for k, v in times.items()}
    synth_per_image = {k: v / n for k, v in synth.items()}
    elic_s = per_image["CompressAI Elic2022Official"]
    cheng_s = per_image["CompressAI Cheng2020Attention"]
    ours_names = [k for k in per_image if k.startswith("liclab")]
    result = {
        "N": args.N,
        "M": args.M,
        "weights": "random",
        "times": times,
        "decode_s_per_image": per_image,
        "synthesis_s_per_image": synth_per_image,
        "entropy_decoding_s_per_image": {k: per_image[k] - synth_per_image[k] for k in per_image},
        "ratio_over_elic2022official": {k: per_image[k] / elic_s for k in ours_names},
        "speedup_vs_cheng2020attention": {k: cheng_s / per_image[k] for k in ours_names},
    }
    print(
        f"elic: decode s/image, {torch.get_num_threads()} thread(s); targets: liclab / "
        "Elic2022Official <= 1.1x, Cheng2020Attention / liclab >= 5x\n"
        + "\n".join(
            f"  {k:38s} {per_image[k]:6.2f} s = g_s {synth_per_image[k]:5.2f} + entropy "
            f"decoding {per_image[k] - synth_per_image[k]:5.2f}"
            + (
                f"   / Elic2022Official {per_image[k] / elic_s:4.2f}x, "
                f"Cheng / it {cheng_s / per_image[k]:4.2f}x"
                if k in ours_names
                else ""
            )
            for k in per_image
        )
    )
    return result


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["gmm", "elic"])
    parser.add_argument("--images", type=int, default=3, help="the first n Kodak images")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--N", type=int, default=None, help="gmm: 128, elic: 192")
    parser.add_argument("--M", type=int, default=None, help="gmm: N, elic: 320")
    parser.add_argument("--checkpoint", help="gmm: a trained liclab-train checkpoint")
    parser.add_argument(
        "--threads", type=int, default=1, help="1: stable timings on a shared machine"
    )
    parser.add_argument("--json", help="write the figures here")
    return parser


def main():
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "elic":
        args.N, args.M = args.N or 192, args.M or 320
    else:
        args.N = args.N or 128
    images = kodak(args.images)
    print(f"{len(images)} Kodak images, {torch.get_num_threads()} threads, {platform.processor()}")
    result = bench_gmm(args, images) if args.what == "gmm" else bench_elic(args, images)
    result.update(images=len(images), threads=torch.get_num_threads(), date=str(date.today()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
