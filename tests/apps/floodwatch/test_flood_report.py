"""The HTML event report: written, self-contained, escaped, with the tables and plots."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from cityos.apps.floodwatch.events import EventDataError
from cityos.apps.floodwatch.report import ReportOptions, SiteRecord, render_report, write_report

TZ = ZoneInfo("Asia/Phnom_Penh")
START = datetime(2024, 6, 3, tzinfo=TZ).timestamp()  # a Monday
DAYS = 28


def site(site_id: str, name: str, storms: list[tuple[float, float]], traffic: bool):
    """5-min gauge and sensor; each storm (hours after START, mm) falls evenly over 30 min
    and the road behaves as a leaky reservoir, so the depth answers the rain."""
    t = START + 300 * np.arange(1, DAYS * 288 + 1)
    rain = np.zeros(t.size)
    for at_h, total in storms:
        i = int(at_h * 12)
        rain[i:i + 6] = total / 6
    depth = np.zeros(t.size)
    for i in range(1, t.size):
        depth[i] = max(0.0, depth[i - 1] + 1.5 * rain[i] - 0.04 * depth[i - 1] - 0.05)
    record = SiteRecord(site_id, name, t, rain, t, depth)
    if traffic:
        tt = START + 900 * np.arange(1, DAYS * 96 + 1)
        hour = ((tt - 450 - START) % 86400) // 3600
        volume = np.where((hour >= 17) & (hour < 20), 400.0, 120.0)
        flooded = np.interp(tt - 450, t, depth) >= 10
        volume[flooded] *= 0.1
        record.traffic_t, record.traffic_volume = tt, volume
    return record


def sites():
    # Storms at 18:00 local on a few evenings (hours after Monday 00:00) and one at night.
    evening = [(24 * d + 18, mm) for d, mm in [(2, 30.0), (9, 45.0), (16, 20.0)]]
    return [site("PP-001", "Monivong <Blvd> & 'Street 5'", evening + [(24 * 5 + 2, 25.0)], True),
            site("PP-002", "Norodom", [(24 * 3 + 14, 35.0), (24 * 11 + 9, 15.0)], False)]


def test_report_written_with_tables_and_embedded_plots(tmp_path):
    path = write_report(tmp_path / "floods.html", sites())
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', html)
    # one per site, the scatter, the traffic bars by hour
    assert html.count("<img") == len(imgs) == 2 + 1 + 1
    assert all(base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") for data in imgs)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    # The event tables: 4 + 2 rain events, each with its row.
    assert html.count("<table>") == 2 + 1 + 2  # sites, correlation, traffic events and hours
    assert len(re.findall(r'<tr><td class="l">\d+</td>', html)) == 6
    assert "2024-06-05 18:00" in html  # the first storm, in Phnom Penh time
    assert "Pearson r" in html and "Spearman rho" in html
    # The 90% evening loss appears in the by-hour table.
    row = re.search(r"<td class=\"l\">18:00</td><td>[^<]*</td><td>[^<]*</td><td>([-\d.]+)</td>",
                    html)
    assert row is not None and float(row.group(1)) == pytest.approx(-90.0, abs=1.0)


def test_text_is_escaped():
    one = site("PP-001", "Monivong <Blvd> & 'Street 5'", [(24 * 2 + 18, 30.0)], False)
    html = render_report([one], ReportOptions(title="Floods <i>June</i>",
                                              extra_notes=("a < b & c",)))
    assert "Monivong &lt;Blvd&gt; &amp; &#x27;Street 5&#x27;" in html
    assert "<Blvd>" not in html and "<i>June</i>" not in html
    assert "Floods &lt;i&gt;June&lt;/i&gt;" in html and "a &lt; b &amp; c" in html


def test_too_few_events_for_a_correlation():
    one = site("PP-003", "Sothearos", [(24 * 2 + 18, 30.0)], False)
    html = render_report([one])
    assert html.count("<img") == 1  # the site plot; no scatter, no traffic
    assert "No correlation: x, y: 1 complete pairs" in html
    assert "No site has traffic counts." in html


def test_bad_sites_name_the_field(tmp_path):
    with pytest.raises(EventDataError, match="^sites: give at least one"):
        render_report([])
    a = sites()[1]
    with pytest.raises(EventDataError, match=r"^sites\[1\]\.site_id: 'PP-002' appears twice"):
        render_report([a, a])
    bad = site("PP-004", "Sisowath", [(30.0, 10.0)], False)
    bad.depth_cm = bad.depth_cm[:-1]
    target = tmp_path / "never.html"
    with pytest.raises(EventDataError, match="^site 'PP-004': depth_cm: length"):
        write_report(target, [bad])
    assert not target.exists()
    with pytest.raises(EventDataError, match="^traffic_t, traffic_volume"):
        SiteRecord("x", "x", a.rain_t, a.rain_mm, a.depth_t, a.depth_cm, traffic_t=a.rain_t)
    with pytest.raises(EventDataError, match="^tz"):
        render_report([a], ReportOptions(tz="Nowhere/Atlantis"))
