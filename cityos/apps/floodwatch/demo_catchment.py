"""The demo city's flood-prone catchment as an EPA SWMM 5 model, written from code.

A small low-lying district beside a river: four subcatchments (a hillside, a housing
estate, a school and the market) drain through concrete pipes to the market junction,
the lowest point of the road network, and on into a pumping-station wet well. The river
stands higher than the district's roads (a fixed stage at the outfall), so nothing
leaves by gravity: two identical pumps lift the water from the wet well into a
discharge chamber that spills to the river. When the pumps cannot keep up, the wet well
backs up into the pipes and the road junctions overflow first at the market, then at
the school; those two junctions carry the floodwatch road-depth sensors.

Names used by the demo (SI units, ``CMS`` flow units, elevations in metres):

=================  ===========================================================
``J-market``       road junction at the market, flood sensor (rim 3.0 m)
``J-school``       road junction by the school, flood sensor (rim 3.6 m)
``J-hill``         top of the hillside trunk sewer
``J-housing``      housing-estate junction
``WW-pumps``       pumping-station wet well (storage node, 150 m2, 5.0 m deep,
                   sealed: it surcharges rather than spills)
``J-discharge``    pump discharge chamber above the river
``OF-river``       river outfall, fixed stage :data:`RIVER_STAGE_M`
``P-1``, ``P-2``   duty and standby pumps, wet well -> discharge chamber
``RG-city``        the rain gauge (intensity in mm/h, 5-minute steps)
=================  ===========================================================

As built, the duty pump ``P-1`` runs on its own float switch (on at
:data:`FLOAT_ON_M`, off at :data:`FLOAT_OFF_M` of wet-well depth) and the standby pump
``P-2`` waits for someone to start it: that is the "uncontrolled" station the
evaluation compares controllers against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

__all__ = [
    "FLOAT_OFF_M",
    "FLOAT_ON_M",
    "PUMPS",
    "PUMP_DESIGN_FLOW_M3_PER_S",
    "RAIN_GAUGE",
    "RIVER_STAGE_M",
    "SENSOR_NODES",
    "SEWER_INLET_M",
    "SIM_START",
    "WET_WELL",
    "WET_WELL_AREA_M2",
    "WET_WELL_DEPTH_M",
    "DesignStorm",
    "NodeGeometry",
    "calibration_storm",
    "demo_catchment_inp",
    "design_storm",
    "node_geometry",
    "write_demo_catchment",
]

#: Road junctions that carry a floodwatch flood-depth sensor.
SENSOR_NODES = ("J-market", "J-school")
WET_WELL = "WW-pumps"
PUMPS = ("P-1", "P-2")
RAIN_GAUGE = "RG-city"
#: River level at the outfall (m above datum): above every road rim, so no gravity outlet.
RIVER_STAGE_M = 4.2
#: Wet-well plan area (m2) and depth (m); its floor is at -2.0 m, its top at 3.0 m.
WET_WELL_AREA_M2 = 150.0
WET_WELL_DEPTH_M = 5.0
#: Height of the incoming sewer's invert above the wet-well floor (m): above it the
#: sewer backs up.
SEWER_INLET_M = 2.0
#: The duty pump's own float switch (wet-well depth, m), the only control as built.
FLOAT_ON_M = 1.5
FLOAT_OFF_M = 0.5
#: Simulation start: the SWMM clock is naive, read as UTC.
SIM_START = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
_STEP_S = 300  # rain-gauge recording interval

# name: (invert elevation m, max depth m); rims are invert + max depth.
_JUNCTIONS = {
    "J-hill": (4.6, 2.0),
    "J-housing": (3.4, 1.8),
    "J-school": (2.0, 1.6),
    "J-market": (1.4, 1.6),
    "J-discharge": (4.0, 2.5),
}
_WET_WELL_INVERT_M = -2.0
_WET_WELL_SURCHARGE_M = 3.0  # sealed lid: the well pressurises rather than spills
_OUTFALL_INVERT_M = 3.2

# name: (outlet, area ha, % impervious, width m, % slope)
_SUBCATCHMENTS = {
    "S-hillside": ("J-hill", 10.0, 45.0, 330.0, 3.0),
    "S-housing": ("J-housing", 8.5, 70.0, 300.0, 1.5),
    "S-school": ("J-school", 5.0, 65.0, 200.0, 1.0),
    "S-market": ("J-market", 6.0, 90.0, 260.0, 0.8),
}

# name: (from, to, length m, Manning n, in offset m, out offset m, diameter m)
_CONDUITS = {
    "C-hill": ("J-hill", "J-market", 420.0, 0.013, 0.0, 0.0, 0.9),
    "C-housing": ("J-housing", "J-school", 300.0, 0.013, 0.0, 0.0, 0.9),
    "C-school": ("J-school", "J-market", 260.0, 0.013, 0.0, 0.0, 1.05),
    "C-market": ("J-market", WET_WELL, 120.0, 0.013, 0.0, SEWER_INLET_M, 1.35),
    "C-discharge": ("J-discharge", "OF-river", 40.0, 0.013, 0.0, 0.0, 1.2),
}

# Head (m) against flow (m3/s) of one pump: about 0.7 m3/s at the station's usual lift.
_PUMP_CURVE = ((1.0, 0.80), (3.0, 0.76), (5.0, 0.70), (7.0, 0.60), (9.0, 0.42), (11.0, 0.15))
#: One pump's flow (m3/s) at the design lift: from half the sewer-inlet height in the
#: wet well up to the river.
PUMP_DESIGN_FLOW_M3_PER_S = float(np.interp(
    RIVER_STAGE_M - (_WET_WELL_INVERT_M + SEWER_INLET_M / 2), *zip(*_PUMP_CURVE, strict=True)))


@dataclass(frozen=True)
class NodeGeometry:
    """Invert elevation and depth of one node of the demo model (metres)."""

    name: str
    invert_m: float
    max_depth_m: float

    @property
    def rim_m(self) -> float:
        """Elevation at which the node overflows onto the street."""
        return self.invert_m + self.max_depth_m


def node_geometry() -> dict[str, NodeGeometry]:
    """Invert and depth of every junction and of the wet well, as written to the model."""
    out = {n: NodeGeometry(n, inv, d) for n, (inv, d) in _JUNCTIONS.items()}
    out[WET_WELL] = NodeGeometry(WET_WELL, _WET_WELL_INVERT_M, WET_WELL_DEPTH_M)
    return out


@dataclass(frozen=True)
class DesignStorm:
    """A rain-gauge series: intensity (mm/h) held over each interval from its start.

    Parameters
    ----------
    start_s : numpy.ndarray
        Start of each interval, seconds after the simulation start.
    intensity_mm_per_h : numpy.ndarray
        Rain intensity over the interval, mm/h.
    name : str
        Time-series name written to the model.
    """

    start_s: np.ndarray
    intensity_mm_per_h: np.ndarray
    name: str = "storm"

    def __post_init__(self) -> None:
        start = np.asarray(self.start_s, dtype=np.float64)
        rain = np.asarray(self.intensity_mm_per_h, dtype=np.float64)
        if start.ndim != 1 or start.shape != rain.shape or start.size == 0:
            raise ValueError("start_s and intensity_mm_per_h must be 1-d arrays of one length")
        if np.any(np.diff(start) <= 0):
            raise ValueError("start_s must increase strictly")
        if np.any(~np.isfinite(rain)) or np.any(rain < 0):
            raise ValueError("intensity_mm_per_h must be finite and >= 0")
        object.__setattr__(self, "start_s", start)
        object.__setattr__(self, "intensity_mm_per_h", rain)

    @property
    def depth_mm(self) -> float:
        """Total rain depth (mm), the last interval lasting as long as the one before."""
        widths = np.diff(self.start_s, append=self.start_s[-1] + _STEP_S)
        return float(np.sum(self.intensity_mm_per_h * widths) / 3600.0)


def design_storm(peak_mm_per_h: float = 60.0) -> DesignStorm:
    """A tropical convective storm: drizzle, a one-hour burst peaking at ``peak_mm_per_h``.

    Thirty minutes of light rain (8 % of the peak) wet the catchment and start filling
    the wet well, then a one-hour triangular burst rises to the peak in 25 minutes and
    decays, then an hour of trailing rain at 10 % of the peak. Five-minute steps.

    Parameters
    ----------
    peak_mm_per_h : float
        Peak five-minute intensity, mm/h.

    Returns
    -------
    DesignStorm
    """
    if not np.isfinite(peak_mm_per_h) or peak_mm_per_h <= 0:
        raise ValueError("peak_mm_per_h must be positive")
    lead = np.full(6, 0.08)
    rise = np.linspace(0.15, 1.0, 5)
    fall = np.linspace(0.85, 0.15, 7)
    tail = np.full(12, 0.10)
    shape = np.concatenate([[0.0], lead, rise, fall, tail, [0.0]])
    start = _STEP_S * np.arange(shape.size, dtype=np.float64)
    return DesignStorm(start, peak_mm_per_h * shape, name="storm")


def calibration_storm() -> DesignStorm:
    """Two blocks of rain (25 and 40 mm/h) an hour apart: the forecaster's calibration storm.

    Returns
    -------
    DesignStorm
    """
    shape = np.concatenate([[0.0], np.full(6, 25.0), np.zeros(12), np.full(4, 40.0), [0.0]])
    start = _STEP_S * np.arange(shape.size, dtype=np.float64)
    return DesignStorm(start, shape, name="storm")



def _hhmm(seconds: float) -> str:
    minutes = int(round(seconds / 60.0))
    return f"{minutes // 60}:{minutes % 60:02d}"


def demo_catchment_inp(storm: DesignStorm | None = None, *, duration_h: float = 6.0) -> str:
    """The demo catchment as SWMM 5 input-file text.

    Parameters
    ----------
    storm : DesignStorm, optional
        Rain at the gauge; :func:`design_storm` by default.
    duration_h : float
        Simulated duration, hours (the routing runs on after the rain stops).

    Returns
    -------
    str
        The ``.inp`` text.
    """
    storm = design_storm() if storm is None else storm
    if not np.isfinite(duration_h) or duration_h <= 0 or duration_h > 48:
        raise ValueError("duration_h must be in (0, 48]")
    end = SIM_START + timedelta(hours=duration_h)
    d0, d1 = SIM_START.strftime("%m/%d/%Y"), end.strftime("%m/%d/%Y")
    lines = [
        "[TITLE]",
        "CityOS demo catchment: market district pumping station",
        "",
        "[OPTIONS]",
        "FLOW_UNITS           CMS",
        "INFILTRATION         HORTON",
        "FLOW_ROUTING         DYNWAVE",
        "LINK_OFFSETS         DEPTH",
        "MIN_SLOPE            0",
        "ALLOW_PONDING        NO",
        "SKIP_STEADY_STATE    NO",
        f"START_DATE           {d0}",
        "START_TIME           00:00:00",
        f"REPORT_START_DATE    {d0}",
        "REPORT_START_TIME    00:00:00",
        f"END_DATE             {d1}",
        f"END_TIME             {end.strftime('%H:%M:%S')}",
        "SWEEP_START          01/01",
        "SWEEP_END            12/31",
        "DRY_DAYS             0",
        "REPORT_STEP          00:05:00",
        "WET_STEP             00:01:00",
        "DRY_STEP             00:05:00",
        "ROUTING_STEP         0:00:05",
        "INERTIAL_DAMPING     PARTIAL",
        "NORMAL_FLOW_LIMITED  BOTH",
        "FORCE_MAIN_EQUATION  H-W",
        "VARIABLE_STEP        0.75",
        "LENGTHENING_STEP     0",
        "MIN_SURFAREA         1.167",
        "MAX_TRIALS           8",
        "HEAD_TOLERANCE       0.0015",
        "MINIMUM_STEP         0.5",
        "THREADS              1",
        "",
        "[EVAPORATION]",
        "CONSTANT         0.0",
        "DRY_ONLY         NO",
        "",
        "[RAINGAGES]",
        ";;Name  Format  Interval  SCF  Source",
        f"{RAIN_GAUGE}  INTENSITY  {_hhmm(_STEP_S)}  1.0  TIMESERIES  {storm.name}",
        "",
        "[SUBCATCHMENTS]",
        ";;Name  RainGage  Outlet  Area  %Imperv  Width  %Slope  CurbLen",
    ]
    for name, (outlet, area, imperv, width, slope) in _SUBCATCHMENTS.items():
        lines.append(f"{name}  {RAIN_GAUGE}  {outlet}  {area}  {imperv}  {width}  {slope}  0")
    lines += ["", "[SUBAREAS]", ";;Name  N-Imperv  N-Perv  S-Imperv  S-Perv  PctZero  RouteTo"]
    for name in _SUBCATCHMENTS:
        lines.append(f"{name}  0.012  0.10  1.5  5.0  25  OUTLET")
    lines += ["", "[INFILTRATION]", ";;Name  MaxRate  MinRate  Decay  DryTime  MaxInfil"]
    for name in _SUBCATCHMENTS:
        lines.append(f"{name}  75.0  6.0  4.0  7  0")
    lines += ["", "[JUNCTIONS]", ";;Name  Elevation  MaxDepth  InitDepth  SurDepth  Aponded"]
    for name, (invert, depth) in _JUNCTIONS.items():
        lines.append(f"{name}  {invert}  {depth}  0  0  0")
    lines += [
        "",
        "[OUTFALLS]",
        ";;Name  Elevation  Type  Stage  Gated",
        f"OF-river  {_OUTFALL_INVERT_M}  FIXED  {RIVER_STAGE_M}  NO",
        "",
        "[STORAGE]",
        ";;Name  Elev  MaxDepth  InitDepth  Shape  A  B  C  SurDepth  Fevap",
        f"{WET_WELL}  {_WET_WELL_INVERT_M}  {WET_WELL_DEPTH_M}  0.2  FUNCTIONAL  "
        f"{WET_WELL_AREA_M2}  0  0  {_WET_WELL_SURCHARGE_M}  0",
        "",
        "[CONDUITS]",
        ";;Name  From  To  Length  Roughness  InOffset  OutOffset  InitFlow  MaxFlow",
    ]
    for name, (a, b, length, n, off_in, off_out, _) in _CONDUITS.items():
        lines.append(f"{name}  {a}  {b}  {length}  {n}  {off_in}  {off_out}  0  0")
    lines += ["", "[PUMPS]", ";;Name  From  To  Curve  Status  Startup  Shutoff"]
    lines.append(f"{PUMPS[0]}  {WET_WELL}  J-discharge  lift-curve  OFF  {FLOAT_ON_M}  {FLOAT_OFF_M}")
    lines.append(f"{PUMPS[1]}  {WET_WELL}  J-discharge  lift-curve  OFF  0  0")
    lines += ["", "[XSECTIONS]", ";;Link  Shape  Geom1  Geom2  Geom3  Geom4  Barrels"]
    for name, (*_, diameter) in _CONDUITS.items():
        lines.append(f"{name}  CIRCULAR  {diameter}  0  0  0  1")
    lines += ["", "[CURVES]", ";;Name  Type  Head  Flow"]
    for i, (head, flow) in enumerate(_PUMP_CURVE):
        lines.append(f"lift-curve  {'Pump3' if i == 0 else ''}  {head}  {flow}")
    lines += ["", "[TIMESERIES]", ";;Name  Time  Value"]
    for start, rain in zip(storm.start_s, storm.intensity_mm_per_h, strict=True):
        lines.append(f"{storm.name}  {_hhmm(start)}  {rain:.3f}")
    lines += ["", "[REPORT]", "INPUT NO", "CONTROLS NO", "NODES ALL", "LINKS ALL", ""]
    return "\n".join(lines)


def write_demo_catchment(
    path: str | Path, storm: DesignStorm | None = None, *, duration_h: float = 6.0
) -> Path:
    """Write the demo catchment's ``.inp`` file and return its path.

    Parameters
    ----------
    path : str or Path
        Where to write; the folder must exist.
    storm : DesignStorm, optional
        Rain at the gauge; :func:`design_storm` by default.
    duration_h : float
        Simulated duration, hours.

    Returns
    -------
    Path
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: folder {path.parent} does not exist")
    path.write_text(demo_catchment_inp(storm, duration_h=duration_h))
    return path
