"""Display links and the Content-Security-Policy in a real browser.

A stop board opened with a display link: the token leaves the address bar, the board
shows, and the session it was exchanged for reads nothing else. Then the dashboard and
every app view load under the strict policy without a single violation (the page
guard fails a test on any console error; a ``securitypolicyviolation`` listener
names what the policy refused).
"""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest

from cityos.apps.transit.synthetic import demo_feed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STOP, OTHER_STOP = "S004", "S005"
# every policy violation of the page or its frames, kept where the test can read it
WATCH_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  (window.top.cspViolations || window.cspViolations).push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def board_shown(page) -> None:
    # a function, not an expression: under the CSP Playwright may evaluate a string once
    page.wait_for_function("(name) => document.getElementById('stop-name').textContent === name",
                           arg=demo_feed().stops[STOP].name, timeout=15000)


def test_a_display_link_opens_its_board_and_leaves_no_token_behind(open_page, server,
                                                                   display_link):
    link = display_link(f"transit-stop:{STOP}")
    token = link.split("#display=")[1]
    page = open_page(width=1280, height=720)
    page.goto(link)
    board_shown(page)
    assert page.evaluate("location.href") == f"{server.url}/apps/transit/stops/{STOP}/board"
    assert token not in page.evaluate("document.documentElement.outerHTML")
    held = page.evaluate("JSON.parse(sessionStorage.getItem('cityos.display'))")
    assert held["session"].startswith("cds_") and token not in str(held)

    # the session the page holds reads its board only (asked from here: a refusal in
    # the page would be a console error)
    session = {"Authorization": f"Bearer {held['session']}"}
    with httpx.Client(base_url=server.url, headers=session) as api:
        status = {
            "board": api.get(f"/apps/transit/stops/{STOP}/arrivals").status_code,
            "other stop": api.get(f"/apps/transit/stops/{OTHER_STOP}/arrivals").status_code,
            "entities": api.get("/ngsi-ld/v1/entities", params={"type": "GtfsStop"}).status_code,
            "write": api.post("/ngsi-ld/v1/entities", json={
                "id": "urn:ngsi-ld:Vehicle:x", "type": "Vehicle"}).status_code,
        }
    assert status == {"board": 200, "other stop": 403, "entities": 403, "write": 403}

    # a reload (the token gone) keeps the board: the tab's session is renewed
    page.reload()
    board_shown(page)
    assert "display=" not in page.evaluate("location.href")


def test_a_revoked_display_link_shows_no_board(open_page, server, display_link):
    link = display_link(f"transit-stop:{STOP}")
    key_id = link.split("#display=")[1].split("_")[1]  # cty_<key id>_<secret>
    with server.client("admin") as api:
        api.post(f"/web/api/keys/{key_id}/revoke").raise_for_status()
    page = open_page(width=1280, height=720)
    page.goto(link)
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('display link')",
        timeout=10000)
    assert page.locator("#board").is_hidden()
    assert "display=" not in page.evaluate("location.href")
    # the refused exchange is the one console error, and the expected one
    errors = open_page.guards[-1].console_errors
    assert len(errors) == 1 and "401" in errors[0], errors
    errors.clear()


def test_the_dashboard_and_every_app_view_load_under_the_policy(open_page, server, sign_in):
    page = open_page()
    page.add_init_script(WATCH_VIOLATIONS)
    sign_in(page, "admin")
    assert page.evaluate("window.cspViolations") == []
    with server.client("admin") as api:
        config = api.get("/web/api/config").json()
        headers = api.get("/").headers
    assert "script-src 'self';" in headers["content-security-policy"]
    views = config["views"]
    assert {v["view_id"] for v in views} >= {"transit-analytics", "floodwatch", "subsidence"}
    for view in views:
        page.click(f'[data-view="{view["view_id"]}"]')
        page.wait_for_function(
            "(u) => { const f = document.getElementById('view-frame');"
            " return f.contentWindow.location.pathname === u"
            " && f.contentDocument.readyState === 'complete'; }",
            arg=view["url"].split("?")[0], timeout=10000)
        # the frame's own requests (the dashboard's live stream never goes idle)
        frame = next(f for f in page.frames
                     if urlparse(f.url).path == view["url"].split("?")[0])
        frame.wait_for_load_state("networkidle")
        assert page.evaluate("window.cspViolations") == [], view["view_id"]
        page.click("#view-close")
    # and each page opened on its own, as a screen or a new tab would
    for path in [v["url"] for v in views] + [f"/apps/transit/stops/{STOP}/board"]:
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.cspViolations") == [], path
