"""The flood-risk study: return periods x packages of measures, impacts and economics.

``study.yaml`` (paths relative to the file)::

    name: New town flood study
    inputs: {...}                 # the scenario: see docs/floodrisk.md (load_scenario)
    rainfall: {idf: ..., hyetograph: alternating_block, duration_min: 360, step_min: 10}
    return_periods: [2, 5, 10, 50, 100]
    simulation: {duration_h: 8, engine: numba}    # + any SolverOptions field
    packages:                     # the baseline (no measures) is always run
      full: [{type: retention_pond, ...}, {type: levee, ...}]
    economics: {discount_rate: 0.06, lifetime_years: 30, loading_factor: 0.3,
                currency: USD, protection_standard_yr: null, tail: hold}
    damage: {curves: jrc-asia, statistic: max, min_depth_m: 0.0, road_depth_m: 0.3}
    headline: {package: full, return_period: 50}

:func:`run_study` builds the run matrix (every return period x the baseline and each
package), runs each run (load the scenario, apply the package, the design storm from the
IDF curve, :func:`~cityos.apps.floodrisk.solver.simulate`) in a process pool or on a
Dask cluster, and caches each run under ``<out>/runs/<key>/`` where ``key`` hashes all
that determines the hydraulics: the input files' contents, the ``inputs``, ``rainfall``
and ``simulation`` sections, the package's measures, the return period and the source of
the modules that compute it. A run writes ``max_depth.tif``, ``max_velocity.tif``,
``first_inundation.tif`` (s from the storm's start), ``duration_above.tif`` (s above
``duration_depth_m``) and ``run.json`` (volume balance, steps). Impacts
(:mod:`.damage`) are then computed for every run and the economics
(:mod:`.economics`) for every package against the baseline; ``<out>/summary.json``
holds it all and :func:`load_results` reads it back.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cityos.apps.floodrisk import damage as dmg
from cityos.apps.floodrisk import economics as eco

BASELINE = "baseline"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
RUN_FORMAT = 1
RASTERS = {  # FloodResult field -> (file, description)
    "max_depth_m": ("max_depth.tif", "maximum water depth (m)"),
    "max_speed_m_s": ("max_velocity.tif", "maximum speed (m/s)"),
    "first_wet_s": ("first_inundation.tif", "time of first inundation (s from the start)"),
    "duration_above_s": ("duration_above.tif", "time above the duration depth (s)"),
}
#: Modules whose source determines a run's hydraulics (part of the cache key).
HYDRAULIC_MODULES = ("grid", "inputs", "rainfall", "measures", "losses", "solver")
ECONOMICS_DEFAULTS = {"discount_rate": 0.06, "lifetime_years": 30, "loading_factor": 0.3,
                      "currency": "USD", "protection_standard_yr": None, "tail": "hold"}
DAMAGE_DEFAULTS = {"curves": "jrc-asia", "statistic": "max", "min_depth_m": 0.0,
                   "road_depth_m": dmg.ROAD_DEPTH_M,
                   "depth_thresholds_m": list(dmg.INUNDATION_THRESHOLDS_M)}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class StudyError(ValueError):
    """A study.yaml that cannot be run; the message starts with the key path at fault,
    e.g. ``packages.full[2].crest_height_m: missing``."""


# ==================================================================== the study
@dataclass
class Study:
    """A parsed, validated study.yaml.

    Attributes
    ----------
    name : str
    path : Path
        The study file; relative paths in it are relative to ``base_dir``.
    base_dir : Path
    inputs, rainfall, simulation : dict
        The sections as written (``simulation`` with defaults filled in).
    return_periods : list of float
        Ascending.
    packages : dict of str to list of dict
        The measures of each package (the baseline is not listed).
    economics, damage : dict
        With defaults filled in.
    headline_package : str or None
    headline_return_period : float
    """

    name: str
    path: Path
    base_dir: Path
    inputs: dict
    rainfall: dict
    return_periods: list[float]
    simulation: dict
    packages: dict[str, list[dict]]
    economics: dict
    damage: dict
    headline_package: str | None = None
    headline_return_period: float = 50.0
    raw: dict = field(default_factory=dict, repr=False)

    def package_names(self) -> list[str]:
        """The baseline then the packages, in the study's order."""
        return [BASELINE, *self.packages]

    def run_matrix(self) -> list[tuple[str, float]]:
        """Every (package, return period) to run, baseline first."""
        return [(p, t) for p in self.package_names() for t in self.return_periods]


