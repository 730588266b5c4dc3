"""The app registry: a throw-away app plugs in through an entry point, touching no file
of CityOS, and shows in the command line, the API, the dashboard and the demo; a broken
app is reported once, by name, and the others keep working."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cityos.apps import registry
from cityos.apps.registry import AppSpec
from cityos.config import Settings

PARKING = {
    "__init__.py": '"""A throw-away parking app, installed only for these tests."""\n',
    "app.py": """
        from cityos.apps.registry import AppSpec

        APP = AppSpec(
            name="parking",
            title={"en": "Parking", "ja": "駐車場"},
            entity_types=("ParkingSpot",),
            cli=".cli:app",
            router=".api:router",
            layers=".web:LAYERS",
            views=".web:VIEWS",
            demo_builder=".demo:build",
            simulator=".demo:run",
        )
        TRANSIT_AGAIN = AppSpec(name="transit", title={"en": "A second transit"})
        """,
    "cli.py": """
        import typer

        app = typer.Typer()

        @app.command()
        def spaces():
            typer.echo("42 free")

        @app.command()
        def other():
            pass
        """,
    "api.py": """
        from fastapi import APIRouter

        router = APIRouter()

        @router.get("/spaces")
        def spaces() -> dict:
            return {"free": 42}
        """,
    "web.py": """
        from cityos.appkit.dashboard import LayerSpec, ViewSpec

        LAYERS = (LayerSpec("ParkingSpot", {"en": "Parking spots"}, geometry="point"),)
        VIEWS = (ViewSpec("parking", {"en": "Parking"}, "/apps/parking/spaces", order=99),)
        """,
    "demo.py": """
        from cityos.appkit.demo import CITY_CENTRE

        SPOT = "urn:ngsi-ld:ParkingSpot:demo-city:P1"

        def build(store, tenant, at):
            spot = {"id": SPOT, "type": "ParkingSpot",
                    "status": {"type": "Property", "value": "free"},
                    "location": {"type": "GeoProperty",
                                 "value": {"type": "Point", "coordinates": list(CITY_CENTRE)}}}
            store.upsert_entities(tenant, [spot], replace=True)
            return [SPOT]

        def run(demo):
            demo.stop.wait()
        """,
}
ENTRY_POINTS = """
    [cityos.apps]
    parking = cityos_parking.app:APP
    broken = cityos_broken.app:APP
    transit = cityos_parking.app:TRANSIT_AGAIN
    """
BROKEN_REPORT = ("app broken: cannot load its spec (entry point cityos_broken.app:APP): "
                 "ModuleNotFoundError: No module named 'cityos_missing_dependency'")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """``cityos_parking`` and ``cityos_broken`` on the path, with the ``cityos.apps``
    entry points of an installed distribution (a ``.dist-info`` folder)."""
    package = tmp_path / "cityos_parking"
    package.mkdir()
    for name, text in PARKING.items():
        (package / name).write_text(textwrap.dedent(text))
    broken = tmp_path / "cityos_broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    (broken / "app.py").write_text("import cityos_missing_dependency\n")
    info = tmp_path / "cityos_parking-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cityos-parking\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_reported", set())  # report afresh in this test
    yield tmp_path
    from cityos.web.layers import unregister_layer
    from cityos.web.views import unregister_view

    unregister_layer("ParkingSpot")
    unregister_view("parking")
    for name in [m for m in sys.modules if m.split(".")[0] in ("cityos_parking",
                                                                "cityos_broken")]:
        del sys.modules[name]


def test_the_built_in_apps_are_declared_once_in_their_package():
    specs = {spec.name: spec for spec in registry.discover()}
    assert list(specs)[:4] == ["transit", "floodwatch", "floodrisk", "subsidence"]
    transit = specs["transit"]
    assert transit.package == "cityos.apps.transit" and transit.origin == "builtin"
    assert transit.reference("router") == "cityos.apps.transit.api:router"
    assert transit.settings == ("transit_vehicle_stale_s",)
    assert all(spec.title.get("ja") for spec in list(specs.values())[:4])
    for spec in list(specs.values())[:4]:
        assert os.path.exists(spec.benchmark), spec.benchmark


def test_a_throw_away_app_shows_everywhere_and_a_broken_one_is_reported_once(
        installed, sqlite_store, caplog):
    from cityos import cli, demo
    from cityos.server import create_app

    caplog.set_level(logging.WARNING, logger="cityos.apps")
    names = [spec.name for spec in registry.discover()]
    assert names[:4] == ["transit", "floodwatch", "floodrisk", "subsidence"]
    assert "parking" in names and "broken" not in names
    assert names.count("transit") == 1  # the first of a name wins

    # the command line: `cityos parking spaces`, in a fresh process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed),
                                                        os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "cityos.cli", "parking", "spaces"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42 free"
    assert result.stderr.count(BROKEN_REPORT) == 1
    assert "an app named 'transit' is already registered" in result.stderr

    # the API and the dashboard's layer list and views
    app = create_app(Settings(database_url="sqlite://", default_tenant="default"),
                     store=sqlite_store)
    with TestClient(app) as client:
        assert client.get("/apps/parking/spaces").json() == {"free": 42}
        config = client.get("/web/api/config").json()
        assert client.get("/apps/transit/status").status_code != 404  # the others stay
    assert "ParkingSpot" in [layer["entity_type"] for layer in config["layers"]]
    assert "Vehicle" in [layer["entity_type"] for layer in config["layers"]]
    assert config["views"][-1]["view_id"] == "parking"

    # the demo: the app's builder writes its data, its simulator is started with the rest
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    written = demo.build_demo_city(sqlite_store, "default", at, apps={"parking"})
    assert written == {"cityos.demo:build_core_sample": 8, "cityos_parking.demo:build": 1}
    stored = {r.id: r.entity for r in sqlite_store.scan("default", types=["ParkingSpot"])}
    assert list(stored) == ["urn:ngsi-ld:ParkingSpot:demo-city:P1"]
    assert "cityos_parking.demo:run" in [name for _, name, _ in demo.demo_simulators()]

    # in this process too, with the CLI's own loader
    import typer

    root = typer.Typer()
    assert "parking" in cli.register_app_commands(root)

    reports = [r.getMessage() for r in caplog.records if r.name == "cityos.apps"]
    assert reports.count(BROKEN_REPORT) == 1  # discovered five times, reported once


def test_a_broken_part_leaves_the_rest_of_the_app(installed, caplog):
    (installed / "cityos_parking" / "cli.py").write_text("raise RuntimeError('no typer')\n")
    caplog.set_level(logging.WARNING, logger="cityos.apps")
    spec = registry.app_named("parking")
    assert registry.load_part(spec, "cli") is None
    assert registry.load_part(spec, "router") is not None
    assert registry.load_part(spec, "services") is None  # it has none: nothing reported
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("app parking")] == [
        "app parking: cannot load cli (.cli:app): RuntimeError: no typer"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Parking", "title": {"en": "P"}}, "lower-case"),
    ({"name": "parking", "title": {"ja": "駐車場"}}, "'en'"),
    ({"name": "parking", "title": {"en": "P"}, "router": "api router"}, "router"),
    ({"name": "parking", "title": {"en": "P"}, "settings": ("parking_spots",)},
     "parking_spots is not a field"),
    ({"name": "parking", "title": {"en": "P"}, "entity_types": "ParkingSpot"}, "tuples"),
])
def test_a_wrong_spec_says_which_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AppSpec(**kwargs)


def test_a_relative_reference_needs_the_package():
    with pytest.raises(ValueError, match="relative"):
        AppSpec(name="parking", title={"en": "P"}, cli=".cli:app").reference("cli")
