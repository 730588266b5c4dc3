"""The flood-risk pages a person opens: public HTML (no key, no JSON), scripts in
files only (the Content-Security-Policy allows no inline script), and the dashboard's
*Flood risk* view and map link lead to them."""

from __future__ import annotations

import re
import warnings

import pytest

from cityos.config import Settings
from cityos.server import create_app

with warnings.catch_warnings():  # starlette's testclient warns about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PAGES = {"studies": "/apps/floodrisk/static/studies.js",
         "report": "/apps/floodrisk/static/report.js"}


@pytest.fixture
def client(sqlite_store):
    settings = Settings(database_url="sqlite:///unused.db", mqtt_url=None,
                        bus_url="memory://", auth_required=True)
    with TestClient(create_app(settings, sqlite_store)) as test_client:
        yield test_client


@pytest.mark.parametrize("page", PAGES)
def test_a_page_is_html_without_a_key(client, page):
    response = client.get(f"/apps/floodrisk/pages/{page}",
                          headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == [f'<script type="module" src="{PAGES[page]}">']
    assert re.search(r"<script[^>]*>\s*[^<\s]", html) is None  # nothing inline
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no inline event handler
    script = client.get(PAGES[page])
    assert script.status_code == 200
    # the page needs the dashboard's session: it imports the sign-in guard first
    imports = [line for line in script.text.splitlines() if line.startswith("import")]
    assert imports[0] == 'import "/web/static/js/sign-in.js";'


def test_an_unknown_page_is_404(client):
    assert client.get("/apps/floodrisk/pages/nothing").status_code == 404


def test_the_data_still_needs_a_key(client):
    assert client.get("/apps/floodrisk/studies").status_code == 401


def test_the_dashboard_offers_the_view_and_the_map_links_to_the_page(client):
    config = client.get("/web/api/config").json()
    views = {v["view_id"]: v for v in config["views"]}
    assert views["floodrisk"]["url"] == "/apps/floodrisk/pages/studies"
    assert views["floodrisk"]["title"] == {"en": "Flood risk", "ja": "洪水リスク"}
    layers = {layer["entity_type"]: layer for layer in config["layers"]}
    assert layers["FloodHazardArea"]["app_url"] == "/apps/floodrisk/pages/studies"


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize("url, page", [
    ("/apps/floodrisk/studies", "/apps/floodrisk/pages/studies"),
    ("/apps/floodrisk/studies/new-town/report", "/apps/floodrisk/pages/report?study=new-town"),
])
def test_a_browser_opening_an_api_url_is_sent_to_its_page(client, url, page):
    sent = client.get(url, headers=BROWSER, follow_redirects=False)
    assert sent.status_code == 303
    assert sent.headers["location"] == page
    assert client.get(url, headers=BROWSER).text.startswith("<!doctype html>")


@pytest.mark.parametrize("headers", [{}, {"Accept": "application/json"}, {"Accept": "*/*"}])
def test_an_api_client_without_a_key_still_gets_a_401(client, headers):
    response = client.get("/apps/floodrisk/studies", headers=headers, follow_redirects=False)
    assert response.status_code == 401
    assert response.json()["type"].endswith("/Unauthorized")


def test_with_a_key_the_api_answers_json_even_to_a_browser_accept(client):
    from cityos.core.tenancy import create_key

    token, _ = create_key(client.app.state.store, "default", "viewer")
    response = client.get("/apps/floodrisk/studies", follow_redirects=False,
                          headers={**BROWSER, "Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == []
