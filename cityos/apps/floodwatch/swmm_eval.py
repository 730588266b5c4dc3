"""Pump control evaluated on EPA SWMM models: pystorms' ``beta`` and the demo catchment.

Each strategy (``uncontrolled``, ``rule``, ``predictive``) runs in its own worker
process: SWMM keeps its state in globals, so pyswmm allows one simulation per process,
and pystorms does not release that lock when a scenario ends. The workers also cap
OpenMP at one thread (``OMP_THREAD_LIMIT``): SWMM's threads spin while they wait, which
on a busy host made a run ten times slower without changing a number of the results.

pystorms ``beta`` (Sadler et al. 2020's tidal storm-water network, Norfolk, Virginia;
US units: feet, cfs) has three actuators, set each routing step by ``env.step``:

* ``R2``, the outlet orifice of storage unit ``ST2`` (setting = fraction open);
* ``P0``, a pump lifting junction ``J56`` into ``J55`` beside a gravity pipe. Its
  curve is a volume curve (``Pump1``) on a junction: 7.2 cfs while ``J56`` holds
  under 11 ft3, nothing above 24 ft3 (about 1.9 ft deep). The model's float switch
  (start at 1 ft, stop at 0.5 ft of ``J56``) is re-applied by SWMM every step
  underneath any setting, like a hard-wired float: a 0 setting holds only while
  ``J56`` is below 1 ft;
* ``W0``, a transverse weir ``J205 -> J33`` just upstream of the tidal, flap-gated
  outfall (setting = fraction of the opening).

Its performance metric sums, over every routing step and 12 sensitive junctions, the
flooding rate times the step (cfs x s x 7.48 gal/ft3): the flooded volume in gallons.
Uncontrolled (``step(None)``, the model's own settings) it is 2,581,865 gallons, half
of it at ``J33`` when the storm peak meets high tide and the gated outfall cannot
discharge; about 0.6 million gallons flood upstream of ``ST2`` (``J4``, ``J8``,
``J102``) before any actuator has water to act on. The controllers are grounded in
the network's own numbers, read from the scenario's ``.inp`` (see
:func:`beta_rules`); the fractions were set once, from the geometry, not tuned
against the metric:

* ``R2`` throttles ``ST2``'s outlet (setting 0) when the first sensitive junction
  below it, ``J64``, is above 90 % of its depth, reopening below 75 %; it gives way
  (reopens) when ``ST2`` passes 80 % of its depth, so that the hold-back does not
  flood the sensitive junctions upstream of the basin (``J13``, ``J98``: closing it
  without that interlock moved 0.6 million gallons there).
* ``P0`` starts and stops at the model's own float levels, with 10-minute minimum on
  and off times and at most four starts an hour, and a downstream interlock: it is
  stopped while ``J33`` is above 90 % of its depth (pumping into a full junction at
  a closed tide gate only floods it).
* ``W0`` is left open: a rule closing it while ``J33`` was full cut ``J33``'s
  flooding to 4 % but doubled the total, the trunk sewer upstream having nowhere to go.

Measured (pystorms 1.0, pyswmm 2.2): rule 2,471,506 gallons (-4.3 %), predictive
2,394,934 (-7.2 %). The predictive mode adds a level-trend forecast to ``P0``'s
trigger, which started it 14 minutes earlier; the runs then diverge, and most of the
predictive's further gain is at ``J145``/``J146``, where SWMM's flooding comes in
short spikes, so it should not be read as a robust margin over the rule. Started
early on a trend, the ``R2`` hold-back used the basin before the peak and did worse
than the plain rule, so ``R2`` stays rule-based in both modes. A run takes about
80,000 routing steps, 25-30 s of one core.

The demo catchment (:mod:`cityos.apps.floodwatch.demo_catchment`) is evaluated on the
flooded volume (m3) and the flood duration (min) at its two sensor junctions, both
SWMM's own node statistics; its predictive mode forecasts the wet-well level from the
design storm's next 30 minutes of rain through a linear reservoir calibrated on a
separate storm. Measured with the 60 mm/h design storm: 2,228 m3 flooded as built
(one pump on its float), 465 m3 under the level rules, 310 m3 predictive, whose
pumps were both running 16 minutes before the rule started the first.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from cityos.apps.floodwatch import demo_catchment as demo
from cityos.apps.floodwatch.pump_control import (
    LevelTrendForecaster,
    PredictiveController,
    PumpRule,
    RainInflowForecaster,
    RuleController,
    SwitchDecision,
    fit_linear_reservoir,
)

__all__ = [
    "BETA_SENSITIVE_NODES",
    "STRATEGIES",
    "BetaEvaluation",
    "BetaStrategyResult",
    "DemoEvaluation",
    "DemoStrategyResult",
    "SwmmEvaluationError",
    "beta_rules",
    "calibrate_demo_reservoir",
    "demo_rules",
    "evaluate_demo_catchment",
    "evaluate_pystorms_beta",
    "read_inp_sections",
]

STRATEGIES = ("uncontrolled", "rule", "predictive")
#: The junctions pystorms' beta metric counts (its ``performance_targets``).
BETA_SENSITIVE_NODES = (
    "J4", "J8", "J13", "J33", "J53", "J54", "J64", "J65", "J98", "J102", "J145", "J146",
)
GALLONS_PER_FT3 = 7.48  # pystorms' own factor
M3_PER_GALLON = 0.003785411784
PUMPED_SIGNAL = "pumped_m3_per_s"  # the demo station's metered outflow, for its forecaster
CONTROL_STEP_S = 60.0  # the controllers are polled once a simulated minute, like SCADA


class SwmmEvaluationError(ValueError):
    """Bad evaluation input; the message names the field."""


# -- reading a SWMM input file ------------------------------------------------------------
def read_inp_sections(path: str | Path) -> dict[str, list[list[str]]]:
    """Rows of every section of a SWMM ``.inp`` file, comments dropped.

    Parameters
    ----------
    path : str or Path
        The input file.

    Returns
    -------
    dict of str to list of list of str
        Upper-case section name (without brackets) to its whitespace-split rows.
    """
    sections: dict[str, list[list[str]]] = {}
    current = None
    for line in Path(path).read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].upper(), [])
        elif current is not None:
            current.append(line.split())
    return sections


def _node_depths(sections: Mapping[str, list[list[str]]]) -> dict[str, float]:
    """Maximum depth of every junction and storage node."""
    out = {}
    for name in ("JUNCTIONS", "STORAGE"):
        for row in sections.get(name, []):
            out[row[0]] = float(row[2])
    return out


def _pump_floats(sections: Mapping[str, list[list[str]]]) -> dict[str, tuple[str, float, float]]:
    """Inlet node, start depth and stop depth of every pump."""
    return {row[0]: (row[1], float(row[5]), float(row[6]))
            for row in sections.get("PUMPS", []) if len(row) >= 7}


# -- pystorms beta ---------------------------------------------------------------------------
def beta_rules(inp_path: str | Path) -> tuple[PumpRule, ...]:
    """Rules for beta's ``R2`` orifice and ``P0`` pump, from the network's own numbers.

    Parameters
    ----------
    inp_path : str or Path
        The scenario's ``.inp`` (``pystorms.scenarios.beta().config["swmm_input"]``).

    Returns
    -------
    tuple of PumpRule
        ``R2`` then ``P0``; depths in feet.
    """
    sections = read_inp_sections(inp_path)
    depth = _node_depths(sections)
    floats = _pump_floats(sections)
    missing = [n for n in ("J33", "J64", "ST2") if n not in depth] + (
        [] if "P0" in floats else ["P0"])
    if missing:
        raise SwmmEvaluationError(f"inp_path: {inp_path} lacks {missing}; is it beta?")
    inlet, start, stop = floats["P0"]
    return (
        PumpRule("R2", trigger="J64", on_level=0.9 * depth["J64"], off_level=0.75 * depth["J64"],
                 min_on_s=900.0, min_off_s=900.0, on_setting=0.0, off_setting=1.0,
                 inhibit="ST2", inhibit_level=0.8 * depth["ST2"]),
        PumpRule("P0", trigger=inlet, on_level=start, off_level=stop,
                 min_on_s=600.0, min_off_s=600.0, max_starts_per_hour=4,
                 inhibit="J33", inhibit_level=0.9 * depth["J33"]),
    )


def _beta_controller(strategy: str, inp_path: str) -> RuleController | None:
    if strategy == "uncontrolled":
        return None
    rules = beta_rules(inp_path)
    if strategy == "rule":
        return RuleController(rules)
    p0 = next(r for r in rules if r.pump == "P0")
    return PredictiveController(rules, {p0.trigger: LevelTrendForecaster(p0.trigger)})


@dataclass(frozen=True)
class BetaStrategyResult:
    """One strategy's run of pystorms beta.

    Attributes
    ----------
    strategy : str
        ``uncontrolled``, ``rule`` or ``predictive``.
    performance : float
        ``scenario.performance()``: flooded volume at the sensitive nodes, gallons.
    flooding_gal : dict of str to float
        The same metric node by node (it sums to ``performance``).
    switches : int
        Actuator switches the controller decided (0 uncontrolled).
    routing_steps : int
        SWMM routing steps taken.
    run_time_s : float
        Wall-clock time of the run.
    decisions : tuple of SwitchDecision
        The controller's switching record.
    """

    strategy: str
    performance: float
    flooding_gal: dict[str, float]
    switches: int
    routing_steps: int
    run_time_s: float
    decisions: tuple[SwitchDecision, ...] = ()


def _beta_flooding_by_node(data_log: Mapping, start: datetime) -> dict[str, float]:
    """Split pystorms' metric by node, replaying its step arithmetic exactly."""
    times = data_log["simulation_time"]
    # beta.step measures a step against the previous logged time, except that for the
    # first two steps it measures from the start (its ``len(...) > 1`` test).
    previous = [start, start] + list(times[1:-1])
    dt = np.array([(a - b).total_seconds() for a, b in zip(times, previous, strict=True)])
    out = {}
    for node, rates in data_log["flooding"].items():
        rates = np.asarray(rates, dtype=np.float64)
        out[node] = float(np.sum(np.where(rates > 0.0, rates * dt * GALLONS_PER_FT3, 0.0)))
    return out


