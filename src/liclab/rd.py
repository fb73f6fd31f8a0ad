"""Rate-distortion curves: loading result files, Bjøntegaard deltas, plots and tables.

Result files follow CompressAI's schema, ``{"name", "description", "results": {"bpp": [...],
"psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}``. Published files differ in key names
(``psnr`` / ``psnr-rgb``; ``ms-ssim`` / ``ms-ssim-rgb`` / ``ms-ssim-db-rgb``) and in point order;
:func:`load_curve` normalises both, deriving MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)``, from the
linear value or the reverse.

BD-rate and BD-PSNR follow Bjøntegaard, "Calculation of average PSNR differences between
RD-curves", VCEG-M33 (2001): the average gap between two curves over their common range, with
log-rate as a function of quality (BD-rate) or quality as a function of log-rate (BD-PSNR).
``method="pchip"`` interpolates with piecewise cubic Hermite polynomials, as the updated
method of JCTVC-B055 / VCEG-AL22 and the JVET CTC spreadsheets do; ``method="cubic"`` is the
original least-squares cubic polynomial of VCEG-M33.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liclab import LiclabError

# metric -> (axis label, table label); the keys are Curve attributes.
METRICS = {"psnr": ("PSNR (dB)", "PSNR"), "ms_ssim_db": ("MS-SSIM (dB)", "MS-SSIM")}
_ALIASES = {
    "psnr": ("psnr-rgb", "psnr"),
    "ms_ssim": ("ms-ssim-rgb", "ms-ssim"),
    "ms_ssim_db": ("ms-ssim-db-rgb", "ms-ssim-db"),
}


@dataclass
class Curve:
    """One RD curve, points sorted by bpp; a metric absent from the file is ``None``."""

    name: str
    bpp: np.ndarray
    psnr: np.ndarray | None = None
    ms_ssim: np.ndarray | None = None
    ms_ssim_db: np.ndarray | None = None
    description: str = ""
    source: str = ""


def curve_from_dict(data: dict, source: str = "") -> Curve:
    """A :class:`Curve` from a dict in CompressAI's schema (see the module docstring)."""
    where = Path(source).name or "result"
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or "bpp" not in results:
        raise LiclabError(f"{where}: not an RD result file (no 'results' with 'bpp')")
    lists = {}
    for key, values in results.items():
        if isinstance(values, (int, float)):
            values = [values]
        if not isinstance(values, list) or len(values) != len(results["bpp"]):
            raise LiclabError(f"{where}: results['{key}'] is not a list as long as 'bpp'")
        lists[key] = np.asarray(values, dtype=np.float64)
    order = np.argsort(lists["bpp"], kind="stable")
    lists = {k: v[order] for k, v in lists.items()}
    metrics = {}
    for attr, keys in _ALIASES.items():
        found = [k for k in keys if k in lists]
        metrics[attr] = lists[found[0]] if found else None
    if metrics["ms_ssim"] is not None and np.all(metrics["ms_ssim"] > 1):
        metrics["ms_ssim_db"] = metrics["ms_ssim"]  # some files store dB under 'ms-ssim'
        metrics["ms_ssim"] = None
    if metrics["ms_ssim_db"] is None and metrics["ms_ssim"] is not None:
        metrics["ms_ssim_db"] = -10.0 * np.log10(1.0 - metrics["ms_ssim"])
    if metrics["ms_ssim"] is None and metrics["ms_ssim_db"] is not None:
        metrics["ms_ssim"] = 1.0 - 10.0 ** (-metrics["ms_ssim_db"] / 10.0)
    return Curve(
        name=str(data.get("name") or Path(source).stem),
        bpp=lists["bpp"],
        description=str(data.get("description", "")),
        source=str(source),
        **metrics,
    )


