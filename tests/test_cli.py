"""The ``cityos`` command line: import, keys, demo, settings options, app discovery."""

from __future__ import annotations

import json
import sys

import pytest
import typer
from typer.testing import CliRunner

import cityos.apps
from cityos import cli
from cityos.config import Settings
from cityos.core.store import open_store
from cityos.core.tenancy import authenticate

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'city.db'}"


def invoke(*args: str):
    return runner.invoke(cli.app, [str(a) for a in args])


def entities_of(db_url: str, tenant: str = "default") -> dict[str, dict]:
    store = open_store(db_url)
    try:
        return {r.id: r.entity for r in store.scan(tenant)}
    finally:
        store.close()


def write_json(path, document) -> str:
    path.write_text(json.dumps(document, indent=2))
    return str(path)


# ------------------------------------------------------------------------ import
SENSOR = {
    "id": "urn:ngsi-ld:WaterObserved:river-1",
    "type": "WaterObserved",
    "depth": {"type": "Property", "value": 17.5, "unitCode": "CMT",
              "observedAt": "2026-01-05T08:00:00Z"},
    "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:gauge-1"},
    "location": {"type": "GeoProperty", "value": {"type": "Point",
                                                  "coordinates": [101.69, 3.14]}},
    "@context": ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"],
}
BUS = {
    "id": "urn:ngsi-ld:Vehicle:bus-7", "type": "Vehicle",
    "speed": {"type": "Property", "value": 31, "unitCode": "KMH"},
}


def test_import_ngsi_ld_array_lands_in_the_store(tmp_path, db_url):
    path = write_json(tmp_path / "sensors.jsonld", [SENSOR, BUS])
    result = invoke("import", path, "--tenant", "city-a", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert f"{path}: imported 2 entities into tenant 'city-a' (2 created, 0 replaced)" \
        in result.stdout
    stored = entities_of(db_url, "city-a")
    assert set(stored) == {SENSOR["id"], BUS["id"]}
    sensor = stored[SENSOR["id"]]
    assert "@context" not in sensor
    assert sensor["depth"]["value"] == 17.5
    assert sensor["depth"]["unitCode"] == "CMT"
    assert sensor["depth"]["observedAt"].startswith("2026-01-05T08:00:00")
    assert sensor["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:gauge-1"}
    assert sensor["location"]["value"]["coordinates"] == [101.69, 3.14]
    assert stored[BUS["id"]]["speed"]["value"] == 31
    assert entities_of(db_url, "default") == {}  # the tenant option was honoured

    again = invoke("import", path, "--tenant", "city-a", "--database-url", db_url)
    assert "(0 created, 2 replaced)" in again.stdout


def test_import_reports_its_batches_on_stderr_only(tmp_path, db_url):
    entities = [{"id": f"urn:ngsi-ld:Vehicle:bus-{n}", "type": "Vehicle",
                 "speed": {"type": "Property", "value": n}} for n in range(5)]
    path = write_json(tmp_path / "buses.json", entities)
    result = invoke("import", path, "--batch-size", "2", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    # batches of 2, 2 and 1: a line as each tenth of the five is passed
    assert result.stderr.splitlines() == ["import buses.json: 2/5 entities (40%)",
                                          "import buses.json: 4/5 entities (80%)",
                                          "import buses.json: 5/5 entities (100%)"]
    assert result.stdout.splitlines() == [
        f"{path}: imported 5 entities into tenant 'default' (5 created, 0 replaced)"]
    quiet = invoke("--quiet", "import", path, "--database-url", db_url)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_import_single_json_ld_entity_and_key_values(tmp_path, db_url):
    single = write_json(tmp_path / "one.json", SENSOR)
    assert invoke("import", single, "--database-url", db_url).exit_code == 0
    simple = write_json(tmp_path / "kv.json", [{"id": "urn:ngsi-ld:Vehicle:bus-9",
                                                "type": "Vehicle", "speed": 12}])
    result = invoke("import", simple, "--key-values", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    stored = entities_of(db_url)
    assert set(stored) == {SENSOR["id"], "urn:ngsi-ld:Vehicle:bus-9"}
    assert stored["urn:ngsi-ld:Vehicle:bus-9"]["speed"] == {"type": "Property", "value": 12}


def test_import_json_ld_names_are_made_canonical_with_the_context(tmp_path, db_url):
    graph = {
        "@context": [{"depthCm": "https://uri.etsi.org/ngsi-ld/default-context/depth"},
                     "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"],
        "@graph": [
            {"id": "urn:ngsi-ld:WaterObserved:w1", "type": "WaterObserved",
             "depthCm": {"type": "Property", "value": 4}},
            {"id": "urn:ngsi-ld:Vehicle:v1",
             "type": "https://uri.etsi.org/ngsi-ld/default-context/Vehicle",
             "https://uri.etsi.org/ngsi-ld/default-context/speed":
                 {"type": "Property", "value": 9},
             "@context": {"brand": "https://schema.org/brand"},
             "brand": {"type": "Property", "value": "Volvo"}},
        ],
    }
    path = write_json(tmp_path / "graph.jsonld", graph)
    result = invoke("import", path, "--database-url", db_url)
    assert result.exit_code == 0, result.output
    stored = entities_of(db_url)
    assert stored["urn:ngsi-ld:WaterObserved:w1"]["depth"]["value"] == 4
    vehicle = stored["urn:ngsi-ld:Vehicle:v1"]
    assert vehicle["type"] == "Vehicle"
    assert vehicle["speed"]["value"] == 9
    assert vehicle["https://schema.org/brand"]["value"] == "Volvo"
    assert "depthCm" not in vehicle and "@context" not in vehicle


def test_import_geojson_feature_collection(tmp_path, db_url):
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "B-12",
         "geometry": {"type": "Polygon", "coordinates": [[[101.0, 3.0], [101.001, 3.0],
                                                          [101.001, 3.001], [101.0, 3.0]]]},
         "properties": {"name": "Library", "floorsAboveGround": 3, "architect": None}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [101.2, 3.2]},
         "properties": {"id": "urn:ngsi-ld:Building:school-4", "name": "School",
                        "category": ["education"]}},
    ]}
    path = write_json(tmp_path / "buildings.geojson", collection)
    result = invoke("import", path, "--type", "Building", "--database-url", db_url)
    assert result.exit_code == 0, result.output
    assert "imported 2 entities" in result.stdout
    stored = entities_of(db_url)
    library = stored["urn:ngsi-ld:Building:B-12"]
    assert library["type"] == "Building"
    assert library["name"] == {"type": "Property", "value": "Library"}
    assert library["floorsAboveGround"]["value"] == 3
    assert "architect" not in library  # null properties are dropped
    assert library["location"]["type"] == "GeoProperty"
    assert library["location"]["value"]["type"] == "Polygon"
    school = stored["urn:ngsi-ld:Building:school-4"]
    assert school["category"]["value"] == ["education"]
    assert school["location"]["value"] == {"type": "Point", "coordinates": [101.2, 3.2]}


