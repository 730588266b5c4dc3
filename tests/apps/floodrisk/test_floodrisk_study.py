"""The study workflow end to end on a tiny catchment: validation, the run matrix in a
process pool, the cache, and the same runs on a Dask cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import yaml

from cityos.apps.floodrisk import solver
from cityos.apps.floodrisk.demo import write_tiny_study
from cityos.apps.floodrisk.economics import expected_annual_damage
from cityos.apps.floodrisk.study import (
    BASELINE,
    RASTERS,
    StudyError,
    load_results,
    parse_study,
    run_study,
)

PERIODS = (2, 50)
PACKAGE = "pond_and_drains"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_study(tmp_path_factory.mktemp("tiny") / "study", return_periods=PERIODS)


@pytest.fixture(scope="module")
def pooled(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return run_study(tiny, out, workers=2)


def edited(study_path, tmp_path, change) -> str:
    doc = yaml.safe_load(study_path.read_text())
    change(doc)
    path = study_path.parent / f"edited-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def assert_same_50_year_runs(mine, theirs) -> None:
    """Two studies' 50-year runs agree, run for run: keys, damage and depth rasters."""
    for package in (BASELINE, PACKAGE):
        a, b = mine.run(package, 50), theirs.run(package, 50)
        assert a.key == b.key
        assert a.impact.damage == pytest.approx(b.impact.damage, rel=1e-9)
        with rasterio.open(a.raster()) as x, rasterio.open(b.raster()) as y:
            np.testing.assert_allclose(x.read(1), y.read(1), atol=1e-6)


# ------------------------------------------------------------------ validation
def test_parse_study_and_run_matrix(tiny):
    study = parse_study(tiny)
    assert study.return_periods == [2.0, 50.0]
    assert study.run_matrix() == [(BASELINE, 2.0), (BASELINE, 50.0), (PACKAGE, 2.0),
                                  (PACKAGE, 50.0)]
    assert study.economics["lifetime_years"] == 30 and study.damage["statistic"] == "max"


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["packages"][PACKAGE].append({"type": "levee", "line": [[0, 0], [1, 1]],
                                              "capital_cost": 1.0}),
     r"edited-.*\.yaml: packages.pond_and_drains\[2\].crest_height_m: missing"),
    (lambda d: d["packages"][PACKAGE][1].update(extra_mm_h=-5),
     r"packages.pond_and_drains\[1\].extra_mm_h"),
    (lambda d: d.update(return_periods=[2, 0.5]), r"return_periods\[1\]: 0.5 must be above 1"),
    (lambda d: d["simulation"].update(warp=9), r"simulation.warp: unknown option"),
    (lambda d: d["simulation"].pop("duration_h"), r"simulation.duration_h: missing"),
    (lambda d: d["economics"].update(discount_rate="high"), r"economics.discount_rate: 'high'"),
    (lambda d: d["damage"].update(curves="nope.csv"), r"damage.curves: .*nope.csv.*not found"),
    (lambda d: d.update(headline={"package": "gold"}), r"headline.package: 'gold'"),
    (lambda d: d.pop("name"), r"name: missing"),
])
def test_parse_errors_name_the_key_path(tiny, tmp_path, change, message):
    with pytest.raises(StudyError, match=message):
        parse_study(edited(tiny, tmp_path, change))


# ------------------------------------------------------------------ the runs
def test_pool_run_matrix_outputs_and_economics(pooled):
    assert pooled.executed == 4 and pooled.cached == 0
    assert set(pooled.runs) == {(p, float(t)) for p in (BASELINE, PACKAGE) for t in PERIODS}
    for run in pooled.runs.values():
        for attribute in RASTERS:
            assert run.raster(attribute).is_file()
        assert abs(run.record["volume"]["error_share"]) < 1e-9  # the solver conserves mass
    base = pooled.damages(BASELINE)
    with_pkg = pooled.damages(PACKAGE)
    assert base[2.0] < base[50.0]  # rarer storms do more damage
    assert all(with_pkg[t] < base[t] for t in base)  # the pond and drains help
    assert pooled.baseline_ead == pytest.approx(expected_annual_damage(list(base),
                                                                       list(base.values())))
    appraisal = pooled.appraisals[PACKAGE]
    assert appraisal.capital_cost == 400_000 and appraisal.annual_cost == 8_000
    assert appraisal.ead_reduction == pytest.approx(pooled.baseline_ead - appraisal.ead)
    h = pooled.headline
    assert h["package"] == PACKAGE and h["return_period"] == 50.0
    area_50 = pooled.run(BASELINE, 50).impact.area_above(0.1)
    assert h["area_without_m2"] == area_50 > 0
    assert h["area_reduction"] == pytest.approx(1 - h["area_with_m2"] / area_50)
    # summary.json reads back to the same numbers
    again = load_results(pooled.out_dir)
    assert again.headline == json.loads(json.dumps(h))
    assert again.damages(PACKAGE) == pytest.approx(with_pkg)


def test_second_run_is_served_from_the_cache(pooled, tiny, monkeypatch):
    def no_solver(*args, **kwargs):
        raise AssertionError("the solver ran although every run was cached")

    monkeypatch.setattr(solver, "simulate", no_solver)
    again = run_study(tiny, pooled.out_dir, workers=1)
    assert again.executed == 0 and again.cached == 4
    assert again.damages(BASELINE) == pooled.damages(BASELINE)
    assert again.baseline_ead == pooled.baseline_ead


def test_cache_key_follows_what_determines_the_hydraulics(pooled, tiny, tmp_path, monkeypatch):
    calls = []
    real = solver.simulate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(solver, "simulate", counting)
    # economics only: no run repeats, the appraisal follows the new rate
    cheaper = edited(tiny, tmp_path, lambda d: d["economics"].update(discount_rate=0.0))
    result = run_study(cheaper, pooled.out_dir, workers=1)
    assert calls == [] and result.cached == 4
    assert result.appraisals[PACKAGE].pv_benefits == pytest.approx(
        30 * pooled.appraisals[PACKAGE].ead_reduction)
    # a bigger pond changes only the package's runs
    deeper = edited(tiny, tmp_path, lambda d: d["packages"][PACKAGE][0].update(depth_m=1.2))
    result = run_study(deeper, pooled.out_dir, workers=1)
    assert len(calls) == 2 and result.executed == 2


def test_dask_cluster_agrees_with_the_pool(pooled, tiny, tmp_path):
    from distributed import LocalCluster

    # the 50-year runs only: their keys are the pool's (the key does not depend on the
    # other return periods), so the results must agree run for run
    only_50 = edited(tiny, tmp_path, lambda d: d.update(return_periods=[50]))
    with LocalCluster(processes=True, n_workers=1, threads_per_worker=1,
                      dashboard_address=None) as cluster:
        result = run_study(only_50, tmp_path / "dask", dask_address=cluster.scheduler_address)
    assert result.executed == 2
    assert_same_50_year_runs(result, pooled)


def test_pool_after_the_compiled_solver_ran_in_this_process(tmp_path):
    # the compiled engine starts an OpenMP thread pool in the calling process; a pool of
    # forked workers would abort, so the study's pool starts fresh interpreters
    study = write_tiny_study(tmp_path / "study", engine="numba", return_periods=(50,))
    serial = run_study(study, tmp_path / "one", workers=1)
    pooled = run_study(study, tmp_path / "two", workers=2, use_cache=False,
                       threads_per_worker=1)
    assert pooled.executed == 2
    assert_same_50_year_runs(pooled, serial)
