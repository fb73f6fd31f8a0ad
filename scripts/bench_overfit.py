"""Encoding speed of the overfitted codecs: seconds per iteration and decoder MAC/pixel.

For each model preset in ``eval/overfit/model/`` (``coolchic_lop``, ``coolchic_hop``, ``c3``),
built for a Kodak-size image (kodim01 from ``$LIC_DATA/kodak`` if present, else a synthetic
768×512 one), times the encoder's iteration exactly as :func:`liclab.overfit.encode.fit`
runs it (:meth:`~liclab.overfit.encode.Fitter.step`: forward under the main phase's proxy,
soft-round∘Gaussian-noise∘soft-round, loss MSE + λ·bpp, backward, gradient clipping, Adam).

Other processes share the machine: the presets alternate, round after round, and each one's
minimum (and median) over all its timed iterations is reported. ``--compile`` adds each
preset under ``torch.compile`` (its compilation time is printed, not counted; on this
project's CPU the compiled fit is ~3x slower than the eager one with its C kernels,
``results/overfit-speed/bench_overfit_compile.txt``: for GPUs);
``--recompute`` adds each preset with its MLPs' activations recomputed in the backward pass,
as before they were kept (:data:`liclab.overfit.mlp.KEEP_BYTES`); ``--chunks 4096 8192``
runs each preset at each of these MLP chunk sizes (:data:`liclab.overfit.mlp.CHUNK`);
``--malloc`` adds each preset with glibc's memory defaults, freed blocks handed back to the
system, as before :func:`liclab.overfit.encode.keep_freed_memory` (set per round);
``--products`` times, for each layer of each preset's ARM and 1×1 synthesis on 8192 rows
(a chunk), the forward product and the two gradient products, plain and as
:func:`liclab.overfit.mlp._mm` computes them (transposed where the result has fewer than 8
columns), and exits; ``--parts`` also times each part of an iteration on its own, forward
and backward (latents and proxy, ARM, Laplace rate, upsampling, synthesis, clamp and MSE;
minima over the rounds); ``--no-kernel`` adds each preset with the MLPs' training passes
in PyTorch instead of the C kernel (:mod:`liclab.overfit.mlp`; as where it is not built);
``--no-conv-kernel`` adds each preset with the synthesis's 3×3 residual layers in PyTorch
(oneDNN) instead of the C kernel (:func:`liclab.overfit.mlp.conv3x3`);
``--narrow 0`` runs the MLPs' narrow products the plain way
(:data:`liclab.overfit.mlp.NARROW`), as before they were computed transposed.

    python scripts/bench_overfit.py --threads 2 --rounds 3 --iterations 5
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import torch

PRESETS = ("coolchic_lop", "coolchic_hop", "c3")


def load_image() -> tuple[torch.Tensor, str]:
    path = Path(os.environ.get("LIC_DATA", "")) / "kodak" / "kodim01.png"
    if path.is_file():
        from liclab.images import load_rgb

        rgb, _ = load_rgb(path)
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255, "kodim01"
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 32, 48, generator=g)
    img = torch.nn.functional.interpolate(base, size=(512, 768), mode="bicubic")
    return img[0].clamp(0, 1), "synthetic 768×512"


def make(preset: str, x: torch.Tensor, compile: bool, soap: bool = False):
    from hydra.utils import instantiate

    from liclab.codecs.overfit import OverfitCodec
    from liclab.overfit.encode import Fitter, Phase, Schedule
    from liclab.overfit.loss import CoolChicMSE
    from liclab.quantizers import GaussianNoise, SoftRoundNoise

    torch.manual_seed(0)
    model = instantiate(OverfitCodec(preset, "coolchic", 1e-3).model)  # a name or a YAML path
    model = model(size=tuple(x.shape[-2:]))
    q = SoftRoundNoise(0.3, 0.1, GaussianNoise(0.25, 0.1)).train()
    schedule = Schedule(main=Phase(iterations=1, lr=1e-2, quantizer=q))
    fitter = Fitter(x[None], CoolChicMSE(1e-3), schedule, 10**9, model.train(), compile)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    if soap:  # the coolchic5 schedule's main phase: SOAP for the networks, the clip on them
        fitter.schedule = Schedule(main=schedule.main, clip_latents=False)
        opt = fitter.optimizer(
            Phase(1, 1e-2, q, optimizer="soap", betas=(0.95, 0.95), weight_decay=0.01)
        )
    start = time.perf_counter()
    for _ in range(2):  # first iterations: allocations, and the compilation
        fitter.step(q, opt)
    parts = lambda: time_parts(model, x[None], q)  # noqa: E731 (--parts)
    return model, (lambda: fitter.step(q, opt)), time.perf_counter() - start, parts


PARTS = ("latents, proxy", "ARM", "Laplace rate", "upsampling", "synthesis", "clamp, MSE")


def time_parts(model, x: torch.Tensor, q) -> dict[str, tuple[float, float]]:
    """Seconds of each part of an iteration, forward and backward, each on its own: its
    inputs are the previous parts' outputs as leaves, its output summed to a scalar."""
    from liclab.overfit.arm import bits, laplace_likelihood

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.detach().requires_grad_()

    y_rate, y_hat = model.latents(q)
    rate_in, hat_in = [leaf(t) for t in y_rate], [leaf(t) for t in y_hat]
    params = [(leaf(m), leaf(s)) for m, s in model.arm(hat_in)]
    dense = leaf(model.upsampling(hat_in))
    x_hat = leaf(model.synthesis(dense))
    stages = {
        "latents, proxy": lambda: sum(t.sum() for ts in model.latents(q) for t in ts),
        "ARM": lambda: sum(m.sum() + s.sum() for m, s in model.arm(hat_in)),
        "Laplace rate": lambda: sum(
            bits(laplace_likelihood(y, m, s)) for y, (m, s) in zip(rate_in, params, strict=True)
        ),
        "upsampling": lambda: model.upsampling(hat_in).sum(),
        "synthesis": lambda: model.synthesis(dense).sum(),
        "clamp, MSE": lambda: (x_hat.clamp(0, 1) - x).square().mean(),
    }
    times = {}
    for name, forward in stages.items():
        start = time.perf_counter()
        out = forward()
        middle = time.perf_counter()
        out.backward()
        times[name] = (middle - start, time.perf_counter() - middle)
    model.zero_grad(set_to_none=True)
    return times