def test_bad_ngsi_ld_exits_2_naming_each_bad_entity_and_writes_nothing(tmp_path, db_url):
    bad = [
        BUS,
        {"type": "Vehicle", "speed": {"type": "Property", "value": 3}},
        {"id": "urn:ngsi-ld:Vehicle:bus-8", "type": "Vehicle", "speed": 40},
        {"id": "urn:ngsi-ld:Vehicle:bus-10", "type": "Vehicle",
         "seen": {"type": "Property", "value": 1, "observedAt": "yesterday"}},
        BUS,
    ]
    path = write_json(tmp_path / "bad.json", bad)
    result = invoke("import", path, "--database-url", db_url)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}: entity 2: id: None is not a URI",
        f"{path}: entity 3: speed: an attribute must be an object with a 'type' "
        "(Property, Relationship, GeoProperty or LanguageProperty)",
        f"{path}: entity 4: seen.observedAt: 'yesterday' is not an ISO 8601 date-time",
        f"{path}: entity 5: id urn:ngsi-ld:Vehicle:bus-7 repeats entity 1",
        f"{path}: 4 of 5 entities are wrong; nothing was imported",
    ]
    assert entities_of(db_url) == {}


def test_bad_geojson_exits_2_and_writes_nothing(tmp_path, db_url):
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": 1, "geometry": {"type": "Point", "coordinates": [1, 2]},
         "properties": {"type": "Building"}},
        {"type": "Feature", "geometry": None, "properties": {"type": "Building"}},
        {"type": "Feature", "id": 3, "geometry": None, "properties": {}},
        {"type": "Point", "coordinates": [1, 2]},
    ]}
    path = write_json(tmp_path / "bad.geojson", collection)
    result = invoke("import", path, "--database-url", db_url)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:3] == [
        f"{path}: entity 2: no id: the feature needs an 'id' or an 'id' property",
        f"{path}: entity 3: no entity type: give --type or a 'type' property",
        f"{path}: entity 4: not a GeoJSON Feature (type must be 'Feature')",
    ]
    assert entities_of(db_url) == {}


