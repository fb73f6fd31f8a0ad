"""The one evaluation loop: codecs → per-image records → curves.

Every codec, learned, overfitted or traditional, goes through :func:`evaluate_codecs`, which
encodes and decodes each image and measures the result with :mod:`liclab.metrics`. Records
become :class:`~liclab.curve.Curve` points; :func:`liclab.rd.report` draws and compares them.

    trained checkpoints ─ find_checkpoints ─ checkpoint_curves ─┐
    a codec config at its operating points ─── codec_curve ─────┼─▶ curves ─▶ rd.report
    anchors by name (codec/<name>.yaml) ────── anchor_curves ───┘

Conventions (as CompressAI's ``compressai.utils.bench`` and the papers): bpp counts every byte
the codec returns, over the original image size; a data set's figure is the mean of per-image
values (bpp, PSNR, linear MS-SSIM, times); its MS-SSIM in dB is that of the mean linear value.

Results are cached on disk, one small JSON per (codec name, setting, ``codec.version()``,
SHA-256 of the image file, SHA-256 of ``liclab/metrics.py``), written as each encode ends,
so running a sweep again costs only the reading of the files, and an interrupted evaluation
resumes where it stopped: a warm-started sweep's fitted states are kept beside its records
(``<key>.state.pt``), so an image's chain resumes after its last finished encode.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

import liclab
from liclab import LiclabError
from liclab.curve import Curve
from liclab.images import load_rgb
from liclab.metrics import LEARNED, bpp, learned, ms_ssim, ms_ssim_db, psnr
from liclab.progress import is_terminal, progress

MIN_SIZE = 64  # smallest side accepted


@dataclass(frozen=True)
class Measures:
    """What is measured beyond bytes, PSNR and MS-SSIM: learned per-image metrics
    (:data:`liclab.metrics.LEARNED`: ``lpips``, ``lpips_vgg``, ``dists``) and the Inception
    features of 256² patches that FID / KID of a point need; ``weights_dir``: where their
    weights are (None: ``liclab-weights``' cache)."""

    learned: tuple[str, ...] = ()
    fid: bool = False
    weights_dir: str | None = None

    def __post_init__(self):
        unknown = set(self.learned) - set(LEARNED)
        if unknown:
            raise LiclabError(f"unknown metric {sorted(unknown)}; learned metrics: {LEARNED}")


def evaluate_codec(codec, image_paths, workers=None, cache_dir=None, show=True, measures=None):
    """Per-image records of one codec on ``image_paths`` (see :func:`evaluate_codecs`)."""
    return evaluate_codecs([codec], image_paths, workers, cache_dir, show, measures)[0]


def evaluate_codecs(
    codecs: Sequence,
    image_paths: Sequence[str | os.PathLike],
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    show: bool = True,
    measures: Measures | None = None,
) -> list[list[dict]]:
    """Encode and decode every image with every codec; one list of records per codec.

    A record holds ``file`` (relative to the images' common folder), ``H``, ``W``,
    ``bytes``, ``bpp``, ``psnr``, ``ms_ssim`` and ``ms_ssim_db`` (``None`` for sides under
    161 px), ``encoding_time``, ``decoding_time`` (seconds), ``notes`` (conversions applied on
    loading), and whatever figures the codec reports about the encode through an optional
    ``codec.details(image, data) -> dict`` (learned codecs: the entropy estimate ``est_bpp``
    and the training proxy's ``proxy_bpp`` / ``proxy_psnr``; overfitted codecs: bytes per part).

    ``measures`` adds the learned metrics it names to each record and, for FID / KID, the
    Inception features of the reconstruction's 256² patches under ``fid_features`` (an array
    kept in memory and in the cache, not in result files).

    Images that cannot be used (unreadable, under 64 px, ...) are reported on stderr, one line
    each, and left out. A codec whose decoded shape differs from the input's is an error.

    Args:
        codecs: objects following :class:`liclab.codecs.base.Codec`.
        image_paths: the image files.
        workers: processes to run in (default: the available cores). With more than one, the
            codecs are pickled to spawned processes, each running torch on one thread (call
            from under ``if __name__ == "__main__":`` in a script).
        cache_dir: where to keep per-image results (``None``: no cache).
        show: report progress on stderr.
    """
    measures = measures or Measures()
    images = _check_images(image_paths)
    results: list[list[dict | None]] = [[None] * len(images) for _ in codecs]
    todo = []  # (chain of codec indices, image index, path, file, cache files)
    for chain in _chains(codecs):
        versions_ = [codecs[i].version() for i in chain]
        for j, (path, file, digest) in enumerate(images):
            caches = [
                _cache_path(cache_dir, codecs[i], v, digest)
                for i, v in zip(chain, versions_, strict=True)
            ]
            hits = [_cached(cache, measures) for cache in caches]
            if all(hit is not None for hit in hits):
                for i, hit in zip(chain, hits, strict=True):
                    results[i][j] = {**hit, "file": file}
            else:  # a chain's later encodes start from the earlier ones: all are rerun
                todo.append((chain, j, path, file, caches))
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    workers = max(1, min(workers, len(todo)))
    jobs = (
        ([codecs[i] for i in chain], path, file, measures, caches)
        for chain, _, path, file, caches in todo
    )
    what = f"{codecs[0].name}" + (f" ({len(codecs)} settings)" if len(codecs) > 1 else "")
    lines = show and not is_terminal()  # a log file: the fits' own progress lines too
    encodes = sum(len(chain) for chain, *_ in todo)
    with progress(
        encodes, f"evaluating {what}", "encodes", enabled=show, parallel=workers
    ) as advance:
        if workers == 1:
            with _fit_lines(lines):
                _collect((_run_chain(*job) for job in jobs), todo, results, advance)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent may hold torch's thread pool, which fork breaks.
            ctx = mp.get_context("spawn")
            init = functools.partial(_init_worker, lines, os.getpid())
            with ProcessPoolExecutor(workers, ctx, initializer=init) as pool:
                _collect(pool.map(_run_chain_packed, jobs), todo, results, advance)
    return results


def codec_curve(
    codecs: Sequence,
    images,
    name: str | None = None,
    workers=None,
    cache_dir=None,
    show: bool = True,
    measures: Measures | None = None,
) -> tuple[Curve, list[list[dict]]]:
    """One curve from codec objects, one point per object (operating point); returns the
    curve and the per-image records of each point."""
    per_codec = evaluate_codecs(codecs, images, workers, cache_dir, show, measures)
    points = [
        point(codec.name, records, codec.setting, codec.version(), images, cache_dir, measures)
        for codec, records in zip(codecs, per_codec, strict=True)
    ]
    return Curve.join(points, name or codecs[0].name), per_codec


def point(name, records, setting, description, images, cache_dir, measures) -> Curve:
    """One operating point from its per-image records: means, and FID / KID of the
    reconstructions against the originals when measured."""
    curve = Curve.from_records(name, records, setting, description, versions(description))
    if measures is not None and measures.fid:
        from liclab.perceptual import fid_kid

        real = _original_features(images, cache_dir, measures.weights_dir)
        fake = np.concatenate([r["fid_features"] for r in records])
        scores = fid_kid(real, fake)
        curve.metrics.update(fid=np.array([scores["fid"]]), kid=np.array([scores["kid"]]))
        curve.extra["fid_patches"] = np.array([float(scores["patches"])])
    return curve


def _instantiate_codec(codec_cfg, arg: str, value):
    """The codec at one operating point; a :class:`LiclabError` its constructor raises (a
    bad preset or config file) surfaces as itself, one line, not inside Hydra's message."""
    from hydra.utils import instantiate

    try:
        return instantiate(codec_cfg, **{arg: value})
    except Exception as exc:
        if isinstance(exc.__cause__, LiclabError):
            raise exc.__cause__ from None
        raise


def codecs_at_points(codec_cfg, points) -> list:
    """One codec object per operating point: ``codec_cfg`` (``_target_`` and fixed
    arguments) instantiated with each value of ``points`` (``{argument: [values]}``)."""
    if len(points) != 1:
        raise LiclabError(f"operating points must vary one argument, got {list(points)}")
    ((arg, values),) = points.items()
    codecs = [_instantiate_codec(codec_cfg, arg, v) for v in values]
    for before, codec in zip(codecs, codecs[1:], strict=False):  # a sweep, warm-started: in order
        if getattr(codec, "warm_start", False):
            codec.warm_from = before
    return codecs


def anchor_curves(
    names: Sequence[str],
    images,
    out: Path | None = None,
    cache_dir=None,
    workers=None,
    measures: Measures | None = None,
) -> list[Curve]:
    """The curves of anchor codecs named by their configs (``codec/<name>.yaml`` at the
    operating points of ``codec/points/<name>.yaml``) on ``images``; saved in ``out``."""
    from liclab.configs import codec_config

    curves = []
    for name in names:
        codec_cfg, points = codec_config(name)
        codecs = codecs_at_points(codec_cfg, points)
        curve, per_codec = codec_curve(codecs, images, name, workers, cache_dir, True, measures)
        if out is not None:
            pairs = zip(codecs, per_codec, strict=True)
            save(curve, [{"setting": c.setting, "images": r} for c, r in pairs], out)
        curves.append(curve)
    return curves


def compare(
    runs: Sequence[Curve],
    images,
    anchors: Sequence[str],
    out: Path,
    baseline: str | None = None,
    cache_dir=None,
    method: str = "pchip",
    max_bpp: float | None = None,
    measures: Measures | None = None,
) -> dict:
    """Evaluate the ``anchors`` on the same ``images`` with the same ``measures`` (saved in
    ``out/anchors``), then :func:`liclab.rd.report` of ``runs`` against them in ``out``; BD
    against ``baseline`` (default the first anchor, or the first run)."""
    from liclab.rd import report

    references = anchor_curves(anchors, images, Path(out) / "anchors", cache_dir, measures=measures)
    base = baseline or (anchors[0] if anchors else runs[0].name)
    title = f"{len(images)} images"
    return report(runs, references, base, out, method, title, max_bpp)


def find_checkpoints(spec, which: str = "best") -> list[Path]:
    """Checkpoint files named by ``spec``: files, or directories searched for run folders.

    A run folder is one with ``checkpoints/``; it contributes its ``best.ckpt`` (or
    ``last.ckpt`` when ``which=last`` or when it has no best). A run without a checkpoint,
    e.g. a failed λ of a sweep, is reported and skipped.
    """
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    found: list[Path] = []
    for item in map(Path, specs):
        if item.is_file():
            found.append(item)
            continue
        if not item.is_dir():
            raise LiclabError(f"{item}: no such checkpoint or run directory")
        runs = sorted({p.parent for p in item.rglob("config.yaml") if p.parent.name != ".hydra"})
        for run in runs:
            ckpts = run / "checkpoints"
            order = [f"{which}.ckpt", "last.ckpt"]
            pick = next((ckpts / n for n in order if (ckpts / n).is_file()), None)
            if pick is None:
                print(f"liclab: {run}: no checkpoint (failed run?), skipped", file=sys.stderr)
            else:
                found.append(pick)
    if not found:
        raise LiclabError(f"{', '.join(map(str, specs))}: no checkpoints found")
    return found


def curve_key(config: dict) -> str:
    """Runs differing only in λ form one curve: model / quantizer / loss class names."""
    parts = [config[g]["_target_"].rsplit(".", 1)[-1] for g in ("model", "quantizer", "loss")]
    return "-".join(parts)


def checkpoint_curves(
    ckpts: Sequence[Path],
    images,
    out: Path | None = None,
    name=None,
    exact_synthesis=True,
    cache_dir=None,
    measures: Measures | None = None,
) -> list[Curve]:
    """Evaluate trained checkpoints: one curve per model / quantizer / loss (λ varies along
    it), or one curve named ``name``; saved in ``out``. Unloadable checkpoints are skipped
    with a line each. ``cache_dir`` keeps only the originals' Inception features (FID): a
    checkpoint's records are not cached."""
    from liclab.codecs.learned import LearnedCodec

    groups: dict[str, list] = defaultdict(list)
    for i, ckpt in enumerate(ckpts):
        try:
            codec = LearnedCodec.from_checkpoint(ckpt, exact_synthesis=exact_synthesis)
        except LiclabError as exc:
            print(f"liclab: {exc} (skipped)", file=sys.stderr)
            continue
        key = name or curve_key(codec.config)
        print(f"[{i + 1}/{len(ckpts)}] {key} {codec.setting}: {ckpt}", file=sys.stderr)
        records = evaluate_codec(codec, images, workers=1, measures=measures)
        at = point(key, records, codec.setting, str(ckpt), images, cache_dir, measures)
        groups[key].append((at, {"setting": codec.setting, "ckpt": str(ckpt), "images": records}))
    if not groups:
        raise LiclabError("no checkpoint could be evaluated")
    curves = []
    for key, items in groups.items():
        curve = Curve.join([p for p, _ in items], key, description="liclab-eval")
        if out is not None:
            save(curve, [r for _, r in items], out)
        curves.append(curve)
    return curves


def save(curve: Curve, records: list[dict], out: Path) -> Path:
    """Write ``<out>/<name>.json`` (the curve) and ``<out>/<name>_images.json`` (per point:
    its setting and per-image records); returns the curve's path."""
    out = Path(out)
    path = curve.save(out / f"{curve.name}.json")
    plain = [
        {**r, "images": [_without_features(i) for i in r["images"]]} if "images" in r else r
        for r in records
    ]
    (out / f"{curve.name}_images.json").write_text(json.dumps(plain, indent=1))
    return path


def summary(curve: Curve) -> str:
    """One line per point: setting, bpp (and estimate), PSNR, MS-SSIM."""
    lines = []
    for i, setting in enumerate(curve.settings):
        est, extra = curve.extra.get("est_bpp"), curve.extra
        line = f"{curve.name} {setting}: {curve.bpp[i]:.4f} bpp"
        if "bpp_networks" in extra and est is not None:  # an overfitted codec: its parts
            line += (
                f" (latents {extra['bpp_latents'][i]:.4f}, the loss's estimate {est[i]:.4f};"
                f" networks {extra['bpp_networks'][i]:.4f})"
            )
        elif est is not None:
            line += f" (estimate {est[i]:.4f})"
        line += f", {curve.get('psnr')[i]:.2f} dB"
        if curve.get("ms_ssim") is not None:
            line += f", MS-SSIM {curve.get('ms_ssim')[i]:.4f}"
        lines.append(line)
    return "\n".join(lines)


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


def _check_images(paths: Sequence[str | os.PathLike], quiet=False) -> list[tuple[Path, str, str]]:
    """Readable images as (path, name relative to their common folder, SHA-256 of the file);
    the others are left out, each with a line on stderr unless ``quiet``."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise LiclabError("no images to evaluate")
    root = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    out = []
    for path in paths:
        try:
            load_rgb(path, min_size=MIN_SIZE)
        except LiclabError as exc:
            if not quiet:
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


def _chains(codecs: Sequence) -> list[list[int]]:
    """The codecs' indices in chains: a codec whose ``warm_from`` is another of ``codecs``
    (earlier in the list) follows it, on the same image in the same process; every other
    codec is a chain of its own."""
    where = {id(codec): i for i, codec in enumerate(codecs)}
    chains: list[list[int]] = []
    chain_of: dict[int, list[int]] = {}
    for i, codec in enumerate(codecs):
        before = getattr(codec, "warm_from", None)
        if before is None:
            chain_of[i] = [i]
            chains.append(chain_of[i])
        elif where.get(id(before), i) < i:
            chain_of[i] = chain_of[where[id(before)]]
            chain_of[i].append(i)
        else:
            raise LiclabError(
                f"{codec.name} ({codec.setting}): warm-started from a codec not evaluated before it"
            )
    return chains


def _run_chain(
    codecs, path: Path, file: str, measures: Measures, caches: Sequence[Path | None] = ()
) -> list[dict]:
    """Records of ``codecs`` on one image, in order, each encode after the first starting
    from the previous one's fitted state (``codec.encode(image, init=...)``).

    Each record is cached (``caches``, one file or ``None`` per codec) as soon as its encode
    ends, with the fitted state a later encode starts from; a chain interrupted before runs
    from its last finished encode whose state is kept."""
    caches = list(caches) or [None] * len(codecs)
    start = _resume_at(caches, measures)
    records = [{**_cached(cache, measures), "file": file} for cache in caches[:start]]
    state = _load_state(caches[start - 1]) if start else None
    if start and state is None:  # the kept state is unreadable: the chain runs again
        start, records = 0, []
    for k in range(start, len(codecs)):
        records.append(_run_one(codecs[k], path, file, measures, state))
        state = codecs[k].fitted_state() if k + 1 < len(codecs) else None
        _store(caches[k], records[-1], state)
    return records


def _resume_at(caches: Sequence[Path | None], measures: Measures) -> int:
    """Where a chain's encodes must start: after every cached record whose successor's
    starting state is kept too (0 when nothing is cached)."""
    done = 0
    while done < len(caches) and _cached(caches[done], measures) is not None:
        done += 1
    while 0 < done < len(caches) and not _state_path(caches[done - 1]).exists():
        done -= 1
    return done


def _state_path(cache: Path) -> Path:
    return cache.with_name(f"{cache.stem}.state.pt")


def _load_state(cache: Path) -> dict | None:
    """A fitted state this evaluator saved: tensors only (``weights_only``: nothing else
    is unpickled); None, said in one line, where the file cannot be read as one."""
    import torch

    path = _state_path(cache)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a damaged file raises (torch's messages run long)
        why = f"{type(exc).__name__} in torch.load"
    else:
        if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
        why = "not a dict of tensors"
    print(f"liclab: {path}: unreadable warm start ({why}); its chain runs again", file=sys.stderr)
    return None


def _store(cache: Path | None, record: dict, state: dict | None) -> None:
    """Write one encode's record (and features, and the fitted state its successor starts
    from) to the cache, each file complete or absent (written aside, then renamed)."""
    if cache is None:
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    if state is not None:
        import torch

        torch.save(state, tmp)
        tmp.replace(_state_path(cache))
    if "fid_features" in record:
        np.save(tmp.with_suffix(".npy"), record["fid_features"])
        tmp.with_suffix(".npy").replace(cache.with_suffix(".npy"))
    tmp.write_text(json.dumps(_without_features(record)))
    tmp.replace(cache)


def _run_chain_packed(job) -> list[dict]:
    return _run_chain(*job)


def _run_one(codec, path: Path, file: str, measures: Measures, init=None) -> dict:
    _JOB[0] = f"{file} {codec.setting}"
    image, notes = load_rgb(path, min_size=MIN_SIZE)
    t0 = time.perf_counter()
    data = codec.encode(image) if init is None else codec.encode(image, init=init)
    t1 = time.perf_counter()
    decoded = codec.decode(data)
    t2 = time.perf_counter()
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise LiclabError(
            f"{codec.name} ({codec.setting}): decoded {file} to {decoded.shape} {decoded.dtype}, "
            f"expected {image.shape} uint8"
        )
    h, w = image.shape[:2]
    ssim = ms_ssim(image, decoded)
    record = {
        "file": file,
        "H": h,
        "W": w,
        "bytes": len(data),
        "bpp": bpp(len(data), h, w),
        "psnr": psnr(image, decoded),
        "ms_ssim": ssim,
        "ms_ssim_db": None if ssim is None else ms_ssim_db(ssim),
        "encoding_time": t1 - t0,
        "decoding_time": t2 - t1,
        "notes": notes,
    }
    if hasattr(codec, "details"):
        record.update(codec.details(image, data))
    for name in measures.learned:
        record[name] = learned(name, image, decoded, measures.weights_dir)
    if measures.fid:
        record["fid_features"] = _patch_features([decoded], measures.weights_dir)
    return record


def _patch_features(images, weights_dir) -> np.ndarray:
    from liclab.perceptual import PatchFeatures

    features = PatchFeatures(weights_dir=weights_dir)
    for image in images:
        features.add(image)
    return features.features


def _original_features(images, cache_dir, weights_dir) -> np.ndarray:
    """Inception features of the originals' patches, cached per image content."""
    out = []
    for path, _, digest in _check_images(images, quiet=True):
        cache = None if cache_dir is None else Path(cache_dir) / "_originals" / f"{digest}.npy"
        if cache is not None and cache.exists():
            out.append(np.load(cache))
            continue
        features = _patch_features([load_rgb(path, min_size=MIN_SIZE)[0]], weights_dir)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, features)
        out.append(features)
    return np.concatenate(out)