def load_curve(path: str | os.PathLike) -> Curve:
    """Read one result JSON (see the module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LiclabError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LiclabError(f"{path.name}: not valid JSON ({exc})") from None
    return curve_from_dict(data, str(path))


def load_curves(paths: Sequence[str | os.PathLike]) -> list[Curve]:
    """Curves from files and folders; a folder contributes each RD result JSON directly in it.

    Curves sharing a name are renamed ``"<name> (<file stem>)"``.
    """
    curves = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.glob("*.json")):
                try:
                    curves.append(load_curve(f))
                except LiclabError:
                    continue  # other JSON files (configs, per-image records) may sit beside
        else:
            curves.append(load_curve(p))
    # Published files reuse names (CompressAI's _cpu and _cuda twins): tell them apart.
    names = [c.name for c in curves]
    for c in curves:
        if names.count(c.name) > 1:
            c.name = f"{c.name} ({Path(c.source).stem})"
    return curves


def bd_rate(
    rate_a: Sequence[float],
    quality_a: Sequence[float],
    rate_b: Sequence[float],
    quality_b: Sequence[float],
    method: str = "pchip",
) -> float:
    """Average rate difference of curve B against anchor A at equal quality, in percent.

    Negative means B needs fewer bits. NaN when the quality ranges do not overlap.
    """
    qa, la = _sorted_by_x(quality_a, np.log(rate_a), "quality")
    qb, lb = _sorted_by_x(quality_b, np.log(rate_b), "quality")
    lo, hi = max(qa[0], qb[0]), min(qa[-1], qb[-1])
    if not lo < hi:
        return math.nan
    diff = (_integral(qb, lb, lo, hi, method) - _integral(qa, la, lo, hi, method)) / (hi - lo)
    return float((math.exp(diff) - 1.0) * 100.0)


def bd_quality(
    rate_a: Sequence[float],
    quality_a: Sequence[float],
    rate_b: Sequence[float],
    quality_b: Sequence[float],
    method: str = "pchip",
) -> float:
    """Average quality difference of curve B over anchor A at equal rate (BD-PSNR, in dB).

    Positive means B is better. NaN when the rate ranges do not overlap.
    """
    la, qa = _sorted_by_x(np.log(rate_a), quality_a, "rate")
    lb, qb = _sorted_by_x(np.log(rate_b), quality_b, "rate")
    lo, hi = max(la[0], lb[0]), min(la[-1], lb[-1])
    if not lo < hi:
        return math.nan
    diff = _integral(lb, qb, lo, hi, method) - _integral(la, qa, lo, hi, method)
    return float(diff / (hi - lo))


def _sorted_by_x(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) < 2 or np.any(np.diff(x) <= 0):
        raise LiclabError(f"BD needs >= 2 points with distinct {what} values, got {x.tolist()}")
    return x, y


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(x, y).integrate(lo, hi))
    if method == "cubic":
        if len(x) < 4:
            raise LiclabError(f"the cubic BD fit needs >= 4 points, got {len(x)}")
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))
    raise LiclabError(f"BD method must be 'pchip' or 'cubic', not {method!r}")


def find_curve(curves: Sequence[Curve], key: str) -> Curve:
    """The curve whose file is ``key``, else whose name or file stem is (case-insensitive)."""
    hits = [c for c in curves if c.source and Path(c.source).resolve() == Path(key).resolve()]
    if not hits:
        key = key.lower()
        hits = [c for c in curves if key in (c.name.lower(), Path(c.source).stem.lower())]
    if len(hits) != 1:
        names = ", ".join(c.name for c in curves)
        what = "no curve" if not hits else f"{len(hits)} curves"
        raise LiclabError(f"anchor {key!r}: {what} with that name among: {names}")
    return hits[0]


def bd_table(curves: Sequence[Curve], anchor: Curve, method: str = "pchip") -> list[dict]:
    """BD-rate (%) and BD-quality (dB) of every curve against ``anchor``, per metric.

    One row per curve: ``{"curve", "points", "BD-rate PSNR (%)", "BD-PSNR (dB)",
    "BD-rate MS-SSIM (%)", "BD-MS-SSIM (dB)"}``; NaN where a metric is missing, a curve has a
    single point, or the ranges do not overlap.
    """
    rows = []
    for c in curves:
        row = {"curve": c.name, "points": len(c.bpp)}
        for attr, (_, label) in METRICS.items():
            qa, qb = getattr(anchor, attr), getattr(c, attr)
            rate = quality = math.nan
            if qa is not None and qb is not None and min(len(c.bpp), len(anchor.bpp)) >= 2:
                try:
                    rate = bd_rate(anchor.bpp, qa, c.bpp, qb, method)
                    quality = bd_quality(anchor.bpp, qa, c.bpp, qb, method)
                except LiclabError as exc:  # a degenerate curve: report it, keep the table
                    print(f"liclab: {c.name} vs {anchor.name}: {exc}", file=sys.stderr)
            row[f"BD-rate {label} (%)"] = rate
            row[f"BD-{label} (dB)"] = quality
        rows.append(row)
    return rows


def _cell(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:+.2f}"
    return str(v)


def write_table(rows: list[dict], path_stem: str | os.PathLike, title: str = "") -> list[Path]:
    """Write ``rows`` as ``<stem>.md`` (Markdown) and ``<stem>.csv``; returns both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for r in rows]
    md, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    md.write_text("\n".join(lines) + "\n")
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    return [md, csv_path]


