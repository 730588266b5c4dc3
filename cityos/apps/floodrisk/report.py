"""The flood-risk study report: one self-contained HTML file.

It opens offline: no scripts, no external style sheets or fonts; every figure is a PNG
embedded as a base64 ``data:`` URI, drawn on matplotlib's Agg canvas (no display, no
pyplot state). All text that reaches the page is escaped.

Sections: the headline sentence (inundated area of the headline event with and without
the measures, the reduction, EAD, BCR, NPV and premiums); maps of the headline event's
maximum depth without and with the measures and their difference; the economics table
per package; the table per event and package (inundated area above 10 and 50 cm, damage,
affected buildings and people, flooded road length); the loss-exceedance curve per
package and the EAD by package; the method and its sources.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure

from cityos.appkit.reports import figure_img
from cityos.apps.floodrisk.damage import JRC_SOURCE
from cityos.apps.floodrisk.economics import loss_exceedance
from cityos.apps.floodrisk.study import BASELINE, StudyResults, load_results

__all__ = ["headline_sentence", "render_report", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1150px}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}
th{background:#eef}td.l,th.l{text-align:left}
img{max-width:100%;display:block;margin:.5em 0}
.headline{font-size:1.15em;background:#f4f8ff;border-left:4px solid #3a6ea5;padding:.6em 1em}
.note{color:#555;font-size:.9em}
"""
#: Depth classes of the maps (m) and their colours (light to dark blue).
DEPTH_CLASSES_M = (0.10, 0.25, 0.50, 1.00, 2.00)
DEPTH_COLOURS = ("#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b")


