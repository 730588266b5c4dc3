"""InSAR against precise levelling: import benchmarks, pair them with points, compare.

Levelling measures the height of benchmarks to a fraction of a millimetre at a few
epochs; InSAR measures many points at many epochs. The comparison follows what a
validation report of a metro line does:

1. each benchmark is paired with the InSAR points within ``radius_m`` of it
   (:meth:`PointStore.select_near`), their displacements turned vertical when the
   product is line-of-sight (``d_vertical = d_los / cos(incidence)``, the motion
   assumed vertical) and averaged into one series;
2. the common epochs are the levelling dates inside the InSAR period; the InSAR series
   is interpolated linearly to them and both series are taken relative to the first
   common epoch;
3. the difference InSAR - levelling at every later common epoch gives, per benchmark
   and pooled over all of them, the mean difference, the mean absolute difference
   (MAE), the RMSE, the largest absolute difference and Pearson's correlation of the
   two displacements, with the number of epochs compared.

Displacement is positive upward (uplift) and in mm; a sinking benchmark has negative
values.

The benchmarks CSV has a header row and the columns ``id``, ``lon``, ``lat``, ``date``
(ISO 8601, ``YYYY-MM-DD``) and ``displacement_mm`` (vertical displacement in mm; any
reference, since only changes are compared) or ``height_m`` (levelled height in metres,
any datum); with both, ``displacement_mm`` is used. ``benchmark``/``benchmark_id``, ``height`` and ``displacement``
are accepted as names too.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_RADIUS_M = 100.0
_ID_NAMES = ("id", "benchmark", "benchmark_id")
_HEIGHT_NAMES = {"height_m": 1000.0, "height": 1000.0}  # metres -> mm
_DISPLACEMENT_NAMES = {"displacement_mm": 1.0, "displacement": 1.0}


class LevellingFormatError(ValueError):
    """A benchmarks file is malformed; the message names the file, line and field."""


@dataclass
class Benchmark:
    """One levelling benchmark and its levelled series.

    Attributes
    ----------
    benchmark_id : str
    lon, lat : float
        WGS84 position.
    dates : numpy.ndarray
        ``datetime64[D]`` levelling epochs, ascending.
    displacement_mm : numpy.ndarray
        Vertical displacement at each epoch relative to the first, mm, up positive.
    """

    benchmark_id: str
    lon: float
    lat: float
    dates: np.ndarray
    displacement_mm: np.ndarray


# ------------------------------------------------------------------------- reading
def read_levelling_csv(path: str | Path) -> list[Benchmark]:
    """Read a benchmarks CSV (see the module's description of the columns).

    Raises
    ------
    LevellingFormatError
        ``file:line: field: what is wrong`` for the first bad value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LevellingFormatError(f"{path}: cannot read it: {error}") from None
    return parse_levelling_csv(text, source=str(path))


def _column(header: list[str], names, source: str) -> str | None:
    found = [n for n in names if n in header]
    if len(found) > 1:
        raise LevellingFormatError(f"{source}:1: columns {', '.join(found)} say the same; "
                                   "keep one")
    return found[0] if found else None


def parse_levelling_csv(text: str, source: str = "levelling.csv") -> list[Benchmark]:
    """Parse the text of a benchmarks CSV; ``source`` names it in errors.

    Returns
    -------
    list of Benchmark
        In the order the benchmarks first appear.
    """
    return parse_series_csv(text, source, _ID_NAMES, {**_DISPLACEMENT_NAMES, **_HEIGHT_NAMES},
                            "height_m (metres) or displacement_mm")


def parse_series_csv(text: str, source: str, id_names: tuple[str, ...],
                     value_scales: dict[str, float], value_help: str) -> list[Benchmark]:
    """Parse a CSV of point series: an id, ``lon``, ``lat``, ``date`` and one value
    column (the first of ``value_scales`` present; its factor turns it into mm of uplift).

    Each series comes back relative to its first date.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise LevellingFormatError(f"{source}:1: the file is empty (a header row is "
                                   "needed)") from None
    id_name = _column(header, id_names, source)
    # the first value column present wins (a file may carry both height and displacement)
    value_name = next((name for name in value_scales if name in header), None)
    for name, what in ((id_name, id_names[0]), ("lon" if "lon" in header else None, "lon"),
                       ("lat" if "lat" in header else None, "lat"),
                       ("date" if "date" in header else None, "date")):
        if name is None:
            raise LevellingFormatError(f"{source}:1: column {what!r} is missing "
                                       f"(found {', '.join(header) or 'none'})")
    if value_name is None:
        raise LevellingFormatError(f"{source}:1: a value column is missing: give "
                                   f"{value_help}")
    scale = value_scales[value_name]
    index = {name: header.index(name) for name in (id_name, "lon", "lat", "date", value_name)}

    rows: dict[str, dict] = {}
    for line, record in enumerate(reader, start=2):
        if not record or all(not c.strip() for c in record):
            continue
        if len(record) < len(header):
            raise LevellingFormatError(f"{source}:{line}: {len(record)} fields, the header "
                                       f"has {len(header)}")

        def cell(name: str, _record=record) -> str:
            return _record[index[name]].strip()

        bench = cell(id_name)
        if not bench:
            raise LevellingFormatError(f"{source}:{line}: {id_name}: empty")
        lon = _number(cell("lon"), source, line, "lon", -180.0, 180.0)
        lat = _number(cell("lat"), source, line, "lat", -90.0, 90.0)
        value = _number(cell(value_name), source, line, value_name) * scale
        try:
            day = np.datetime64(cell("date")[:10], "D")
        except ValueError:
            raise LevellingFormatError(f"{source}:{line}: date: {cell('date')!r} is not an "
                                       "ISO 8601 date (YYYY-MM-DD)") from None
        entry = rows.setdefault(bench, {"lon": lon, "lat": lat, "line": line, "obs": {}})
        if abs(entry["lon"] - lon) > 1e-6 or abs(entry["lat"] - lat) > 1e-6:
            raise LevellingFormatError(
                f"{source}:{line}: lon/lat: benchmark {bench} is at {entry['lon']}, "
                f"{entry['lat']} on line {entry['line']}, here at {lon}, {lat}")
        if day in entry["obs"]:
            raise LevellingFormatError(f"{source}:{line}: date: benchmark {bench} was "
                                       f"levelled on {day} already (line {entry['obs'][day][1]})")
        entry["obs"][day] = (value, line)
    if not rows:
        raise LevellingFormatError(f"{source}: no benchmark rows after the header")
    benchmarks = []
    for bench, entry in rows.items():
        days = np.array(sorted(entry["obs"]), dtype="datetime64[D]")
        values = np.array([entry["obs"][d][0] for d in days], dtype=np.float64)
        benchmarks.append(Benchmark(bench, entry["lon"], entry["lat"], days,
                                    values - values[0]))
    return benchmarks


def _number(text: str, source: str, line: int, name: str, low: float | None = None,
            high: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LevellingFormatError(f"{source}:{line}: {name}: {text!r} is not a number") \
            from None
    if not math.isfinite(value):
        raise LevellingFormatError(f"{source}:{line}: {name}: {text!r} is not finite")
    if low is not None and not (low <= value <= high):
        raise LevellingFormatError(f"{source}:{line}: {name}: {value} is outside "
                                   f"{low:g}..{high:g}")
    return value


# ----------------------------------------------------------------------- statistics
@dataclass
class DifferenceStats:
    """How InSAR differs from levelling over a set of epoch pairs (InSAR - levelling).

    ``correlation`` is Pearson's r of the two displacements; NaN with fewer than three
    pairs or when either side does not vary.
    """

    n: int
    mean_mm: float
    mae_mm: float
    rmse_mm: float
    max_abs_mm: float
    correlation: float

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


def difference_stats(insar_mm, levelling_mm) -> DifferenceStats:
    """Mean difference, MAE, RMSE, largest absolute difference and correlation.

    Parameters
    ----------
    insar_mm, levelling_mm : array_like
        Paired displacements (same length), mm.
    """
    a = np.asarray(insar_mm, dtype=np.float64)
    b = np.asarray(levelling_mm, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"insar_mm and levelling_mm differ in shape: {a.shape} vs {b.shape}")
    n = int(a.size)
    if n == 0:
        nan = float("nan")
        return DifferenceStats(0, nan, nan, nan, nan, nan)
    diff = a - b
    correlation = float("nan")
    if n >= 3 and np.std(a) > 0 and np.std(b) > 0:
        correlation = float(np.corrcoef(a, b)[0, 1])
    return DifferenceStats(n, float(diff.mean()), float(np.abs(diff).mean()),
                           float(np.sqrt(np.mean(diff ** 2))), float(np.abs(diff).max()),
                           correlation)


# ----------------------------------------------------------------------- comparison
def product_kind(points) -> str:
    """``los``, ``vertical`` (or ``east``) as the point store's product says."""
    meta = getattr(points, "meta", None) or {}
    return str(meta.get("kind") or getattr(points, "kind", None) or "vertical")


def vertical_scale(points, rows: np.ndarray) -> np.ndarray:
    """Factor that turns the product's displacement of ``rows`` into vertical motion.

    Ones for a vertical product; ``1 / cos(incidence)`` for a line-of-sight product
    (:func:`~cityos.apps.subsidence.fit.los_to_vertical`: the motion assumed vertical,
    as for subsidence); NaN where the incidence is unknown.

    Raises
    ------
    ValueError
        For an east-west product, or a line-of-sight one where no point has an incidence
        angle (the message says what would give one).
    """
    from cityos.apps.subsidence.fit import los_to_vertical

    rows = np.asarray(rows, dtype=np.int64)
    kind = product_kind(points)
    if kind == "vertical":
        return np.ones(rows.size)
    if kind != "los":
        raise ValueError(f"a {kind!r} product does not give vertical motion")
    every = np.asarray(points.incidence_deg, dtype=np.float64)
    if not np.isfinite(every).any():
        from cityos.apps.subsidence.products import missing_incidence

        meta = getattr(points, "meta", None) or {}
        missing = missing_incidence(meta.get("format", ""), meta.get("source", "the product"))
        raise ValueError(f"{missing}: no vertical motion; run `cityos subsidence fit "
                         "--incidence DEG` (the scene's angle) or import it with its geometry "
                         "file")
    return los_to_vertical(np.ones(rows.size), every[rows])


def shown_scale(points, rows: np.ndarray) -> tuple[np.ndarray, str]:
    """Factor and name of the component the pages and the API show for ``rows``.

    Vertical (:func:`vertical_scale`) where the product gives it; otherwise the product's
    own direction unscaled: ``los`` for a line-of-sight product without an incidence
    angle, ``east`` for an east-west one.

    Returns
    -------
    scale : ndarray
    component : str
        ``vertical``, ``los`` or ``east``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    try:
        return vertical_scale(points, rows), "vertical"
    except ValueError:
        return np.ones(rows.size), product_kind(points)


def mean_vertical_series(points, rows: np.ndarray) -> np.ndarray:
    """The mean vertical displacement series (mm) of ``rows``; NaN where no point has
    a value."""
    disp = np.asarray(points.displacement(rows), dtype=np.float64)
    disp = disp * vertical_scale(points, rows)[:, None]
    with np.errstate(invalid="ignore"):
        counts = np.sum(np.isfinite(disp), axis=0)
        total = np.nansum(disp, axis=0)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def _days(dates) -> np.ndarray:
    return np.asarray(dates, dtype="datetime64[D]").astype(np.int64).astype(np.float64)


@dataclass
class BenchmarkComparison:
    """One benchmark against its paired InSAR points over the common epochs.

    ``stats`` is None and ``reason`` says why when the benchmark could not be compared
    (no point within the radius, fewer than two common epochs).
    """

    benchmark_id: str
    lon: float
    lat: float
    n_points: int
    dates: np.ndarray
    levelling_mm: np.ndarray
    insar_mm: np.ndarray
    stats: DifferenceStats | None = None
    reason: str = ""

    def to_json(self) -> dict:
        return {"id": self.benchmark_id, "lon": self.lon, "lat": self.lat,
                "points": self.n_points, "dates": [str(d) for d in self.dates],
                "levelling_mm": _rounded(self.levelling_mm),
                "insar_mm": _rounded(self.insar_mm),
                "stats": self.stats.to_json() if self.stats else None,
                "reason": self.reason or None}


def _rounded(values) -> list:
    return [None if not math.isfinite(v) else round(float(v), 3) for v in values]


@dataclass
class LevellingComparison:
    """Every benchmark's comparison and the statistics pooled over all of them."""

    radius_m: float
    benchmarks: list[BenchmarkComparison]
    overall: DifferenceStats
    kind: str = "vertical"
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> list[BenchmarkComparison]:
        """The benchmarks that were compared (had points and common epochs)."""
        return [b for b in self.benchmarks if b.stats is not None]

    def to_json(self) -> dict:
        return {"radius_m": self.radius_m, "product_kind": self.kind,
                "overall": self.overall.to_json(),
                "benchmarks": [b.to_json() for b in self.benchmarks],
                "compared": len(self.compared), "notes": self.notes}


def compare_levelling(points, benchmarks: list[Benchmark], radius_m: float = DEFAULT_RADIUS_M,
                      *, allowed_rows: np.ndarray | None = None) -> LevellingComparison:
    """Compare each benchmark with the mean of the InSAR points around it.

    Parameters
    ----------
    points : PointStore
        Needs ``dates``, ``select_near`` and ``displacement`` (and ``kind`` /
        incidence for a line-of-sight product).
    benchmarks : list of Benchmark
    radius_m : float
        Pairing radius around each benchmark.
    allowed_rows : numpy.ndarray, optional
        Only these rows may be paired (a customer's areas of interest).

    Returns
    -------
    LevellingComparison
    """
    if not radius_m > 0:
        raise ValueError(f"radius_m: {radius_m!r} must be positive")
    insar_days = _days(points.dates)
    results = []
    pooled_insar, pooled_levelling = [], []
    for bench in benchmarks:
        rows = np.asarray(points.select_near(bench.lon, bench.lat, radius_m), dtype=np.int64)
        if allowed_rows is not None:
            rows = rows[np.isin(rows, allowed_rows)]
        empty = np.array([], dtype="datetime64[D]")
        if rows.size == 0:
            results.append(BenchmarkComparison(bench.benchmark_id, bench.lon, bench.lat, 0,
                                               empty, np.array([]), np.array([]),
                                               reason=f"no InSAR point within {radius_m:g} m"))
            continue
        series = mean_vertical_series(points, rows)
        usable = np.isfinite(series)
        lev_days = _days(bench.dates)
        inside = (lev_days >= insar_days[usable].min()) & (lev_days <= insar_days[usable].max()) \
            if usable.any() else np.zeros(lev_days.size, bool)
        if inside.sum() < 2:
            results.append(BenchmarkComparison(
                bench.benchmark_id, bench.lon, bench.lat, int(rows.size), empty, np.array([]),
                np.array([]), reason="fewer than two levelling epochs inside the InSAR period"))
            continue
        insar = np.interp(lev_days[inside], insar_days[usable], series[usable])
        levelling = bench.displacement_mm[inside]
        insar, levelling = insar - insar[0], levelling - levelling[0]
        stats = difference_stats(insar[1:], levelling[1:])
        pooled_insar.append(insar[1:])
        pooled_levelling.append(levelling[1:])
        results.append(BenchmarkComparison(bench.benchmark_id, bench.lon, bench.lat,
                                           int(rows.size), bench.dates[inside], levelling,
                                           insar, stats))
    overall = difference_stats(np.concatenate(pooled_insar) if pooled_insar else [],
                               np.concatenate(pooled_levelling) if pooled_levelling else [])
    notes = []
    kind = product_kind(points)
    if kind == "los":
        notes.append("line-of-sight displacement turned vertical with the incidence angle "
                     "(motion assumed vertical)")
    return LevellingComparison(float(radius_m), results, overall, kind, notes)


# -------------------------------------------------------------------------- plots
def scatter_figure(comparison: LevellingComparison):
    """Levelling against InSAR displacement at every compared epoch, with the 1:1 line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 5.0), label="InSAR against levelling")
    ax = fig.add_subplot()
    values = []
    for bench in comparison.compared:
        ax.scatter(bench.levelling_mm[1:], bench.insar_mm[1:], s=14, alpha=0.8,
                   label=bench.benchmark_id)
        values.extend(bench.levelling_mm[1:])
        values.extend(bench.insar_mm[1:])
    if values:
        low, high = float(np.min(values)), float(np.max(values))
        pad = 0.05 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.4", lw=1,
                ls="--", label="1:1")
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("levelling displacement (mm)")
    ax.set_ylabel("InSAR displacement (mm)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    o = comparison.overall
    if o.n:
        ax.set_title(f"n={o.n}  mean {o.mean_mm:+.2f}  RMSE {o.rmse_mm:.2f} mm", fontsize=9)
    if len(comparison.compared) <= 12:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def series_figure(comparison: LevellingComparison, max_panels: int = 12):
    """One panel per compared benchmark: levelling and InSAR displacement over time."""
    from matplotlib.figure import Figure

    shown = comparison.compared[:max_panels]
    cols = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(4.0 * cols, 2.6 * rows), label="Displacement over time")
    for k, bench in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        when = bench.dates.astype("datetime64[D]").astype("O")
        ax.plot(when, bench.levelling_mm, "o-", ms=4, label="levelling")
        ax.plot(when, bench.insar_mm, "s--", ms=3, label=f"InSAR ({bench.n_points} pts)")
        ax.set_title(f"{bench.benchmark_id}: RMSE {bench.stats.rmse_mm:.2f} mm", fontsize=9)
        ax.set_ylabel("mm")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def render_levelling_html(comparison: LevellingComparison,
                          title: str = "InSAR against levelling") -> str:
    """The comparison as one self-contained HTML page (tables and inline plots)."""
    from cityos.apps.subsidence.report import html_page, levelling_section

    return html_page(title, levelling_section(comparison))