def time_products(model, rows: int = 8192, repeats: int = 20) -> None:
    """Microseconds of each MLP layer's three products on ``rows`` rows (min of
    ``repeats``): the plain ``torch.mm`` against :func:`liclab.overfit.mlp._mm`."""
    from liclab.overfit import mlp

    layers = [(layer.in_features, layer.out_features) for layer in model.arm.layers]
    layers += [(c.in_channels, c.out_channels) for c in model.synthesis.pointwise]

    def best(f) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return 1e6 * min(times)

    print(f"{'layer':<10} {'product':<16} {'plain (µs)':>10} {'liclab (µs)':>11}")
    for k, m in dict.fromkeys(layers):
        a, w, g = torch.randn(rows, k), torch.randn(m, k), torch.randn(rows, m)
        w_t = w.t().contiguous()
        products = (("forward a·Wᵀ", a, w_t), ("weights gᵀ·a", g.t(), a), ("input g·W", g, w))
        for name, x, y in products:
            plain, ours = best(lambda: torch.mm(x, y)), best(lambda: mlp._mm(x, y))  # noqa: B023
            print(f"{f'{k}→{m}':<10} {name:<16} {plain:>10.0f} {ours:>11.0f}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", nargs="+", default=list(PRESETS), help="model presets: names or YAML paths"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5, help="timed per preset and round")
    parser.add_argument("--compile", action="store_true", help="also each preset compiled")
    parser.add_argument(
        "--soap",
        action="store_true",
        help="also each preset with its networks trained by SOAP (the coolchic5 schedule)",
    )
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="also each preset with the MLPs' activations recomputed in the backward pass "
        "instead of kept (liclab.overfit.mlp.KEEP_BYTES = 0)",
    )
    parser.add_argument(
        "--malloc",
        action="store_true",
        help="also each preset with glibc's defaults (freed memory returned to the system)",
    )
    parser.add_argument(
        "--products",
        action="store_true",
        help="time each MLP layer's products plain and as liclab computes them, then exit",
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="also time each part of an iteration (forward, backward) on its own, per round",
    )
    parser.add_argument(
        "--no-kernel",
        action="store_true",
        help="also each preset with the MLPs' training passes in PyTorch, not the C kernel",
    )
    parser.add_argument(
        "--no-conv-kernel",
        action="store_true",
        help="also each preset with the 3x3 residual layers in PyTorch, not the C kernel",
    )
    parser.add_argument(
        "--narrow",
        type=int,
        nargs="+",
        default=None,
        help="liclab.overfit.mlp.NARROW values to run each preset at (0: no product "
        "computed transposed)",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        nargs="+",
        default=None,
        help="MLP chunk sizes (rows) to run each preset at (default: liclab.overfit.mlp.CHUNK)",
    )
    return parser


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    x, name = load_image()
    print(f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.products:
        for preset in args.presets:
            print(f"\n{preset}")
            time_products(make(preset, x, False)[0])
        return
    from liclab.overfit import mlp
    from liclab.overfit.encode import keep_freed_memory

    variants = [{}]  # each: the settings a run differs in, set before each of its rounds
    for key, values in (
        ("compiled", (False, True) if args.compile else None),
        ("recomputed", (False, True) if args.recompute else None),
        ("chunk", args.chunks),
        ("narrow", args.narrow),
        ("glibc defaults", (False, True) if args.malloc else None),
        ("no C kernel", (False, True) if args.no_kernel else None),
        ("no conv kernel", (False, True) if args.no_conv_kernel else None),
        ("soap", (False, True) if args.soap else None),
    ):
        if values:
            variants = [{**v, key: value} for v in variants for value in values]

    def apply(v: dict) -> None:
        mlp.KEEP_BYTES = 0 if v.get("recomputed") else KEEP_BYTES
        mlp.CHUNK, mlp.NARROW = v.get("chunk", CHUNK), v.get("narrow", NARROW)
        mlp.USE_KERNEL = not v.get("no C kernel", False)
        mlp.USE_CONV_KERNEL = not v.get("no conv kernel", False)

    KEEP_BYTES, CHUNK, NARROW = mlp.KEEP_BYTES, mlp.CHUNK, mlp.NARROW
    runs, parts = {}, {}
    for preset in args.presets:
        for v in variants:
            apply(v)
            model, step, first, time_parts_of = make(
                preset, x, v.get("compiled", False), v.get("soap", False)
            )
            label = " ".join(
                [preset]
                + [k for k, on in v.items() if on is True]
                + [f"{k} {on}" for k, on in v.items() if not isinstance(on, bool)]
            )
            runs[label] = (model, step, [], v, time_parts_of)
            parts[label] = {}
            print(f"{label}: first 2 iterations {first:.1f} s")
    for _ in range(args.rounds):
        for label, (_, step, times, v, time_parts_of) in runs.items():
            apply(v)
            keep_freed_memory(not v.get("glibc defaults", False))
            for _ in range(args.iterations):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            if args.parts:
                for name, (f, b) in time_parts_of().items():
                    best = parts[label].get(name, (math.inf, math.inf))
                    parts[label][name] = (min(best[0], f), min(best[1], b))
    width = max(24, *(len(label) + 1 for label in runs))
    print(f"\n{'preset':<{width}} {'MAC/pixel':>9} {'params':>7} {'s/it min':>9} {'median':>7}")
    for label, (model, _, times, _, _) in runs.items():
        macs, params = model.macs_per_pixel()["total"], sum(model.num_parameters().values())
        print(
            f"{label:<{width}} {macs:>9.0f} {params:>7} {min(times):>9.3f} "
            f"{statistics.median(times):>7.3f}"
        )
    for label, table in parts.items():
        if table:
            print(f"\n{label}: ms per part (min over rounds)    forward  backward")
            for name in PARTS:
                f, b = table[name]
                print(f"  {name:<36} {1e3 * f:>8.1f} {1e3 * b:>9.1f}")


if __name__ == "__main__":
    main()