def _run_beta(strategy: str, control_step_s: float) -> BetaStrategyResult:
    import pystorms  # here: the worker caps OpenMP before SWMM's library is loaded

    began = time.perf_counter()
    scenario = pystorms.scenarios.beta()
    controller = _beta_controller(strategy, scenario.config["swmm_input"])
    env = scenario.env
    start = env.sim.start_time
    action_space = list(scenario.config["action_space"])
    # Actuators without a rule keep the model's initial setting (R2 and W0 open).
    fixed = {name: 1.0 for name in action_space}
    depth = env.methods["depthN"]
    actions = None
    next_poll = -math.inf
    steps = 0
    done = False
    while not done:
        if controller is not None:
            times = scenario.data_log["simulation_time"]
            t = (times[-1] if times else start).replace(tzinfo=UTC).timestamp()
            if t >= next_poll:
                next_poll = t + control_step_s
                settings = controller.update(t, {s: depth(s) for s in controller.signals})
                actions = np.array([settings.get(a, fixed[a]) for a in action_space])
        done = scenario.step(actions)
        steps += 1
    decisions = tuple(controller.decisions) if controller is not None else ()
    return BetaStrategyResult(
        strategy=strategy,
        performance=float(scenario.performance()),
        flooding_gal=_beta_flooding_by_node(scenario.data_log, start),
        switches=len(decisions),
        routing_steps=steps,
        run_time_s=time.perf_counter() - began,
        decisions=decisions,
    )