def _money(value: float | None, currency: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "-"
    sign = "-" if value < 0 else ""
    v = abs(value)
    for limit, suffix in ((1e12, " tn"), (1e9, " bn"), (1e6, " m"), (1e3, " k")):
        if v >= limit:
            return f"{sign}{currency}{' ' if currency else ''}{v / limit:,.2f}{suffix}"
    return f"{sign}{currency}{' ' if currency else ''}{v:,.0f}"


def _ha(m2: float) -> str:
    return f"{m2 / 1e4:,.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    def cls(j: int) -> str:
        return ' class="l"' if j < left else ""

    head = "".join(f"<th{cls(j)}>{escape(h)}</th>" for j, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(j)}>{escape(str(c))}</td>"
                                    for j, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def headline_sentence(results: StudyResults) -> str:
    """The report's first sentence: area with and without, reduction, EAD, BCR, NPV,
    premium (plain text)."""
    h = results.headline
    cur = h.get("currency", "")
    t = h["return_period"]
    depth_cm = h["threshold_m"] * 100
    if h.get("package") is None:
        return (f"For the {t:g}-year storm, {_ha(h['area_without_m2'])} ha floods deeper "
                f"than {depth_cm:g} cm; the expected annual damage is "
                f"{_money(h['baseline_ead'], cur)}.")
    bcr = "n/a" if h.get("bcr") is None else f"{h['bcr']:.2f}"
    econ = results.economics
    return (
        f"For the {t:g}-year storm, the '{h['package']}' measures cut the area flooded deeper "
        f"than {depth_cm:g} cm from {_ha(h['area_without_m2'])} ha to "
        f"{_ha(h['area_with_m2'])} ha ({h['area_reduction'] * 100:.0f}% less). "
        f"Expected annual damage falls from {_money(h['baseline_ead'], cur)} to "
        f"{_money(h['ead_with'], cur)} a year; over {econ.get('lifetime_years')} years at "
        f"{float(econ.get('discount_rate', 0)) * 100:g}% the benefit-cost ratio is {bcr} "
        f"and the net present value {_money(h['npv'], cur)}. An insurer's pure premium for "
        f"the site falls from {_money(h['baseline_ead'], cur)} to {_money(h['pure_premium'], cur)} "
        f"a year (gross, with {float(econ.get('loading_factor', 0)) * 100:g}% loading: "
        f"{_money(h['baseline_gross_premium'], cur)} to {_money(h['gross_premium'], cur)}).")


# ======================================================================== maps
def _read(path: Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    import rasterio

    with rasterio.open(path) as src:
        array = src.read(1, masked=True).filled(np.nan).astype(float)
        left, bottom, right, top = src.bounds
    return array, (left, right, bottom, top)


def _depth_map(ax, depth: np.ndarray, extent, title: str):
    shown = np.where(depth > DEPTH_CLASSES_M[0] * 0.1, depth, np.nan)
    bounds = [0.01, *DEPTH_CLASSES_M, max(np.nanmax(depth) if np.isfinite(depth).any() else 0,
                                          DEPTH_CLASSES_M[-1]) + 1]
    cmap = ListedColormap(DEPTH_COLOURS)
    image = ax.imshow(shown, extent=extent, cmap=cmap, norm=BoundaryNorm(bounds, cmap.N),
                      interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#f2efe9")
    return image


def _maps(results: StudyResults) -> str:
    h = results.headline
    t = h["return_period"]
    base_path = results.run(BASELINE, t).raster("max_depth_m")
    base, extent = _read(base_path)
    package = h.get("package")
    if package is None:
        fig = Figure(figsize=(6, 5.5), label=f"maximum depth, {t:g}-year storm")
        ax = fig.add_subplot(1, 1, 1)
        image = _depth_map(ax, base, extent, f"{t:g}-year storm: maximum depth")
        fig.colorbar(image, ax=ax, label="m", shrink=0.8)
        return figure_img(fig, tight=True)
    with_pkg, _ = _read(results.run(package, t).raster("max_depth_m"))
    fig = Figure(figsize=(15, 5.2), label=f"maximum depth with and without, {t:g}-year storm")
    axes = fig.subplots(1, 3)
    _depth_map(axes[0], base, extent, f"{t:g}-year storm, without measures")
    image = _depth_map(axes[1], with_pkg, extent, f"{t:g}-year storm, with '{package}'")
    fig.colorbar(image, ax=axes[:2].tolist(), label="maximum depth (m)", shrink=0.8)
    diff = np.nan_to_num(with_pkg, nan=0.0) - np.nan_to_num(base, nan=0.0)
    diff = np.where(np.abs(diff) < 0.01, np.nan, diff)
    span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
    span = max(span, 0.02)
    shown = axes[2].imshow(diff, extent=extent, cmap="RdBu_r",
                           norm=TwoSlopeNorm(0.0, -span, span), interpolation="nearest")
    axes[2].set_title("difference (with - without)", fontsize=10)
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_facecolor("#f2efe9")
    fig.colorbar(shown, ax=axes[2], label="m (blue: shallower)", shrink=0.8)
    return figure_img(fig, tight=True)


# ====================================================================== charts
def _curves(results: StudyResults) -> str:
    cur = results.economics.get("currency", "")
    fig = Figure(figsize=(12, 4.2), label="loss-exceedance curve and EAD by package")
    ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for package in results.packages:
        damages = results.damages(package)
        p, d = loss_exceedance(list(damages), list(damages.values()))
        ax.plot(p, d, marker="o", label=package)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("annual exceedance probability")
    ax.set_ylabel(f"damage ({cur})" if cur else "damage")
    ax.set_title("loss-exceedance curve", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    eads = [results.baseline_ead] + [results.appraisals[p].ead for p in results.packages[1:]]
    bars.bar(results.packages, eads, color=["#888"] + ["#3a6ea5"] * (len(eads) - 1))
    bars.set_ylabel(f"EAD ({cur}/year)" if cur else "EAD per year")
    bars.set_title("expected annual damage by package", fontsize=10)
    bars.tick_params(axis="x", rotation=20)
    return figure_img(fig, tight=True)


# ====================================================================== tables
def _event_table(results: StudyResults) -> str:
    cur = results.economics.get("currency", "")
    rows = []
    for t in results.return_periods:
        for package in results.packages:
            run = results.run(package, t)
            imp = run.impact
            areas = sorted(imp.inundated_area_m2.items())
            rows.append([f"{t:g}", package, *[_ha(a) for _, a in areas], _money(imp.damage, cur),
                         f"{imp.buildings_affected:,}", f"{imp.people_affected:,.0f}",
                         f"{imp.road_flooded_m / 1000:,.2f}",
                         f"{run.record.get('rain_depth_mm', float('nan')):.0f}"])
    first = results.run(results.packages[0], results.return_periods[0]).impact
    area_heads = [f"area > {k * 100:g} cm (ha)" for k in sorted(first.inundated_area_m2)]
    return _table(["T (years)", "package", *area_heads, "damage", "buildings affected",
                   "people affected", f"road > {first.road_depth_m * 100:g} cm (km)",
                   "rain (mm)"], rows, left=2)


def _economics_table(results: StudyResults) -> str:
    cur = results.economics.get("currency", "")
    loading = float(results.economics.get("loading_factor", 0.0))
    rows = [[BASELINE, "-", "-", "-", _money(results.baseline_ead, cur), "-", "-", "-", "-",
             "-", _money(results.baseline_ead, cur),
             _money(results.baseline_ead * (1 + loading), cur)]]
    for package in results.packages[1:]:
        a = results.appraisals[package]
        measures = ", ".join(str(m.get("type", "?")) for m in results.measures.get(package, []))
        rows.append([package, measures or "-", _money(a.capital_cost, cur),
                     _money(a.annual_cost, cur), _money(a.ead, cur), _money(a.ead_reduction, cur),
                     _money(a.pv_benefits, cur), _money(a.pv_costs, cur), _money(a.npv, cur),
                     "-" if not math.isfinite(a.bcr) else f"{a.bcr:.2f}",
                     _money(a.pure_premium, cur), _money(a.gross_premium, cur)])
    return _table(["package", "measures", "capital", "annual cost", "EAD / year",
                   "EAD avoided / year", "PV benefits", "PV costs", "NPV", "BCR",
                   "pure premium", "gross premium"], rows, left=2)


def _avoided_table(results: StudyResults) -> str:
    cur = results.economics.get("currency", "")
    if len(results.packages) < 2:
        return ""
    rows = [[f"{t:g}", *[_money(results.appraisals[p].damage_avoided[t], cur)
                         for p in results.packages[1:]]] for t in results.return_periods]
    return "<h3>Damage avoided per event</h3>" + _table(
        ["T (years)", *results.packages[1:]], rows)


def _method(results: StudyResults) -> str:
    econ = results.economics
    tail = ("held at the rarest event's damage down to p = 0" if econ.get("tail") == "hold"
            else "taken as zero beyond the rarest event")
    standard = econ.get("protection_standard_yr")
    frequent = (f"no damage from events more frequent than {standard:g} years"
                if standard else "no damage from events more frequent than the most "
                                 "frequent modelled event")
    return (
        "<h2>Method</h2><p class='note'>Each run simulates the design storm of one return "
        "period (IDF curve, design hyetograph) with the 2D local-inertial solver (Bates et al. "
        "2010). Damage per building: the maximum of the event's maximum depth over the "
        "building's footprint (grown by half a cell), less its floor height, through the "
        f"depth-damage function of its use class ({escape(JRC_SOURCE)}), times its value. "
        "Expected annual damage integrates damage over annual exceedance probability by the "
        f"trapezoid rule; {escape(frequent)}; {escape(tail)}. NPV and BCR discount the EAD "
        "avoided each year and the annual costs over the lifetime, capital at year 0. The "
        "pure premium is the EAD; the gross premium adds the loading.</p>")


def render_report(results: StudyResults) -> str:
    """The report of a study's results as one HTML document (text)."""
    h = results.headline
    runs_note = (f"{len(results.runs)} runs ({results.executed} simulated, {results.cached} "
                 f"from the cache); grid {results.grid.get('shape')} cells of "
                 f"{results.grid.get('cell_size', float('nan')):g} m, "
                 f"{escape(str(results.grid.get('crs', '')))}.")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(results.name)}: flood risk</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(results.name)}</h1>",
        f"<p class='headline'>{escape(headline_sentence(results))}</p>",
        f"<p class='note'>{runs_note}</p>",
        f"<h2>Maximum depth, {h['return_period']:g}-year storm</h2>", _maps(results),
        "<h2>Economics by package</h2>", _economics_table(results), _avoided_table(results),
        "<h2>Impacts per event</h2>", _event_table(results),
        "<h2>Loss-exceedance curve and EAD</h2>", _curves(results),
        _method(results), "</body></html>",
    ]
    return "".join(parts)


def write_report(out_dir: str | Path, html_path: str | Path | None = None) -> Path:
    """Write the HTML report of the study results in ``out_dir``; return its path
    (default ``<out_dir>/report.html``)."""
    results = load_results(out_dir)
    path = Path(html_path) if html_path else Path(out_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(results), encoding="utf-8")
    return path
