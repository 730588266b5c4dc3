"""2D inundation solver: the local inertial formulation of the shallow water equations
on a regular grid (Bates, Horritt and Fewtrell 2010, as in LISFLOOD-FP).

Unit-width discharges ``q`` live on the cell faces, depths ``h`` at the cell centres.
Each step:

1. momentum, every face between two wet-enough cells (Bates et al. 2010, eq. 11, with
   the optional theta-weighting of de Almeida et al. 2012)::

       q' = (q~ - g h_f dt dS/dx) / (1 + g dt n^2 |q| / h_f^(7/3))
       h_f = max(eta_i, eta_j) - max(z_i, z_j),  q~ = theta q + (1 - theta)/2 (q_l + q_r)

   and no flow where ``h_f`` is at or below ``SolverOptions.flow_depth_m``;
2. the outflow of each cell is scaled down where it would take more water than the cell
   holds, so depths never go negative and what leaves one cell enters the next exactly;
3. continuity, then rain, point inflows, infiltration (:mod:`.losses`) and drains, each
   limited by the water there.

The time step is ``cfl * dx / sqrt(g h_max)`` (Bates et al. 2010, eq. 12), capped at
``max_dt_s``. Edges are closed (no flow), open (free outflow at normal depth) or held at
a water level (:class:`WaterLevelBoundary`); NaN cells are walls. Every volume that enters
or leaves is counted, so the balance closes to rounding.

Two engines give the same results: ``"numpy"`` (a plain vectorised reference) and
``"numba"`` (compiled, parallel over rows).

References
----------
Bates, P.D., Horritt, M.S. and Fewtrell, T.J. (2010) A simple inertial formulation of the
shallow water equations for efficient two-dimensional flood inundation modelling.
J. Hydrology 387, 33-45.
de Almeida, G.A.M., Bates, P., Freer, J.E. and Souvignet, M. (2012) Improving the
stability of a simple formulation of the shallow water equations for 2-D flood
modeling. Water Resour. Res. 48, W05528.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numba
import numpy as np

from cityos.apps.floodrisk.losses import NO_LOSS, CurveNumber, GreenAmpt

G = 9.80665
#: Below this many cells the compiled engine runs on one thread.
SERIAL_CELLS = 40_000
EDGES = ("north", "south", "west", "east")
CLOSED, OPEN, LEVEL = 0, 1, 2


# ============================================================================ inputs
@dataclass
class Inflow:
    """A discharge hydrograph entering the grid at a point or along a line of cells.

    Parameters
    ----------
    cells : (k, 2) int ndarray
        Row, column of the cells the discharge enters (shared equally).
    times_s : (m,) ndarray
        Increasing times, seconds from the start.
    discharge_m3_s : (m,) ndarray
        Total discharge over the cells, m3/s, >= 0; linear in time between the points and
        held at the first/last value outside them.
    """

    cells: np.ndarray
    times_s: np.ndarray
    discharge_m3_s: np.ndarray


@dataclass
class WaterLevelBoundary:
    """A water level held along a whole edge (a sea, a river stage), in metres.

    Water flows in or out across the edge by the same momentum equation as inside, with a
    ghost cell beyond the edge at the given level over the edge cell's ground. Linear in
    time between the points, held at the first/last value outside them.
    """

    times_s: np.ndarray
    level_m: np.ndarray


@dataclass
class Domain:
    """The grid: ground, roughness and edges.

    Parameters
    ----------
    elevation : (ny, nx) ndarray
        Ground elevation, m; row 0 is the north edge. NaN cells are walls (no flow).
    cell_size : float
        Cell side, m (square cells).
    manning : float or (ny, nx) ndarray
        Manning's n, s m^-1/3, > 0 on every valid cell.
    boundary : str or dict
        ``"closed"``, ``"open"`` (free outflow at normal depth), or a dict from edge
        (``north``, ``south``, ``west``, ``east``) to one of those or a
        :class:`WaterLevelBoundary`; edges not named are closed.
    """

    elevation: np.ndarray
    cell_size: float
    manning: np.ndarray | float
    boundary: dict[str, str | WaterLevelBoundary] | str = "closed"


@dataclass
class Forcing:
    """What drives the flood: rain with its losses, drains, inflows, an initial state.

    ``rain`` is duck-typed: anything with ``edges_s`` ((n+1,) s) and ``intensity_mm_h``
    ((n,) mm/h), uniform over the grid.
    """

    rain: object | None = None
    losses: GreenAmpt | CurveNumber | None = None
    drain_capacity_mm_h: np.ndarray | float = 0.0
    inflows: list[Inflow] = field(default_factory=list)
    initial_depth: np.ndarray | None = None


@dataclass
class SolverOptions:
    """Run settings.

    Parameters
    ----------
    duration_s : float
        Simulated time, s.
    cfl : float
        Courant number ``alpha`` of the adaptive step, 0-1 (0.7 as LISFLOOD-FP).
    wet_depth_m : float
        Depth at which a cell counts as inundated (time of first inundation; speeds are
        reported where the depth reaches it).
    duration_depth_m : float
        Depth above which the time is summed into ``duration_above_s``.
    engine : str
        ``"numba"`` or ``"numpy"`` (the plain reference).
    theta : float
        de Almeida et al. (2012) weighting, 0-1; 1 is the Bates et al. (2010) scheme.
    flow_depth_m : float
        No flow across a face whose flow depth ``h_f`` is at or below this.
    max_dt_s : float
        Largest step, s (dry or very shallow grids).
    open_slope : float
        Smallest friction slope of the normal-depth outflow at an open edge.
    snapshot_times_s : tuple of float
        Times at which to keep a copy of the depth map (``FloodResult.snapshots``); the
        steps land on them exactly.
    """

    duration_s: float
    cfl: float = 0.7
    wet_depth_m: float = 0.01
    duration_depth_m: float = 0.10
    engine: str = "numba"
    theta: float = 1.0
    flow_depth_m: float = 1e-3
    max_dt_s: float = 10.0
    open_slope: float = 1e-3
    snapshot_times_s: tuple[float, ...] = ()


@dataclass
class VolumeBalance:
    """Where the water went, m3. ``inflow_m3`` holds point inflows and what entered
    across edges; ``outflow_m3`` what left across edges. ``error_m3`` is ``final`` less
    (``initial + rain + inflow - infiltration - drained - outflow``); ``error_share`` is
    it over everything that entered, initial water included."""

    initial_m3: float
    rain_m3: float
    inflow_m3: float
    infiltration_m3: float
    drained_m3: float
    outflow_m3: float
    final_m3: float
    error_m3: float
    error_share: float


@dataclass
class FloodResult:
    """The maps of one event (arrays of the grid's shape) and its volume balance.

    ``first_wet_s`` is NaN where the depth never reached ``wet_depth_m``;
    ``max_speed_m_s`` is the cell-centre speed from the face discharges, where the depth
    reaches ``wet_depth_m``. ``elapsed_s`` is wall-clock time, for benchmarks only.
    ``snapshots`` maps each of ``SolverOptions.snapshot_times_s`` to the depth then.
    """

    max_depth_m: np.ndarray
    max_speed_m_s: np.ndarray
    first_wet_s: np.ndarray
    duration_above_s: np.ndarray
    final_depth_m: np.ndarray
    volume: VolumeBalance
    steps: int
    elapsed_s: float
    snapshots: dict[float, np.ndarray] = field(default_factory=dict)


# ======================================================================= preparation
def _checked_series(times, values, name: str, *, nonnegative: bool) -> tuple[np.ndarray, ...]:
    t = np.asarray(times, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if t.size == 0 or t.size != v.size:
        raise ValueError(f"{name}: times ({t.size}) and values ({v.size}) must be the same, "
                         "non-zero length")
    if not (np.isfinite(t).all() and np.isfinite(v).all()):
        raise ValueError(f"{name}: times and values must be finite")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{name}: times must increase")
    if nonnegative and np.any(v < 0):
        raise ValueError(f"{name}: negative value {v.min():g}")
    return t, v


class _Series:
    """A piecewise-linear series held at its ends, with its exact running integral."""

    def __init__(self, t: np.ndarray, v: np.ndarray):
        self.t, self.v = t, v
        self.cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])

    def at(self, when: float) -> float:
        return float(np.interp(when, self.t, self.v))

    def _integral_from_start(self, x: float) -> float:
        t, v = self.t, self.v
        if x <= t[0]:
            return v[0] * (x - t[0])
        if x >= t[-1]:
            return self.cumulative[-1] + v[-1] * (x - t[-1])
        k = int(np.searchsorted(t, x, side="right")) - 1
        slope = (v[k + 1] - v[k]) / (t[k + 1] - t[k])
        d = x - t[k]
        return self.cumulative[k] + v[k] * d + 0.5 * slope * d * d

    def integral(self, a: float, b: float) -> float:
        """The integral from ``a`` to ``b``."""
        return self._integral_from_start(b) - self._integral_from_start(a)


class _Rain:
    """Cumulative rain depth (m) of a piecewise-constant hyetograph."""

    def __init__(self, hyetograph):
        edges = np.asarray(hyetograph.edges_s, dtype=np.float64).ravel()
        rate = np.asarray(hyetograph.intensity_mm_h, dtype=np.float64).ravel()
        if edges.size != rate.size + 1 or rate.size == 0:
            raise ValueError(f"rain: {edges.size} edges for {rate.size} intensities; "
                             "need one edge more than intensities")
        if not (np.isfinite(edges).all() and np.isfinite(rate).all()):
            raise ValueError("rain: edges and intensities must be finite")
        if np.any(np.diff(edges) <= 0):
            raise ValueError("rain: edges_s must increase")
        if np.any(rate < 0):
            raise ValueError(f"rain: negative intensity {rate.min():g} mm/h")
        self.edges = edges
        self.cumulative = np.concatenate([[0.0], np.cumsum(rate / 3.6e6 * np.diff(edges))])

    def depth(self, a: float, b: float) -> float:
        return float(np.interp(b, self.edges, self.cumulative)
                     - np.interp(a, self.edges, self.cumulative))


@dataclass
class _Setup:
    z: np.ndarray            # ground, 0 on walls
    valid: np.ndarray        # uint8, 1 where a cell holds water
    n: np.ndarray            # Manning's n per cell
    dx: float
    codes: np.ndarray        # (4,) int64 per EDGES
    levels: list             # _Series or None per edge
    rain: _Rain | None
    loss_kind: int
    loss_model: GreenAmpt | CurveNumber | None
    loss_p1: np.ndarray
    loss_p2: np.ndarray
    loss_state: np.ndarray
    drain: np.ndarray        # m/s per cell
    inflows: list            # (rows, cols, _Series)
    h0: np.ndarray


def _prepare(domain: Domain, forcing: Forcing, options: SolverOptions) -> _Setup:
    z = np.asarray(domain.elevation, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 1:
        raise ValueError(f"domain.elevation: need a 2D array, got shape {z.shape}")
    shape = z.shape
    valid = np.isfinite(z)
    if not valid.any():
        raise ValueError("domain.elevation: every cell is NaN")
    dx = float(domain.cell_size)
    if not (math.isfinite(dx) and dx > 0):
        raise ValueError(f"domain.cell_size: {domain.cell_size!r} must be a positive number")
    n = np.asarray(domain.manning, dtype=np.float64)
    if n.ndim not in (0, 2) or (n.ndim == 2 and n.shape != shape):
        raise ValueError(f"domain.manning: shape {n.shape} does not match the grid {shape}")
    n = np.broadcast_to(n, shape).astype(np.float64)
    bad = valid & ~(np.isfinite(n) & (n > 0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"domain.manning: cell ({r}, {c}) is {n[r, c]!r}; it must be > 0")
    n = np.where(valid, n, 1.0)

    spec = domain.boundary
    if isinstance(spec, str):
        spec = dict.fromkeys(EDGES, spec)
    if not isinstance(spec, dict):
        raise ValueError(f"domain.boundary: expected a string or a dict, got {type(spec).__name__}")
    unknown = set(spec) - set(EDGES)
    if unknown:
        raise ValueError(f"domain.boundary: unknown edge(s) {sorted(unknown)}; "
                         f"use {', '.join(EDGES)}")
    codes, levels = np.zeros(4, dtype=np.int64), [None] * 4
    for k, edge in enumerate(EDGES):
        kind = spec.get(edge, "closed")
        if isinstance(kind, WaterLevelBoundary):
            t, v = _checked_series(kind.times_s, kind.level_m, f"domain.boundary.{edge}",
                                   nonnegative=False)
            codes[k], levels[k] = LEVEL, _Series(t, v)
        elif kind in ("closed", "open"):
            codes[k] = CLOSED if kind == "closed" else OPEN
        else:
            raise ValueError(f"domain.boundary.{edge}: {kind!r} is not 'closed', 'open' "
                             "or a WaterLevelBoundary")

    rain = _Rain(forcing.rain) if forcing.rain is not None else None
    losses = forcing.losses
    if losses is None:
        kind, p1, p2, state = NO_LOSS, np.zeros(shape), np.zeros(shape), np.zeros(shape)
    elif isinstance(losses, GreenAmpt | CurveNumber):
        kind = losses.kind
        p1, p2 = losses.parameters(shape)
        state = losses.initial_state(shape)
    else:
        raise ValueError(f"forcing.losses: {type(losses).__name__} is not GreenAmpt or "
                         "CurveNumber")

    drain = np.asarray(forcing.drain_capacity_mm_h, dtype=np.float64)
    if drain.ndim not in (0, 2) or (drain.ndim == 2 and drain.shape != shape):
        raise ValueError(f"forcing.drain_capacity_mm_h: shape {drain.shape} does not match "
                         f"the grid {shape}")
    drain = np.broadcast_to(drain, shape).astype(np.float64)
    if (valid & ~(np.isfinite(drain) & (drain >= 0))).any():
        raise ValueError("forcing.drain_capacity_mm_h: negative or non-finite values")
    drain = np.where(valid, drain / 3.6e6, 0.0)

    inflows = []
    for i, inflow in enumerate(forcing.inflows):
        cells = np.asarray(inflow.cells)
        if cells.ndim != 2 or cells.shape[1] != 2 or len(cells) == 0:
            raise ValueError(f"forcing.inflows[{i}].cells: need a (k, 2) array of row, col")
        rows, cols = cells[:, 0].astype(np.int64), cells[:, 1].astype(np.int64)
        inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
        if not inside.all():
            raise ValueError(f"forcing.inflows[{i}].cells: {cells[~inside][0].tolist()} is "
                             f"outside the grid {shape}")
        if not valid[rows, cols].all():
            raise ValueError(f"forcing.inflows[{i}].cells: a cell is a NaN (wall) cell")
        t, q = _checked_series(inflow.times_s, inflow.discharge_m3_s,
                               f"forcing.inflows[{i}]", nonnegative=True)
        inflows.append((rows, cols, _Series(t, q)))

    if forcing.initial_depth is None:
        h0 = np.zeros(shape)
    else:
        h0 = np.asarray(forcing.initial_depth, dtype=np.float64)
        if h0.shape != shape:
            raise ValueError(f"forcing.initial_depth: shape {h0.shape} does not match the "
                             f"grid {shape}")
        if (valid & ~(np.isfinite(h0) & (h0 >= 0))).any():
            raise ValueError("forcing.initial_depth: negative or non-finite depths")
        h0 = np.where(valid, h0, 0.0)

    if not (math.isfinite(options.duration_s) and options.duration_s > 0):
        raise ValueError(f"options.duration_s: {options.duration_s!r} must be > 0")
    if not 0 < options.cfl <= 1:
        raise ValueError(f"options.cfl: {options.cfl!r} must be in (0, 1]")
    if not 0 <= options.theta <= 1:
        raise ValueError(f"options.theta: {options.theta!r} must be in [0, 1]")
    if options.engine not in ("numba", "numpy"):
        raise ValueError(f"options.engine: {options.engine!r} is not 'numba' or 'numpy'")
    if not options.max_dt_s > 0 or not options.flow_depth_m > 0:
        raise ValueError("options.max_dt_s and options.flow_depth_m must be > 0")
    return _Setup(np.where(valid, z, 0.0), valid.astype(np.uint8), n, dx, codes, levels,
                  rain, kind, losses, p1, p2, state, drain, inflows, h0)


# ======================================================================= the driver
def simulate(domain: Domain, forcing: Forcing, options: SolverOptions) -> FloodResult:
    """Run one flood event.

    Parameters
    ----------
    domain : Domain
        Ground, roughness, edges.
    forcing : Forcing
        Rain and losses, drains, inflows, initial depth.
    options : SolverOptions
        Duration, time-step and output settings, engine.

    Returns
    -------
    FloodResult
        Maximum depth and speed, time of first inundation, duration above a depth,
        final depth and the volume balance.

    Raises
    ------
    ValueError
        An input out of range or of the wrong shape; the message names the field.
    """
    s = _prepare(domain, forcing, options)
    ny, nx = s.z.shape
    h = s.h0.copy()
    qx, qy = np.zeros((ny, nx + 1)), np.zeros((ny + 1, nx))
    qx_new, qy_new = np.zeros_like(qx), np.zeros_like(qy)
    factor = np.ones((ny, nx))
    max_depth, max_speed = h.copy(), np.zeros((ny, nx))
    first_wet = np.where(h >= options.wet_depth_m, 0.0, np.nan)
    duration = np.zeros((ny, nx))
    totals = np.zeros((ny, 6))  # rain, infiltration, drained, edge in, edge out, spare
    step = _step_numba if options.engine == "numba" else _step_numpy
    threads = numba.get_num_threads()
    if options.engine == "numba" and ny * nx < SERIAL_CELLS:
        numba.set_num_threads(1)  # waking threads costs more than a small grid's step
    try:
        return _run(s, options, step, h, qx, qy, qx_new, qy_new, factor, max_depth, max_speed,
                    first_wet, duration, totals)
    finally:
        numba.set_num_threads(threads)


def _run(s, options, step, h, qx, qy, qx_new, qy_new, factor, max_depth, max_speed, first_wet,
         duration, totals) -> FloodResult:
    """The time loop of :func:`simulate`."""
    area = s.dx * s.dx
    initial = float(h.sum() * area)
    inflow_total = 0.0
    edge_ground = [s.z[0][s.valid[0] == 1], s.z[-1][s.valid[-1] == 1],
                   s.z[:, 0][s.valid[:, 0] == 1], s.z[:, -1][s.valid[:, -1] == 1]]
    edge_low = [float(e.min()) if e.size else np.inf for e in edge_ground]
    levels = np.zeros(4)
    hmax = float(h.max())
    pending = sorted(float(v) for v in options.snapshot_times_s
                     if 0 < float(v) <= options.duration_s)
    snapshots: dict[float, np.ndarray] = {}
    wall = s.valid == 0
    t, steps = 0.0, 0
    started = time.perf_counter()
    while t < options.duration_s * (1 - 1e-12):
        depth_scale = hmax
        for k in range(4):
            if s.codes[k] == LEVEL:
                level_depth = max(s.levels[k].at(t), s.levels[k].at(t + options.max_dt_s))
                depth_scale = max(depth_scale, level_depth - edge_low[k])
        dt = options.max_dt_s
        if depth_scale > 0:
            dt = min(dt, options.cfl * s.dx / math.sqrt(G * depth_scale))
        dt = min(dt, options.duration_s - t)
        if pending and t + dt >= pending[0]:
            dt = pending[0] - t
        t_next = t + dt
        for k in range(4):
            if s.codes[k] == LEVEL:
                levels[k] = s.levels[k].at(t + 0.5 * dt)
        rain = s.rain.depth(t, t_next) if s.rain is not None else 0.0
        sources = []
        for rows, cols, series in s.inflows:
            volume = series.integral(t, t_next)
            inflow_total += volume
            sources.append((rows, cols, volume / (len(rows) * area)))
        hmax = step(s, h, qx, qy, qx_new, qy_new, factor, dt, rain, sources, options, levels,
                    max_depth, max_speed, first_wet, duration, t_next, totals)
        t = t_next
        steps += 1
        while pending and t >= pending[0] * (1 - 1e-12):
            snapshots[pending.pop(0)] = np.where(wall, np.nan, h)
    elapsed = time.perf_counter() - started
    rain_v, infiltration, drained, edge_in, edge_out = (float(v) for v in totals.sum(0)[:5])
    rain_v *= area
    infiltration *= area
    drained *= area
    edge_in *= s.dx
    edge_out *= s.dx
    final = float(h.sum() * area)
    inflow_v = inflow_total + edge_in
    error = final - (initial + rain_v + inflow_v - infiltration - drained - edge_out)
    entered = initial + rain_v + inflow_v
    volume = VolumeBalance(initial, rain_v, inflow_v, infiltration, drained, edge_out, final,
                           error, error / entered if entered > 0 else 0.0)
    for array in (max_depth, max_speed, duration, h):
        array[wall] = np.nan
    first_wet[wall] = np.nan
    return FloodResult(max_depth, max_speed, first_wet, duration, h, volume, steps, elapsed,
                       snapshots)


# ================================================================ the NumPy engine
def _inertial(q0, qa, hf, slope, n, dt):
    """Bates et al. (2010) eq. 11 (``qa``: the theta-weighted discharge)."""
    friction = G * dt * n * n * np.abs(q0) / hf ** (7.0 / 3.0)
    return (qa - G * hf * dt * slope) / (1.0 + friction)


def _edge_faces(s: _Setup, h, q_old, k: int, dt: float, level: float, options) -> np.ndarray:
    """Discharges across the faces of edge ``k`` (positive east/south)."""
    if k == 0:     # north: cells row 0, inner row 1, positive flux (south) enters
        cell, inner, sign = np.s_[0, :], np.s_[1, :], 1.0
    elif k == 1:   # south
        cell, inner, sign = np.s_[-1, :], np.s_[-2, :], -1.0
    elif k == 2:   # west
        cell, inner, sign = np.s_[:, 0], np.s_[:, 1], 1.0
    else:          # east
        cell, inner, sign = np.s_[:, -1], np.s_[:, -2], -1.0
    z, hc, valid, n = s.z[cell], h[cell], s.valid[cell] == 1, s.n[cell]
    eta = z + hc
    out = np.zeros_like(hc)
    code = s.codes[k]
    if code == OPEN:
        has_inner = (s.z.shape[0] if k < 2 else s.z.shape[1]) > 1
        slope = np.full_like(hc, options.open_slope)
        if has_inner:
            inner_valid = s.valid[inner] == 1
            surface = (s.z[inner] + h[inner] - eta) / s.dx
            slope = np.where(inner_valid, np.maximum(surface, options.open_slope), slope)
        flowing = valid & (hc > options.flow_depth_m)
        out = np.where(flowing, -sign * hc ** (5.0 / 3.0) * np.sqrt(slope) / n, 0.0)
    elif code == LEVEL:
        hf = np.maximum(level, eta) - z
        flowing = valid & (hf > options.flow_depth_m)
        hf_safe = np.where(flowing, hf, 1.0)
        slope = sign * (eta - level) / s.dx
        out = np.where(flowing, _inertial(q_old, q_old, hf_safe, slope, n, dt), 0.0)
    return out


def _step_numpy(s: _Setup, h, qx, qy, qx_new, qy_new, factor, dt, rain, sources, options,
                levels, max_depth, max_speed, first_wet, duration, t_next, totals) -> float:
    """One step of the scheme, vectorised with NumPy (the reference engine)."""
    z, valid, n, dx, theta = s.z, s.valid == 1, s.n, s.dx, options.theta
    eta = z + h
    ny, nx = h.shape
    # 1. momentum on the interior faces
    for axis, q, q_new in ((1, qx, qx_new), (0, qy, qy_new)):
        lo = np.s_[:, :-1] if axis == 1 else np.s_[:-1, :]
        hi = np.s_[:, 1:] if axis == 1 else np.s_[1:, :]
        inner = np.s_[:, 1:-1] if axis == 1 else np.s_[1:-1, :]
        hf = np.maximum(eta[lo], eta[hi]) - np.maximum(z[lo], z[hi])
        flowing = valid[lo] & valid[hi] & (hf > options.flow_depth_m)
        hf_safe = np.where(flowing, hf, 1.0)
        q0 = q[inner]
        if theta < 1.0:
            before = q[:, :-2] if axis == 1 else q[:-2, :]
            after = q[:, 2:] if axis == 1 else q[2:, :]
            qa = theta * q0 + 0.5 * (1.0 - theta) * (before + after)
        else:
            qa = q0
        slope = (eta[hi] - eta[lo]) / dx
        nf = 0.5 * (n[lo] + n[hi])
        q_new[inner] = np.where(flowing, _inertial(q0, qa, hf_safe, slope, nf, dt), 0.0)
    qy_new[0, :] = _edge_faces(s, h, qy[0, :], 0, dt, levels[0], options)
    qy_new[-1, :] = _edge_faces(s, h, qy[-1, :], 1, dt, levels[1], options)
    qx_new[:, 0] = _edge_faces(s, h, qx[:, 0], 2, dt, levels[2], options)
    qx_new[:, -1] = _edge_faces(s, h, qx[:, -1], 3, dt, levels[3], options)
    # 2. limit each cell's outflow to the water it holds
    out = (np.maximum(-qx_new[:, :-1], 0.0) + np.maximum(qx_new[:, 1:], 0.0)
           + np.maximum(-qy_new[:-1, :], 0.0) + np.maximum(qy_new[1:, :], 0.0))
    demand = out * dt
    limited = demand > h * dx
    factor[...] = np.where(limited, h * dx / np.where(limited, demand, 1.0), 1.0)
    # the donor of each face is upstream; ghost cells beyond the edges are never limited
    fx = np.ones_like(qx_new)
    fx[:, 1:-1] = np.where(qx_new[:, 1:-1] > 0, factor[:, :-1], factor[:, 1:])
    fx[:, 0] = np.where(qx_new[:, 0] < 0, factor[:, 0], 1.0)
    fx[:, -1] = np.where(qx_new[:, -1] > 0, factor[:, -1], 1.0)
    fy = np.ones_like(qy_new)
    fy[1:-1, :] = np.where(qy_new[1:-1, :] > 0, factor[:-1, :], factor[1:, :])
    fy[0, :] = np.where(qy_new[0, :] < 0, factor[0, :], 1.0)
    fy[-1, :] = np.where(qy_new[-1, :] > 0, factor[-1, :], 1.0)
    qx[...] = qx_new * fx
    qy[...] = qy_new * fy
    # 3. continuity and the sources and sinks
    for rows, cols, depth in sources:
        np.add.at(h, (rows, cols), depth)
    h += (qx[:, :-1] - qx[:, 1:] + qy[:-1, :] - qy[1:, :]) * (dt / dx)
    h[~valid] = 0.0
    np.maximum(h, 0.0, out=h)  # removes -0.0 and rounding below zero only
    h += np.where(valid, rain, 0.0)
    infiltration = np.zeros_like(h)
    if s.loss_model is not None:
        infiltration = s.loss_model.loss_m(s.loss_state, h, rain, dt, (s.loss_p1, s.loss_p2))
        infiltration = np.where(valid, infiltration, 0.0)
    h -= infiltration
    drained = np.minimum(s.drain * dt, h)
    h -= drained
    # 4. outputs
    np.maximum(max_depth, h, out=max_depth)
    qxc = 0.5 * (qx[:, :-1] + qx[:, 1:])
    qyc = 0.5 * (qy[:-1, :] + qy[1:, :])
    wet = h >= options.wet_depth_m
    speed = np.where(wet, np.sqrt(qxc * qxc + qyc * qyc) / np.where(wet, h, 1.0), 0.0)
    np.maximum(max_speed, speed, out=max_speed)
    first_wet[wet & np.isnan(first_wet)] = t_next
    duration[h >= options.duration_depth_m] += dt
    totals[0, 0] += rain * float(valid.sum())
    totals[0, 1] += float(infiltration.sum())
    totals[0, 2] += float(drained.sum())
    edges = np.concatenate([qy[0, :], -qy[-1, :], qx[:, 0], -qx[:, -1]])  # + = entering
    totals[0, 3] += float(np.maximum(edges, 0.0).sum()) * dt
    totals[0, 4] += float(np.maximum(-edges, 0.0).sum()) * dt
    return float(h.max())


# ================================================================ the Numba engine
@numba.njit(cache=True, inline="always")
def _nb_inertial(q0, qa, hf, slope, n, dt):
    friction = G * dt * n * n * abs(q0) / hf ** (7.0 / 3.0)
    return (qa - G * hf * dt * slope) / (1.0 + friction)


@numba.njit(cache=True)
def _nb_edge_face(code, level, zc, hc, validc, nc, z_in, h_in, valid_in, has_inner, sign,
                  q_old, dx, dt, flow_depth, open_slope):
    if validc == 0 or code == CLOSED:
        return 0.0
    eta = zc + hc
    if code == OPEN:
        if hc <= flow_depth:
            return 0.0
        slope = open_slope
        if has_inner and valid_in == 1:
            slope = max((z_in + h_in - eta) / dx, open_slope)
        return -sign * hc ** (5.0 / 3.0) * math.sqrt(slope) / nc
    hf = max(level, eta) - zc
    if hf <= flow_depth:
        return 0.0
    return _nb_inertial(q_old, q_old, hf, sign * (eta - level) / dx, nc, dt)


@numba.njit(cache=True, parallel=True)
def _nb_fluxes(z, h, valid, n, qx, qy, qx_new, qy_new, dx, dt, theta, flow_depth, codes,
               levels, open_slope):
    ny, nx = h.shape
    for i in numba.prange(ny):
        for j in range(nx + 1):          # x faces of row i
            if j == 0 or j == nx:
                k = 2 if j == 0 else 3
                c = 0 if j == 0 else nx - 1
                ci = 1 if j == 0 else nx - 2
                has_inner = nx > 1
                ci = ci if has_inner else c
                qx_new[i, j] = _nb_edge_face(
                    codes[k], levels[k], z[i, c], h[i, c], valid[i, c], n[i, c], z[i, ci],
                    h[i, ci], valid[i, ci], has_inner, 1.0 if j == 0 else -1.0, qx[i, j], dx,
                    dt, flow_depth, open_slope)
                continue
            a, b = j - 1, j
            if valid[i, a] == 0 or valid[i, b] == 0:
                qx_new[i, j] = 0.0
                continue
            ea, eb = z[i, a] + h[i, a], z[i, b] + h[i, b]
            hf = max(ea, eb) - max(z[i, a], z[i, b])
            if hf <= flow_depth:
                qx_new[i, j] = 0.0
                continue
            q0 = qx[i, j]
            qa = q0
            if theta < 1.0:
                qa = theta * q0 + 0.5 * (1.0 - theta) * (qx[i, j - 1] + qx[i, j + 1])
            qx_new[i, j] = _nb_inertial(q0, qa, hf, (eb - ea) / dx, 0.5 * (n[i, a] + n[i, b]),
                                        dt)
    for i in numba.prange(ny + 1):
        for j in range(nx):              # y faces above row i
            if i == 0 or i == ny:
                k = 0 if i == 0 else 1
                c = 0 if i == 0 else ny - 1
                ci = 1 if i == 0 else ny - 2
                has_inner = ny > 1
                ci = ci if has_inner else c
                qy_new[i, j] = _nb_edge_face(
                    codes[k], levels[k], z[c, j], h[c, j], valid[c, j], n[c, j], z[ci, j],
                    h[ci, j], valid[ci, j], has_inner, 1.0 if i == 0 else -1.0, qy[i, j], dx,
                    dt, flow_depth, open_slope)
                continue
            a, b = i - 1, i
            if valid[a, j] == 0 or valid[b, j] == 0:
                qy_new[i, j] = 0.0
                continue
            ea, eb = z[a, j] + h[a, j], z[b, j] + h[b, j]
            hf = max(ea, eb) - max(z[a, j], z[b, j])
            if hf <= flow_depth:
                qy_new[i, j] = 0.0
                continue
            q0 = qy[i, j]
            qa = q0
            if theta < 1.0:
                qa = theta * q0 + 0.5 * (1.0 - theta) * (qy[i - 1, j] + qy[i + 1, j])
            qy_new[i, j] = _nb_inertial(q0, qa, hf, (eb - ea) / dx, 0.5 * (n[a, j] + n[b, j]),
                                        dt)


@numba.njit(cache=True, parallel=True)
def _nb_limit(h, qx_new, qy_new, factor, dx, dt):
    ny, nx = h.shape
    for i in numba.prange(ny):
        for j in range(nx):
            out = (max(-qx_new[i, j], 0.0) + max(qx_new[i, j + 1], 0.0)
                   + max(-qy_new[i, j], 0.0) + max(qy_new[i + 1, j], 0.0))
            demand = out * dt
            factor[i, j] = h[i, j] * dx / demand if demand > h[i, j] * dx else 1.0


@numba.njit(cache=True, inline="always")
def _nb_limited(q, f_before, f_after):
    """A face discharge scaled by its donor's factor (before: the west/north cell)."""
    return q * f_before if q > 0 else q * f_after


@numba.njit(cache=True, parallel=True)
def _nb_update(z, valid, h, qx, qy, qx_new, qy_new, factor, dx, dt, rain, loss_kind, p1, p2,
               state, drain, max_depth, max_speed, first_wet, duration, t_next, wet_depth,
               duration_depth, totals, row_hmax):
    ny, nx = h.shape
    for i in numba.prange(ny):
        rain_sum = infil_sum = drain_sum = edge_in = edge_out = 0.0
        hmax = 0.0
        for j in range(nx):
            west = _nb_limited(qx_new[i, j], factor[i, j - 1] if j > 0 else 1.0, factor[i, j])
            east = _nb_limited(qx_new[i, j + 1], factor[i, j],
                               factor[i, j + 1] if j < nx - 1 else 1.0)
            north = _nb_limited(qy_new[i, j], factor[i - 1, j] if i > 0 else 1.0, factor[i, j])
            south = _nb_limited(qy_new[i + 1, j], factor[i, j],
                                factor[i + 1, j] if i < ny - 1 else 1.0)
            qx[i, j] = west
            qy[i, j] = north
            if j == nx - 1:
                qx[i, nx] = east
                edge_in += max(-east, 0.0) * dt
                edge_out += max(east, 0.0) * dt
            if i == ny - 1:
                qy[ny, j] = south
                edge_in += max(-south, 0.0) * dt
                edge_out += max(south, 0.0) * dt
            if j == 0:
                edge_in += max(west, 0.0) * dt
                edge_out += max(-west, 0.0) * dt
            if i == 0:
                edge_in += max(north, 0.0) * dt
                edge_out += max(-north, 0.0) * dt
            if valid[i, j] == 0:
                h[i, j] = 0.0
                continue
            d = h[i, j] + (west - east + north - south) * (dt / dx)
            d = max(d, 0.0)
            d += rain
            rain_sum += rain
            loss = 0.0
            if loss_kind == 1:
                kdt = p1[i, j] * dt
                b = state[i, j] - 0.5 * kdt
                cap = -b + math.sqrt(b * b + 2.0 * kdt * (state[i, j] + p2[i, j]))
                loss = min(cap, d)
                state[i, j] += loss
            elif loss_kind == 2:
                before = state[i, j] - _nb_cn_runoff(state[i, j], p1[i, j], p2[i, j])
                state[i, j] += rain
                after = state[i, j] - _nb_cn_runoff(state[i, j], p1[i, j], p2[i, j])
                loss = min(max(after - before, 0.0), d)
            d -= loss
            infil_sum += loss
            sink = min(drain[i, j] * dt, d)
            d -= sink
            drain_sum += sink
            h[i, j] = d
            if d > max_depth[i, j]:
                max_depth[i, j] = d
            if d >= wet_depth:
                qxc = 0.5 * (west + east)
                qyc = 0.5 * (north + south)
                speed = math.sqrt(qxc * qxc + qyc * qyc) / d
                if speed > max_speed[i, j]:
                    max_speed[i, j] = speed
                if math.isnan(first_wet[i, j]):
                    first_wet[i, j] = t_next
            if d >= duration_depth:
                duration[i, j] += dt
            if d > hmax:
                hmax = d
        totals[i, 0] += rain_sum
        totals[i, 1] += infil_sum
        totals[i, 2] += drain_sum
        totals[i, 3] += edge_in
        totals[i, 4] += edge_out
        row_hmax[i] = hmax


@numba.njit(cache=True, inline="always")
def _nb_cn_runoff(p, s, ia):
    excess = max(p - ia, 0.0)
    denominator = excess + s
    return excess * excess / denominator if denominator > 0.0 else 0.0


def _step_numba(s: _Setup, h, qx, qy, qx_new, qy_new, factor, dt, rain, sources, options,
                levels, max_depth, max_speed, first_wet, duration, t_next, totals) -> float:
    """One step of the scheme with the compiled kernels (same phases as the reference)."""
    _nb_fluxes(s.z, h, s.valid, s.n, qx, qy, qx_new, qy_new, s.dx, dt, options.theta,
               options.flow_depth_m, s.codes, levels, options.open_slope)
    _nb_limit(h, qx_new, qy_new, factor, s.dx, dt)
    for rows, cols, depth in sources:
        np.add.at(h, (rows, cols), depth)
    row_hmax = _row_buffer(h.shape[0])
    _nb_update(s.z, s.valid, h, qx, qy, qx_new, qy_new, factor, s.dx, dt, rain, s.loss_kind,
               s.loss_p1, s.loss_p2, s.loss_state, s.drain, max_depth, max_speed, first_wet,
               duration, t_next, options.wet_depth_m, options.duration_depth_m, totals,
               row_hmax)
    return float(row_hmax.max())


_ROW_BUFFERS: dict[int, np.ndarray] = {}


def _row_buffer(rows: int) -> np.ndarray:
    buffer = _ROW_BUFFERS.get(rows)
    if buffer is None:
        buffer = _ROW_BUFFERS[rows] = np.zeros(rows)
    return buffer