@dataclass(frozen=True)
class BetaEvaluation:
    """Uncontrolled, rule-based and predictive control of pystorms beta, side by side."""

    results: tuple[BetaStrategyResult, ...]

    def result(self, strategy: str) -> BetaStrategyResult:
        """The result of one strategy."""
        for r in self.results:
            if r.strategy == strategy:
                return r
        raise SwmmEvaluationError(f"strategy: {strategy!r} was not evaluated")

    def table(self) -> str:
        """Plain-text table: the metric, its change, and the flooding per sensitive node."""
        base = next((r.performance for r in self.results if r.strategy == "uncontrolled"), None)
        nodes = [n for n in BETA_SENSITIVE_NODES
                 if any(r.flooding_gal.get(n, 0.0) > 0.5 for r in self.results)]
        head = f"{'strategy':<13}{'metric (gal)':>14}{'vs uncontr.':>12}{'flood m3':>10}"
        head += f"{'switches':>9}{'run s':>7}  " + "".join(f"{n:>9}" for n in nodes)
        lines = ["pystorms beta: flooding at the 12 sensitive nodes (scenario.performance())",
                 head, "-" * len(head)]
        for r in self.results:
            change = "" if not base else f"{100.0 * (r.performance / base - 1.0):+.1f} %"
            row = (f"{r.strategy:<13}{r.performance:>14,.0f}{change:>12}"
                   f"{r.performance * M3_PER_GALLON:>10,.0f}{r.switches:>9d}"
                   f"{r.run_time_s:>7.1f}  ")
            row += "".join(f"{r.flooding_gal.get(n, 0.0) / 1e3:>8.0f}k" for n in nodes)
            lines.append(row)
        lines.append("per-node columns: flooded volume in thousands of gallons")
        return "\n".join(lines)


