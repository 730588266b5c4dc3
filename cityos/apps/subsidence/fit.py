"""Per-point analytics of InSAR displacement series, vectorised over all points at once.

Model (:func:`fit_series`)
    ``d(t) = c + v t + a t^2 / 2 + s sin(2 pi t) + k cos(2 pi t) + e`` with ``t`` in
    years from the centre of the series (the mean acquisition time), so ``v`` is the
    rate at mid-series (for a linear series, its mean rate) and is uncorrelated with
    ``a`` for evenly spread dates. Every point shares the dates, hence one design matrix
    ``G`` (n_dates x p): its pseudo-inverse ``G+ = (G'G)^-1 G'`` is computed once (from
    the SVD) and applied to the (k, n_dates) block of series as one matrix product.
    Standard errors: ``se_j = sqrt(s^2 [(G'G)^-1]_jj)`` with ``s^2 = RSS / (n - p)``
    (ordinary least squares, errors independent in time). Residual RMS
    ``sqrt(RSS / n)``. Seasonal amplitude ``sqrt(s^2 + k^2)``.
Temporal coherence
    The ensemble (model-fit) coherence of Ferretti et al. (2001, IEEE TGRS 39(1)) as used
    by Pepe & Lanari (2006): ``gamma = |mean_i exp(j 4 pi / lambda * r_i)|`` over the
    model residuals ``r_i`` in LOS; 1 for a series the model explains to well under a
    wavelength, ~1/sqrt(n) for noise. It is *not* MintPy's ``temporalCoherence``, which
    measures the fit of the interferogram network inversion. A residual of exactly
    lambda/2 (one phase cycle, an unwrapping error) leaves it unchanged.
Trend change (:func:`detect_trend_change`)
    Best single breakpoint of a continuous piecewise-linear trend (+ the annual terms):
    each candidate epoch ``b`` adds the hinge ``max(0, t - t_b)`` to the linear model.
    With the linear model's residuals ``R`` and the hinge columns ``H`` made orthogonal
    to the linear model's columns (Frisch-Waugh-Lovell), the drop in RSS for every
    candidate is ``(R H)^2 / diag(H'H)``: all candidates of all points in one product.
    The break is accepted when the Bayesian information criterion improves by more than
    ``min_bic_gain`` (default 6, "strong" evidence in Kass & Raftery 1995): ``n ln(RSS0 /
    RSS1) - 2 ln n > min_bic_gain``, counting the hinge slope and the break date as two
    parameters. With 100 epochs this asks ``n ln(RSS0/RSS1) > 15.2``, above the 1 %
    critical value (about 12) of Andrews' (1993) sup-F test for one break in one
    coefficient, so a linear series is flagged well under 1 % of the time.
LOS to vertical and east-west
    ``vertical = los / cos(incidence)`` assumes no horizontal motion. With an ascending
    and a descending track, ``los = e_E E + e_U U`` per track with the LOS unit vector
    (towards the satellite, right-looking SAR, heading ``h`` clockwise from north,
    MintPy's convention): ``e_E = -sin(inc) cos(h)``, ``e_N = sin(inc) sin(h)``,
    ``e_U = cos(inc)``; north is neglected (near-polar orbits see little of it) and the
    2x2 system is solved per point in closed form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .products import SENTINEL1_WAVELENGTH_M

DAYS_PER_YEAR = 365.25

FIT_COLUMNS = ("offset_mm", "velocity_mm_yr", "velocity_se", "acceleration_mm_yr2",
               "acceleration_se", "seasonal_amplitude_mm", "seasonal_phase_rad", "rms_mm",
               "coherence", "trend_change", "break_date", "velocity_before_mm_yr",
               "velocity_after_mm_yr", "bic_gain")


# ------------------------------------------------------------------------ time axis
def decimal_years(dates: np.ndarray, time_axis: str = "days") -> np.ndarray:
    """Acquisition times in years.

    Parameters
    ----------
    dates : array of datetime64
    time_axis : {"days", "decimal_year"}
        ``"days"``: days since 2000-01-01 / 365.25 (a uniform clock, the default).
        ``"decimal_year"``: MintPy's ``year + (day_of_year - 1) / 365.25``
        (``ptime.yyyymmdd2years``), which steps by 1.25 days over each 31 December of a
        common year; use it to reproduce MintPy's velocities to the last digit.

    Returns
    -------
    ndarray of float64
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    if time_axis == "days":
        return (d - np.datetime64("2000-01-01", "D")).astype(np.float64) / DAYS_PER_YEAR
    if time_axis == "decimal_year":
        years = d.astype("datetime64[Y]")
        doy = (d - years.astype("datetime64[D]")).astype(np.float64)  # day_of_year - 1
        return years.astype(np.float64) + 1970.0 + doy / DAYS_PER_YEAR
    raise ValueError(f"time_axis must be 'days' or 'decimal_year', got {time_axis!r}")


