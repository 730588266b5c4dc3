"""Security headers on every response, and pages that live under their strict policy.

The policy forbids inline script and inline style: every page the server serves (the
dashboard, each view in its top bar, the stop board) must load its scripts and
styles from files and carry no event-handler attribute; the one inline stylesheet
allowed is an app report's own, by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from cityos.config import Settings
from cityos.core.tenancy import create_key
from cityos.server import create_app
from cityos.web.security import content_security_policy, report_style_hashes, tile_source
from cityos.web.views import registered_views

EXPECTED = {
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@pytest.fixture
def served(sqlite_store):
    settings = Settings(database_url="sqlite://", default_tenant="north",
                        tile_url="https://{s}.tiles.example.org/{z}/{x}/{y}.png")
    app = create_app(settings, store=sqlite_store)
    key = create_key(sqlite_store, "north", "viewer")[0]
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {key}"}


def directives(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (d.split() for d in policy.split(";"))}


def assert_secured(response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers[name] == value, (response.url, name)
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:", "blob:", "https://*.tiles.example.org"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]


def test_every_kind_of_response_carries_the_headers(served):
    client, viewer = served
    responses = {
        "dashboard": client.get("/"),
        "app page": client.get("/apps/transit/stops/S004/board"),
        "static script": client.get("/web/static/js/app-page.js"),
        "app script": client.get("/apps/transit/static/board.js"),
        "API": client.get("/ngsi-ld/v1/types", headers=viewer),
        "dashboard API": client.get("/web/api/config"),
        "refused": client.get("/ngsi-ld/v1/types"),
        "not found": client.get("/no/such/page"),
        "too large": client.post("/ngsi-ld/v1/entities", headers=viewer,
                                 content=b"x" * (Settings().max_body_bytes + 1)),
        "health": client.get("/health"),
    }
    assert {k: r.status_code for k, r in responses.items()} == {
        "dashboard": 200, "app page": 200, "static script": 200, "app script": 200,
        "API": 200, "dashboard API": 200, "refused": 401, "not found": 404,
        "too large": 413, "health": 200}
    for response in responses.values():
        assert_secured(response)


class InlineCode(HTMLParser):
    """Everything in a page that a policy without 'unsafe-inline' refuses."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self._in = "script"
        if tag == "style":
            self._in = "style"
        self.found += [f"<{tag} {name}=>" for name in names
                       if name.startswith("on") or name == "style"]
        if names.get("href", "").startswith("javascript:"):
            self.found.append(f"<{tag} href=javascript:>")

    def handle_data(self, data):
        if self._in:
            self.found.append(f"inline <{self._in}>: {data.strip()[:40]!r}")

    def handle_endtag(self, tag):
        self._in = None


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_the_checker_finds_inline_code():
    page = ('<p onclick="go()" style="color:red"><script>alert(1)</script>'
            '<style>p{}</style><a href="javascript:go()">x</a><script src="/a.js"></script>')
    assert inline_code(page) == ["<p onclick=>", "<p style=>", "inline <script>: 'alert(1)'",
                                 "inline <style>: 'p{}'", "<a href=javascript:>"]


def test_no_served_page_needs_inline_script_or_style(served):
    client, _ = served
    pages = ["/", "/apps/transit/stops/S004/board"] + [v.url for v in registered_views()]
    assert len(pages) >= 6  # the dashboard, the board and the apps' views
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert inline_code(response.text) == [], path
        # and every script and stylesheet it names is served, from this origin
        for ref in re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', response.text):
            assert client.get(ref).status_code == 200, (path, ref)


def test_a_report_keeps_its_inline_stylesheet_by_hash():
    from cityos.apps.subsidence.report import html_page

    page = html_page("Ground motion", "<p>rates</p>")
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = directives(content_security_policy())
    assert f"'sha256-{digest}'" in policy["style-src"]
    assert len(report_style_hashes()) == 3  # flood risk, flood watch, subsidence
    assert policy["style-src"] == ["'self'", *report_style_hashes()]
    assert policy["img-src"] == ["'self'", "data:", "blob:"]  # no tile server configured


def test_tile_sources():
    assert tile_source(None) is None
    assert tile_source("https://tiles.example.org/{z}/{x}/{y}.png") == \
        "https://tiles.example.org"
    assert tile_source("http://{s}.tile.example.org:8080/{z}/{x}/{y}.png") == \
        "http://*.tile.example.org:8080"
    for bad in ("tiles.example.org/{z}/{x}/{y}.png", "ftp://tiles.example.org/{z}",
                "https://a.{s}.example.org/{z}"):
        with pytest.raises(ValueError, match="tile_url"):
            tile_source(bad)
