"""The subsidence report: one self-contained HTML page (plots inline as PNG).

Sections, each present when its input is given: the product (epochs, points, velocity
distribution), buildings (rate, differential settlement, angular distortion, damage
category and risk), linear assets (chainage profiles), the levelling comparison and the
construction settlement markers. Plots are drawn with Matplotlib's Agg canvas and
embedded as ``data:`` URIs, so the page needs nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np

from cityos.appkit.reports import figure_img

FIGURE_DPI = 90
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1b1f24; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem;
  border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e5e7eb; text-align: right; }
th.l, td.l { text-align: left; } th { background: #f6f8fa; }
.note { color: #57606a; font-size: .9em; }
img { max-width: 100%; }
.risk-high { color: #b42318; font-weight: 600; } .risk-medium { color: #b54708; }
.risk-low { color: #1d4ed8; }
"""


def num(value, digits: int = 1, signed: bool = False) -> str:
    """A number for a table cell; an en dash for a missing one."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    return f"{value:+,.{digits}f}" if signed else f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An HTML table; header text is escaped here, cells must come escaped."""
    def cls(j: int) -> str:
        return ' class="l"' if j < left else ""

    head = "".join(f"<th{cls(j)}>{escape(h)}</th>" for j, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(j)}>{c}</td>" for j, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, body: str) -> str:
    """A complete HTML document."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1>{body}</body></html>\n")


#: How the report names each product direction.
COMPONENT_NAMES = {"los": "line of sight", "vertical": "vertical", "east": "east-west"}


# ---------------------------------------------------------------------- sections
def product_section(points) -> str:
    """Epochs, points and the distribution of fitted velocities."""
    from matplotlib.figure import Figure

    from cityos.apps.subsidence.levelling import product_kind

    kind = product_kind(points)
    dates = np.asarray(points.dates)
    parts = [f"<h2>Product</h2><p>{int(points.n_points):,} points, {dates.size} epochs "
             f"from {str(dates[0])[:10]} to {str(dates[-1])[:10]} "
             f"({escape(COMPONENT_NAMES.get(kind, kind))} displacement).</p>"]
    try:
        fitted = points.fitted()
    except ValueError:  # not fitted yet
        fitted = None
    if fitted and "velocity_mm_yr" in fitted:
        vertical = "velocity_vertical_mm_yr" in fitted
        component = "vertical" if vertical else COMPONENT_NAMES.get(kind, kind)
        velocity = np.asarray(fitted["velocity_vertical_mm_yr" if vertical
                                     else "velocity_mm_yr"], dtype=np.float64)
        velocity = velocity[np.isfinite(velocity)]
        if kind == "los" and not vertical:
            parts.append('<p class="note">No incidence angle in the product: velocities in '
                         "line of sight, no vertical motion (fit with <code>--incidence "
                         "DEG</code> or import the product with its geometry file).</p>")
        if velocity.size:
            label = f"velocity (mm/yr, {component})"
            q = np.percentile(velocity, [1, 5, 50, 95, 99])
            parts.append(table(["", "min", "1 %", "5 %", "median", "95 %", "99 %", "max"], [[
                label, num(velocity.min()), *(num(v) for v in q),
                num(velocity.max())]]))
            fig = Figure(figsize=(6.0, 2.6), label="Velocity histogram")
            ax = fig.add_subplot()
            ax.hist(velocity, bins=60, color="#457b9d")
            ax.set_xlabel(label)
            ax.set_ylabel("points")
            fig.tight_layout()
            parts.append(figure_img(fig, FIGURE_DPI))
    else:
        parts.append('<p class="note">Not fitted yet: run <code>cityos subsidence fit</code>.'
                     "</p>")
    return "".join(parts)


def buildings_section(summaries) -> str:
    """The building table, riskiest first."""
    from cityos.apps.subsidence.buildings import ANGULAR_DISTORTION_LIMITS, RISK_CLASSES

    ordered = sorted(summaries, key=lambda s: (-RISK_CLASSES.index(s.risk_class),
                                               -(s.angular_distortion if math.isfinite(
                                                   s.angular_distortion) else 0.0)))
    rows = [[escape(s.name), str(s.n_points), num(s.mean_rate_mm_yr, signed=True),
             num(s.min_rate_mm_yr, signed=True), num(s.cumulative_mm, signed=True),
             num(s.differential_settlement_mm), _ratio(s.angular_distortion),
             f"{s.damage_category} {escape(s.damage_name)}", escape(s.rate_class),
             f'<span class="risk-{s.risk_class}">{escape(s.risk_class)}</span>']
            for s in ordered]
    limits = ", ".join(_ratio(v) for v in ANGULAR_DISTORTION_LIMITS)
    return ("<h2>Buildings</h2>" + table(
        ["building", "points", "mean (mm/yr)", "fastest (mm/yr)", "cumulative (mm)",
         "diff. settlement (mm)", "angular distortion", "damage category", "rate", "risk"],
        rows) + f'<p class="note">Angular distortion limits {limits} (Boscardin &amp; '
        "Cording 1989, no horizontal strain) give Burland (1995) damage categories 0-4; "
        "over the observed period only.</p>")


def _ratio(beta: float) -> str:
    if beta is None or not math.isfinite(beta) or beta <= 0:
        return "&ndash;"
    return f"1/{1.0 / beta:,.0f}"


def assets_section(profiles, names: dict[str, str] | None = None) -> str:
    """One profile plot and summary line per linear asset."""
    from cityos.apps.subsidence.assets import profile_figure

    parts = ["<h2>Linear assets</h2>"]
    for profile in profiles:
        name = (names or {}).get(profile.asset_id, profile.asset_id)
        rates = profile.rate_mm_yr[np.isfinite(profile.rate_mm_yr)]
        worst = ""
        if rates.size:
            k = int(np.nanargmin(profile.rate_mm_yr))
            worst = (f"; fastest sinking {num(profile.rate_mm_yr[k], signed=True)} mm/yr at "
                     f"chainage {profile.chainage_m[k] / 1000.0:.2f} km")
        parts.append(f"<h3>{escape(name)}</h3><p>{profile.length_m / 1000.0:.2f} km, "
                     f"{profile.n_points} points within {profile.buffer_m:g} m, "
                     f"{profile.bin_m:g} m bins{worst}.</p>")
        parts.append(figure_img(profile_figure(profile, name), FIGURE_DPI))
    return "".join(parts)


def levelling_section(comparison) -> str:
    """Overall and per-benchmark statistics, the scatter and the time series."""
    from cityos.apps.subsidence.levelling import scatter_figure, series_figure

    o = comparison.overall
    overall = table(["", "n", "mean (mm)", "MAE (mm)", "RMSE (mm)", "max |diff| (mm)", "r"],
                    [["all benchmarks", str(o.n), num(o.mean_mm, 2, True), num(o.mae_mm, 2),
                      num(o.rmse_mm, 2), num(o.max_abs_mm, 2), num(o.correlation, 3)]])
    rows = []
    for bench in comparison.benchmarks:
        s = bench.stats
        if s is None:
            rows.append([escape(bench.benchmark_id), str(bench.n_points), "&ndash;", "&ndash;",
                         "&ndash;", "&ndash;", "&ndash;", "&ndash;", escape(bench.reason)])
        else:
            rows.append([escape(bench.benchmark_id), str(bench.n_points), str(s.n),
                         num(s.mean_mm, 2, True), num(s.mae_mm, 2), num(s.rmse_mm, 2),
                         num(s.max_abs_mm, 2), num(s.correlation, 3), ""])
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in comparison.notes)
    parts = [f"<h2>Levelling comparison</h2><p>Benchmarks paired with the InSAR points within "
             f"{comparison.radius_m:g} m; InSAR interpolated to the levelling dates, both "
             "relative to the first common epoch; difference = InSAR - levelling.</p>",
             notes, overall,
             table(["benchmark", "points", "epochs", "mean (mm)", "MAE (mm)", "RMSE (mm)",
                    "max |diff| (mm)", "r", "note"], rows)]
    if comparison.compared:
        parts.append(figure_img(scatter_figure(comparison), FIGURE_DPI))
        parts.append(figure_img(series_figure(comparison), FIGURE_DPI))
    return "".join(parts)


def markers_section(matches) -> str:
    """Settlement markers beside their nearest InSAR points."""
    from cityos.apps.subsidence.construction import markers_figure

    rows = [[escape(m.marker_id), escape(m.point_id or "&ndash;"),
             num(m.distance_m, 0) if m.point_row is not None else "&ndash;",
             str(m.stats.n) if m.stats else "&ndash;",
             num(m.stats.mean_mm, 2, True) if m.stats else "&ndash;",
             num(m.stats.rmse_mm, 2) if m.stats else "&ndash;"] for m in matches]
    parts = ["<h2>Construction settlement markers</h2>",
             table(["marker", "InSAR point", "distance (m)", "epochs", "mean (mm)",
                    "RMSE (mm)"], rows)]
    if any(m.point_row is not None for m in matches):
        parts.append(figure_img(markers_figure(matches), FIGURE_DPI))
    return "".join(parts)


def render_report(points, *, buildings=None, profiles=None, asset_names=None,
                  levelling=None, markers=None,
                  title: str = "Ground motion report") -> str:
    """The report as one HTML document.

    Parameters
    ----------
    points : PointStore
    buildings : list of BuildingSummary, optional
    profiles : list of ChainageProfile, optional
    asset_names : dict, optional
        Asset id -> name for the profile titles.
    levelling : LevellingComparison, optional
    markers : list of MarkerMatch, optional
    title : str
    """
    body = [product_section(points)]
    if buildings:
        body.append(buildings_section(buildings))
    if profiles:
        body.append(assets_section(profiles, asset_names))
    if levelling is not None:
        body.append(levelling_section(levelling))
    if markers:
        body.append(markers_section(markers))
    return html_page(title, "".join(body))


def write_report(path: str | Path, points, **sections) -> Path:
    """Render the report (see :func:`render_report`) and write it to ``path``."""
    html = render_report(points, **sections)  # render first: an error leaves no half file
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path