def _fail(path: str, message: str) -> StudyError:
    return StudyError(f"{path}: {message}")


def _mapping(value: Any, path: str, *, required: bool = True) -> dict:
    if value is None and not required:
        return {}
    if value is None:
        raise _fail(path, "missing")
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    return dict(value)


def _number(value: Any, path: str, *, low: float | None = None, above: float | None = None,
            high: float | None = None) -> float:
    if value is None:
        raise _fail(path, "missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, f"{value!r} is not a number")
    if low is not None and value < low:
        raise _fail(path, f"{value} must be at least {low}")
    if above is not None and value <= above:
        raise _fail(path, f"{value} must be above {above}")
    if high is not None and value > high:
        raise _fail(path, f"{value} must be at most {high}")
    return float(value)


def _solver_fields() -> dict[str, type]:
    from cityos.apps.floodrisk.solver import SolverOptions

    return {f.name: f.type for f in fields(SolverOptions)}


def _check_simulation(section: dict) -> dict:
    sim = dict(section)
    hours = _number(sim.pop("duration_h", None), "simulation.duration_h", above=0.0)
    known = _solver_fields()
    out = {"duration_h": hours}
    for key, value in sim.items():
        if key not in known or key == "duration_s":
            raise _fail(f"simulation.{key}", "unknown option (known: duration_h, "
                        f"{', '.join(k for k in known if k != 'duration_s')})")
        if key == "engine":
            if value not in ("numba", "numpy"):
                raise _fail("simulation.engine", f"{value!r} is not numba or numpy")
            out[key] = value
        else:
            out[key] = _number(value, f"simulation.{key}", low=0.0)
    return out


#: The field a measure cannot do without (any one of each tuple), named in errors.
REQUIRED_MEASURE_FIELDS = {
    "retention_pond": ("volume_m3", "depth_m"),
    "levee": ("crest_height_m", "crest_elevation_m"),
    "drainage_upgrade": ("extra_mm_h",),
    "green_infrastructure": ("curve_number", "curve_number_reduction", "conductivity_mm_h",
                             "conductivity_factor"),
    "raised_floors": ("raise_m",),
}


def _study_crs(inputs: dict, base_dir: Path):
    """The CRS measures' coordinates are in: ``inputs.crs``, else the DEM's."""
    if inputs.get("crs"):
        return inputs["crs"]
    dem = inputs.get("dem")
    name = dem.get("file") or dem.get("raster") if isinstance(dem, Mapping) else dem
    if isinstance(name, str) and (base_dir / name).is_file():
        import rasterio

        with rasterio.open(base_dir / name) as src:
            return src.crs
    return None


def _check_packages(section: dict, base_dir: Path, crs) -> dict[str, list[dict]]:
    from cityos.apps.floodrisk.measures import measure_from_dict

    packages = {}
    for name, measures in section.items():
        path = f"packages.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(path, "a package name is 1-64 letters, digits, '.', '_' or '-'")
        if name == BASELINE:
            if measures in (None, []):
                continue  # the baseline is always run; listing it empty is allowed
            raise _fail(path, "'baseline' is the run without measures; name packages otherwise")
        if not isinstance(measures, list) or not measures:
            raise _fail(path, "must be a non-empty list of measures")
        for i, measure in enumerate(measures):
            where = f"{path}[{i}]"
            if not isinstance(measure, Mapping):
                raise _fail(where, "a measure is a mapping with a 'type'")
            if "type" not in measure:
                raise _fail(f"{where}.type", "missing")
            needed = REQUIRED_MEASURE_FIELDS.get(measure["type"], ())
            if needed and not any(k in measure for k in needed):
                alternatives = f" (or {', '.join(needed[1:])})" if len(needed) > 1 else ""
                raise _fail(f"{where}.{needed[0]}", f"missing{alternatives}")
            try:
                measure_from_dict(dict(measure), base_dir=base_dir, crs=crs, where=where)
            except (KeyError, TypeError, ValueError) as error:
                raise StudyError(str(error.args[0] if error.args else error)) from None
        packages[name] = [dict(m) for m in measures]
    return packages


def parse_study(path: str | Path) -> Study:
    """Read and validate a study.yaml.

    Raises
    ------
    StudyError
        The message starts with the key path at fault (``file: key.path: what``).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise StudyError(f"{path.name}: not valid YAML: {error}") from None
    try:
        return _parse(raw, path)
    except StudyError as error:
        raise StudyError(f"{path.name}: {error}") from None


def _parse(raw: Any, path: Path) -> Study:
    doc = _mapping(raw, "(top level)")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail("name", "missing (a title for the study)")
    inputs = _mapping(doc.get("inputs"), "inputs")
    if "crs" in doc and "crs" not in inputs:
        inputs["crs"] = doc["crs"]
    rainfall = _mapping(doc.get("rainfall"), "rainfall")
    for key in ("duration_min", "step_min"):
        _number(rainfall.get(key), f"rainfall.{key}", above=0.0)
    if rainfall.get("hyetograph", "alternating_block") not in ("alternating_block", "chicago"):
        raise _fail("rainfall.hyetograph", f"{rainfall['hyetograph']!r} is not "
                    "alternating_block or chicago")
    periods = doc.get("return_periods")
    if not isinstance(periods, list) or not periods:
        raise _fail("return_periods", "missing (a list of return periods in years)")
    values = [_number(t, f"return_periods[{i}]", above=1.0) for i, t in enumerate(periods)]
    if len(set(values)) != len(values):
        raise _fail("return_periods", f"repeated values in {periods}")
    simulation = _check_simulation(_mapping(doc.get("simulation"), "simulation"))
    packages = _check_packages(_mapping(doc.get("packages"), "packages", required=False),
                               path.parent, _study_crs(inputs, path.parent))
    economics = {**ECONOMICS_DEFAULTS, **_mapping(doc.get("economics"), "economics",
                                                  required=False)}
    for key in economics:
        if key not in ECONOMICS_DEFAULTS:
            raise _fail(f"economics.{key}", f"unknown (known: {', '.join(ECONOMICS_DEFAULTS)})")
    _number(economics["discount_rate"], "economics.discount_rate", above=-1.0, high=1.0)
    years = _number(economics["lifetime_years"], "economics.lifetime_years", above=0.0)
    if years != int(years):
        raise _fail("economics.lifetime_years", f"{years} is not a whole number of years")
    economics["lifetime_years"] = int(years)
    _number(economics["loading_factor"], "economics.loading_factor", low=0.0)
    if economics["protection_standard_yr"] is not None:
        _number(economics["protection_standard_yr"], "economics.protection_standard_yr",
                above=1.0)
    if economics["tail"] not in eco.TAILS:
        raise _fail("economics.tail", f"{economics['tail']!r} is not one of "
                    f"{', '.join(eco.TAILS)}")
    damage = {**DAMAGE_DEFAULTS, **_mapping(doc.get("damage"), "damage", required=False)}
    for key in damage:
        if key not in DAMAGE_DEFAULTS:
            raise _fail(f"damage.{key}", f"unknown (known: {', '.join(DAMAGE_DEFAULTS)})")
    if damage["statistic"] not in ("max", "mean"):
        raise _fail("damage.statistic", f"{damage['statistic']!r} is not max or mean")
    _number(damage["min_depth_m"], "damage.min_depth_m", low=0.0)
    _number(damage["road_depth_m"], "damage.road_depth_m", low=0.0)
    thresholds = damage["depth_thresholds_m"]
    if not isinstance(thresholds, list) or not thresholds:
        raise _fail("damage.depth_thresholds_m", "must be a list of depths (m)")
    damage["depth_thresholds_m"] = [_number(v, f"damage.depth_thresholds_m[{i}]", low=0.0)
                                    for i, v in enumerate(thresholds)]
    try:
        dmg.catalogue_from_config(damage["curves"], path.parent)
    except dmg.DamageCurveError as error:
        raise _fail("damage.curves", str(error)) from None
    headline = _mapping(doc.get("headline"), "headline", required=False)
    package = headline.get("package")
    if package is not None and package not in packages:
        raise _fail("headline.package", f"{package!r} is not one of the packages "
                    f"({', '.join(packages) or 'none'})")
    period = headline.get("return_period", 50.0)
    period = _number(period, "headline.return_period", above=1.0)
    return Study(name=name.strip(), path=path, base_dir=path.parent.resolve(), inputs=inputs,
                 rainfall=rainfall, return_periods=sorted(values), simulation=simulation,
                 packages=packages, economics=economics, damage=damage,
                 headline_package=package, headline_return_period=period, raw=doc)


# ================================================================== cache keys
def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def referenced_files(section: Any, base_dir: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every existing file a section's strings name."""
    found: dict[str, str] = {}

    def walk(value):
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif isinstance(value, str) and len(value) < 1024:
            candidate = Path(value) if Path(value).is_absolute() else base_dir / value
            try:
                if candidate.is_file():
                    found[value] = _file_digest(candidate)
            except OSError:
                pass

    walk(section)
    return dict(sorted(found.items()))


def code_version() -> str:
    """A digest of the source of the modules that compute a run (:data:`HYDRAULIC_MODULES`)."""
    from cityos import __version__

    digest = hashlib.sha256(f"{__version__}|{RUN_FORMAT}".encode())
    here = Path(__file__).parent
    for name in HYDRAULIC_MODULES:
        source = here / f"{name}.py"
        if source.is_file():
            digest.update(name.encode() + source.read_bytes())
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def run_key(study: Study, package: str, return_period: float, *,
            files: dict[str, str] | None = None, version: str | None = None) -> str:
    """The cache key of one run: a hash of everything that determines its hydraulics."""
    if files is None:
        files = referenced_files([study.inputs, study.rainfall, study.packages], study.base_dir)
    payload = {
        "inputs": study.inputs, "rainfall": study.rainfall, "simulation": study.simulation,
        "measures": study.packages.get(package, []), "return_period": float(return_period),
        "files": files, "code": version or code_version(),
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:24]


# ======================================================================== runs
@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs for one run (plain data: it crosses processes)."""

    key: str
    package: str
    return_period: float
    base_dir: str
    inputs: dict
    rainfall: dict
    simulation: dict
    measures: list
    run_dir: str


_SCENARIOS: dict[str, Any] = {}  # per process: inputs digest -> loaded scenario


def _load_scenario(inputs: dict, base_dir: Path):
    from cityos.apps.floodrisk.inputs import load_scenario

    token = _canonical([inputs, str(base_dir), referenced_files(inputs, base_dir)])
    scenario = _SCENARIOS.get(token)
    if scenario is None:
        scenario = load_scenario(inputs, base_dir)
        _SCENARIOS.clear()  # one study at a time is enough
        _SCENARIOS[token] = scenario
    return scenario.copy()


def scenario_for(inputs: dict, base_dir: Path, measures: list[dict], name: str):
    """The scenario with a package's measures applied (a fresh copy)."""
    scenario = _load_scenario(inputs, base_dir)
    if not measures:
        return scenario
    from cityos.apps.floodrisk.measures import package_from_config

    package = package_from_config(name, measures, base_dir=base_dir, crs=scenario.grid.crs)
    return package.apply(scenario)


def solver_options(simulation: dict):
    """The :class:`SolverOptions` of a study's ``simulation`` section."""
    from cityos.apps.floodrisk.solver import SolverOptions

    options = {k: v for k, v in simulation.items() if k != "duration_h"}
    return SolverOptions(duration_s=float(simulation["duration_h"]) * 3600.0, **options)


def execute_run(spec: RunSpec) -> dict:
    """Run one (package, return period): simulate and write its GeoTIFFs and run.json.

    Module-level so a process pool or a Dask worker can call it; returns run.json's
    content.
    """
    from cityos.apps.floodrisk import solver
    from cityos.apps.floodrisk.grid import write_geotiff
    from cityos.apps.floodrisk.rainfall import design_storm

    base_dir = Path(spec.base_dir)
    scenario = scenario_for(spec.inputs, base_dir, spec.measures, spec.package)
    rain = design_storm(spec.rainfall, spec.return_period, base_dir)
    forcing = scenario.forcing(rain, return_period_yr=spec.return_period)
    result = solver.simulate(scenario.domain(), forcing,
                             solver_options(spec.simulation))
    run_dir = Path(spec.run_dir)
    tmp_dir = run_dir.with_name(run_dir.name + f".tmp{os.getpid()}")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for attribute, (filename, description) in RASTERS.items():
        array = np.asarray(getattr(result, attribute), dtype="float32")
        write_geotiff(tmp_dir / filename, array, scenario.grid, nodata=float("nan"),
                      description=description)
    volume = {f.name: float(getattr(result.volume, f.name)) for f in fields(result.volume)}
    record = {"key": spec.key, "package": spec.package, "return_period": spec.return_period,
              "rain_depth_mm": float(rain.depth_mm()),
              "rain_peak_mm_h": float(np.max(rain.intensity_mm_h)),
              "volume": volume, "steps": int(result.steps), "solver_s": float(result.elapsed_s),
              "files": {a: f for a, (f, _) in RASTERS.items()}, "format": RUN_FORMAT}
    (tmp_dir / RUN_FILE).write_text(json.dumps(record, indent=1))
    try:
        tmp_dir.rename(run_dir)  # whole runs only: a crash leaves no half cache entry
    except OSError:  # another worker finished the same run first
        import shutil

        shutil.rmtree(tmp_dir, ignore_errors=True)
    return record


def cached_run(run_dir: Path, key: str) -> dict | None:
    """The run.json of a complete cached run with this key, else None."""
    try:
        record = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if record.get("key") != key or record.get("format") != RUN_FORMAT:
        return None
    if not all((run_dir / f).is_file() for f, _ in RASTERS.values()):
        return None
    return record


def _limit_threads(threads: int) -> None:
    """Pool initializer: the compiled solver's threads in this worker process."""
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _pool_context():
    """How to start worker processes: forks where safe, else fresh interpreters.

    Once the compiled solver has run in this process its thread pool exists, and GNU
    OpenMP aborts a child forked from such a process; fresh interpreters ("spawn") are
    safe but need a main module they can import (a script, not code on stdin).
    """
    import numba

    try:
        numba.threading_layer()
    except ValueError:  # no parallel kernel has run here yet: forking is safe and cheap
        return mp.get_context()
    return mp.get_context("spawn")


def _execute_all(specs: list[RunSpec], workers: int, dask_address: str | None,
                 progress: Callable[[str], None],
                 threads_per_worker: int | None = None) -> dict[str, dict]:
    if not specs:
        return {}
    done: dict[str, dict] = {}
    if dask_address:
        from distributed import Client

        with Client(dask_address) as client:
            futures = client.map(execute_run, specs, key=[f"floodrisk-{s.key}" for s in specs],
                                 pure=False)
            for spec, record in zip(specs, client.gather(futures), strict=True):
                done[spec.key] = record
                progress(f"ran {spec.package} T={spec.return_period:g} on dask")
        return done
    if workers <= 1 or len(specs) == 1:
        import numba

        threads = numba.get_num_threads()
        if threads_per_worker:
            _limit_threads(threads_per_worker)
        try:
            for spec in specs:
                done[spec.key] = execute_run(spec)
                progress(f"ran {spec.package} T={spec.return_period:g}")
        finally:
            numba.set_num_threads(threads)
        return done
    workers = min(workers, len(specs))
    # Workers share the cores: each one's solver threads would otherwise oversubscribe
    # them (n workers x all cores), which slows every run down.
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(execute_run, spec): spec for spec in specs}
        for future in cf.as_completed(futures):
            spec = futures[future]
            done[spec.key] = future.result()
            progress(f"ran {spec.package} T={spec.return_period:g}")
    return done


