"""The one evaluation loop: compress images with codecs, measure, cache, aggregate.

Every codec, learned or traditional, goes through :func:`evaluate_codecs`; the result files
follow CompressAI's schema (``{"name", "description", "results": {"bpp": [...], ...}}``) so
that published curves and ours load the same way in :mod:`liclab.rd`.

Conventions (as CompressAI's ``compressai.utils.bench`` and the papers): bpp counts every byte
the codec returns, over the original image size; a data set's figure is the mean of per-image
values (bpp, PSNR, linear MS-SSIM, times); its MS-SSIM in dB is that of the mean linear value.

Results are cached on disk, one small JSON per (codec name, setting, ``codec.version()``,
SHA-256 of the image file, SHA-256 of ``liclab/metrics.py``), so running a sweep again costs
only the reading of the files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

import liclab
from liclab import LiclabError
from liclab.images import load_rgb
from liclab.metrics import bpp, ms_ssim, ms_ssim_db, psnr

MIN_SIZE = 64  # smallest side accepted; MS-SSIM needs > 160 and is left out below that
MS_SSIM_MIN_SIDE = 161


def evaluate_codec(
    codec,
    image_paths: Sequence[str | os.PathLike],
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[dict]:
    """Per-image records of one codec on ``image_paths`` (see :func:`evaluate_codecs`)."""
    return evaluate_codecs([codec], image_paths, workers, cache_dir, progress)[0]


def evaluate_codecs(
    codecs: Sequence,
    image_paths: Sequence[str | os.PathLike],
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[list[dict]]:
    """Encode and decode every image with every codec; one list of records per codec.

    A record holds ``file`` (relative to the images' common folder), ``H``, ``W``,
    ``bytes``, ``bpp``, ``psnr``, ``ms_ssim`` and ``ms_ssim_db`` (``None`` for sides under
    161 px), ``enc_s``, ``dec_s``, ``notes`` (conversions applied on loading) and ``est_bpp``
    when the codec has an ``estimate_bpp(image)`` method.

    Images that cannot be used (unreadable, under 64 px, ...) are reported on stderr, one line
    each, and left out. A codec whose decoded shape differs from the input's is an error.

    Args:
        codecs: objects following :class:`liclab.codecs.base.Codec`.
        image_paths: the image files.
        workers: processes to run in (default: the available cores). With more than one, the
            codecs are pickled to spawned processes (so keep their constructors cheap, and call
            from under ``if __name__ == "__main__":`` in a script); learned codecs are best
            run with ``workers=1`` (in this process).
        cache_dir: where to keep per-image results (``None``: no cache).
        progress: show a progress bar on stderr.
    """
    images = _check_images(image_paths)
    results: list[list[dict | None]] = [[None] * len(images) for _ in codecs]
    todo = []
    for i, codec in enumerate(codecs):
        version = codec.version()
        for j, (path, file, digest) in enumerate(images):
            cache = _cache_path(cache_dir, codec, version, digest)
            if cache is not None and cache.exists():
                results[i][j] = {**json.loads(cache.read_text()), "file": file}
            else:
                todo.append((i, j, path, file, cache))
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    workers = max(1, min(workers, len(todo)))
    jobs = ((codecs[i], path, file) for i, _, path, file, _ in todo)
    with _progress(progress, len(todo)) as advance:
        if workers == 1:
            outputs = (_run_one(*job) for job in jobs)
            _collect(outputs, todo, results, advance)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent may hold torch's thread pool, which fork breaks.
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(workers, ctx, initializer=_init_worker) as pool:
                outputs = pool.map(_run_one_packed, jobs)
                _collect(outputs, todo, results, advance)
    return results


def aggregate(
    records: Sequence[dict],
    name: str,
    description: str = "",
    setting: str | None = None,
    codec_version: str | None = None,
) -> dict:
    """One operating point in CompressAI's schema: each ``results`` list has one value.

    ``results`` holds the means of ``bpp``, ``psnr-rgb``, ``ms-ssim-rgb`` (and
    ``ms-ssim-db-rgb``, the dB value of that mean) when every image has it, ``encoding_time``,
    ``decoding_time``, ``est_bpp`` when the codec estimates its rate and ``proxy_bpp`` /
    ``proxy_psnr`` when it reports them (learned codecs, under their training proxy).
    ``settings`` and ``versions`` record what produced the point; :func:`combine` joins points
    into a curve.
    """
    if not records:
        raise LiclabError(f"{name}: no images were evaluated")
    results = {
        "bpp": _mean(records, "bpp"),
        "psnr-rgb": _mean(records, "psnr"),
    }
    if all(r["ms_ssim"] is not None for r in records):
        results["ms-ssim-rgb"] = _mean(records, "ms_ssim")
        results["ms-ssim-db-rgb"] = ms_ssim_db(results["ms-ssim-rgb"])
    results["encoding_time"] = _mean(records, "enc_s")
    results["decoding_time"] = _mean(records, "dec_s")
    for key in ("est_bpp", "proxy_bpp", "proxy_psnr"):
        if all(key in r for r in records):
            results[key] = _mean(records, key)
    return {
        "name": name,
        "description": description,
        "results": {k: [v] for k, v in results.items()},
        "settings": [setting],
        "num_images": len(records),
        "versions": versions(codec_version),
    }


def combine(points: Sequence[dict], name: str | None = None, description: str | None = None):
    """Join operating points (from :func:`aggregate`) into one curve, sorted by bpp.

    ``results`` keeps the keys every point has; ``settings`` follows the same order.
    """
    if not points:
        raise LiclabError("no operating points to combine")
    keys = [k for k in points[0]["results"] if all(k in p["results"] for p in points)]
    rows = []
    for p in points:
        n = len(p["results"]["bpp"])
        settings = p.get("settings", [None] * n)
        rows += [({k: p["results"][k][m] for k in keys}, settings[m]) for m in range(n)]
    rows.sort(key=lambda row: row[0]["bpp"])
    first = points[0]
    return {
        "name": name or first["name"],
        "description": first["description"] if description is None else description,
        "results": {k: [r[k] for r, _ in rows] for k in keys},
        "settings": [s for _, s in rows],
        "num_images": first.get("num_images"),
        "versions": first.get("versions", {}),
    }


def versions(codec_version: str | None = None) -> dict:
    """Versions of liclab, torch, CompressAI and the codec, read without importing them."""
    out = {"liclab": liclab.__version__}
    for dist in ("torch", "compressai"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["codec"] = codec_version
    return out


def _check_images(paths: Sequence[str | os.PathLike]) -> list[tuple[Path, str, str]]:
    """Readable images as (path, name relative to their common folder, SHA-256 of the file)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise LiclabError("no images to evaluate")
    root = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    out = []
    for path in paths:
        try:
            load_rgb(path, min_size=MIN_SIZE)
        except LiclabError as exc:
            print(f"liclab: {exc} (skipped)", file=sys.stderr)
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append((path, path.resolve().relative_to(root).as_posix(), digest))
    if not out:
        raise LiclabError(f"{root}: none of the {len(paths)} images could be used")
    return out


def _cache_path(cache_dir, codec, version: str, digest: str) -> Path | None:
    if cache_dir is None:
        return None
    key = json.dumps([codec.name, codec.setting, version, digest, _metrics_digest()])
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return Path(cache_dir) / codec.name / f"{name}.json"


@functools.cache
def _metrics_digest() -> str:
    """Changes when :mod:`liclab.metrics` does, so cached records follow its definitions."""
    from liclab import metrics

    return hashlib.sha256(Path(metrics.__file__).read_bytes()).hexdigest()[:16]


def _run_one(codec, path: Path, file: str) -> dict:
    image, notes = load_rgb(path, min_size=MIN_SIZE)
    t0 = time.perf_counter()
    data = codec.encode(image)
    t1 = time.perf_counter()
    decoded = codec.decode(data)
    t2 = time.perf_counter()
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise LiclabError(
            f"{codec.name} ({codec.setting}): decoded {file} to {decoded.shape} {decoded.dtype}, "
            f"expected {image.shape} uint8"
        )
    h, w = image.shape[:2]
    ssim = ms_ssim(image, decoded) if min(h, w) >= MS_SSIM_MIN_SIDE else None
    record = {
        "file": file,
        "H": h,
        "W": w,
        "bytes": len(data),
        "bpp": bpp(len(data), h, w),
        "psnr": psnr(image, decoded),
        "ms_ssim": ssim,
        "ms_ssim_db": None if ssim is None else ms_ssim_db(ssim),
        "enc_s": t1 - t0,
        "dec_s": t2 - t1,
        "notes": notes,
    }
    if hasattr(codec, "estimate_bpp"):
        record["est_bpp"] = float(codec.estimate_bpp(image))
    if hasattr(codec, "proxy_metrics"):  # learned codecs: rate and PSNR under training proxy
        record.update(codec.proxy_metrics(image))
    return record


def _run_one_packed(job) -> dict:
    return _run_one(*job)


def _init_worker() -> None:
    # One process per core already: keep torch (MS-SSIM, learned codecs) to one thread.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    else:
        os.environ["OMP_NUM_THREADS"] = "1"  # read when torch is imported


def _collect(outputs, todo, results, advance) -> None:
    for (i, j, _, _, cache), record in zip(todo, outputs, strict=True):
        results[i][j] = record
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(cache)
        advance()


def _mean(records: Sequence[dict], key: str) -> float:
    return float(np.mean([r[key] for r in records]))


@contextmanager
def _progress(enabled: bool, total: int):
    """A rich progress bar on stderr (or nothing); yields ``advance()``, one step per call."""
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("evaluating", total=total)
        yield lambda: bar.advance(task)
