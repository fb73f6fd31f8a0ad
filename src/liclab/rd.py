"""Comparing RD curves: Bjøntegaard deltas, plots, tables, and the one report.

BD-rate and BD-quality follow Bjøntegaard, "Calculation of average PSNR differences between
RD-curves", VCEG-M33 (2001): the average gap between two curves over their common range, with
log-rate as a function of quality (BD-rate) or quality as a function of log-rate (BD-PSNR).
``method="pchip"`` interpolates with piecewise cubic Hermite polynomials, as the updated
method of JCTVC-B055 / VCEG-AL22 and the JVET CTC spreadsheets do; ``method="cubic"`` is the
original least-squares cubic polynomial of VCEG-M33. Any metric of :mod:`liclab.metrics` can
be the quality axis; for one where lower is better (a distance) the BD-quality sign is
flipped, so that a positive BD-quality and a negative BD-rate always mean "better".

:func:`report` is the one place that turns curves into plots and tables: the end of
``liclab-train``, ``liclab-eval``, the sweep report and ``liclab-rd`` all call it.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from liclab import LiclabError
from liclab.curve import Curve
from liclab.metrics import METRICS, PLOTTED


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


def bd_rate_or_nan(*args, **kwargs) -> float:
    """:func:`bd_rate`, or NaN where a curve has none (a collapsed one: every point at one
    quality), for tables that report it as n/a and go on."""
    try:
        return bd_rate(*args, **kwargs)
    except LiclabError:
        return math.nan


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
        raise LiclabError(f"baseline {key!r}: {what} with that name among: {names}")
    return hits[0]


def bd_columns(metric: str) -> tuple[str, str]:
    """Table column names of the BD-rate and the BD-quality in ``metric``."""
    m = METRICS[metric]
    unit = f" ({m.unit})" if m.unit else ""
    return f"BD-rate {m.short} (%)", f"BD-{m.short}{unit}"


def bd_table(
    curves: Sequence[Curve], baseline: Curve, method: str = "pchip", metrics=PLOTTED
) -> list[dict]:
    """BD-rate (%) and BD-quality of every curve against ``baseline``, per metric.

    One row per curve: ``{"curve", "points", "BD-rate PSNR (%)", "BD-PSNR (dB)", …}`` (see
    :func:`bd_columns`); NaN where a metric is missing, a curve has a single point, or the
    ranges do not overlap.
    """
    rows = []
    for c in curves:
        row = {"curve": c.name, "points": len(c)}
        for metric in metrics:
            qa, qb = baseline.get(metric), c.get(metric)
            rate = quality = math.nan
            if qa is not None and qb is not None and min(len(c), len(baseline)) >= 2:
                try:
                    rate = bd_rate(baseline.bpp, qa, c.bpp, qb, method)
                    quality = bd_quality(baseline.bpp, qa, c.bpp, qb, method)
                except LiclabError as exc:  # a degenerate curve: report it, keep the table
                    print(f"liclab: {c.name} vs {baseline.name}: {exc}", file=sys.stderr)
            if not METRICS[metric].higher_is_better:
                quality = -quality
            rate_col, quality_col = bd_columns(metric)
            row[rate_col], row[quality_col] = rate, quality
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
    """Print ``rows`` as a table on stdout (rich's on a terminal, plain text otherwise)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(rows[0]):
        table.add_column(col, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*(_cell(v) for v in r.values()))
    Console(width=max(120, len(rows[0]) * 14)).print(table)


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

    m = METRICS[metric]
    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    dashed_ids = {id(c) for c in dashed}
    shown = [c for c in curves if c.get(metric) is not None]
    colors = matplotlib.colormaps["tab10" if len(shown) <= 10 else "tab20"].colors
    in_view = []
    for c, color in zip(shown, itertools.cycle(colors)):
        y = c.get(metric)
        in_view += list(y[c.bpp <= max_bpp] if max_bpp else y)
        if id(c) in dashed_ids:
            ax.plot(c.bpp, y, "--", marker=".", lw=1.2, color=color, label=c.name)
        else:
            ax.plot(c.bpp, y, "-", marker="o", lw=1.8, color=color, label=c.name)
    finite = [v for v in in_view if math.isfinite(v)]
    if max_bpp and finite:
        pad = 0.05 * (max(finite) - min(finite) or 1.0)
        ax.set_xlim(0, max_bpp)
        ax.set_ylim(min(finite) - pad, max(finite) + pad)
    ax.set_xlabel("Rate (bits per pixel)")
    ax.set_ylabel(m.label + ("" if m.higher_is_better else " (lower is better)"))
    what = f"{m.short} vs rate"
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
    anchors: Sequence[Curve],
    baseline: str,
    out: str | os.PathLike,
    method: str = "pchip",
    title: str = "",
    max_bpp: float | None = None,
) -> dict:
    """RD plots and the BD table of ``runs`` (solid) and ``anchors`` (dashed) in ``out``.

    ``baseline`` names the curve (by name or file stem, among both lists) every BD figure is
    measured against. Writes ``rd-<metric>.png|svg`` for every plotted metric some curve has
    (``max_bpp`` limits their rate axis) and ``bd-rate.md`` / ``bd-rate.csv``; prints the
    table. Returns ``{"rows": the table rows, "files": the paths written}``.
    """
    curves = [*anchors, *runs]
    if not curves:
        raise LiclabError("no RD curves to report (give result files or folders)")
    base = find_curve(curves, baseline)
    out = Path(out)
    files = []
    metrics = [m for m in PLOTTED if any(c.get(m) is not None for c in curves)]
    for metric in metrics:
        stem = "rd-" + METRICS[metric].short.lower().replace(" ", "-")
        files += plot(curves, out / stem, metric, anchors, title, max_bpp)
    rows = bd_table(curves, base, method, metrics)
    caption = f"BD against {base.name} ({method})"
    files += write_table(rows, out / "bd-rate", caption)
    print_table(rows, caption)
    return {"rows": rows, "files": files}