def test_import_file_that_is_not_json(tmp_path, db_url):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"id": "urn:a:b",\n  "type": }\n]')
    result = invoke("import", str(path), "--database-url", db_url)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}: line 3: not valid JSON")


def test_import_rejects_an_unknown_format(tmp_path, db_url):
    path = write_json(tmp_path / "x.json", [BUS])
    result = invoke("import", path, "--format", "csv", "--database-url", db_url)
    assert result.exit_code == 2
    assert "--format: 'csv' is not one of auto, ngsi-ld, geojson" in result.stderr


# -------------------------------------------------------------------------- keys
def test_keys_create_list_revoke_round_trip(db_url):
    created = invoke("keys", "create", "--tenant", "city-a", "--role", "operator",
                     "--name", "gateway 3", "--database-url", db_url)
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("cty_")
    key_id = token.split("_")[1]
    assert "not shown again" in created.stderr

    store = open_store(db_url)
    try:
        key = authenticate(store, token)
        assert (key.key_id, key.tenant, key.role, key.name) == (key_id, "city-a", "operator",
                                                               "gateway 3")
    finally:
        store.close()

    listing = invoke("keys", "list", "--tenant", "city-a", "--database-url", db_url)
    assert listing.exit_code == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith(key_id))
    assert row.split()[:4] == [key_id, "city-a", "operator", "active"]
    assert token not in listing.stdout
    other = invoke("keys", "list", "--tenant", "city-b", "--database-url", db_url)
    assert key_id not in other.stdout

    revoked = invoke("keys", "revoke", key_id, "--database-url", db_url)
    assert revoked.exit_code == 0
    assert f"Revoked key {key_id}" in revoked.stdout
    store = open_store(db_url)
    try:
        assert authenticate(store, token) is None
    finally:
        store.close()
    listing = invoke("keys", "list", "--database-url", db_url)
    row = next(line for line in listing.stdout.splitlines() if line.startswith(key_id))
    assert row.split()[3] == "revoked"


def test_keys_bad_role_and_unknown_key(db_url):
    result = invoke("keys", "create", "--tenant", "city-a", "--role", "mayor",
                    "--database-url", db_url)
    assert result.exit_code == 2
    assert "role: 'mayor' is not one of viewer, operator, admin" in result.stderr
    result = invoke("keys", "revoke", "0123456789ab", "--database-url", db_url)
    assert result.exit_code == 1
    assert "API key 0123456789ab does not exist" in result.stderr


