"""Design rainfall: intensity-duration-frequency (IDF) curves and design hyetographs.

An :class:`IDFCurve` gives the mean intensity (mm/h) of the rain of a given duration
that is exceeded on average once every T years. It comes from a table (durations x
return periods, interpolated log-log in duration and linearly in log T), from fitted
parameters (Sherman ``i = a T^m / (d + b)^n``, Talbot ``i = a T^m / (d + b)``), or from
24-hour design depths through the Mononobe relation used in Indonesian drainage design,
``i(t) = R24 / 24 * (24 / t)^(2/3)`` (t in hours).

Hyetographs turn one IDF curve into a storm: the alternating block method (Chow,
Maidment & Mays 1988, s. 14.4) and the Chicago storm (Keifer & Chu 1957). Both are
built so that the most intense window of every duration around the peak holds the
IDF depth for that duration.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Hyetograph",
    "IDFCurve",
    "IDFError",
    "alternating_block",
    "chicago",
    "demo_idf",
    "design_storm",
    "idf_from_config",
]


class IDFError(ValueError):
    """An IDF table, parameter set or storm request that cannot be used."""


@dataclass(frozen=True)
class Hyetograph:
    """Rain rate, uniform in space, piecewise constant in time.

    Parameters
    ----------
    edges_s : numpy.ndarray
        ``(n+1,)`` interval edges in seconds from the start of the storm, increasing.
    intensity_mm_h : numpy.ndarray
        ``(n,)`` rain rate in each interval (mm/h), >= 0.
    return_period_yr : float, optional
        The design return period the storm stands for (set by the design-storm builders;
        inputs that vary with the return period, such as a river inflow, follow it).
    """

    edges_s: np.ndarray
    intensity_mm_h: np.ndarray
    return_period_yr: float | None = None

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges_s, dtype=float)
        rate = np.asarray(self.intensity_mm_h, dtype=float)
        if edges.ndim != 1 or rate.ndim != 1 or edges.size != rate.size + 1:
            raise IDFError("hyetograph: edges_s needs one more entry than intensity_mm_h")
        if np.any(np.diff(edges) <= 0):
            raise IDFError("hyetograph: edges_s must increase")
        if np.any(rate < 0) or not np.all(np.isfinite(rate)):
            raise IDFError("hyetograph: intensity_mm_h must be finite and >= 0")
        object.__setattr__(self, "edges_s", edges)
        object.__setattr__(self, "intensity_mm_h", rate)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last edge."""
        return float(self.edges_s[-1] - self.edges_s[0])

    def depths_mm(self) -> np.ndarray:
        """Rain depth in each interval (mm)."""
        return self.intensity_mm_h * np.diff(self.edges_s) / 3600.0

    def depth_mm(self) -> float:
        """Total rain depth (mm)."""
        return float(self.depths_mm().sum())

    def peak_mm_h(self) -> float:
        """Highest interval intensity (mm/h)."""
        return float(self.intensity_mm_h.max()) if self.intensity_mm_h.size else 0.0

    def rate_at(self, t_s: float) -> float:
        """Rain rate (mm/h) at time ``t_s``; zero outside the storm."""
        i = int(np.searchsorted(self.edges_s, t_s, side="right")) - 1
        if i < 0 or i >= self.intensity_mm_h.size:
            return 0.0
        return float(self.intensity_mm_h[i])


