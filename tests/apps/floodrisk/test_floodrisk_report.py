"""The HTML report: headline numbers, maps, tables, self-contained; built from results
with known numbers (no solver run)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cityos.apps.floodrisk.damage import EventImpact
from cityos.apps.floodrisk.economics import appraise, expected_annual_damage
from cityos.apps.floodrisk.grid import GridSpec, write_geotiff
from cityos.apps.floodrisk.report import headline_sentence, render_report, write_report
from cityos.apps.floodrisk.study import (
    BASELINE,
    RASTERS,
    RunResult,
    StudyResults,
    headline_numbers,
    load_results,
)

GRID = GridSpec.from_origin(700_000.0, 9_320_000.0, 10.0, (20, 20), "EPSG:32748")
PERIODS = [2.0, 50.0]
# area above 10 cm (m2) and damage per (package, T)
AREA = {(BASELINE, 2.0): 20_000.0, (BASELINE, 50.0): 100_000.0,
        ("full", 2.0): 0.0, ("full", 50.0): 20_000.0}
DAMAGE = {(BASELINE, 2.0): 1.0e6, (BASELINE, 50.0): 9.0e6,
          ("full", 2.0): 0.0, ("full", 50.0): 2.0e6}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    runs = {}
    for (package, t), area in AREA.items():
        run_dir = out / "runs" / f"{package}-{t:g}"
        run_dir.mkdir(parents=True)
        depth = np.zeros(GRID.shape, "float32")
        depth.flat[: int(area / 100)] = 0.4 if package == "full" else 0.8
        for attribute, (name, _) in RASTERS.items():
            write_geotiff(run_dir / name, depth if attribute == "max_depth_m" else depth * 0,
                          GRID, nodata=float("nan"))
        impact = EventImpact(DAMAGE[(package, t)], {"residential": DAMAGE[(package, t)]},
                             12, 40, 48.0, {0.1: area, 0.5: area / 2}, 1500.0, 9000.0, 0.3)
        runs[(package, t)] = RunResult(package, t, f"{package}-{t:g}", run_dir,
                                       {"rain_depth_mm": 100.0 + t}, impact)
    base = {t: DAMAGE[(BASELINE, t)] for t in PERIODS}
    full = {t: DAMAGE[("full", t)] for t in PERIODS}
    appraisal = appraise("full", base, full, capital_cost=5e6, annual_cost=1e5,
                         discount_rate=0.06, lifetime_years=30, loading=0.3)
    res = StudyResults(
        name="Test town <study>", out_dir=out, return_periods=PERIODS,
        packages=[BASELINE, "full"], runs=runs, appraisals={"full": appraisal},
        baseline_ead=expected_annual_damage(PERIODS, list(base.values())),
        economics={"currency": "USD", "discount_rate": 0.06, "lifetime_years": 30,
                   "loading_factor": 0.3, "tail": "hold", "protection_standard_yr": None},
        headline={}, measures={"full": [{"type": "levee"}, {"type": "retention_pond"}]},
        grid={"crs": "EPSG:32748", "shape": [20, 20], "cell_size": 10.0})
    res.headline = headline_numbers(res)
    res.write()
    return res


def test_headline_numbers_and_sentence(results):
    h = results.headline
    assert h["package"] == "full" and h["return_period"] == 50.0
    assert h["area_without_m2"] == 100_000 and h["area_with_m2"] == 20_000
    assert h["area_reduction"] == pytest.approx(0.8)
    # EAD: trapezoid over p in [0.02, 0.5] plus the held tail
    ead_base = (1e6 + 9e6) / 2 * 0.48 + 9e6 * 0.02
    assert results.baseline_ead == pytest.approx(ead_base)
    text = headline_sentence(results)
    assert "from 10.0 ha to 2.0 ha (80% less)" in text
    assert "USD 2.58 m" in text  # the baseline EAD, 2.58 million
    assert f"{h['bcr']:.2f}" in text


def test_report_is_self_contained_with_maps_and_tables(results):
    html = render_report(results)
    assert html.startswith("<!DOCTYPE html>")
    assert "Test town &lt;study&gt;" in html and "<study>" not in html  # escaped
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', html)) == 2
    assert not re.search(r"(src|href)=['\"]https?:", html) and "<script" not in html
    assert "80% less" in html
    # the event table: one row per (T, package) with the area in ha and road km
    assert html.count("<tr><td class=\"l\">50</td><td class=\"l\">") == 2
    assert "<td>10.0</td><td>5.0</td>" in html  # baseline T=50: 10 ha > 10 cm, 5 ha > 50 cm
    assert "<td>1.50</td>" in html  # road km flooded
    assert "levee, retention_pond" in html


def test_write_report_from_summary(results, tmp_path):
    again = load_results(results.out_dir)
    assert again.headline["area_reduction"] == pytest.approx(0.8)
    path = write_report(results.out_dir, tmp_path / "r.html")
    assert path.read_text().count("data:image/png;base64,") == 2
    with pytest.raises(FileNotFoundError, match="no study results"):
        write_report(tmp_path)
