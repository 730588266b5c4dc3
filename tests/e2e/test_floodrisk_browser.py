"""The flood-risk pages in a real browser: the dashboard's *Flood risk* view lists the
demo city's published study and opens its report through the signed-in session;
opened without a session, the study list and report pages (and every other app page
that needs sign-in) say to sign in on the dashboard instead of answering JSON.

The module's server has the demo city (``cityos demo --no-serve``), whose flood-risk
builder publishes the tiny demo study with its report.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STUDIES = "/apps/floodrisk/pages/studies"
#: pages a person opens that need the dashboard's session
SIGN_IN_PAGES = [STUDIES, "/apps/floodrisk/pages/report?study=demo", "/apps/floodwatch/watch",
                 "/apps/transit/analytics", "/apps/subsidence/pages/ground",
                 "/apps/subsidence/pages/profile", "/apps/subsidence/pages/levelling"]


def test_the_flood_risk_view_lists_the_study_and_opens_its_report(open_page, server,
                                                                  sign_in, screenshots):
    with server.client("viewer") as api:
        studies = api.get("/apps/floodrisk/studies").json()
    assert studies, "the demo city publishes a flood-risk study"
    page = open_page(width=1600, height=1000)
    sign_in(page, "viewer")
    button = page.locator('#views [data-view="floodrisk"]')
    assert button.inner_text() == "Flood risk"
    button.click()
    assert page.locator("#view-frame").get_attribute("src").startswith(STUDIES)
    frame = page.frame_locator("#view-frame")
    frame.locator("body[data-loaded=true]").wait_for(timeout=20000)
    assert frame.locator("h1").inner_text() == "Flood-risk studies"
    assert int(frame.locator("#studies").get_attribute("data-rows")) == len(studies)
    row = frame.locator(f'#studies tr[data-study="{studies[0]["id"]}"]')
    assert studies[0]["name"] in row.inner_text()
    page.screenshot(path=screenshots / "flood-risk-studies.png")

    row.locator("a.report-link").click()
    frame.locator("body[data-report=shown]").wait_for(timeout=30000)
    report = frame.frame_locator("#report")
    assert studies[0]["name"] in report.locator("h1").first.inner_text()
    assert report.locator("img").count() >= 1


def test_the_view_speaks_japanese(open_page, server, sign_in):
    page = open_page(width=1600, height=1000, locale="ja-JP")
    sign_in(page, "viewer")
    page.click('#views [data-view="floodrisk"]')
    frame = page.frame_locator("#view-frame")
    frame.locator("body[data-loaded=true]").wait_for(timeout=20000)
    assert frame.locator("h1").inner_text() == "洪水リスク検討"


@pytest.mark.parametrize("path", SIGN_IN_PAGES)
def test_a_page_opened_without_a_session_says_to_sign_in(open_page, server, path):
    page = open_page(width=1200, height=800)
    page.goto(server.url + path)
    page.locator("body[data-sign-in=needed]").wait_for(timeout=15000)
    notice = page.locator("#sign-in-needed")
    assert "Sign in on the dashboard" in notice.inner_text()
    link = notice.locator("a")
    assert link.get_attribute("href") == "/"
    assert link.inner_text() == "Open the dashboard to sign in"
    assert '"type"' not in page.locator("body").inner_text()  # not a JSON problem
    link.click()
    page.wait_for_selector("#signin-key", timeout=15000)  # the dashboard's sign-in


@pytest.mark.parametrize("url", ["/apps/floodrisk/studies", "/apps/floodrisk/studies/demo/report"])
def test_the_api_url_opened_in_a_browser_leads_to_the_sign_in(open_page, server, url):
    page = open_page(width=1200, height=800)
    page.goto(server.url + url)
    page.locator("body[data-sign-in=needed]").wait_for(timeout=15000)
    assert page.url.startswith(server.url + "/apps/floodrisk/pages/")

