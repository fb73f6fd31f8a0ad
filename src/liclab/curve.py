"""The RD curve: one type for every curve liclab evaluates, loads, plots or compares.

A :class:`Curve` is a list of operating points sorted by rate, each the mean over a set of
images of per-image figures (bpp, PSNR, MS-SSIM, …; see :mod:`liclab.metrics`). Its file format
is CompressAI's result schema, so published curves and liclab's load the same way::

    {"name": …, "description": …,
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...},
     "settings": [...], "images": [...], "num_images": …, "versions": {...}}

(``settings``, ``images``, ``num_images`` and ``versions`` are liclab's additions; published
files lack them.) Published files differ in key names (``psnr`` / ``psnr-rgb``; ``ms-ssim`` /
``ms-ssim-rgb`` / ``ms-ssim-db-rgb``; some store dB under ``ms-ssim``) and point order:
:meth:`Curve.from_json` normalises both and derives MS-SSIM in dB from the linear value or the
reverse. :meth:`Curve.from_tsv` reads per-image result tables (Cool-chic's ``results/*.tsv``),
optionally restricted to a subset of the images.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from liclab import LiclabError
from liclab.metrics import METRICS, ms_ssim_db

# Per-image record keys that are not point figures.
_NOT_FIGURES = {"file", "H", "W", "notes"}


@dataclass
class Curve:
    """An RD curve: points sorted by bpp.

    Attributes:
        name: the curve's name in plots and tables.
        bpp: rates, ascending.
        metrics: quality per point, by metric name (``psnr``, ``ms_ssim``, ``ms_ssim_db``, …);
            a metric the curve lacks is absent.
        extra: other per-point figures kept in the file (``est_bpp``, ``encoding_time``,
            per-part rates, …).
        settings: what produced each point (``quality=50``, ``lmbda=0.013``), or None.
        images: names (file stems) of the images the points are means over, when known.
        source: the file it was read from.
    """

    name: str
    bpp: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    settings: list = field(default_factory=list)
    description: str = ""
    source: str = ""
    images: list[str] | None = None
    versions: dict = field(default_factory=dict)

    def __post_init__(self):
        self.bpp = np.asarray(self.bpp, dtype=np.float64)
        self.metrics = {k: np.asarray(v, dtype=np.float64) for k, v in self.metrics.items()}
        self.extra = {k: np.asarray(v, dtype=np.float64) for k, v in self.extra.items()}
        _derive_ms_ssim(self.metrics)
        if not self.settings:
            self.settings = [None] * len(self.bpp)

    def get(self, metric: str) -> np.ndarray | None:
        """The values of ``metric`` (a :data:`~liclab.metrics.METRICS` name), or None."""
        return self.metrics.get(metric)

    def __len__(self) -> int:
        return len(self.bpp)

    # --- building curves -------------------------------------------------------------------

    @classmethod
    def from_records(
        cls, name: str, records: Sequence[dict], setting=None, description="", versions=None
    ) -> Curve:
        """One operating point: the mean of per-image ``records`` (:mod:`liclab.evaluate`).

        Every figure all records have is averaged (bpp, PSNR, linear MS-SSIM, times, the
        codec's own figures); MS-SSIM in dB is that of the mean linear value.
        """
        if not records:
            raise LiclabError(f"{name}: no images were evaluated")
        figures = {}
        for key in records[0]:
            values = [r.get(key) for r in records]
            if key in _NOT_FIGURES or key == "ms_ssim_db" or not all(_number(v) for v in values):
                continue
            figures[key] = [float(np.mean(values))]
        metrics = {k: figures.pop(k) for k in list(figures) if k in METRICS}
        return cls(
            name,
            figures.pop("bpp"),
            metrics,
            figures,
            [setting],
            description,
            images=[Path(r["file"]).stem for r in records],
            versions=versions or {},
        )

    @classmethod
    def join(cls, curves: Sequence[Curve], name: str | None = None, description=None) -> Curve:
        """The points of ``curves`` as one curve, sorted by bpp; keeps the figures every
        point has."""
        if not curves:
            raise LiclabError("no operating points to join")
        first = curves[0]
        bpp = np.concatenate([c.bpp for c in curves])
        order = np.argsort(bpp, kind="stable")

        def common(attr):
            keys = [k for k in getattr(first, attr) if all(k in getattr(c, attr) for c in curves)]
            return {k: np.concatenate([getattr(c, attr)[k] for c in curves])[order] for k in keys}

        settings = [s for c in curves for s in c.settings]
        return cls(
            name or first.name,
            bpp[order],
            common("metrics"),
            common("extra"),
            [settings[i] for i in order],
            first.description if description is None else description,
            images=first.images,
            versions=first.versions,
        )

    # --- files -----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: dict, source: str = "") -> Curve:
        """A curve from a dict in CompressAI's schema (see the module docstring)."""
        where = Path(source).name or "result"
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, dict) or "bpp" not in results:
            raise LiclabError(f"{where}: not an RD result file (no 'results' with 'bpp')")
        n = len(results["bpp"]) if isinstance(results["bpp"], list) else 1
        lists = {}
        for key, values in results.items():
            if isinstance(values, int | float):
                values = [values]
            if not isinstance(values, list) or len(values) != n:
                raise LiclabError(f"{where}: results['{key}'] is not a list as long as 'bpp'")
            lists[key] = np.asarray(values, dtype=np.float64)
        order = np.argsort(lists["bpp"], kind="stable")
        lists = {k: v[order] for k, v in lists.items()}
        metrics = {}
        for m in METRICS.values():
            found = [k for k in (m.key, *m.aliases) if k in lists]
            if found:
                metrics[m.name] = lists.pop(found[0])
                for k in found[1:]:
                    lists.pop(k)
        if "ms_ssim" in metrics and np.all(metrics["ms_ssim"] > 1):
            metrics["ms_ssim_db"] = metrics.pop("ms_ssim")  # some files store dB under 'ms-ssim'
        settings = data.get("settings") or [None] * n
        images = data.get("images")
        return cls(
            name=str(data.get("name") or Path(source).stem),
            bpp=lists.pop("bpp"),
            metrics=metrics,
            extra=lists,
            settings=[settings[i] for i in order] if len(settings) == n else [None] * n,
            description=str(data.get("description", "")),
            source=str(source),
            images=list(images) if isinstance(images, list) else None,
            versions=data.get("versions") or {},
        )

    def to_json(self) -> dict:
        """The curve in CompressAI's schema (with liclab's additions)."""
        results = {"bpp": self.bpp.tolist()}
        results.update({METRICS[k].key: v.tolist() for k, v in self.metrics.items()})
        results.update({k: v.tolist() for k, v in self.extra.items()})
        return {
            "name": self.name,
            "description": self.description,
            "results": results,
            "settings": list(self.settings),
            "num_images": None if self.images is None else len(self.images),
            "images": self.images,
            "versions": self.versions,
        }

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, images: Sequence[str] | None = None) -> Curve:
        """Read a result file: JSON (CompressAI's schema) or a per-image TSV table."""
        path = Path(path)
        if path.suffix.lower() == ".tsv":
            return cls.from_tsv(path, images)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LiclabError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LiclabError(f"{path.name}: not valid JSON ({exc})") from None
        return cls.from_json(data, str(path))

    @classmethod
    def from_tsv(cls, path: str | os.PathLike, images: Sequence[str] | None = None) -> Curve:
        """A curve from a per-image result table (one row per image and λ), as Cool-chic
        publishes them: columns for the image (``seq_name`` or ``seq``), λ (``lmbda`` or
        ``lambda``), ``rate_bpp`` and ``psnr_db``. Each point is the mean over the images at
        one λ; ``images`` (file stems) restricts the means to those images, which every λ must
        then have."""
        path = Path(path)
        try:
            rows = list(csv.DictReader(path.open(newline=""), delimiter="\t"))
        except FileNotFoundError:
            raise LiclabError(f"{path}: no such file") from None
        columns = rows[0].keys() if rows else ()
        image_col = next((c for c in ("seq_name", "seq", "image") if c in columns), None)
        lmbda_col = next((c for c in ("lmbda", "lambda") if c in columns), None)
        if not image_col or not lmbda_col or not {"rate_bpp", "psnr_db"} <= set(columns):
            raise LiclabError(
                f"{path.name}: not a per-image result table (needs an image column, a λ "
                "column, rate_bpp and psnr_db)"
            )
        wanted = None if images is None else {Path(i).stem for i in images}
        by_lmbda: dict[float, dict[str, tuple[float, float]]] = {}
        for r in rows:
            name = Path(r[image_col]).stem
            if wanted is None or name in wanted:
                point = (float(r["rate_bpp"]), float(r["psnr_db"]))
                by_lmbda.setdefault(float(r[lmbda_col]), {})[name] = point
        names = sorted(set().union(*by_lmbda.values())) if by_lmbda else []
        if wanted is not None and set(names) != wanted:
            missing = ", ".join(sorted(wanted - set(names)))
            raise LiclabError(f"{path.name}: no results for {missing}")
        complete = {lm: pts for lm, pts in by_lmbda.items() if len(pts) == len(names)}
        if not complete:
            raise LiclabError(f"{path.name}: no λ has results for all of {', '.join(names)}")
        lmbdas = sorted(complete)
        bpp = [np.mean([complete[lm][n][0] for n in names]) for lm in lmbdas]
        psnr = [np.mean([complete[lm][n][1] for n in names]) for lm in lmbdas]
        label = path.stem if wanted is None else f"{path.stem} ({len(names)} images)"
        return cls(
            name=label,
            bpp=bpp,
            metrics={"psnr": psnr},
            settings=[f"lmbda={lm:g}" for lm in lmbdas],
            description=f"per-image table {path.name}, mean over {len(names)} images",
            source=str(path),
            images=names,
        ).sorted()

    def sorted(self) -> Curve:
        """The same curve with its points in increasing bpp."""
        order = np.argsort(self.bpp, kind="stable")
        return replace(
            self,
            bpp=self.bpp[order],
            metrics={k: v[order] for k, v in self.metrics.items()},
            extra={k: v[order] for k, v in self.extra.items()},
            settings=[self.settings[i] for i in order],
        )