# ===================================================================== results
@dataclass
class RunResult:
    """One run: where its files are, its hydraulics record and its impacts."""

    package: str
    return_period: float
    key: str
    run_dir: Path
    record: dict
    impact: dmg.EventImpact
    cached: bool = False

    def raster(self, attribute: str = "max_depth_m") -> Path:
        """Path of one of the run's GeoTIFFs (a :data:`RASTERS` key)."""
        return self.run_dir / RASTERS[attribute][0]

    def to_dict(self) -> dict:
        return {"package": self.package, "return_period": self.return_period,
                "key": self.key, "run_dir": str(self.run_dir), "cached": self.cached,
                "record": self.record, "impact": self.impact.to_dict()}


@dataclass
class StudyResults:
    """What :func:`run_study` found.

    Attributes
    ----------
    name : str
    out_dir : Path
    return_periods : list of float
    packages : list of str
        Baseline first.
    runs : dict of (str, float) to RunResult
    appraisals : dict of str to Appraisal
        Each package against the baseline.
    baseline_ead : float
    economics : dict
        The study's economics settings (currency, rate, lifetime, loading ...).
    headline : dict
        The numbers of the headline sentence (:func:`headline_numbers`).
    measures : dict of str to list of dict
    wall_s : float
    executed, cached : int
        Runs simulated now and runs taken from the cache.
    """

    name: str
    out_dir: Path
    return_periods: list[float]
    packages: list[str]
    runs: dict[tuple[str, float], RunResult]
    appraisals: dict[str, eco.Appraisal]
    baseline_ead: float
    economics: dict
    headline: dict
    measures: dict[str, list[dict]] = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    wall_s: float = 0.0
    executed: int = 0
    cached: int = 0

    def run(self, package: str, return_period: float) -> RunResult:
        return self.runs[(package, float(return_period))]

    def damages(self, package: str) -> dict[float, float]:
        """Damage per return period of one package."""
        return {t: self.run(package, t).impact.damage for t in self.return_periods}

    def to_dict(self) -> dict:
        return {
            "name": self.name, "out_dir": str(self.out_dir),
            "return_periods": self.return_periods, "packages": self.packages,
            "measures": self.measures, "grid": self.grid,
            "runs": [r.to_dict() for r in self.runs.values()],
            "appraisals": {k: a.to_dict() for k, a in self.appraisals.items()},
            "baseline_ead": self.baseline_ead, "economics": self.economics,
            "headline": self.headline, "wall_s": self.wall_s,
            "executed": self.executed, "cached": self.cached,
        }

    def write(self) -> Path:
        """Write ``summary.json`` in the out dir; return its path."""
        path = self.out_dir / SUMMARY_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default))
        return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_results(out_dir: str | Path) -> StudyResults:
    """Read a study's results back from its ``summary.json``."""
    out_dir = Path(out_dir)
    path = out_dir / SUMMARY_FILE
    try:
        data = json.loads(path.read_text())
    except OSError:
        raise FileNotFoundError(f"{path}: no study results here (run `cityos floodrisk run` "
                                "first)") from None
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    runs = {}
    for item in data["runs"]:
        run_dir = Path(item["run_dir"])
        if not run_dir.is_absolute() or not run_dir.exists():
            run_dir = out_dir / "runs" / item["key"]
        result = RunResult(item["package"], float(item["return_period"]), item["key"],
                           run_dir, item["record"], dmg.EventImpact.from_dict(item["impact"]),
                           bool(item.get("cached")))
        runs[(result.package, result.return_period)] = result
    appraisals = {}
    for name, a in data["appraisals"].items():
        a = dict(a)
        a["damage_avoided"] = {float(k): v for k, v in a["damage_avoided"].items()}
        a["bcr"] = float("inf") if a["bcr"] is None else a["bcr"]
        appraisals[name] = eco.Appraisal(**a)
    return StudyResults(
        name=data["name"], out_dir=out_dir, return_periods=[float(t) for t in
                                                            data["return_periods"]],
        packages=list(data["packages"]), runs=runs, appraisals=appraisals,
        baseline_ead=float(data["baseline_ead"]), economics=data["economics"],
        headline=data["headline"], measures=data.get("measures", {}),
        grid=data.get("grid", {}), wall_s=float(data.get("wall_s", 0.0)),
        executed=int(data.get("executed", 0)), cached=int(data.get("cached", 0)))