# -------------------------------------------------------------------------- demo
def test_demo_no_serve_builds_the_sample_city_idempotently(tmp_path, db_url):
    args = ["demo", "--no-serve", "--database-url", db_url, "--at", "2026-03-01T12:00:00Z"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    # the core's 8 sample entities, the transit app's feed and roads (1 agency, 108 stops,
    # 5 routes, 10 road segments), the flood watch's sites, gauges, devices and pumps (18),
    # the flood-risk study and its 5 hazard areas (6) and the subsidence area, its 60
    # buildings and metro line (62)
    assert "Demo city: 218 entities in tenant 'default'" in first.stdout
    # one progress line per builder on stderr, with its count
    assert first.stderr.splitlines() == [
        "demo city: core (1/5): 8 entities", "demo city: transit (2/5): 124 entities",
        "demo city: floodwatch (3/5): 18 entities", "demo city: floodrisk (4/5): 6 entities",
        "demo city: subsidence (5/5): 62 entities"]
    key_file = tmp_path / "demo-key.txt"
    token = key_file.read_text().strip()
    assert f"Bearer {token}" in first.stdout
    assert "http://127.0.0.1:8000/ngsi-ld/v1/entities" in first.stdout

    def snapshot():
        store = open_store(db_url)
        try:
            records = {r.id: (r.entity, r.modified_us) for r in store.scan("default")}
            depth = store.history("default", "urn:ngsi-ld:WaterObserved:demo-city:flood-01",
                                  ["depth"], None, None, None)
            rows = sum(len(store.history("default", i, None, None, None, None))
                       for i in records)
            key = authenticate(store, token)
        finally:
            store.close()
        return records, depth, rows, key

    records, depth, rows, key = snapshot()
    assert key.role == "admin" and key.tenant == "default"
    # the core sample's own entities (the apps' demo ids may share its "demo-city" name)
    types = sorted(entity["type"] for entity, _ in records.values()
                   if entity["id"].startswith(f"urn:ngsi-ld:{entity['type']}:demo-city:")
                   and entity["type"] not in ("FloodHazardArea", "FloodRiskStudy"))
    assert types == ["Building", "GtfsStop", "GtfsStop", "GtfsStop", "GtfsStop", "Vehicle",
                     "WaterObserved", "WeatherObserved"]
    flood = records["urn:ngsi-ld:WaterObserved:demo-city:flood-01"][0]
    assert flood["depth"]["value"] == 42.0  # the storm peaks at the anchor hour
    assert flood["depth"]["observedAt"].startswith("2026-03-01T12:00:00")
    assert len(depth) == 37  # six hours of 10-minute readings, both ends included
    assert depth[0].instance["observedAt"].startswith("2026-03-01T06:00:00")
    assert [r.instance["value"] for r in depth][-2:] == [41.0, 42.0]

    second = invoke("--quiet", *args)
    assert second.exit_code == 0, second.output
    assert second.stderr == ""  # --quiet: no progress
    assert key_file.read_text().strip() == token  # the dev key is reused
    assert snapshot() == (records, depth, rows, key)  # nothing rewritten, no new history


def test_demo_defaults_to_var_demo_db(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CITYOS_DATABASE_URL", raising=False)
    result = invoke("demo", "--no-serve", "--at", "2026-03-01T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert "sqlite:///var/demo.db" in result.stdout
    assert (tmp_path / "var" / "demo.db").exists()
    assert (tmp_path / "var" / "demo-key.txt").stat().st_mode & 0o077 == 0


# ------------------------------------------------------------ settings and apps
def test_settings_options_precedence(monkeypatch):
    seen = {}
    toy = typer.Typer()

    @toy.command()
    @cli.settings_options()
    def show(settings: Settings, verbose: bool = False) -> None:
        seen["settings"], seen["verbose"] = settings, verbose

    @toy.command()
    def other() -> None:  # a second command keeps ``show`` a named sub-command
        pass

    monkeypatch.setenv("CITYOS_PORT", "9100")
    monkeypatch.setenv("CITYOS_MQTT_URL", "mqtt://broker:1883")
    result = runner.invoke(toy, ["show", "--host", "0.0.0.0", "--no-auth-required",
                                 "--bus-url", "nats://127.0.0.1:4222", "--verbose"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert settings.host == "0.0.0.0"  # option
    assert settings.port == 9100  # environment
    assert settings.mqtt_url == "mqtt://broker:1883"
    assert settings.auth_required is False
    assert settings.bus_url == "nats://127.0.0.1:4222"
    assert settings.max_query_limit == Settings.model_fields["max_query_limit"].default
    assert settings.mqtt_allowed_tenants is None
    assert seen["verbose"] is True

    runner.invoke(toy, ["show", "--port", "9200", "--mqtt-allowed-tenants", "north",
                        "--mqtt-allowed-tenants", "south"])
    assert seen["settings"].port == 9200  # the option beats the environment
    assert seen["settings"].auth_required is True
    assert seen["settings"].mqtt_allowed_tenants == ["north", "south"]


def test_serve_exposes_every_setting():
    result = runner.invoke(cli.app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in result.stdout
        assert f"CITYOS_{name.upper()}" in result.stdout


def test_register_app_commands_finds_app_cli_modules(tmp_path, monkeypatch):
    package = tmp_path / "parkingtest"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(
        "import typer\napp = typer.Typer()\n\n"
        "@app.command()\ndef spaces():\n    typer.echo('42 free')\n\n"
        "@app.command()\ndef other():\n    pass\n")
    (tmp_path / "nocli").mkdir()
    (tmp_path / "nocli" / "__init__.py").write_text("")
    monkeypatch.setattr(cityos.apps, "__path__", [*cityos.apps.__path__, str(tmp_path)])
    root = typer.Typer()

    @root.command()
    def version() -> None:
        pass

    @root.command()
    def other() -> None:
        pass

    try:
        registered = cli.register_app_commands(root)
        assert "parkingtest" in registered and "nocli" not in registered
        result = runner.invoke(root, ["parkingtest", "spaces"])
        assert result.stdout.strip() == "42 free"
    finally:
        for name in ("cityos.apps.parkingtest.cli", "cityos.apps.parkingtest",
                     "cityos.apps.nocli"):
            sys.modules.pop(name, None)


def test_version():
    result = invoke("version")
    assert result.stdout.strip() == f"cityos {cityos.__version__}"
