#!/usr/bin/env python
"""Floodrisk benchmark: the 2D inundation solver and the study matrix.

Prints one Markdown table:

(a) solver cell updates per second (cells x time steps / wall time) of
    :func:`~cityos.apps.floodrisk.solver.simulate` with the compiled ``numba`` engine on
    a 1000 x 1000 grid of 5 m cells (a 5 km x 5 km synthetic town: a 1:1000 slope to an
    open south edge, two shallow valleys, a drainage channel, Manning's n 0.035, SCS
    curve number 80, 5 mm/h of drains) under a 6-hour design storm (alternating block
    of 10-min steps from ``i = 1500 / (d + 10)^0.8`` mm/h, d in minutes; depth and peak
    in the notes).
    Baseline: the plain NumPy engine of the same scheme on the same grid and the same
    stretch of the run (the first ``--stretch`` seconds from a 2-cm film of water, so
    that every cell is wet and both engines do the full work), in the same run; ratio =
    numba / numpy. Then the whole 6-h event with the numba engine: its actual wall time
    (``--quick`` or ``--no-event``: projected from the stretch's rate and the event's
    steps counted on a 4x coarser grid of the same town, scaled by the CFL ratio).
    Target (the floodrisk issue): a 1M-cell 6-h event in under 10 minutes.
(b) wall time of the study matrix (return periods x packages) on the demo catchment
    (:func:`~cityos.apps.floodrisk.catchment.write_demo_catchment`) with
    :func:`~cityos.apps.floodrisk.study.run_study` (``use_cache=False``), with 1 and with
    2 worker processes, each with one solver thread (so the ratio is the pool's scaling,
    not processes against threads). Baseline: the 1-worker time; ratio = speed-up.
    Target: scaling near-linearly with workers (on a machine with free cores). The notes
    give the 2-worker study's headline numbers (they must match docs/floodrisk.md).

Usage::

    python bench/floodrisk.py            # full sizes (about 3 min + the study, twice)
    python bench/floodrisk.py --quick    # a smoke run in well under a minute
    python bench/floodrisk.py --keep-study DIR   # keep (b)'s results for a report
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import log, markdown, print_report, yes_no  # noqa: E402
from cityos.apps.floodrisk.losses import CurveNumber  # noqa: E402
from cityos.apps.floodrisk.solver import (  # noqa: E402
    Domain,
    Forcing,
    SolverOptions,
    simulate,
)

HEAD = ["measure", "figure", "target (floodrisk issue)", "baseline", "ratio to baseline",
        "target met"]
FULL = {"cells": 1000, "cell_m": 5.0, "stretch": 120.0, "event": True,
        "study_size": None, "study_periods": None, "probe_cells": 250}
QUICK = {"cells": 120, "cell_m": 5.0, "stretch": 600.0, "event": False,
         "study_size": (30, 30), "study_periods": [2, 50],
         "probe_cells": 50}
EVENT_S = 6 * 3600.0
TARGET_S = 600.0


class DesignStorm:
    """An alternating-block hyetograph (edges in s, intensities in mm/h)."""

    def __init__(self, duration_min: float = 360.0, step_min: float = 10.0):
        d = np.arange(1, int(duration_min / step_min) + 1) * step_min
        depth = 1500.0 / (d + 10.0) ** 0.8 * d / 60.0           # mm within d minutes
        blocks = np.diff(np.concatenate([[0.0], depth]))         # largest first
        order = np.empty(len(blocks), dtype=int)
        centre = len(blocks) // 2
        for k in range(len(blocks)):                             # alternate about the centre
            order[k] = centre + (k + 1) // 2 * (1 if k % 2 else -1)
        order = np.clip(order, 0, len(blocks) - 1)
        intensity = np.zeros(len(blocks))
        intensity[order] = blocks * 60.0 / step_min
        self.edges_s = np.arange(len(blocks) + 1) * step_min * 60.0
        self.intensity_mm_h = intensity

    def depth_mm(self) -> float:
        return float((self.intensity_mm_h * np.diff(self.edges_s) / 3600.0).sum())


def town(cells: int, cell_m: float) -> Domain:
    """The synthetic town: slope to the open south edge, valleys and a channel."""
    c = (np.arange(cells) + 0.5) * cell_m
    east, south = np.meshgrid(c, c)
    side = cells * cell_m
    z = (10.0 - south / 1000.0
         - 0.8 * np.exp(-((east - 0.3 * side) / (0.06 * side)) ** 2)
         - 0.6 * np.exp(-((east - 0.7 * side) / (0.08 * side)) ** 2)
         + 0.15 * np.sin(east / 180.0) * np.cos(south / 230.0))
    channel = np.abs(east - 0.5 * side) < max(cell_m, 0.004 * side)
    z[channel] -= 1.5
    return Domain(z, cell_m, 0.035, {"south": "open"})


def forcing(cells: int, film_m: float = 0.0) -> Forcing:
    return Forcing(rain=DesignStorm(), losses=CurveNumber(80.0), drain_capacity_mm_h=5.0,
                   initial_depth=np.full((cells, cells), film_m) if film_m else None)


def bench_solver(sizes: dict) -> tuple[list[list[str]], list[str]]:
    cells, cell_m = sizes["cells"], sizes["cell_m"]
    domain = town(cells, cell_m)
    n = cells * cells
    log("compiling the numba engine (a tiny run)")
    simulate(town(8, cell_m), forcing(8, 0.02), SolverOptions(60.0))
    rates = {}
    stretch = {}
    for engine in ("numba", "numpy"):
        log(f"{engine}: {cells} x {cells} cells, first {sizes['stretch']:.0f} s from a wet film")
        result = simulate(domain, forcing(cells, 0.02),
                          SolverOptions(sizes["stretch"], engine=engine))
        rates[engine] = result.steps * n / result.elapsed_s
        stretch[engine] = result
        log(f"{engine}: {result.steps} steps in {result.elapsed_s:.1f} s, "
            f"{rates[engine] / 1e6:.1f} M cell updates/s")
    same = np.allclose(stretch["numba"].final_depth_m, stretch["numpy"].final_depth_m,
                       rtol=1e-9, atol=1e-12)
    rows = [[f"(a) solver, {cells}x{cells} cells of {cell_m:g} m, numba engine",
             f"{rates['numba'] / 1e6:.1f} M cell updates/s", "",
             f"numpy engine {rates['numpy'] / 1e6:.1f} M cell updates/s",
             f"{rates['numba'] / rates['numpy']:.1f}x", ""]]
    notes = [f"(a) the stretch: {stretch['numba'].steps} steps of the first "
             f"{sizes['stretch']:.0f} s from a 2-cm film; the two engines' depths agree "
             f"to 1e-9: {'yes' if same else 'NO'}; storm {DesignStorm().depth_mm():.0f} mm "
             f"in 6 h, peak {DesignStorm().intensity_mm_h.max():.0f} mm/h"]
    storm_forcing = forcing(cells)
    if sizes["event"]:
        log(f"the whole 6-h event on {cells} x {cells} cells (numba)")
        event = simulate(domain, storm_forcing, SolverOptions(EVENT_S))
        wall, how = event.elapsed_s, "actual"
        v = event.volume
        notes.append(f"(a) the event: {event.steps:,} steps, "
                     f"{event.steps * n / event.elapsed_s / 1e6:.1f} M cell updates/s, max "
                     f"depth {np.nanmax(event.max_depth_m):.2f} m, "
                     f"{(event.max_depth_m > 0.1).sum() * cell_m ** 2 / 1e6:.2f} km2 deeper "
                     f"than 10 cm; rain {v.rain_m3:,.0f} m3, infiltration "
                     f"{v.infiltration_m3:,.0f}, drains {v.drained_m3:,.0f}, out "
                     f"{v.outflow_m3:,.0f}, volume error {v.error_share:.1e}")
    else:
        coarse = sizes["probe_cells"]
        log(f"counting the event's steps on a {coarse} x {coarse} grid of the 1000x1000 town")
        scale = 1000 / coarse
        # the same town at 1000/coarse times the cell size: dt (CFL-limited or capped,
        # the cap scaled alike) is that many times longer for the same depths
        probe = simulate(town(coarse, cell_m * scale), forcing(coarse),
                         SolverOptions(EVENT_S, max_dt_s=10.0 * scale))
        steps = probe.steps * scale
        wall = steps * 1000 * 1000 / rates["numba"]
        how = "projected"
        notes.append(f"(a) projected: {probe.steps:,} steps of the 6-h event on the same "
                     f"town at {coarse}x{coarse} cells, x{scale:g} for the 1000x1000 grid's "
                     f"shorter steps, at the measured numba rate")
    rows.append([f"(a) 6-h design storm on 1000x1000 cells, wall time ({how})",
                 f"{wall / 60:.1f} min", "< 10 min", "", "", yes_no(wall < TARGET_S)])
    return rows, notes


def bench_study(sizes: dict) -> tuple[list[list[str]], list[str]]:
    try:
        from cityos.apps.floodrisk.catchment import write_demo_catchment
        from cityos.apps.floodrisk.study import run_study
    except ImportError as error:
        log(f"study runner missing: {error}")
        return [["(b) study matrix, 1 and 2 workers", "n/a (study runner missing)", "", "", "",
                 ""]], []
    try:
        return _run_study_matrix(sizes, write_demo_catchment, run_study)
    except Exception as error:  # another module's failure must not hide (a)
        log(f"study runner failed: {type(error).__name__}: {error}")
        return [["(b) study matrix, 1 and 2 workers", "n/a (study runner failed)", "", "", "",
                 ""]], [f"(b) run_study failed: {type(error).__name__}: {error}"]


def _run_study_matrix(sizes, write_demo_catchment, run_study):
    times = {}
    keep = sizes.get("keep_study")
    with tempfile.TemporaryDirectory(prefix="cityos-bench-floodrisk-") as workdir:
        work = Path(keep) if keep else Path(workdir)
        options = {}
        if sizes["study_size"] is not None:
            options["size"] = sizes["study_size"]
        if sizes["study_periods"] is not None:
            options["return_periods"] = sizes["study_periods"]
        study = write_demo_catchment(work / "site", **options)
        runs, results = None, None
        for workers in (1, 2):
            # one solver thread per worker in both passes, so the ratio is the process
            # pool's scaling and not threads against processes
            log(f"study with {workers} worker(s), one solver thread each")
            started = time.perf_counter()
            results = run_study(study, work / f"out{workers}", workers=workers,
                                use_cache=False, threads_per_worker=1,
                                progress=lambda line: log(f"  {line}"))
            times[workers] = time.perf_counter() - started
            runs = results.executed
            log(f"{workers} worker(s): {times[workers]:.1f} s")
    speedup = times[1] / times[2]
    periods = len(results.return_periods)
    packages = len(results.packages)
    rows = [[f"(b) study matrix ({periods} return periods x {packages} packages = {runs} "
             "runs), 1 worker", f"{times[1]:.1f} s", "", "", "", ""],
            [f"(b) study matrix ({runs} runs), 2 workers", f"{times[2]:.1f} s",
             "near-linear in workers", f"1 worker {times[1]:.1f} s",
             f"{speedup:.2f}x", yes_no(speedup >= 1.6)]]
    grid = results.grid
    notes = [f"(b) the demo catchment ({grid['shape'][0]} x {grid['shape'][1]} cells of "
             f"{grid['cell_size']:g} m), return periods "
             f"{', '.join(f'{t:g}' for t in results.return_periods)} years; "
             f"one solver thread per worker; {os.cpu_count()} CPUs"]
    notes.append("(b) the 2-worker study's headline: " + _headline(results.headline))
    return rows, notes


def _headline(h: dict) -> str:
    """The headline numbers of a study, in one line."""
    text = (f"{h['return_period']:g}-year area > {h['threshold_m'] * 100:g} cm "
            f"{h['area_without_m2'] / 1e4:.1f} ha without measures")
    if h.get("package"):
        bcr = "n/a" if h["bcr"] is None else f"{h['bcr']:.2f}"
        text += (f", {h['area_with_m2'] / 1e4:.1f} ha with '{h['package']}' "
                 f"({h['area_reduction']:.0%} less); EAD {h['baseline_ead']:,.0f} -> "
                 f"{h['ead_with']:,.0f} {h['currency']}/yr; BCR {bcr}, NPV {h['npv']:,.0f}")
    return text


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--cells", type=int, help="grid side of (a)")
    parser.add_argument("--stretch", type=float, help="seconds of the timed stretch in (a)")
    parser.add_argument("--no-event", action="store_true",
                        help="project the 6-h event instead of running it")
    parser.add_argument("--no-study", action="store_true", help="leave out (b)")
    parser.add_argument("--keep-study", metavar="DIR",
                        help="write (b)'s catchment and results (out1, out2) here and keep "
                             "them, e.g. for `cityos floodrisk report DIR/out2`")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up (with a stack dump) after this many seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    faulthandler.dump_traceback_later(args.timeout or (300 if args.quick else 3600), exit=True)
    sizes = dict(QUICK if args.quick else FULL)
    if args.cells:
        sizes["cells"] = args.cells
    if args.stretch:
        sizes["stretch"] = args.stretch
    if args.no_event or sizes["cells"] != 1000:
        sizes["event"] = False
    kind = "full" if sizes == FULL else "quick" if sizes == QUICK else "custom"
    sizes["keep_study"] = args.keep_study
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    rows, notes = bench_solver(sizes)
    more_rows, more_notes = ([], []) if args.no_study else bench_study(sizes)
    rows += more_rows
    notes += more_notes
    print_report("floodrisk", kind, started, load_before, markdown(HEAD, rows), notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
