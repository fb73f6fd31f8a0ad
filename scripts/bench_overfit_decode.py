"""Decode speed and rate accounting of the overfitted codec's bitstream.

For each preset and image: fit a short schedule (the fitted model cached in ``<out>/``),
quantise and code it (``<out>/<preset>-<image>-<iterations>.lic``, its figures in a JSON
beside it), then decode the file ``--repeats`` times and print

- wall seconds (minimum), and CPU seconds of the wavefront (latents; main thread) and of the
  image worker (upsampling and synthesis; second thread), minima: on a busy machine the
  wall clock measures the other jobs, the per-thread CPU times do not;
- with ``--numpy-steps``, the same decodes with the wavefront's numpy steps in place of the
  C extension's, alternating with them, and the ratio of the two minima;
- bytes per part against the ideal code lengths (and the loss's estimate of the latents),
  and the seconds of the network quantisation search;
- for a preset whose ARM has inter-grid features (Cool-chic 5), the seconds of building the
  decoding schedule as the decoder does, against the same with the dense table of the
  feature inputs' canvas indexes that it built before they were computed in the C step.

    python scripts/bench_overfit_decode.py --images kodim01 \\
        --presets coolchic_hop coolchic_lop c3 --iterations 300

Data through ``$LIC_DATA`` (``$LIC_DATA/kodak/kodim01.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from PIL import Image

from liclab.codecs.overfit import OverfitCodec
from liclab.overfit import coding
from liclab.overfit import wavefront as wavefront_module
from liclab.overfit.decoder import Decoder
from liclab.overfit.encode import Fit
from liclab.overfit.wavefront import Wavefront


def encode(preset: str, image: np.ndarray, iterations: int, lmbda: float, stem: Path):
    """(file, details) of ``image``: a fit of ``iterations`` (no warm-up, the last fifth in
    the final phase; cached beside ``stem`` under the codec's version, which changes with the
    preset, the schedule and the code), then the codec's quantisation and coding."""
    codec = OverfitCodec(preset, "coolchic", lmbda)
    schedule = codec.schedule
    schedule["warmup"] = None
    schedule["main"]["iterations"] = iterations - iterations // 5
    schedule["final"]["iterations"] = iterations // 5
    cache = stem.with_name(f"{stem.name}-{codec.version()}.pt")
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        model = instantiate(codec.model)(size=image.shape[:2])
        model.load_state_dict(saved["state"])
        fitted = Fit(model.eval(), saved["stats"])
    else:
        fitted = codec.fit(image)
        torch.save({"state": fitted.model.state_dict(), "stats": fitted.stats}, cache)
    data = codec.write(fitted, image)
    return data, codec.details(image, data)


class ThreadClock:
    """CPU seconds of the wavefront (calling thread) and of the image worker, per decode."""

    def __init__(self):
        self.main = self.worker = 0.0
        wavefront_decode, bands = Wavefront.decode, Decoder._bands

        def timed_decode(wavefront, *args, **kwargs):
            start = time.thread_time()
            try:
                return wavefront_decode(wavefront, *args, **kwargs)
            finally:
                self.main = time.thread_time() - start

        def timed_bands(decoder, *args, **kwargs):
            start = time.thread_time()
            try:
                return bands(decoder, *args, **kwargs)
            finally:
                self.worker = time.thread_time() - start

        Wavefront.decode, Decoder._bands = timed_decode, timed_bands