@dataclass(frozen=True)
class Design:
    """The design matrix shared by all points, and its pseudo-inverse."""

    columns: tuple[str, ...]
    matrix: np.ndarray          # (n_dates, p)
    pinv: np.ndarray            # (p, n_dates)
    cov_unit: np.ndarray        # (G'G)^-1, (p, p)
    t_centre: float             # years on the chosen axis


def design_matrix(dates, *, seasonal: bool = True, acceleration: bool = True,
                  time_axis: str = "days") -> Design:
    """Build the shared design matrix of :func:`fit_series`.

    Parameters
    ----------
    dates : array of datetime64
    seasonal, acceleration : bool
        Include the annual sin/cos terms and the t^2/2 term.
    time_axis : str
        See :func:`decimal_years`.

    Returns
    -------
    Design
    """
    years = decimal_years(dates, time_axis)
    centre = float(years.mean())
    t = years - centre
    cols = [np.ones_like(t), t]
    names = ["offset", "velocity"]
    if acceleration:
        cols.append(0.5 * t * t)
        names.append("acceleration")
    if seasonal:
        # phase on the calendar: sin/cos of the time of year, whatever the centre
        cols += [np.sin(2 * np.pi * years), np.cos(2 * np.pi * years)]
        names += ["sin", "cos"]
    g = np.column_stack(cols)
    if len(t) <= g.shape[1]:
        raise ValueError(f"{len(t)} dates cannot fit {g.shape[1]} parameters ({names})")
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    if s[-1] < 1e-10 * s[0]:
        raise ValueError(f"the dates cannot separate the model terms {names} "
                         "(rank-deficient design)")
    pinv = (vt.T / s) @ u.T
    cov = (vt.T / s**2) @ vt
    return Design(tuple(names), g, pinv, cov, centre)