def print_table(rows: list[dict], title: str = "") -> None:
    """Print ``rows`` as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(rows[0]):
        table.add_column(col, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*(_cell(v) for v in r.values()))
    Console().print(table)


def plot(
    curves: Sequence[Curve],
    path_stem: str | os.PathLike,
    metric: str = "psnr",
    dashed: Sequence[Curve] = (),
    title: str = "",
    max_bpp: float | None = None,
) -> list[Path]:
    """Plot ``metric`` against bpp to ``<stem>.png`` and ``<stem>.svg``; returns the paths.

    Curves in ``dashed`` (anchors: traditional codecs, published results) are drawn dashed,
    the others solid with markers. Curves without the metric are left out. ``max_bpp`` limits
    the rate axis (the quality axis then fits the points left in view).
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ylabel = METRICS[metric][0]
    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    dashed_ids = {id(c) for c in dashed}
    shown = [c for c in curves if getattr(c, metric) is not None]
    colors = matplotlib.colormaps["tab10" if len(shown) <= 10 else "tab20"].colors
    in_view = []
    for c, color in zip(shown, itertools.cycle(colors)):
        y = getattr(c, metric)
        in_view += list(y[c.bpp <= max_bpp] if max_bpp else y)
        if id(c) in dashed_ids:
            ax.plot(c.bpp, y, "--", marker=".", lw=1.2, color=color, label=c.name)
        else:
            ax.plot(c.bpp, y, "-", marker="o", lw=1.8, color=color, label=c.name)
    if max_bpp and in_view:
        ax.set_xlim(0, max_bpp)
        ax.set_ylim(min(in_view) - 0.5, max(in_view) + 0.5)
    ax.set_xlabel("Rate (bits per pixel)")
    ax.set_ylabel(ylabel)
    what = f"{METRICS[metric][1]} vs rate"
    ax.set_title(f"{title}: {what}" if title else what)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, metadata={"Date": None} if p.suffix == ".svg" else None)
    return paths


def report(
    runs: Sequence[Curve],
    references: Sequence[Curve],
    anchor: str,
    out_dir: str | os.PathLike,
    method: str = "pchip",
    title: str = "",
    max_bpp: float | None = None,
    show: bool = True,
) -> dict:
    """Plots and BD-rate tables of ``runs`` (solid) and ``references`` (dashed) in ``out_dir``.

    ``anchor`` names the curve (by name or file stem, among both lists) that every BD-rate is
    measured against; it is drawn as what it is (a run solid, a reference dashed). Writes
    ``rd-psnr`` and ``rd-ms-ssim`` plots (PNG, SVG; the second only if a curve has MS-SSIM;
    ``max_bpp`` limits their rate axis) and ``bd-rate.md`` / ``bd-rate.csv``.
    Returns ``{"rows": the table rows, "files": the paths written}``.
    """
    curves = [*references, *runs]
    if not curves:
        raise LiclabError("no RD curves to report (give result files or folders)")
    base = find_curve(curves, anchor)
    dashed = list(references)
    out = Path(out_dir)
    files = plot(curves, out / "rd-psnr", "psnr", dashed, title, max_bpp)
    if any(c.ms_ssim_db is not None for c in curves):
        files += plot(curves, out / "rd-ms-ssim", "ms_ssim_db", dashed, title, max_bpp)
    rows = bd_table(curves, base, method)
    caption = f"BD against {base.name} ({method})"
    files += write_table(rows, out / "bd-rate", caption)
    if show:
        print_table(rows, caption)
    return {"rows": rows, "files": files}