def load_curves(paths: Sequence[str | os.PathLike], images=None) -> list[Curve]:
    """Curves from files and folders; a folder contributes each result file directly in it
    (JSON in CompressAI's schema; per-image ``.tsv`` tables, restricted to ``images`` if given).

    Curves sharing a name are renamed ``"<name> (<file stem>)"``.
    """
    curves = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted([*p.glob("*.json"), *p.glob("*.tsv")]):
                try:
                    curves.append(Curve.load(f, images))
                except LiclabError:
                    continue  # other JSON files (configs, per-image records) may sit beside
        else:
            curves.append(Curve.load(p, images))
    # Published files reuse names (CompressAI's _cpu and _cuda twins): tell them apart.
    names = [c.name for c in curves]
    for c in curves:
        if names.count(c.name) > 1:
            c.name = f"{c.name} ({Path(c.source).stem})"
    return curves


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


def _derive_ms_ssim(metrics: dict) -> None:
    """Fill in MS-SSIM in dB from the linear value, or the reverse."""
    if "ms_ssim" in metrics and "ms_ssim_db" not in metrics:
        metrics["ms_ssim_db"] = np.array([ms_ssim_db(v) for v in metrics["ms_ssim"]])
    if "ms_ssim_db" in metrics and "ms_ssim" not in metrics:
        metrics["ms_ssim"] = 1.0 - 10.0 ** (-metrics["ms_ssim_db"] / 10.0)
