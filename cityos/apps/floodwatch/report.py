"""The flood event report: one self-contained HTML file with tables and matplotlib plots.

The file opens offline: no scripts, no external style sheets or fonts, and every plot is
a PNG embedded as a base64 ``data:`` URI (rendered with the Agg canvas, so no display
and no pyplot global state are needed). All text that reaches the page is escaped.

Sections: per site, the rain and depth record with rain events and floods shaded and
the table of rain events with the road's response; across sites, cumulative rainfall
against flood duration with its least-squares line and correlation statistics; traffic
near the sensors during floods against dry days, per flood and by hour of day.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure

from cityos.appkit.reports import figure_img
from cityos.apps.floodwatch.events import (
    Correlation,
    EventDataError,
    EventResponse,
    FloodEvent,
    RainEvent,
    TrafficImpact,
    correlation,
    flood_events,
    impact_by_hour,
    rain_events,
    site_event_table,
    traffic_impact,
)

__all__ = ["ReportOptions", "SiteRecord", "render_report", "write_report"]

_EPOCH_NUM = mdates.date2num(datetime(1970, 1, 1, tzinfo=UTC))  # whatever matplotlib's epoch
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}
th{background:#eef}td.l,th.l{text-align:left}
img{max-width:100%;display:block;margin:.5em 0}
.note{color:#555;font-size:.9em}
"""


@dataclass
class SiteRecord:
    """What the report needs about one site: its gauge, its sensor and, optionally, traffic.

    The rain gauge and the depth sensor keep their own clocks (``rain_t``, ``depth_t``);
    conventions are those of :mod:`cityos.apps.floodwatch.events`.
    """

    site_id: str
    name: str
    rain_t: np.ndarray
    rain_mm: np.ndarray
    depth_t: np.ndarray
    depth_cm: np.ndarray
    traffic_t: np.ndarray | None = None
    traffic_volume: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.site_id, str) or not self.site_id:
            raise EventDataError(f"site_id: must be a non-empty string, got {self.site_id!r}")
        if (self.traffic_t is None) != (self.traffic_volume is None):
            raise EventDataError(
                f"traffic_t, traffic_volume: site {self.site_id!r} gives one without the other")


@dataclass(frozen=True)
class ReportOptions:
    """Analysis settings for the report (see :mod:`cityos.apps.floodwatch.events`)."""

    title: str = "Flood watch: event report"
    tz: str = "Asia/Phnom_Penh"
    levels_cm: tuple[float, ...] = (10.0, 20.0, 30.0)
    flood_level_cm: float = 10.0
    response_s: float = 6 * 3600
    min_dry_s: float = 6 * 3600
    min_total_mm: float = 1.0
    window_s: float = 600.0
    min_gap_s: float = 900.0
    confidence: float = 0.95
    dry_day_rain_mm: float = 0.0
    plot_dpi: int = 90
    extra_notes: tuple[str, ...] = ()


@dataclass
class _SiteResult:
    site: SiteRecord
    rains: list[RainEvent]
    floods: list[FloodEvent]
    rows: list[EventResponse]
    impacts: tuple[TrafficImpact, ...]


# ============================================================================ helpers
def _x(t) -> np.ndarray:
    return np.asarray(t, dtype=np.float64) / 86400.0 + _EPOCH_NUM


def _time_axis(ax, zone: ZoneInfo) -> None:
    locator = mdates.AutoDateLocator(tz=zone)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone))


def _when(t: float | None, zone: ZoneInfo) -> str:
    return "" if t is None else datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M")