# ---------------------------------------------------------------------- the fit
def fit_series(dates, displacement_mm, *, seasonal: bool = True, acceleration: bool = True,
               trend_change: bool = True, wavelength_m: float | None = None,
               time_axis: str = "days", min_bic_gain: float = 6.0,
               min_segment: int | None = None) -> dict[str, np.ndarray]:
    """Fit the deformation model to every series at once.

    Parameters
    ----------
    dates : array of datetime64, shape (n,)
    displacement_mm : array, shape (k, n)
        One series per row, millimetres (LOS or vertical).
    seasonal, acceleration : bool
        Model terms (offset and velocity are always fitted).
    trend_change : bool
        Also run :func:`detect_trend_change`.
    wavelength_m : float, optional
        For the temporal coherence (Sentinel-1 C-band when omitted).
    time_axis : str
        See :func:`decimal_years`.
    min_bic_gain, min_segment
        See :func:`detect_trend_change`.

    Returns
    -------
    dict of str to ndarray, each of length k
        ``offset_mm`` (at the centre date), ``velocity_mm_yr``, ``velocity_se``,
        ``acceleration_mm_yr2``, ``acceleration_se`` (NaN without acceleration),
        ``seasonal_amplitude_mm``, ``seasonal_phase_rad`` (of ``A sin(2 pi t + phase)``,
        ``t`` in years; NaN without seasonal terms), ``rms_mm``, ``coherence`` and, with
        ``trend_change``, ``trend_change`` (bool), ``break_date`` (datetime64[D], NaT when
        none), ``velocity_before_mm_yr``, ``velocity_after_mm_yr``, ``bic_gain``.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    d = np.asarray(displacement_mm)
    if d.ndim == 1:
        d = d[None, :]
    if d.shape[1] != len(dates):
        raise ValueError(f"displacement has {d.shape[1]} epochs, dates {len(dates)}")
    d = d.astype(np.float64, copy=False)
    design = design_matrix(dates, seasonal=seasonal, acceleration=acceleration,
                           time_axis=time_axis)
    n, p = design.matrix.shape
    m = d @ design.pinv.T                                   # (k, p)
    resid = d - m @ design.matrix.T                         # (k, n)
    rss = np.einsum("ij,ij->i", resid, resid)
    sigma2 = rss / (n - p)
    se = np.sqrt(sigma2[:, None] * np.diag(design.cov_unit)[None, :])
    col = {name: i for i, name in enumerate(design.columns)}
    nan = np.full(len(d), np.nan)
    out = {
        "offset_mm": m[:, 0],
        "velocity_mm_yr": m[:, 1],
        "velocity_se": se[:, 1],
        "acceleration_mm_yr2": m[:, col["acceleration"]] if acceleration else nan,
        "acceleration_se": se[:, col["acceleration"]] if acceleration else nan.copy(),
        "seasonal_amplitude_mm": np.hypot(m[:, col["sin"]], m[:, col["cos"]])
        if seasonal else nan.copy(),
        "seasonal_phase_rad": np.arctan2(m[:, col["cos"]], m[:, col["sin"]])
        if seasonal else nan.copy(),
        "rms_mm": np.sqrt(rss / n),
        "coherence": temporal_coherence(resid, wavelength_m),
    }
    if trend_change:
        out.update(_trend_change(dates, d, seasonal=seasonal, time_axis=time_axis,
                                 min_bic_gain=min_bic_gain, min_segment=min_segment))
    return out


def temporal_coherence(residual_mm: np.ndarray, wavelength_m: float | None = None
                       ) -> np.ndarray:
    """Ensemble temporal coherence ``|mean exp(j 4 pi r / lambda)|`` of LOS residuals.

    Parameters
    ----------
    residual_mm : array, shape (k, n)
    wavelength_m : float, optional
        Sentinel-1 C-band (55.5 mm) when omitted.

    Returns
    -------
    ndarray, shape (k,)
    """
    lam = (wavelength_m or SENTINEL1_WAVELENGTH_M) * 1000.0
    phase = (4.0 * np.pi / lam) * np.asarray(residual_mm, dtype=np.float64)
    return np.hypot(np.cos(phase).mean(axis=1), np.sin(phase).mean(axis=1))


# ----------------------------------------------------------------- trend change
def _trend_change(dates, d, *, seasonal, time_axis, min_bic_gain, min_segment):
    base = design_matrix(dates, seasonal=seasonal, acceleration=False, time_axis=time_axis)
    g = base.matrix
    n, p = g.shape
    t = decimal_years(dates, time_axis) - base.t_centre
    seg = min_segment if min_segment is not None else max(4, int(round(0.1 * n)))
    candidates = np.arange(seg, n - seg)
    k = len(d)
    out = {"trend_change": np.zeros(k, bool),
           "break_date": np.full(k, np.datetime64("NaT"), dtype="datetime64[D]"),
           "velocity_before_mm_yr": np.full(k, np.nan),
           "velocity_after_mm_yr": np.full(k, np.nan),
           "bic_gain": np.full(k, np.nan)}
    if len(candidates) == 0 or n - p - 1 <= 0:
        return out
    hinge = np.maximum(0.0, t[:, None] - t[candidates][None, :])        # (n, c)
    h_perp = hinge - g @ (base.pinv @ hinge)                             # FWL: orthogonal to G
    h_norm = np.einsum("ij,ij->j", h_perp, h_perp)
    m0 = d @ base.pinv.T
    resid = d - m0 @ g.T
    rss0 = np.einsum("ij,ij->i", resid, resid)
    proj = resid @ h_perp                                                # (k, c)
    gain = proj * proj / h_norm[None, :]
    best = np.argmax(gain, axis=1)
    rows = np.arange(k)
    rss1 = np.maximum(rss0 - gain[rows, best], 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        bic_gain = n * np.log(np.maximum(rss0, 1e-300) / rss1) - 2.0 * np.log(n)
    bic_gain = np.where(rss0 > 0, bic_gain, 0.0)
    changed = bic_gain > min_bic_gain
    # slopes of the accepted piecewise model: v1 before the break, v1 + delta after
    delta = proj[rows, best] / h_norm[best]
    coef_shift = base.pinv @ hinge                                        # (p, c)
    v1 = m0[:, 1] - delta * coef_shift[1, best]
    out["trend_change"] = changed
    out["break_date"] = np.where(changed, dates[candidates[best]],
                                 np.datetime64("NaT")).astype("datetime64[D]")
    out["velocity_before_mm_yr"] = v1
    out["velocity_after_mm_yr"] = v1 + delta
    out["bic_gain"] = bic_gain
    return out


def detect_trend_change(dates, displacement_mm, *, seasonal: bool = True,
                        min_bic_gain: float = 6.0, min_segment: int | None = None,
                        time_axis: str = "days") -> tuple[np.ndarray, np.ndarray]:
    """Find the best single change of linear trend per series, accepted by BIC.

    Parameters
    ----------
    dates : array of datetime64, shape (n,)
    displacement_mm : array, shape (k, n)
    seasonal : bool
        Annual terms in both models.
    min_bic_gain : float
        BIC improvement needed to accept the break.
    min_segment : int, optional
        Fewest epochs on each side of a break (10 % of the series, at least 4).
    time_axis : str
        See :func:`decimal_years`.

    Returns
    -------
    changed : ndarray of bool, shape (k,)
    break_date : ndarray of datetime64[D], shape (k,)
        The epoch where the new trend starts; NaT where no change is accepted.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    d = np.atleast_2d(np.asarray(displacement_mm, dtype=np.float64))
    out = _trend_change(dates, d, seasonal=seasonal, time_axis=time_axis,
                        min_bic_gain=min_bic_gain, min_segment=min_segment)
    return out["trend_change"], out["break_date"]