def _limit_openmp(threads: int) -> None:
    os.environ["OMP_THREAD_LIMIT"] = str(threads)


def _pool(workers: int, threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_limit_openmp,
        initargs=(threads,), max_tasks_per_child=1,
    )


def _check_strategies(strategies: Sequence[str]) -> tuple[str, ...]:
    strategies = tuple(strategies)
    bad = [s for s in strategies if s not in STRATEGIES]
    if not strategies or bad or len(set(strategies)) != len(strategies):
        raise SwmmEvaluationError(f"strategies: expected distinct names from {STRATEGIES}, "
                                  f"got {strategies}")
    return strategies


def _check_run_args(control_step_s: float, workers: int | None, n: int) -> int:
    if not isinstance(control_step_s, int | float) or not math.isfinite(control_step_s) \
            or control_step_s <= 0:
        raise SwmmEvaluationError("control_step_s must be a positive number of seconds")
    if workers is None:
        return n
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SwmmEvaluationError("workers must be a positive integer")
    return workers


def evaluate_pystorms_beta(
    strategies: Sequence[str] = STRATEGIES, *, control_step_s: float = CONTROL_STEP_S,
    workers: int | None = None, swmm_threads: int = 1,
) -> BetaEvaluation:
    """Run pystorms' ``beta`` scenario under each strategy and score it with its metric.

    Parameters
    ----------
    strategies : sequence of str
        Any of ``uncontrolled``, ``rule``, ``predictive``.
    control_step_s : float
        How often the controller is polled (simulated seconds); between polls the
        actions are held and ``env.step`` applies them at every routing step.
    workers : int, optional
        Worker processes (one per strategy by default).
    swmm_threads : int
        OpenMP threads per SWMM run.

    Returns
    -------
    BetaEvaluation
    """
    strategies = _check_strategies(strategies)
    workers = _check_run_args(control_step_s, workers, len(strategies))
    with _pool(workers, swmm_threads) as pool:
        futures = [pool.submit(_run_beta, s, float(control_step_s)) for s in strategies]
        return BetaEvaluation(tuple(f.result() for f in futures))


# -- the demo catchment ------------------------------------------------------------------------
def demo_rules() -> tuple[PumpRule, ...]:
    """Duty/standby rules of the demo station, from its wet-well geometry.

    The incoming sewer enters the 5 m wet well 2.0 m above the floor; both pumps
    should be running before the level reaches that invert and backs up the sewer.
    The duty pump ``P-1`` starts at 1.2 m and stops at 0.6 m (inside the as-built
    float's 1.5 / 0.5 m band, which stays wired as a backstop), the standby ``P-2``
    starts at 1.8 m and stops at 1.0 m. Five-minute minimum on and off times, at most
    six starts an hour, a usual limit for pumps of this size. In predictive mode a
    forecast of the level reaching the sewer invert within 30 minutes starts them
    early; the ordinary refilling between cycles does not.

    Returns
    -------
    tuple of PumpRule
    """
    inlet = demo.SEWER_INLET_M
    common = {"min_on_s": 300.0, "min_off_s": 300.0, "max_starts_per_hour": 6,
              "early_level": inlet}
    return (
        PumpRule("P-1", trigger=demo.WET_WELL, on_level=0.6 * inlet, off_level=0.3 * inlet,
                 **common),
        PumpRule("P-2", trigger=demo.WET_WELL, on_level=0.9 * inlet, off_level=0.5 * inlet,
                 **common),
    )