def _num(v: float | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&ndash;"
    return f"{v:,.{digits}f}"


def _minutes(seconds: float | None) -> str:
    return "&ndash;" if seconds is None else f"{seconds / 60.0:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """HTML table; header text is escaped here, cell text must come escaped."""
    def cls(j: int) -> str:
        return ' class="l"' if j < left else ""

    head = "".join(f"<th{cls(j)}>{escape(h)}</th>" for j, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(j)}>{c}</td>" for j, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise EventDataError(f"tz: unknown time zone {tz!r}") from None


# ============================================================================ analysis
def _analyse(site: SiteRecord, opt: ReportOptions) -> _SiteResult:
    try:
        rows = site_event_table(
            site.site_id, site.rain_t, site.rain_mm, site.depth_t, site.depth_cm,
            levels_cm=opt.levels_cm, flood_level_cm=opt.flood_level_cm,
            response_s=opt.response_s, min_dry_s=opt.min_dry_s,
            min_total_mm=opt.min_total_mm, window_s=opt.window_s, min_gap_s=opt.min_gap_s)
        rains = rain_events(site.rain_t, site.rain_mm, min_dry_s=opt.min_dry_s,
                            min_total_mm=opt.min_total_mm, window_s=opt.window_s)
        floods = flood_events(site.depth_t, site.depth_cm, threshold_cm=opt.flood_level_cm,
                              min_gap_s=opt.min_gap_s)
        impacts: tuple[TrafficImpact, ...] = ()
        if site.traffic_t is not None:
            impacts = traffic_impact(
                floods, site.traffic_t, site.traffic_volume, tz=opt.tz, rain_t=site.rain_t,
                rain_mm=site.rain_mm, dry_day_rain_mm=opt.dry_day_rain_mm).events
    except EventDataError as exc:  # say which site the bad field belongs to
        raise EventDataError(f"site {site.site_id!r}: {exc}") from None
    return _SiteResult(site, rains, floods, rows, impacts)


# ============================================================================== plots
def _site_plot(res: _SiteResult, opt: ReportOptions, zone: ZoneInfo) -> str:
    site = res.site
    fig = Figure(figsize=(10, 3.6), label=f"Rain and depth at {site.name}")
    ax = fig.add_subplot()
    ax.plot(_x(site.depth_t), np.asarray(site.depth_cm, dtype=float), color="#1f4e9c",
            lw=1.0, label="depth (cm)")
    for level in opt.levels_cm:
        ax.axhline(level, color="#c33", lw=0.6, ls="--")
    for ev in res.rains:
        ax.axvspan(_x(ev.start), _x(ev.end), color="#6aa8e8", alpha=0.15, lw=0)
    for fl in res.floods:
        ax.axvspan(_x(fl.start), _x(fl.end), color="#e0564b", alpha=0.25, lw=0)
    ax.set_ylabel("depth (cm)")
    ax.set_ylim(bottom=0)
    rain_t = np.asarray(site.rain_t, dtype=float)
    if rain_t.size > 1:
        dt = float(np.median(np.diff(rain_t)))
        intensity = np.asarray(site.rain_mm, dtype=float) / dt * 3600.0
        ax2 = ax.twinx()
        ax2.fill_between(_x(rain_t), 0, intensity, step="pre", color="#3b7dd8", alpha=0.6,
                         lw=0)
        ax2.set_ylabel("rain (mm/h)")
        top = np.nanmax(intensity) if np.any(intensity > 0) else 1.0
        ax2.set_ylim(top * 2.5, 0)  # hanging from the top, clear of the depth trace
    _time_axis(ax, zone)
    ax.set_title(f"{site.name}: rain events (blue), floods >= {opt.flood_level_cm:g} cm (red)",
                 fontsize=10)
    fig.tight_layout()
    return figure_img(fig, opt.plot_dpi)


def _scatter_plot(results: list[_SiteResult], corr: Correlation, opt: ReportOptions) -> str:
    fig = Figure(figsize=(6.5, 4.5), label="Cumulative rainfall against flood duration")
    ax = fig.add_subplot()
    xs_all = []
    for res in results:
        xs = [r.rain_total_mm for r in res.rows]
        ys = [r.flood_duration_s / 3600.0 for r in res.rows]
        if xs:
            ax.scatter(xs, ys, s=22, label=res.site.name)
            xs_all += xs
    line_x = np.linspace(min(xs_all), max(xs_all), 2)
    ax.plot(line_x, corr.intercept + corr.slope * line_x, color="k", lw=1.0,
            label=f"least squares: {corr.slope:.3g} h/mm")
    ax.set_xlabel("cumulative rainfall of the event (mm)")
    ax.set_ylabel(f"time at or above {opt.flood_level_cm:g} cm (h)")
    pct = round(corr.confidence * 100)
    ax.text(0.02, 0.97,
            f"n = {corr.n}\nPearson r = {corr.pearson_r:.2f} "
            f"[{corr.pearson_ci[0]:.2f}, {corr.pearson_ci[1]:.2f}] ({pct}% CI)\n"
            f"Spearman rho = {corr.spearman_rho:.2f} "
            f"[{corr.spearman_ci[0]:.2f}, {corr.spearman_ci[1]:.2f}]",
            transform=ax.transAxes, va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return figure_img(fig, opt.plot_dpi)


def _hour_plot(by_hour, opt: ReportOptions) -> str:
    fig = Figure(figsize=(7, 3.5), label="Traffic change during floods by hour of day")
    ax = fig.add_subplot()
    hours = [h.hour for h in by_hour if h.change_pct is not None]
    change = [h.change_pct for h in by_hour if h.change_pct is not None]
    ax.bar(hours, change, color=["#c33" if c < 0 else "#393" for c in change])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlim(-0.5, 23.5)
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel(f"hour of day ({opt.tz})")
    ax.set_ylabel("volume vs dry days (%)")
    fig.tight_layout()
    return figure_img(fig, opt.plot_dpi)


# ============================================================================= render
def _site_section(res: _SiteResult, opt: ReportOptions, zone: ZoneInfo) -> str:
    levels = sorted(opt.levels_cm)
    header = ["#", "rain start", "rain (h)", "total (mm)", "peak (mm/h)",
              f"peak {opt.window_s / 60:g} min (mm/h)"]
    header += [f"to {v:g} cm (min)" for v in levels]
    header += [f">= {opt.flood_level_cm:g} cm (min)", "peak depth (cm)", "at"]
    rows = []
    for r in res.rows:
        row = [str(r.event), escape(_when(r.rain_start, zone)), _num(r.rain_duration_s / 3600),
               _num(r.rain_total_mm), _num(r.rain_peak_mm_h), _num(r.rain_peak_window_mm_h)]
        row += [_minutes(r.time_to_cm.get(float(v))) for v in levels]
        row += [_minutes(r.flood_duration_s), _num(r.peak_depth_cm),
                escape(_when(r.peak_depth_t, zone))]
        rows.append(row)
    table = (_table(header, rows, left=2) if rows
             else '<p class="note">No rain event in this record.</p>')
    return (f"<section><h2>{escape(res.site.name)} <small>({escape(res.site.site_id)})</small>"
            f"</h2>{_site_plot(res, opt, zone)}<h3>Rain events and the road's response</h3>"
            f"{table}</section>")


def _correlation_section(results: list[_SiteResult], opt: ReportOptions) -> str:
    x = [r.rain_total_mm for res in results for r in res.rows]
    y = [r.flood_duration_s / 3600.0 for res in results for r in res.rows]
    head = ("<section><h2>Cumulative rainfall and flood duration</h2>"
            f'<p class="note">All rain events at all sites; flood duration is the time at or '
            f"above {opt.flood_level_cm:g} cm in the event's response window. Intervals: "
            "Fisher z (Pearson) and Fisher z with the Bonett&ndash;Wright (2000) standard "
            "error (Spearman).</p>")
    try:
        corr = correlation(x, y, confidence=opt.confidence)
    except EventDataError as exc:
        return head + f'<p class="note">No correlation: {escape(str(exc))}.</p></section>'
    pct = f"{corr.confidence * 100:g}%"
    rows = [
        ["Pearson r", _num(corr.pearson_r, 3),
         f"{_num(corr.pearson_ci[0], 3)} to {_num(corr.pearson_ci[1], 3)}",
         f"{corr.pearson_p:.3g}", str(corr.n)],
        ["Spearman rho", _num(corr.spearman_rho, 3),
         f"{_num(corr.spearman_ci[0], 3)} to {_num(corr.spearman_ci[1], 3)}",
         f"{corr.spearman_p:.3g}", str(corr.n)],
    ]
    table = _table(["statistic", "value", f"{pct} CI", "p", "n"], rows)
    return head + _scatter_plot(results, corr, opt) + table + "</section>"


def _traffic_section(results: list[_SiteResult], opt: ReportOptions, zone: ZoneInfo) -> str:
    head = ("<section><h2>Traffic during floods</h2>"
            '<p class="note">Vehicles counted near the sensor while the road was flooded, '
            "against the mean count at the same clock times on dry days (no flood, no rain) "
            "of the same weekday.</p>")
    with_traffic = [res for res in results if res.site.traffic_t is not None]
    if not with_traffic:
        return head + '<p class="note">No site has traffic counts.</p></section>'
    rows = []
    for res in with_traffic:
        for imp in res.impacts:
            rows.append([escape(res.site.name), escape(_when(imp.start, zone)),
                         escape(_when(imp.end, zone)), escape(imp.weekday),
                         _num(imp.observed_vehicles, 0), _num(imp.expected_vehicles, 0),
                         _num(imp.change_pct), f"{imp.readings_used}/{imp.readings_in_flood}",
                         escape(", ".join(imp.dry_days))])
    events = (_table(["site", "flood start", "flood end", "weekday", "observed", "expected",
                      "change (%)", "counts used", "dry days"], rows, left=4)
              if rows else '<p class="note">No flood at a site with traffic counts.</p>')
    by_hour = impact_by_hour(imp for res in with_traffic for imp in res.impacts)
    if not any(h.change_pct is not None for h in by_hour):
        return head + events + "</section>"
    hour_rows = [[f"{h.hour:02d}:00", _num(h.observed_vehicles, 0),
                  _num(h.expected_vehicles, 0), _num(h.change_pct), str(h.readings)]
                 for h in by_hour]
    return (head + events + "<h3>By hour of day, all sites</h3>" + _hour_plot(by_hour, opt)
            + _table(["hour", "observed", "expected", "change (%)", "counts"], hour_rows)
            + "</section>")


def render_report(sites: Sequence[SiteRecord], options: ReportOptions | None = None) -> str:
    """Analyse the sites and return the report as one HTML document.

    Parameters
    ----------
    sites : sequence of SiteRecord
        At least one; site ids must be unique.
    options : ReportOptions, optional
        Analysis settings; the defaults follow :mod:`cityos.apps.floodwatch.events`.

    Returns
    -------
    str
        A complete, self-contained HTML page.

    Raises
    ------
    EventDataError
        No sites, a duplicate site id, or a site's record is invalid (the message names
        the site and the field).
    """
    opt = options or ReportOptions()
    zone = _zone(opt.tz)
    sites = list(sites)
    if not sites:
        raise EventDataError("sites: give at least one site")
    seen: set[str] = set()
    for i, site in enumerate(sites):
        if not isinstance(site, SiteRecord):
            raise EventDataError(f"sites[{i}]: expected a SiteRecord, got {type(site).__name__}")
        if site.site_id in seen:
            raise EventDataError(f"sites[{i}].site_id: {site.site_id!r} appears twice")
        seen.add(site.site_id)
    results = [_analyse(site, opt) for site in sites]

    settings = (f"Rain events: dry spell &ge; {opt.min_dry_s / 3600:g} h separates events, "
                f"events under {opt.min_total_mm:g} mm left out. Floods: depth &ge; "
                f"{opt.flood_level_cm:g} cm, dips under {opt.min_gap_s / 60:g} min merged. "
                f"Response window: rain start to {opt.response_s / 3600:g} h after rain end. "
                f"Times in {escape(opt.tz)}.")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in opt.extra_notes)
    body = "".join(_site_section(res, opt, zone) for res in results)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(opt.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(opt.title)}</h1><p class=\"note\">{settings}</p>{notes}"
            f"{body}{_correlation_section(results, opt)}"
            f"{_traffic_section(results, opt, zone)}</body></html>\n")


def write_report(path: str | Path, sites: Sequence[SiteRecord],
                 options: ReportOptions | None = None) -> Path:
    """Write the flood event report as a single self-contained HTML file.

    Parameters
    ----------
    path : str or Path
        Where to write it (parent folders must exist); overwritten if present.
    sites : sequence of SiteRecord
        The sites to report on.
    options : ReportOptions, optional
        Analysis settings.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    html = render_report(sites, options)  # analyse first: a bad input leaves no half file
    path.write_text(html, encoding="utf-8")
    return path