def _without_features(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "fid_features"}


def _cached(cache: Path | None, measures: Measures) -> dict | None:
    """A cached record that has every measure asked for, or None."""
    if cache is None or not cache.exists():
        return None
    record = json.loads(cache.read_text())
    if any(name not in record for name in measures.learned):
        return None
    if measures.fid:
        features = cache.with_suffix(".npy")
        if not features.exists():
            return None
        record["fid_features"] = np.load(features)
    return record


def _init_worker(fit_lines: bool = False, parent: int | None = None) -> None:
    if parent is not None:
        _exit_with(parent)
    # One process per core already: keep torch (MS-SSIM, learned codecs) to one thread.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    else:
        os.environ["OMP_NUM_THREADS"] = "1"  # read when torch is imported
    if fit_lines:  # open for the worker's life (held: a collected generator would close it)
        _WORKER_CONTEXT.enter_context(_fit_lines(True))


_WORKER_CONTEXT = contextlib.ExitStack()


def _exit_with(parent: int, every: float = 1.0) -> None:
    """End this worker within ``every`` seconds of its parent's death: a pool's workers
    outlive a SIGTERM (``kill``, a scheduler's time limit) to their parent, and would go on
    fitting, unseen, on the cores the next run gets. What they finished is in the cache."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    if os.getppid() != parent:  # not started by it directly (a fork server): no watch
        return
    threading.Thread(target=watch, name="liclab-parent-watch", daemon=True).start()


_JOB = ["-"]  # the encode a process is running, for its fits' progress lines


class _JobFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job = _JOB[0]
        return True


@contextlib.contextmanager
def _fit_lines(enabled: bool):
    """While open (``enabled``), the progress lines of overfitted encodes (logger
    ``liclab.overfit``, every 100 iterations; a Kodak image takes minutes) go to stderr,
    each naming its image and setting: ``  [kodim01.png lmbda=0.001] 300/1600 main: …``."""
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  [%(job)s] %(message)s"))
    handler.addFilter(_JobFilter())
    logger = logging.getLogger("liclab.overfit")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _collect(outputs, todo, results, advance) -> None:
    for (chain, j, *_), records in zip(todo, outputs, strict=True):
        for i, record in zip(chain, records, strict=True):
            results[i][j] = record
            advance()