def _nearest(values: list[float], target: float) -> float:
    return min(values, key=lambda v: (abs(math.log(v / target)), -v))


def headline_numbers(results: StudyResults, package: str | None = None,
                     return_period: float = 50.0, threshold_m: float = 0.10) -> dict:
    """The figures of the report's headline sentence.

    The package is the one named, else the one with the largest EAD reduction; the event
    is the modelled return period nearest ``return_period``.
    """
    if not results.appraisals:
        package = None
    elif package is None:
        package = max(results.appraisals, key=lambda p: results.appraisals[p].ead_reduction)
    period = _nearest(results.return_periods, return_period)
    base = results.run(BASELINE, period).impact
    out = {"return_period": period, "threshold_m": threshold_m,
           "area_without_m2": base.area_above(threshold_m), "baseline_ead": results.baseline_ead,
           "currency": results.economics.get("currency", ""), "package": package}
    if package is not None:
        with_pkg = results.run(package, period).impact
        appraisal = results.appraisals[package]
        before, after = out["area_without_m2"], with_pkg.area_above(threshold_m)
        out.update({
            "area_with_m2": after,
            "area_reduction": (before - after) / before if before > 0 else 0.0,
            "damage_without": base.damage, "damage_with": with_pkg.damage,
            "ead_with": appraisal.ead, "ead_reduction": appraisal.ead_reduction,
            "bcr": appraisal.bcr if math.isfinite(appraisal.bcr) else None,
            "npv": appraisal.npv, "pure_premium": appraisal.pure_premium,
            "gross_premium": appraisal.gross_premium,
            "baseline_gross_premium": eco.gross_premium(
                results.baseline_ead, results.economics.get("loading_factor", 0.0)),
            "capital_cost": appraisal.capital_cost, "annual_cost": appraisal.annual_cost,
        })
    return out