@dataclass(frozen=True)
class DemoStrategyResult:
    """One strategy's run of the demo catchment.

    Attributes
    ----------
    strategy : str
        ``uncontrolled``, ``rule`` or ``predictive``.
    flooded_m3 : dict of str to float
        Flooded volume at each sensor node, m3 (SWMM node statistics).
    flood_duration_min : dict of str to float
        Time each sensor node was overflowing, minutes.
    peak_wet_well_m : float
        Highest wet-well depth, m.
    pump_starts : dict of str to int
        Starts of each pump as SWMM counted them.
    run_time_s : float
        Wall-clock time of the run.
    decisions : tuple of SwitchDecision
        The controller's switching record.
    """

    strategy: str
    flooded_m3: dict[str, float]
    flood_duration_min: dict[str, float]
    peak_wet_well_m: float
    pump_starts: dict[str, int]
    run_time_s: float
    decisions: tuple[SwitchDecision, ...] = ()

    @property
    def total_flooded_m3(self) -> float:
        """Flooded volume summed over the sensor nodes, m3."""
        return float(sum(self.flooded_m3.values()))


def _epoch(elapsed_s: float) -> float:
    return demo.SIM_START.timestamp() + elapsed_s


def _storm_epoch(storm: demo.DesignStorm) -> tuple[np.ndarray, np.ndarray]:
    return _epoch(0.0) + storm.start_s, storm.intensity_mm_per_h


def _simulate_demo(
    inp_path: str, controller: RuleController | None, control_step_s: float,
    sample_inflow: bool = False,
) -> tuple[DemoStrategyResult, np.ndarray | None]:
    from pyswmm import Links, Nodes, Simulation

    began = time.perf_counter()
    inflow = []
    with Simulation(inp_path) as sim:
        nodes, links = Nodes(sim), Links(sim)
        well = nodes[demo.WET_WELL]
        pumps = {p: links[p] for p in demo.PUMPS}
        sim.step_advance(int(control_step_s))
        sim.start()
        elapsed, peak = 0.0, 0.0
        while True:
            if controller is not None:
                pumped = sum(pump.flow for pump in pumps.values())
                settings = controller.update(_epoch(elapsed), {demo.WET_WELL: well.depth,
                                                               PUMPED_SIGNAL: pumped})
                for pump, setting in settings.items():
                    pumps[pump].target_setting = setting
            if sample_inflow:
                inflow.append((elapsed, well.total_inflow))
            peak = max(peak, well.depth)
            try:
                next(sim)
            except StopIteration:
                break
            elapsed = (sim.current_time - sim.start_time).total_seconds()
        stats = {n: nodes[n].statistics for n in demo.SENSOR_NODES}
        starts = {p: int(pumps[p].pump_statistics["number_startups"]) for p in demo.PUMPS}
        peak = max(peak, well.statistics["max_depth"])
    result = DemoStrategyResult(
        strategy="",
        flooded_m3={n: float(s["flooding_volume"]) for n, s in stats.items()},
        flood_duration_min={n: 60.0 * float(s["flooding_duration"]) for n, s in stats.items()},
        peak_wet_well_m=float(peak),
        pump_starts=starts,
        run_time_s=time.perf_counter() - began,
        decisions=tuple(controller.decisions) if controller is not None else (),
    )
    return result, (np.array(inflow) if sample_inflow else None)


def calibrate_demo_reservoir(workdir: str | Path, control_step_s: float = CONTROL_STEP_S
                             ) -> tuple[float, float]:
    """Fit the rain-to-wet-well reservoir on the calibration storm, not the design storm.

    Runs the demo catchment under rule control with
    :func:`~cityos.apps.floodwatch.demo_catchment.calibration_storm` and fits
    :func:`~cityos.apps.floodwatch.pump_control.fit_linear_reservoir` to the wet well's
    inflow, as a city would from a past storm's records.

    Parameters
    ----------
    workdir : str or Path
        Folder for the calibration model.
    control_step_s : float
        Sampling and control step, seconds.

    Returns
    -------
    tuple of float
        ``(area_m2, lag_s)``.
    """
    storm = demo.calibration_storm()
    path = demo.write_demo_catchment(Path(workdir) / "demo_calibration.inp", storm,
                                     duration_h=5.0)
    controller = RuleController(demo_rules(), extra_signals=[PUMPED_SIGNAL])
    _, inflow = _simulate_demo(str(path), controller, control_step_s, True)
    t = inflow[:, 0]
    idx = np.searchsorted(storm.start_s, t, side="right") - 1
    rain = np.where(idx >= 0, storm.intensity_mm_per_h[np.clip(idx, 0, None)], 0.0)
    return fit_linear_reservoir(t, rain, inflow[:, 1])