@dataclass(frozen=True)
class IDFCurve:
    """Intensity-duration-frequency relation; build it with a ``from_*`` constructor.

    ``intensity(duration_min, return_period_yr)`` gives mm/h, ``depth(...)`` mm.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    # -- constructors --------------------------------------------------------------
    @classmethod
    def from_table(
        cls,
        durations_min: Sequence[float],
        return_periods_yr: Sequence[float],
        intensity_mm_h: Any,
        *,
        source: str = "table",
    ) -> IDFCurve:
        """IDF from a table of intensities, rows = durations, columns = return periods.

        The table must be strictly positive, intensity must fall with duration and rise
        with return period, and depth (intensity x duration) must not fall with duration;
        the first cell that breaks a rule is named in the error.
        """
        d = np.asarray(durations_min, dtype=float)
        t = np.asarray(return_periods_yr, dtype=float)
        i = np.asarray(intensity_mm_h, dtype=float)
        where = f"{source}: "
        if d.ndim != 1 or t.ndim != 1 or d.size < 2 or t.size < 1:
            raise IDFError(f"{where}need at least 2 durations and 1 return period")
        if i.shape != (d.size, t.size):
            raise IDFError(f"{where}intensity table is {i.shape}, expected "
                           f"{d.size} durations x {t.size} return periods")
        if np.any(np.diff(d) <= 0) or d[0] <= 0:
            raise IDFError(f"{where}durations must be positive and increasing: {d.tolist()}")
        if np.any(np.diff(t) <= 0) or t[0] <= 1.0 - 1e-9:
            raise IDFError(f"{where}return periods must be >= 1 year and increasing: "
                           f"{t.tolist()}")
        for r in range(d.size):
            for c in range(t.size):
                cell = f"{where}cell (duration {d[r]:g} min, T {t[c]:g} yr) = {i[r, c]:g}"
                if not np.isfinite(i[r, c]) or i[r, c] <= 0:
                    raise IDFError(f"{cell}: intensity must be positive")
                if r > 0 and i[r, c] >= i[r - 1, c]:
                    raise IDFError(f"{cell}: intensity must fall with duration "
                                   f"({d[r - 1]:g} min has {i[r - 1, c]:g})")
                if r > 0 and i[r, c] * d[r] < i[r - 1, c] * d[r - 1]:
                    raise IDFError(f"{cell}: depth {i[r, c] * d[r] / 60:g} mm is less than "
                                   f"{i[r - 1, c] * d[r - 1] / 60:g} mm at {d[r - 1]:g} min")
                if c > 0 and i[r, c] <= i[r, c - 1]:
                    raise IDFError(f"{cell}: intensity must rise with return period "
                                   f"(T {t[c - 1]:g} yr has {i[r, c - 1]:g})")
        return cls("table", {"durations_min": d, "return_periods_yr": t, "intensity_mm_h": i},
                   source)

    @classmethod
    def from_csv(cls, path: str | Path) -> IDFCurve:
        """Table from a CSV: header ``duration_min,<T1>,<T2>,...``, one row per duration."""
        path = Path(path)
        try:
            rows = list(csv.reader(path.read_text().splitlines()))
        except OSError as exc:
            raise IDFError(f"{path}: cannot read ({exc})") from None
        rows = [r for r in rows if r and any(x.strip() for x in r)]
        if len(rows) < 3:
            raise IDFError(f"{path}: need a header and at least 2 duration rows")
        try:
            periods = [float(x) for x in rows[0][1:]]
        except ValueError:
            raise IDFError(f"{path}: line 1: header must be duration_min then return "
                           f"periods in years, got {rows[0]}") from None
        durations, table = [], []
        for n, row in enumerate(rows[1:], start=2):
            if len(row) != len(periods) + 1:
                raise IDFError(f"{path}: line {n}: {len(row)} fields, expected "
                               f"{len(periods) + 1}")
            try:
                vals = [float(x) for x in row]
            except ValueError:
                raise IDFError(f"{path}: line {n}: not a number in {row}") from None
            durations.append(vals[0])
            table.append(vals[1:])
        return cls.from_table(durations, periods, table, source=str(path))

    @classmethod
    def from_parameters(
        cls, a: float, b: float, n: float = 1.0, m: float = 0.0, *,
        form: str = "sherman", source: str = "parameters",
    ) -> IDFCurve:
        """Fitted IDF ``i = a T^m / (d + b)^n`` (mm/h, d in minutes, T in years).

        ``form="sherman"`` uses ``n`` as given; ``form="talbot"`` fixes ``n = 1``.
        """
        form = form.lower()
        if form not in ("sherman", "talbot"):
            raise IDFError(f"{source}: form {form!r}: use 'sherman' or 'talbot'")
        if form == "talbot":
            n = 1.0
        for name, val, ok in (("a", a, a > 0), ("b", b, b >= 0), ("n", n, 0 < n),
                              ("m", m, m >= 0)):
            if not (np.isfinite(val) and ok):
                raise IDFError(f"{source}: parameter {name} = {val!r} is out of range")
        return cls("parameters", {"a": float(a), "b": float(b), "n": float(n), "m": float(m),
                                  "form": form}, source)

    @classmethod
    def from_mononobe(
        cls, daily_depth_mm: Mapping[float, float], *, source: str = "mononobe"
    ) -> IDFCurve:
        """IDF from 24-hour design depths R24(T) by Mononobe, ``i = R24/24 (24/t)^(2/3)``.

        R24 is interpolated linearly in log T between the given return periods.
        """
        items = sorted((float(k), float(v)) for k, v in daily_depth_mm.items())
        if len(items) < 2:
            raise IDFError(f"{source}: need 24-hour depths for at least 2 return periods")
        t = np.array([k for k, _ in items])
        r = np.array([v for _, v in items])
        if t[0] < 1 or np.any(r <= 0) or np.any(np.diff(r) <= 0):
            raise IDFError(f"{source}: 24-hour depths must be positive and rise with the "
                           f"return period: {dict(items)}")
        return cls("mononobe", {"return_periods_yr": t, "daily_depth_mm": r}, source)

    # -- evaluation ------------------------------------------------------------------
    def intensity(self, duration_min: Any, return_period_yr: float) -> Any:
        """Mean intensity (mm/h) of the T-year storm of the given duration(s)."""
        d = np.asarray(duration_min, dtype=float)
        if np.any(d <= 0):
            raise IDFError(f"{self.source}: durations must be positive")
        T = float(return_period_yr)
        if self.kind == "parameters":
            p = self.params
            if T < 1:
                raise IDFError(f"{self.source}: return period {T:g} yr is below 1 year")
            out = p["a"] * T ** p["m"] / (d + p["b"]) ** p["n"]
        elif self.kind == "mononobe":
            r24 = _interp_log_t(self.params["return_periods_yr"], self.params["daily_depth_mm"],
                                T, self.source)
            hours = d / 60.0
            out = r24 / 24.0 * (24.0 / hours) ** (2.0 / 3.0)
        else:
            out = self._table_intensity(d, T)
        return out if np.ndim(duration_min) else float(out)

    def depth(self, duration_min: Any, return_period_yr: float) -> Any:
        """Rain depth (mm) of the T-year storm of the given duration(s)."""
        d = np.asarray(duration_min, dtype=float)
        out = np.where(d > 0, self.intensity(np.maximum(d, 1e-12), return_period_yr), 0.0)
        out = out * d / 60.0
        return out if np.ndim(duration_min) else float(out)

    def _table_intensity(self, d: np.ndarray, T: float) -> np.ndarray:
        p = self.params
        periods = p["return_periods_yr"]
        table = p["intensity_mm_h"]
        # one column per return period, then log-interpolate between the columns
        logd = np.log(p["durations_min"])
        x = np.log(np.atleast_1d(d))
        cols = []
        for c in range(periods.size):
            logi = np.log(table[:, c])
            y = np.interp(x, logd, logi)
            # power-law extrapolation along the end segments
            lo, hi = x < logd[0], x > logd[-1]
            s0 = (logi[1] - logi[0]) / (logd[1] - logd[0])
            s1 = (logi[-1] - logi[-2]) / (logd[-1] - logd[-2])
            y = np.where(lo, logi[0] + s0 * (x - logd[0]), y)
            y = np.where(hi, logi[-1] + s1 * (x - logd[-1]), y)
            cols.append(np.exp(y))
        cols = np.array(cols)  # (nT, nd)
        if periods.size == 1:
            if not math.isclose(T, periods[0]):
                raise IDFError(f"{self.source}: table has only T = {periods[0]:g} yr, "
                               f"asked for {T:g}")
            out = cols[0]
        else:
            lt = np.log(periods)
            if not (lt[0] - 1e-9 <= math.log(T) <= lt[-1] + 1e-9):
                raise IDFError(f"{self.source}: return period {T:g} yr is outside the table "
                               f"({periods[0]:g}-{periods[-1]:g} yr)")
            k = int(np.clip(np.searchsorted(lt, math.log(T)) - 1, 0, lt.size - 2))
            w = (math.log(T) - lt[k]) / (lt[k + 1] - lt[k])
            out = (1 - w) * cols[k] + w * cols[k + 1]
        return out.reshape(d.shape)

    def describe(self) -> str:
        """One line saying what this curve is."""
        if self.kind == "parameters":
            p = self.params
            return (f"{p['form']} IDF i = {p['a']:g} T^{p['m']:g} / (d + {p['b']:g})^{p['n']:g}"
                    f" ({self.source})")
        if self.kind == "mononobe":
            pairs = ", ".join(f"{t:g} yr: {r:g} mm" for t, r in
                              zip(self.params["return_periods_yr"],
                                  self.params["daily_depth_mm"], strict=True))
            return f"Mononobe IDF from 24-h depths ({pairs}) ({self.source})"
        return f"IDF table ({self.source})"


def _interp_log_t(periods: np.ndarray, values: np.ndarray, T: float, source: str) -> float:
    if T < periods[0] - 1e-9 or T > periods[-1] + 1e-9:
        raise IDFError(f"{source}: return period {T:g} yr is outside {periods[0]:g}-"
                       f"{periods[-1]:g} yr")
    return float(np.interp(math.log(T), np.log(periods), values))


# Illustrative 24-hour design depths for the demo, of the size reported for Jakarta's
# annual-maximum daily rainfall (mean about 120 mm, standard deviation about 40 mm,
# Gumbel frequency factors for a long record). They are NOT a fitted station curve:
# use the BMKG/PUPR curve of the site for real work.
DEMO_DAILY_DEPTH_MM = {2: 113.0, 5: 149.0, 10: 172.0, 25: 202.0, 50: 224.0, 100: 245.0}


def demo_idf() -> IDFCurve:
    """The demo's tropical IDF: Mononobe on illustrative Jakarta-like 24-h depths."""
    return IDFCurve.from_mononobe(
        DEMO_DAILY_DEPTH_MM,
        source="illustrative tropical IDF (Mononobe, Jakarta-like 24-h depths; not a "
               "station fit)",
    )


