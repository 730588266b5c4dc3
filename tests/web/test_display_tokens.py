"""Display links: a token for one public screen that reads its board and nothing else.

A real app over SQLite with the demo city's transit feed: an admin makes a display
link (API and ``cityos keys display``), the page's exchange gives a display session,
and the session (and the token itself) is refused everywhere but the board's data.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cityos import cli
from cityos.apps.transit.demo import build_transit_demo
from cityos.apps.transit.synthetic import demo_feed
from cityos.config import Settings
from cityos.core.store import open_store
from cityos.core.tenancy import (
    DISPLAY_SESSION_S,
    authenticate_display_session,
    create_display_token,
    create_key,
    list_keys,
    open_display_session,
    renew_display_session,
    revoke_key,
)
from cityos.server import create_app
from cityos.web.display import display_scope

TENANT = "city"
BOARD, OTHER_STOP, EXTRA_STOP = "S004", "S005", "S006"
ARRIVALS = "/apps/transit/stops/{}/arrivals"
VEHICLE = {"id": "urn:ngsi-ld:Vehicle:bus-x", "type": "Vehicle",
           "speed": {"type": "Property", "value": 30}}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('display') / 'city.db'}"
    store = open_store(url)
    build_transit_demo(store, TENANT, datetime.now(UTC))
    keys = {role: create_key(store, TENANT, role)[0] for role in ("viewer", "admin")}
    keys["other-admin"] = create_key(store, "other", "admin")[0]
    app = create_app(Settings(database_url=url, default_tenant=TENANT), store)
    with TestClient(app) as client:
        yield {"client": client, "store": store, "keys": keys, "url": url}


def bearer(token: str, **extra: str) -> dict:
    return {"Authorization": f"Bearer {token}", **extra}


def make_link(city, **body) -> dict:
    response = city["client"].post("/web/api/display-links", json=body,
                                   headers=bearer(city["keys"]["admin"]))
    assert response.status_code == 201, response.text
    return response.json()


def exchange(city, token: str):
    return city["client"].post("/web/api/display-session", json={"token": token})


def test_a_display_session_reads_its_board_and_nothing_else(city):
    client = city["client"]
    link = make_link(city, board=f"transit-stop:{BOARD}", name="stop 4 screen")
    token = link["token"]
    assert link["link"] == f"/apps/transit/stops/{BOARD}/board#display={token}"
    assert link["role"] == "display" and link["tenant"] == TENANT
    assert link["scope"] == {"board": f"transit-stop:{BOARD}",
                             "page": f"/apps/transit/stops/{BOARD}/board",
                             "reads": [ARRIVALS.format(BOARD)]}
    opened = exchange(city, token)
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["session"].startswith("cds_") and body["session"] != token
    assert (body["tenant"], body["page"], body["expiresIn"]) == \
        (TENANT, f"/apps/transit/stops/{BOARD}/board", DISPLAY_SESSION_S)
    session = bearer(body["session"])

    board = client.get(ARRIVALS.format(BOARD), headers=session)
    assert board.status_code == 200, board.text
    assert board.json()["stop"]["name"] == demo_feed().stops[BOARD].name

    refused = {
        "another stop": client.get(ARRIVALS.format(OTHER_STOP), headers=session),
        "the board by entity id": client.get(
            ARRIVALS.format(f"urn:ngsi-ld:GtfsStop:{BOARD}"), headers=session),
        "entities": client.get("/ngsi-ld/v1/entities", params={"type": "GtfsStop"},
                               headers=session),
        "history": client.get("/ngsi-ld/v1/temporal/entities", params={"type": "Vehicle"},
                              headers=session),
        "map features": client.get("/web/api/features", headers=session),
        "who am I": client.get("/web/api/me", headers=session),
        "an entity write": client.post("/ngsi-ld/v1/entities", json=VEHICLE,
                                       headers=session),
        "a service alert": client.post("/apps/transit/alerts", json={}, headers=session),
        "a POST to the board's path": client.post(ARRIVALS.format(BOARD), headers=session),
        "another tenant": client.get(ARRIVALS.format(BOARD),
                                     headers=bearer(body["session"], **{
                                         "NGSILD-Tenant": "other"})),
    }
    assert {what: r.status_code for what, r in refused.items()} == \
        {what: 403 for what in refused} | {"a POST to the board's path": 405}
    assert refused["another stop"].json()["detail"] == "a display session may only read its board"


def test_the_display_token_itself_opens_nothing_but_a_session(city):
    client = city["client"]
    token = make_link(city, board=f"transit-stop:{BOARD}")["token"]
    for response in (client.get(ARRIVALS.format(BOARD), headers=bearer(token)),
                     client.get(ARRIVALS.format(OTHER_STOP), headers=bearer(token)),
                     client.get("/ngsi-ld/v1/entities", params={"type": "GtfsStop"},
                                headers=bearer(token)),
                     client.post("/ngsi-ld/v1/entities", json=VEHICLE, headers=bearer(token))):
        assert response.status_code == 403
        assert "display-session" in response.json()["detail"]
    # and an ordinary key is no display token
    assert exchange(city, city["keys"]["viewer"]).status_code == 401


def test_more_stops_widen_the_scope_to_exactly_those_stops(city):
    client = city["client"]
    token = make_link(city, board=f"transit-stop:{BOARD}", stops=[EXTRA_STOP])["token"]
    session = bearer(exchange(city, token).json()["session"])
    assert client.get(ARRIVALS.format(BOARD), headers=session).status_code == 200
    assert client.get(ARRIVALS.format(EXTRA_STOP), headers=session).status_code == 200
    assert client.get(ARRIVALS.format(OTHER_STOP), headers=session).status_code == 403


def test_revoking_a_display_token_ends_the_link_and_its_sessions(city):
    client = city["client"]
    admin = bearer(city["keys"]["admin"])
    link = make_link(city, board=f"transit-stop:{BOARD}")
    session = exchange(city, link["token"]).json()["session"]
    listed = {k["key_id"]: k
              for k in client.get("/web/api/keys", headers=admin).json()}
    assert listed[link["key_id"]]["role"] == "display"
    assert listed[link["key_id"]]["scope"]["board"] == f"transit-stop:{BOARD}"
    # another tenant's admin cannot revoke it
    assert client.post(f"/web/api/keys/{link['key_id']}/revoke",
                       headers=bearer(city["keys"]["other-admin"])).status_code == 404
    assert client.post(f"/web/api/keys/{link['key_id']}/revoke",
                       headers=admin).status_code == 200
    assert exchange(city, link["token"]).status_code == 401
    assert client.get(ARRIVALS.format(BOARD), headers=bearer(session)).status_code == 401
    assert client.post("/web/api/display-session/renew",
                       headers=bearer(session)).status_code == 401


def test_only_an_admin_makes_display_links_and_bad_ones_are_named(city):
    client = city["client"]
    viewer = client.post("/web/api/display-links", json={"board": f"transit-stop:{BOARD}"},
                         headers=bearer(city["keys"]["viewer"]))
    assert viewer.status_code == 403
    admin = bearer(city["keys"]["admin"])
    for body, field in (({"board": "bus:S004"}, "board:"), ({"board": "transit-stop:"}, "board:"),
                        ({"board": "transit-stop:S0/../S1"}, "board:"),
                        ({"board": f"transit-stop:{BOARD}", "stops": ["a b"]}, "stops:"),
                        ({"board": f"transit-stop:{BOARD}", "stops": "S005"}, "stops:"),
                        ({"board": f"transit-stop:{BOARD}", "name": 7}, "name:")):
        response = client.post("/web/api/display-links", json=body, headers=admin)
        assert response.status_code == 400, body
        assert response.json()["detail"].startswith(field), response.json()
    missing = client.post("/web/api/display-session", json={})
    assert missing.status_code == 400
    assert missing.json()["detail"].startswith("token:")


def test_a_session_lasts_its_lifetime_and_renews_while_its_token_lives(city):
    store = city["store"]
    token, record = create_display_token(store, TENANT, display_scope(f"transit-stop:{BOARD}"))
    t0 = 1_800_000_000.0
    session_token, session = open_display_session(store, token, now_t=t0)
    assert session.expires_t == t0 + DISPLAY_SESSION_S
    assert authenticate_display_session(store, session_token, t0 + DISPLAY_SESSION_S - 1)
    assert authenticate_display_session(store, session_token, t0 + DISPLAY_SESSION_S) is None
    assert authenticate_display_session(store, session_token[:-2] + "xx", t0) is None
    renewed_token, renewed = renew_display_session(store, session_token, now_t=t0 + 600)
    assert renewed.expires_t == t0 + 600 + DISPLAY_SESSION_S
    assert renewed_token != session_token and renewed.key_id == record.key_id
    revoke_key(store, record.key_id)
    assert authenticate_display_session(store, renewed_token, t0 + 700) is None


def test_a_key_in_the_query_string_authenticates_nothing(city):
    # ?api_key= used to be read by the server: a key in a URL ends up in every log
    client = city["client"]
    viewer = city["keys"]["viewer"]
    assert client.get("/web/api/me", headers=bearer(viewer)).status_code == 200
    assert client.get("/web/api/me", params={"api_key": viewer}).status_code == 401


def test_cli_makes_lists_and_revokes_display_links(city):
    runner = CliRunner()
    made = runner.invoke(cli.app, ["keys", "display", "--tenant", TENANT, "--board",
                                   f"transit-stop:{BOARD}", "--stops", f"{EXTRA_STOP}, S007",
                                   "--name", "cli screen", "--database-url", city["url"]])
    assert made.exit_code == 0, made.output
    link = made.stdout.strip().splitlines()[-1]
    page, _, fragment = link.partition("#display=")
    assert page == f"/apps/transit/stops/{BOARD}/board" and fragment.startswith("cty_")
    record = next(k for k in list_keys(city["store"], TENANT) if k.name == "cli screen")
    assert record.scope["reads"] == [ARRIVALS.format(s) for s in (BOARD, EXTRA_STOP, "S007")]
    assert exchange(city, fragment).status_code == 200

    listing = runner.invoke(cli.app, ["keys", "list", "--tenant", TENANT,
                                      "--database-url", city["url"]])
    row = next(line for line in listing.stdout.splitlines() if record.key_id in line)
    assert row.split()[:3] == [record.key_id, TENANT, "display"]
    assert f"transit-stop:{BOARD}" in row and row.endswith("cli screen")

    assert runner.invoke(cli.app, ["keys", "revoke", record.key_id, "--database-url",
                                   city["url"]]).exit_code == 0
    assert exchange(city, fragment).status_code == 401

    bad = runner.invoke(cli.app, ["keys", "display", "--tenant", TENANT, "--board", "S004",
                                  "--database-url", city["url"]])
    assert bad.exit_code == 2
    assert "board: 'S004' is not kind:id" in bad.output and "Traceback" not in bad.output