def _run_demo(strategy: str, storm: demo.DesignStorm, control_step_s: float,
              workdir: str) -> DemoStrategyResult:
    controller: RuleController | None = None
    if strategy == "rule":
        controller = RuleController(demo_rules(), extra_signals=[PUMPED_SIGNAL])
    elif strategy == "predictive":
        area, lag = calibrate_demo_reservoir(workdir, control_step_s)
        rain_t, rain = _storm_epoch(storm)
        forecaster = RainInflowForecaster(
            demo.WET_WELL, rain_t, rain, area_m2=area, lag_s=lag,
            storage_area_m2=demo.WET_WELL_AREA_M2, outflow_signal=PUMPED_SIGNAL,
            min_outflow_m3_per_s=demo.PUMP_DESIGN_FLOW_M3_PER_S)
        controller = PredictiveController(demo_rules(), {demo.WET_WELL: forecaster},
                                          extra_signals=[PUMPED_SIGNAL])
    path = demo.write_demo_catchment(Path(workdir) / f"demo_{strategy}.inp", storm)
    result, _ = _simulate_demo(str(path), controller, control_step_s)
    return DemoStrategyResult(**{**result.__dict__, "strategy": strategy})


@dataclass(frozen=True)
class DemoEvaluation:
    """Flooding at the demo catchment's sensor nodes under each strategy."""

    results: tuple[DemoStrategyResult, ...]
    storm_depth_mm: float

    def result(self, strategy: str) -> DemoStrategyResult:
        """The result of one strategy."""
        for r in self.results:
            if r.strategy == strategy:
                return r
        raise SwmmEvaluationError(f"strategy: {strategy!r} was not evaluated")

    def table(self) -> str:
        """Plain-text table of flooded volume and duration per sensor node."""
        nodes = demo.SENSOR_NODES
        head = f"{'strategy':<13}" + "".join(f"{n + ' m3':>14}{'min':>6}" for n in nodes)
        head += f"{'total m3':>10}{'well peak m':>12}{'starts':>8}"
        lines = [f"demo catchment, design storm {self.storm_depth_mm:.0f} mm: "
                 "flooding at the sensor nodes", head, "-" * len(head)]
        for r in self.results:
            row = f"{r.strategy:<13}" + "".join(
                f"{r.flooded_m3[n]:>14,.0f}{r.flood_duration_min[n]:>6.0f}" for n in nodes)
            row += (f"{r.total_flooded_m3:>10,.0f}{r.peak_wet_well_m:>12.2f}"
                    f"{sum(r.pump_starts.values()):>8d}")
            lines.append(row)
        return "\n".join(lines)


def evaluate_demo_catchment(
    storm: demo.DesignStorm | None = None, strategies: Sequence[str] = STRATEGIES, *,
    control_step_s: float = CONTROL_STEP_S, workers: int | None = None,
    workdir: str | Path | None = None,
) -> DemoEvaluation:
    """Run the demo catchment under each strategy; flooding at the sensor nodes.

    Parameters
    ----------
    storm : DesignStorm, optional
        The design storm (:func:`~cityos.apps.floodwatch.demo_catchment.design_storm`
        by default).
    strategies : sequence of str
        Any of ``uncontrolled``, ``rule``, ``predictive``.
    control_step_s : float
        Controller polling step, simulated seconds.
    workers : int, optional
        Worker processes (one per strategy by default).
    workdir : str or Path, optional
        Folder for the generated ``.inp`` files (a temporary one by default).

    Returns
    -------
    DemoEvaluation
    """
    storm = demo.design_storm() if storm is None else storm
    if not isinstance(storm, demo.DesignStorm):
        raise SwmmEvaluationError("storm must be a DesignStorm")
    strategies = _check_strategies(strategies)
    workers = _check_run_args(control_step_s, workers, len(strategies))
    with tempfile.TemporaryDirectory(prefix="floodwatch-demo-") as tmp:
        folder = Path(tmp if workdir is None else workdir)
        if not folder.is_dir():
            raise SwmmEvaluationError(f"workdir: {folder} is not a folder")
        with _pool(workers, 1) as pool:
            futures = [pool.submit(_run_demo, s, storm, float(control_step_s), str(folder))
                       for s in strategies]
            results = tuple(f.result() for f in futures)
    return DemoEvaluation(results, storm.depth_mm)