def _check_steps(duration_min: float, step_min: float) -> int:
    if step_min <= 0 or duration_min <= 0:
        raise IDFError(f"duration_min ({duration_min}) and step_min ({step_min}) must be > 0")
    n = duration_min / step_min
    if abs(n - round(n)) > 1e-9:
        raise IDFError(f"duration_min {duration_min:g} is not a whole number of "
                       f"step_min {step_min:g}")
    return int(round(n))


def alternating_block(
    idf: IDFCurve, return_period_yr: float, duration_min: float, step_min: float,
    peak_position: float = 0.5,
) -> Hyetograph:
    """Alternating block hyetograph.

    The depth increments ``D(k dt) - D((k-1) dt)`` of the IDF curve are placed largest
    first at the peak block (``peak_position`` of the storm), then alternately right and
    left of it (on one side only once the other is full), so every window of k blocks
    around the peak holds the IDF depth for ``k * step_min``.
    """
    n = _check_steps(duration_min, step_min)
    if not 0.0 <= peak_position <= 1.0:
        raise IDFError(f"peak_position {peak_position} must be within [0, 1]")
    durations = step_min * np.arange(1, n + 1)
    cum = idf.depth(durations, return_period_yr)
    inc = np.diff(np.concatenate([[0.0], cum]))
    if np.any(inc < -1e-9):
        k = int(np.argmax(inc < -1e-9))
        raise IDFError(f"{idf.source}: depth falls between {durations[k] - step_min:g} and "
                       f"{durations[k]:g} min; the IDF curve is not valid there")
    inc = np.sort(np.maximum(inc, 0.0))[::-1]
    peak = min(int(math.floor(peak_position * n)), n - 1)
    order = [peak]
    left, right = peak - 1, peak + 1
    while len(order) < n:
        if right < n:
            order.append(right)
            right += 1
        if left >= 0 and len(order) < n:
            order.append(left)
            left -= 1
    blocks = np.zeros(n)
    blocks[np.array(order)] = inc
    edges = np.arange(n + 1) * step_min * 60.0
    return Hyetograph(edges, blocks * 60.0 / step_min, float(return_period_yr))