# ------------------------------------------------------------------ geometry
def los_unit_vector(incidence_deg, heading_deg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East, north, up components of the unit vector from the ground to a right-looking
    satellite (LOS positive towards the satellite).

    Parameters
    ----------
    incidence_deg : array
        Incidence angle from vertical.
    heading_deg : array
        Flight direction, degrees clockwise from north (ascending about -12 to -10,
        descending about -168 to -170 for Sentinel-1).

    Returns
    -------
    (east, north, up) : tuple of ndarray
    """
    inc = np.deg2rad(np.asarray(incidence_deg, dtype=np.float64))
    head = np.deg2rad(np.asarray(heading_deg, dtype=np.float64))
    return -np.sin(inc) * np.cos(head), np.sin(inc) * np.sin(head), np.cos(inc)


def project_to_los(east, north, up, incidence_deg, heading_deg) -> np.ndarray:
    """Project east/north/up motion onto the LOS (towards the satellite positive)."""
    ue, un, uu = los_unit_vector(incidence_deg, heading_deg)
    return np.asarray(east) * ue + np.asarray(north) * un + np.asarray(up) * uu


def los_to_vertical(los_mm, incidence_deg) -> np.ndarray:
    """LOS displacement or rate to vertical, assuming no horizontal motion.

    Parameters
    ----------
    los_mm : array
        LOS values, positive towards the satellite (uplift).
    incidence_deg : array
        Incidence angle, broadcastable to ``los_mm`` (per point: give it shape (k, 1)
        for a (k, n) block of series).

    Returns
    -------
    ndarray
        ``los / cos(incidence)``; NaN where the incidence is unknown or not in [0, 90).
    """
    inc = np.asarray(incidence_deg, dtype=np.float64)
    cos = np.cos(np.deg2rad(inc))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((inc >= 0) & (inc < 90), np.asarray(los_mm) / cos, np.nan)


@dataclass(frozen=True)
class TrackPairGeometry:
    """Incidence and heading of an ascending and a descending track (degrees)."""

    asc_incidence_deg: np.ndarray | float
    asc_heading_deg: np.ndarray | float
    desc_incidence_deg: np.ndarray | float
    desc_heading_deg: np.ndarray | float


def decompose(asc, desc, geometry: TrackPairGeometry | dict) -> tuple[np.ndarray, np.ndarray]:
    """Vertical and east-west motion from ascending and descending LOS.

    Parameters
    ----------
    asc, desc : array
        LOS values of the two tracks at the same points (rates or displacements).
    geometry : TrackPairGeometry or dict
        The two tracks' incidence and heading, scalars or per point (broadcastable).

    Returns
    -------
    vertical, east : ndarray
        Up and east components (north neglected); NaN where the two LOS directions are
        too close to separate them.
    """
    if isinstance(geometry, dict):
        geometry = TrackPairGeometry(**geometry)
    ea, _, ua = los_unit_vector(geometry.asc_incidence_deg, geometry.asc_heading_deg)
    ed, _, ud = los_unit_vector(geometry.desc_incidence_deg, geometry.desc_heading_deg)
    a, b = np.asarray(asc, dtype=np.float64), np.asarray(desc, dtype=np.float64)
    det = ea * ud - ed * ua
    ok = np.abs(det) > 1e-3
    with np.errstate(invalid="ignore", divide="ignore"):
        east = np.where(ok, (a * ud - b * ua) / det, np.nan)
        up = np.where(ok, (ea * b - ed * a) / det, np.nan)
    return up, east


# -------------------------------------------------------------- re-referencing
def rereference(displacement_mm, reference) -> np.ndarray:
    """Refer every series to a stable point or area: subtract its mean series.

    Parameters
    ----------
    displacement_mm : array, shape (k, n)
    reference : array of int or bool, or array of shape (n,) or (m, n)
        Rows of ``displacement_mm`` that are the reference (indices or a mask), or the
        reference series itself (one series, or several to average).

    Returns
    -------
    ndarray, shape (k, n)
    """
    d = np.asarray(displacement_mm, dtype=np.float64)
    ref = np.asarray(reference)
    if ref.dtype == bool:
        if ref.shape != (len(d),):
            raise ValueError(f"reference mask has shape {ref.shape}, expected ({len(d)},)")
        series = d[ref]
    elif np.issubdtype(ref.dtype, np.integer):
        series = d[ref.ravel()]
    else:
        series = np.atleast_2d(ref.astype(np.float64))
        if series.shape[1] != d.shape[1]:
            raise ValueError(f"reference series has {series.shape[1]} epochs, expected "
                             f"{d.shape[1]}")
    if len(series) == 0:
        raise ValueError("empty reference: no point to refer to")
    return d - np.nanmean(series, axis=0)[None, :]


# ------------------------------------------------------------------ the store
def fit_store(store, *, chunk: int = 200_000, workers: int = 1,
              reference_rows: Sequence[int] | np.ndarray | None = None,
              seasonal: bool = True, acceleration: bool = True,
              time_axis: str = "days", min_bic_gain: float = 6.0,
              progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Fit every point of a :class:`~cityos.apps.subsidence.points.PointStore` and write
    the fitted columns into it (``cityos subsidence fit``).

    Parameters
    ----------
    store : PointStore
    chunk : int
        Points per block read from the store.
    workers : int
        Blocks fitted in parallel threads (NumPy releases the GIL in its kernels).
    reference_rows : array of int, optional
        Rows of a stable point or area: their mean series is subtracted first.
    seasonal, acceleration, time_axis, min_bic_gain
        See :func:`fit_series`.
    progress : callable, optional
        Called with the number of points of each block fitted (a
        :meth:`~cityos.core.progress.Progress.advance`).

    Returns
    -------
    dict of str to ndarray
        The columns written (those of :func:`fit_series`, plus
        ``velocity_vertical_mm_yr``: for a LOS product from the incidence angle, absent
        when no point has one).
    """
    n = store.n_points
    dates = store.dates
    wavelength = store.meta.get("wavelength_m")
    ref_series = None
    if reference_rows is not None and len(reference_rows):
        ref_series = store.displacement(np.asarray(reference_rows)).mean(axis=0)
    blocks = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]

    def one(block):
        a, b = block
        d = store.displacement_block(a, b).astype(np.float64)
        if ref_series is not None:
            d -= ref_series[None, :]
        return a, fit_series(dates, d, seasonal=seasonal, acceleration=acceleration,
                             wavelength_m=wavelength, time_axis=time_axis,
                             min_bic_gain=min_bic_gain)

    columns: dict[str, np.ndarray] = {}

    def put(a, res):
        for name, values in res.items():
            if name not in columns:
                columns[name] = np.empty(n, dtype=values.dtype)
            columns[name][a:a + len(values)] = values
        if progress is not None:
            progress(len(res["velocity_mm_yr"]))

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            for a, res in pool.map(one, blocks):
                put(a, res)
    else:
        for block in blocks:
            put(*one(block))
    if not columns:
        columns = {name: np.empty(0) for name in FIT_COLUMNS}
    if store.meta.get("kind", "los") == "los":
        # without any incidence angle the results stay line of sight: no all-NaN column
        if store.has_incidence:
            columns["velocity_vertical_mm_yr"] = los_to_vertical(columns["velocity_mm_yr"],
                                                                 store.incidence_deg)
    elif store.meta.get("kind") == "vertical":
        columns["velocity_vertical_mm_yr"] = columns["velocity_mm_yr"].copy()
    store.write_fit(columns)
    return columns
