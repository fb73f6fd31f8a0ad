"""FID and KID of a codec's reconstructions, on 256² patches as in HiFiC.

Mentzer et al. 2020 (HiFiC, arXiv:2006.09965, Sec. 4) compute FID and KID between the
patches of the original images and the same patches of the reconstructions: each image is
cut into non-overlapping 256² patches, then cut again on a grid shifted by 128 px in both
directions (when both sides are ≥ 384, so the shifted grid holds a patch); partial patches are
dropped. Kodak (24 × 768×512) gives 24 × (6 + 2) = 192 patches.

FID (Heusel et al. 2017, arXiv:1706.08500) fits a Gaussian to the 2048-d pool3 features of
each set; with fewer patches than dimensions the covariances are rank-deficient and FID is
unstable and strongly biased, so :func:`fid_kid` flags it and logs a warning: report KID
(Bińkowski et al. 2018, arXiv:1801.01401), the unbiased estimator of a polynomial-kernel MMD,
which has no such bias.

Usage, one pass over a data set without keeping images::

    real, fake = PatchFeatures(), PatchFeatures()
    for x, x_hat in pairs:
        real.add(x)
        fake.add(x_hat)
    scores = fid_kid(real.features, fake.features)   # {"fid", "kid", "kid_std", ...}

The features of the originals can be kept and reused for every codec and rate point.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from liclab import LiclabError
from liclab.perceptual.inception import InceptionV3Features
from liclab.perceptual.tensors import pick_device
from liclab.perceptual.weights import load_into, resolve_weights_dir

log = logging.getLogger(__name__)
_WARNED: set[tuple[int, int]] = set()

PATCH = 256


def patches(image: np.ndarray, size: int = PATCH) -> np.ndarray:
    """The ``(P, size, size, 3)`` patches of ``image`` (``(H, W, 3)``) under HiFiC's protocol:
    the non-overlapping grid, then the grid shifted by ``size // 2`` when both sides are at
    least 1.5 × ``size``."""
    h, w = image.shape[:2]
    starts = [0]
    if min(h, w) >= size + size // 2:
        starts.append(size // 2)
    tiles = [
        image[i : i + size, j : j + size]
        for s in starts
        for i in range(s, h - size + 1, size)
        for j in range(s, w - size + 1, size)
    ]
    return np.stack(tiles) if tiles else np.empty((0, size, size, 3), image.dtype)


@functools.cache
def _cached(device: str, weights_dir: str) -> InceptionV3Features:
    model = InceptionV3Features()
    load_into(model, ("inception-2015-12-05.pth",), "FID", weights_dir)
    return model.eval().to(device, memory_format=torch.channels_last)


class PatchFeatures:
    """Inception pool3 features of an image set's patches, accumulated image by image.

    Only the features are kept (2048 float32 per patch: 1.5 MiB for Kodak's 192 patches).
    On a GPU, PyTorch lets cuDNN run float32 convolutions in TF32 by default (10-bit
    mantissas), so features differ from a CPU run's; set
    ``torch.backends.cudnn.allow_tf32 = False`` for figures comparable across machines.

    Args:
        device: where the network runs (the GPU when present, by default).
        weights_dir: the weight cache (``liclab-weights``), when not the default one.
        extractor: a feature network to use instead of the published InceptionV3 (tests).
        patch: the patch side.
        batch_size: patches per forward pass.
    """

    def __init__(
        self,
        device: str | torch.device | None = None,
        weights_dir=None,
        extractor: torch.nn.Module | None = None,
        patch: int = PATCH,
        batch_size: int = 32,
    ):
        self.device = pick_device(device)
        if extractor is None:
            extractor = _cached(str(self.device), str(resolve_weights_dir(weights_dir)))
        self.extractor, self.patch, self.batch_size = extractor, patch, batch_size
        self._chunks: list[np.ndarray] = []

    def add(self, image: np.ndarray) -> int:
        """Add the patches of a uint8 ``(H, W, 3)`` image; the number of patches it gave."""
        tiles = patches(image, self.patch)
        for start in range(0, len(tiles), self.batch_size):
            batch = torch.from_numpy(tiles[start : start + self.batch_size]).to(self.device)
            with torch.no_grad():
                f = self.extractor(batch.permute(0, 3, 1, 2))
            self._chunks.append(f.float().cpu().numpy())
        return len(tiles)

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks)

    @property
    def features(self) -> np.ndarray:
        """All features so far, ``(P, 2048)`` float32."""
        if not self._chunks:
            return np.empty((0, 2048), np.float32)
        return np.concatenate(self._chunks)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(P, D)`` feature sets.

    ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^½. With A, B the centred features,
    Σ1 = AᵀA / (P1 − 1) and Σ2 = BᵀB / (P2 − 1), tr (Σ1 Σ2)^½ is the sum of the singular values
    of A Bᵀ / √((P1 − 1)(P2 − 1)) (a P1 × P2 matrix: 192² for Kodak instead of 2048²), or, for
    large sets, the sum of the square roots of the eigenvalues of the symmetric Σ1^½ Σ2 Σ1^½.
    Both avoid ``sqrtm`` of the non-symmetric Σ1 Σ2 and stay well defined when Σ is singular.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    a, b = real - real.mean(0), fake - fake.mean(0)
    (n1, d), n2 = a.shape, len(b)
    if n1 * n2 <= d * d:
        tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    else:
        w, v = np.linalg.eigh(a.T @ a / (n1 - 1))
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr_sqrt = np.sqrt(
            np.clip(np.linalg.eigvalsh(root @ (b.T @ b / (n2 - 1)) @ root), 0, None)
        ).sum()
    mean = ((real.mean(0) - fake.mean(0)) ** 2).sum()
    return float(mean + (a**2).sum() / (n1 - 1) + (b**2).sum() / (n2 - 1) - 2 * tr_sqrt)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-size sets under k(a, b) = (a·b / D + 1)³.

    The within-set sums leave out the diagonal (i ≠ j); the cross sum keeps it, as in
    Bińkowski et al.'s estimator (and torch-fidelity's ``mmd2(..., "unbiased")``).
    """
    m, d = x.shape
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: mean and standard deviation of :func:`mmd2_unbiased` over random subsets.

    Subsets are drawn without replacement as torch-fidelity draws them (same seed, same
    subsets). ``subset_size`` shrinks to the smaller set when that has fewer samples
    (torch-fidelity refuses instead); when a subset then covers both sets, all subsets give the
    same estimate and the deviation is 0.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    if m == len(real) == len(fake):  # every subset is a permutation of both sets: one estimate
        return mmd2_unbiased(real, fake), 0.0
    rng = np.random.RandomState(seed)
    mmds = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        mmds.append(mmd2_unbiased(x, y))
    return float(np.mean(mmds)), float(np.std(mmds))


def fid_kid(
    real: np.ndarray,
    fake: np.ndarray,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """FID and KID of two feature sets (e.g. :attr:`PatchFeatures.features`).

    Returns ``{"fid", "kid", "kid_std", "patches", "fid_reliable"}``; ``patches`` is the
    smaller set's size and ``fid_reliable`` is false (with a logged warning) when it is below
    the feature dimension.
    """
    n, dims = min(len(real), len(fake)), real.shape[1]
    if n < 2:
        raise LiclabError(
            f"FID/KID need at least 2 patches of {PATCH}x{PATCH} px per set, got {n} "
            f"(images must be at least {PATCH} px on each side)"
        )
    reliable = n >= dims
    if not reliable and (n, dims) not in _WARNED:  # once per patch count, not per point
        _WARNED.add((n, dims))
        log.warning(
            "liclab: FID on %d patches is unstable (fewer than its %d feature dimensions: "
            "rank-deficient covariances); report KID",
            n,
            dims,
        )
    kid_mean, kid_std = kid(real, fake, kid_subsets, kid_subset_size, seed)
    return {
        "fid": fid(real, fake),
        "kid": kid_mean,
        "kid_std": kid_std,
        "patches": n,
        "fid_reliable": reliable,
    }