def chicago(
    idf: IDFCurve, return_period_yr: float, duration_min: float, step_min: float,
    peak_position: float = 0.4,
) -> Hyetograph:
    """Chicago design storm (Keifer & Chu 1957) averaged over blocks of ``step_min``.

    With the peak at ``r = peak_position`` of the storm, the rain within ``t_b`` before
    the peak is ``r D(t_b / r)`` and within ``t_a`` after it ``(1 - r) D(t_a / (1 - r))``,
    where D is the IDF depth: every window around the peak split r : (1 - r) holds the
    IDF depth of its length. For the Sherman form this is Keifer and Chu's instantaneous
    intensity ``a [(1 - n) t/r + b] / (t/r + b)^(n + 1)``; here the blocks take the exact
    mass between their edges, so the blocks sum to ``D(duration)``.
    """
    n = _check_steps(duration_min, step_min)
    if not 0.0 < peak_position < 1.0:
        raise IDFError(f"peak_position {peak_position} must be within (0, 1)")
    r = peak_position
    total = float(duration_min)
    tp = r * total
    edges_min = np.arange(n + 1) * float(step_min)

    def cumulative(t: np.ndarray) -> np.ndarray:
        before = t < tp
        out = np.empty_like(t)
        out[before] = r * (idf.depth(total, return_period_yr)
                           - idf.depth(np.maximum((tp - t[before]) / r, 0.0), return_period_yr))
        after = ~before
        out[after] = r * idf.depth(total, return_period_yr) + (1 - r) * idf.depth(
            np.maximum((t[after] - tp) / (1 - r), 0.0), return_period_yr)
        return out

    mass = np.diff(cumulative(edges_min))
    if np.any(mass < -1e-9):
        raise IDFError(f"{idf.source}: depth falls with duration; the IDF curve is not valid "
                       f"up to {duration_min:g} min")
    return Hyetograph(edges_min * 60.0, np.maximum(mass, 0.0) * 60.0 / step_min,
                      float(return_period_yr))