def _impacts(study: Study, records: dict[tuple[str, float], tuple[str, Path, dict, bool]],
             ) -> dict[tuple[str, float], RunResult]:
    from cityos.apps.floodrisk.grid import read_raster

    catalogue = dmg.catalogue_from_config(study.damage["curves"], study.base_dir)
    runs = {}
    for package in study.package_names():
        scenario = scenario_for(study.inputs, study.base_dir, study.packages.get(package, []),
                                package)
        cells = dmg.footprint_cells([b.footprint for b in scenario.buildings], scenario.grid)
        # permanent water (rivers, canals and this package's ponds) is not "inundated"
        permanent = getattr(scenario, "water", None)
        for period in study.return_periods:
            key, run_dir, record, cached = records[(package, period)]
            depth, _ = read_raster(run_dir / RASTERS["max_depth_m"][0])
            impact = dmg.event_impact(
                depth, scenario.grid, scenario.buildings, catalogue, roads=scenario.roads,
                permanent_water=permanent, statistic=study.damage["statistic"],
                min_depth_m=study.damage["min_depth_m"],
                road_depth_m=study.damage["road_depth_m"],
                thresholds_m=study.damage["depth_thresholds_m"], cells=cells)
            runs[(package, period)] = RunResult(package, period, key, run_dir, record, impact,
                                                cached)
    return runs