def schedule_seconds(preset: str, size: tuple[int, int], repeats: int):
    """(decoding schedule, the same with the dense gather table), minimum wall seconds each,
    alternating, for a preset whose ARM has inter-grid features (None otherwise): the
    decoder's :class:`Wavefront` (the C step computes the feature inputs' canvas indexes),
    and what the decoder built before that change, the table of them
    (:attr:`Wavefront.coarse_pos`, 27 indexes per latent for Cool-chic 5's presets)."""
    model = instantiate(OverfitCodec(preset, "coolchic", 1e-3).model)(size=size)
    if not len(model.arm.ifce):
        return None

    def schedule(dense: bool) -> float:
        start = time.perf_counter()
        wavefront = coding.wavefront_of(model)
        if dense:
            assert wavefront.coarse_pos is not None
        return time.perf_counter() - start

    times = {False: [], True: []}
    for _ in range(repeats):
        for dense in times:
            times[dense].append(schedule(dense))
    return min(times[False]), min(times[True])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", nargs="+", default=["kodim01"])
    p.add_argument(
        "--presets",
        nargs="+",
        default=["coolchic_hop", "coolchic_lop", "c3"],
        help="preset names (eval/overfit/model/) or model YAML paths",
    )
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--lmbda", type=float, default=1e-3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", default="outputs/bench_overfit_decode")
    p.add_argument(
        "--numpy-steps",
        action="store_true",
        help="also decode with the wavefront's numpy steps (no C extension), alternating",
    )
    return p


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(os.environ.get("LIC_DATA", "data")) / "kodak"
    clock = ThreadClock()
    for name in args.images:
        image = np.asarray(Image.open(root / f"{name}.png").convert("RGB"))
        for preset in args.presets:
            stem = out / f"{Path(preset).stem}-{name}-{args.iterations}"  # a name or a YAML
            data, details = encode(preset, image, args.iterations, args.lmbda, stem)
            lic = stem.with_suffix(".lic")
            lic.write_bytes(data)
            lic.with_suffix(".json").write_text(json.dumps(details, indent=1))
            decoded = coding.decode(data, lic.name)  # warm: tables, first-call allocations
            steps = {"C": wavefront_module._wavefront}
            if args.numpy_steps and steps["C"] is not None:
                steps["numpy"] = None
            walls, mains, workers = ({k: [] for k in steps} for _ in range(3))
            for _ in range(args.repeats):  # the two kinds of step alternate
                for kind, module in steps.items():
                    wavefront_module._wavefront = module
                    start = time.perf_counter()
                    again = coding.decode(data, lic.name)
                    walls[kind].append(time.perf_counter() - start)
                    mains[kind].append(clock.main)
                    workers[kind].append(clock.worker)
                    assert np.array_equal(again, decoded)
            wavefront_module._wavefront = steps["C"]
            h, w = image.shape[:2]
            psnr = 10 * np.log10(255**2 / np.mean((decoded.astype(float) - image) ** 2))
            kind = "C" if steps["C"] is not None else "numpy (no C extension)"
            print(
                f"{preset} {name} ({args.iterations} it): {len(data)} B, "
                f"{8 * len(data) / (h * w):.4f} bpp, {psnr:.2f} dB; decode wall "
                f"{min(walls['C']):.3f} s, CPU wavefront {min(mains['C']):.3f} s + image worker "
                f"{min(workers['C']):.3f} s ({kind} steps); quantisation search "
                f"{details['quantize_s']:.1f} s"
            )
            if "numpy" in steps:
                ratio = min(walls["numpy"]) / min(walls["C"])
                print(
                    f"  numpy steps, alternating with those: wall {min(walls['numpy']):.3f} s, "
                    f"CPU wavefront {min(mains['numpy']):.3f} s + image worker "
                    f"{min(workers['numpy']):.3f} s; the C steps {ratio:.2f}x faster"
                )
            seconds = schedule_seconds(preset, (h, w), args.repeats)
            if seconds is not None:
                print(
                    f"  decoding schedule {seconds[0]:.3f} s (feature inputs gathered in the C "
                    f"step); with the dense table of them {seconds[1]:.3f} s, alternating: "
                    f"{seconds[1] / seconds[0]:.1f}x"
                )
            parts = [k[6:] for k in details if k.startswith("bytes_")]
            for part in parts:
                est = details.get(f"est_bits_{part}")
                line = f"  {part:11s} {details[f'bytes_{part}']:7.0f} B"
                if est is not None:
                    gap = 100 * (8 * details[f"bytes_{part}"] / est - 1)
                    line += f"  ideal {est / 8:9.1f} B  ({gap:+.2f} %)"
                print(line)
            loss_est = details["est_bpp"] * h * w / 8
            gap = 100 * (details["bytes_latents"] / loss_est - 1)
            print(f"  latents vs the loss's estimate {loss_est:.0f} B ({gap:+.2f} %)")


if __name__ == "__main__":
    main()