def idf_from_config(cfg: Any, base_dir: str | Path = ".") -> IDFCurve:
    """Build an IDF curve from the study.yaml ``rainfall.idf`` value.

    Accepted: ``"demo"``; ``{csv: file}``; ``{table: {durations_min, return_periods_yr,
    intensity_mm_h}}``; ``{parameters: {form, a, b, n, m}}``; ``{mononobe: {T: R24}}``.
    """
    where = "rainfall.idf"
    if cfg in (None, "demo", "default"):
        return demo_idf()
    if not isinstance(cfg, Mapping):
        raise IDFError(f"{where}: expected 'demo' or a mapping, got {cfg!r}")
    if "csv" in cfg:
        return IDFCurve.from_csv(Path(base_dir) / cfg["csv"])
    if "table" in cfg:
        t = cfg["table"]
        try:
            return IDFCurve.from_table(t["durations_min"], t["return_periods_yr"],
                                       t["intensity_mm_h"], source=f"{where}.table")
        except KeyError as exc:
            raise IDFError(f"{where}.table: missing {exc.args[0]}") from None
    if "parameters" in cfg:
        p = dict(cfg["parameters"])
        try:
            return IDFCurve.from_parameters(
                float(p.pop("a")), float(p.pop("b", 0.0)), float(p.pop("n", 1.0)),
                float(p.pop("m", 0.0)), form=str(p.pop("form", "sherman")),
                source=f"{where}.parameters")
        except KeyError as exc:
            raise IDFError(f"{where}.parameters: missing {exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise IDFError(f"{where}.parameters: {exc}") from None
    if "mononobe" in cfg:
        return IDFCurve.from_mononobe(cfg["mononobe"], source=f"{where}.mononobe")
    raise IDFError(f"{where}: give one of csv, table, parameters, mononobe (got "
                   f"{sorted(cfg)})")


def design_storm(cfg: Mapping[str, Any], return_period_yr: float,
                 base_dir: str | Path = ".") -> Hyetograph:
    """The hyetograph the study.yaml ``rainfall`` section asks for at one return period.

    Keys: ``idf``, ``hyetograph`` (``alternating_block`` | ``chicago``), ``duration_min``,
    ``step_min``, optional ``peak_position``.
    """
    idf = idf_from_config(cfg.get("idf"), base_dir)
    method = str(cfg.get("hyetograph", "alternating_block"))
    try:
        duration, step = float(cfg["duration_min"]), float(cfg["step_min"])
    except KeyError as exc:
        raise IDFError(f"rainfall: missing {exc.args[0]}") from None
    kwargs = {}
    if "peak_position" in cfg:
        kwargs["peak_position"] = float(cfg["peak_position"])
    if method == "alternating_block":
        return alternating_block(idf, return_period_yr, duration, step, **kwargs)
    if method == "chicago":
        return chicago(idf, return_period_yr, duration, step, **kwargs)
    raise IDFError(f"rainfall.hyetograph: {method!r}: use alternating_block or chicago")
