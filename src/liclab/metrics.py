"""Distortion and rate metrics: the one place where liclab defines them and their names.

Conventions follow the papers and CompressAI's evaluation: PSNR is computed on RGB images
rounded to 8 bits with peak 255, per image (a data set's figure is the mean of per-image
values); MS-SSIM uses the standard 5-scale weights of Wang et al. 2003 on [0, 255] RGB and
needs sides of at least 161 px; MS-SSIM in dB is ``-10 log10(1 - MS-SSIM)``.

:data:`METRICS` names every quality metric once: its key in per-image records and in
:class:`~liclab.curve.Curve`, its key in CompressAI's result schema (and the aliases published
files use), its axis label, and whether higher is better (BD-rate and BD-quality need it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MS_SSIM_MIN_SIDE = 161  # five scales of 2x downsampling of an 11-tap window


@dataclass(frozen=True)
class Metric:
    """A quality metric as results, plots and tables name it.

    Args:
        name: key in per-image records and in :class:`~liclab.curve.Curve` (``psnr``).
        key: key in result files, CompressAI's schema (``psnr-rgb``).
        aliases: other keys published result files use for it.
        label: axis label of RD plots.
        short: column label of BD tables.
        higher_is_better: False for distances such as LPIPS.
        unit: unit of the metric's BD-quality difference ("dB", or "" for none).
    """

    name: str
    key: str
    aliases: tuple[str, ...]
    label: str
    short: str
    higher_is_better: bool = True
    unit: str = ""


METRICS = {
    m.name: m
    for m in (
        Metric("psnr", "psnr-rgb", ("psnr",), "PSNR (dB)", "PSNR", unit="dB"),
        Metric("ms_ssim", "ms-ssim-rgb", ("ms-ssim",), "MS-SSIM", "MS-SSIM (linear)"),
        Metric(
            "ms_ssim_db", "ms-ssim-db-rgb", ("ms-ssim-db",), "MS-SSIM (dB)", "MS-SSIM", unit="dB"
        ),
        # learned metrics (liclab.perceptual): distances, lower is better
        Metric("lpips", "lpips", ("lpips-alex",), "LPIPS (AlexNet)", "LPIPS", False),
        Metric("lpips_vgg", "lpips-vgg", (), "LPIPS (VGG)", "LPIPS-VGG", False),
        Metric("dists", "dists", (), "DISTS", "DISTS", False),
        # of a whole set of reconstructions (256² patches, Mentzer et al. 2020)
        Metric("fid", "fid", (), "FID (256² patches)", "FID", False),
        Metric("kid", "kid", (), "KID (256² patches)", "KID", False),
    )
}
# Metrics that get an RD plot and BD columns (linear MS-SSIM is shown through its dB value).
PLOTTED = ("psnr", "ms_ssim_db", "lpips", "lpips_vgg", "dists", "fid", "kid")
# Per-image metrics computed on request (liclab-eval metrics=[...]), with their networks.
LEARNED = ("lpips", "lpips_vgg", "dists")


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_bytes`` for an image of the given original size."""
    return 8.0 * num_bytes / (height * width)


def mse_to_psnr(mse, peak: float = 255.0):
    """PSNR in dB of a mean squared error (a float or a tensor) on a ``peak`` scale."""
    if isinstance(mse, float | int):
        return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)
    return 10.0 * (peak**2 / mse.clamp_min(1e-20)).log10()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return mse_to_psnr(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def psnr_batch(x_hat, x):
    """Per-image PSNR (dB) of (B, 3, H, W) tensors in [0, 1], as :func:`psnr` measures it:
    both rounded to 8 bits first."""
    x8, x_hat8 = (t.clamp(0, 1).mul(255).round() for t in (x, x_hat))
    return mse_to_psnr(((x_hat8 - x8) ** 2).mean(dim=(1, 2, 3)))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM between two uint8 RGB images; None when a side is under 161 px."""
    from liclab.images import to_tensor

    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    # float32, as CompressAI's benchmark: 7x faster than float64 here, and within 3e-6 of it
    # on the Kodak anchor curves (< 0.001 dB).
    return float(ms_ssim_batch(to_tensor(b), to_tensor(a)).mean())


def ms_ssim_batch(x_hat, x):
    """Per-image MS-SSIM of (B, 3, H, W) tensors in [0, 1], on the 8-bit scale; sides must be
    at least :data:`MS_SSIM_MIN_SIDE`."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    x8, x_hat8 = (t.clamp(0, 1).mul(255).round() for t in (x, x_hat))
    return _ms_ssim(x_hat8, x8, data_range=255.0, size_average=False)


def learned(name: str, a: np.ndarray, b: np.ndarray, weights_dir=None) -> float:
    """A learned per-image metric of :data:`LEARNED` between uint8 images ``a`` and ``b``
    with the published weights (:mod:`liclab.perceptual`; ``liclab-weights`` installs them)."""
    from liclab import perceptual

    if name == "lpips":
        return perceptual.lpips(a, b, "alex", weights_dir=weights_dir)
    if name == "lpips_vgg":
        return perceptual.lpips(a, b, "vgg", weights_dir=weights_dir)
    if name == "dists":
        return perceptual.dists(a, b, weights_dir=weights_dir)
    raise ValueError(f"no learned metric {name!r}; known: {', '.join(LEARNED)}")


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the dB scale used in RD plots."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)
