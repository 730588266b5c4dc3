"""``cityos floodrisk run | report | demo-catchment | publish``, the API and the dashboard
layer, on the tiny study."""

from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cityos.apps.floodrisk.cli import app
from cityos.apps.floodrisk.demo import AREA_TYPE, STUDY_TYPE, write_tiny_study
from cityos.apps.floodrisk.study import load_results, parse_study

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    study = write_tiny_study(tmp_path_factory.mktemp("cli") / "study", return_periods=(2, 50))
    out = study.parent / "results"
    result = invoke("run", study, "--out", out, "--workers", "1", "--threads-per-worker", "1")
    assert result.exit_code == 0, result.output
    return study, out, result.output


def test_run_prints_the_headline(ran):
    study, out, output = ran
    results = load_results(out)
    h = results.headline
    assert "For the 50-year storm, the 'pond_and_drains' measures cut the area" in output
    assert f"({h['area_reduction'] * 100:.0f}% less)" in output
    assert "4 runs simulated, 0 from the cache" in output
    again = invoke("run", study, "--out", out)
    assert again.exit_code == 0 and "0 runs simulated, 4 from the cache" in again.output


def test_run_reports_each_run_of_the_matrix_on_stderr(ran):
    study, out, _ = ran
    again = invoke("run", study, "--out", out)
    assert again.exit_code == 0, again.output
    assert again.stderr.splitlines() == [
        "study study.yaml: cached baseline T=2 (1/4)",
        "study study.yaml: cached baseline T=50 (2/4)",
        "study study.yaml: cached pond_and_drains T=2 (3/4)",
        "study study.yaml: cached pond_and_drains T=50 (4/4)"]
    assert "cached" not in again.stdout  # the results only


def test_report_command(ran, tmp_path):
    _, out, _ = ran
    result = invoke("report", out, "--html", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") == 2
    missing = invoke("report", tmp_path / "nothing")
    assert missing.exit_code == 2 and "no study results" in missing.output


def test_bad_study_exits_2_naming_the_key(ran, tmp_path):
    study, _, _ = ran
    doc = yaml.safe_load(study.read_text())
    doc["packages"]["pond_and_drains"][0].pop("depth_m")
    bad = study.parent / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = invoke("run", bad, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "bad.yaml: packages.pond_and_drains[0].volume_m3: missing (or depth_m)" in result.output


def test_demo_catchment_writes_a_valid_study(tmp_path):
    result = invoke("demo-catchment", tmp_path / "site", "--size", "40", "--cell-size", "25")
    assert result.exit_code == 0, result.output
    study = parse_study(tmp_path / "site" / "study.yaml")
    assert study.return_periods[0] == 2 and "full" in study.packages
    assert "baseline" not in study.packages  # the demo study lists it empty: the baseline always runs


def test_publish_then_api_and_layer(ran, tmp_path):
    from cityos.apps.floodrisk import web
    from cityos.config import Settings
    from cityos.core.store import open_store
    from cityos.server import create_app
    from cityos.web.layers import layer_for

    _, out, _ = ran
    db = f"sqlite:///{tmp_path / 'city.db'}"
    result = invoke("publish", out, "--id", "tiny", "--database-url", db)
    assert result.exit_code == 0, result.output
    store = open_store(db)
    try:
        areas = list(store.scan("default", types=[AREA_TYPE]))
        scenarios = {r.entity["scenario"]["value"] for r in areas}
        assert scenarios == {"baseline", "pond_and_drains"}
        # the depth-class polygons cover the inundated area of the baseline 50-year run
        results = load_results(out)
        base = [r.entity for r in areas if r.entity["scenario"]["value"] == "baseline"]
        assert sum(e["area"]["value"] for e in base) == pytest.approx(
            results.run("baseline", 50).impact.area_above(0.1))
        # the server mounts the app's router itself (no lifespan: no services needed)
        server = create_app(Settings(database_url=db, auth_required=False), store=store)
        client = TestClient(server)
        listed = client.get("/apps/floodrisk/studies").json()
        assert [s["id"] for s in listed] == ["tiny"]
        assert listed[0]["entity"] == f"urn:ngsi-ld:{STUDY_TYPE}:tiny"
        summary = client.get("/apps/floodrisk/studies/tiny").json()
        assert summary["headline"]["area_reduction"] == pytest.approx(
            results.headline["area_reduction"])
        report = client.get("/apps/floodrisk/studies/tiny/report")
        assert report.status_code == 200 and report.headers["content-type"].startswith(
            "text/html")
        assert "<h1>Tiny bowl (demo)</h1>" in report.text
        assert len(client.get("/apps/floodrisk/studies/tiny/areas").json()) == len(areas)
        missing = client.get("/apps/floodrisk/studies/nope")
        assert missing.status_code == 404 and "not published" in missing.json()["detail"]
    finally:
        store.close()
    spec = layer_for(AREA_TYPE)
    assert spec is web.FLOODRISK_LAYERS[0] and spec.color_by.color_of(0.6) == "#2171b5"