def _package_costs(study: Study, package: str) -> tuple[float, float]:
    from cityos.apps.floodrisk.measures import package_from_config

    built = package_from_config(package, study.packages[package], base_dir=study.base_dir,
                                crs=_study_crs(study.inputs, study.base_dir))
    return float(built.capital_cost), float(built.annual_cost)


def run_study(study_path: str | Path, out_dir: str | Path, *, workers: int = 1,
              dask_address: str | None = None, use_cache: bool = True,
              progress: Callable[[str], None] | None = None,
              threads_per_worker: int | None = None) -> StudyResults:
    """Run a study: every return period x package, impacts, economics; write summary.json.

    Parameters
    ----------
    study_path : path
        The study.yaml.
    out_dir : path
        Where runs (``runs/<key>/``) and ``summary.json`` go; created if missing.
    workers : int
        Worker processes (1 runs in this process).
    dask_address : str, optional
        ``tcp://host:port`` of a Dask scheduler: the runs go there instead.
    use_cache : bool
        Reuse runs whose key matches (False simulates every run again).
    progress : callable, optional
        Called with a line of text as runs finish.
    threads_per_worker : int, optional
        Threads of the compiled solver in each worker. Default: the CPUs shared out
        among the worker processes, or all of them for one worker.

    Returns
    -------
    StudyResults
    """
    started = time.perf_counter()
    say = progress or (lambda _line: None)
    study = parse_study(study_path)
    if workers < 1:
        raise StudyError(f"workers: {workers} must be at least 1")
    out_dir = Path(out_dir)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    files = referenced_files([study.inputs, study.rainfall, study.packages], study.base_dir)
    version = code_version()
    pending, records = [], {}
    for package, period in study.run_matrix():
        key = run_key(study, package, period, files=files, version=version)
        run_dir = (out_dir / "runs" / key).resolve()
        record = cached_run(run_dir, key) if use_cache else None
        if record is not None:
            records[(package, period)] = (key, run_dir, record, True)
            say(f"cached {package} T={period:g}")
            continue
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        pending.append(RunSpec(key, package, period, str(study.base_dir), study.inputs,
                               study.rainfall, study.simulation,
                               study.packages.get(package, []), str(run_dir)))
    done = _execute_all(pending, workers, dask_address, say, threads_per_worker)
    for spec in pending:
        records[(spec.package, spec.return_period)] = (
            spec.key, Path(spec.run_dir), done[spec.key], False)
    runs = _impacts(study, records)
    econ = study.economics
    baseline = {t: runs[(BASELINE, t)].impact.damage for t in study.return_periods}
    baseline_ead = eco.expected_annual_damage(
        study.return_periods, [baseline[t] for t in study.return_periods],
        protection_standard_yr=econ["protection_standard_yr"], tail=econ["tail"])
    appraisals = {}
    for package in study.packages:
        capital, annual = _package_costs(study, package)
        appraisals[package] = eco.appraise(
            package, baseline, {t: runs[(package, t)].impact.damage
                                for t in study.return_periods},
            capital_cost=capital, annual_cost=annual,
            discount_rate=float(econ["discount_rate"]),
            lifetime_years=int(econ["lifetime_years"]), loading=float(econ["loading_factor"]),
            protection_standard_yr=econ["protection_standard_yr"], tail=econ["tail"])
    scenario = _load_scenario(study.inputs, study.base_dir)
    grid = scenario.grid
    results = StudyResults(
        name=study.name, out_dir=out_dir, return_periods=study.return_periods,
        packages=study.package_names(), runs=runs, appraisals=appraisals,
        baseline_ead=baseline_ead, economics=dict(econ), headline={},
        measures=study.packages,
        grid={"crs": str(grid.crs), "transform": list(grid.transform)[:6],
              "shape": list(grid.shape), "cell_size": float(grid.cell_size)},
        executed=len(pending), cached=len(records) - len(pending))
    results.headline = headline_numbers(results, study.headline_package,
                                        study.headline_return_period)
    results.wall_s = time.perf_counter() - started
    results.write()
    return results
