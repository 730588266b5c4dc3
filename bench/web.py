#!/usr/bin/env python
"""Dashboard benchmark: first full render of a dense map, and live-update delay, in Chromium.

Set-up (not timed): a temporary SQLite store with N point entities (``StreetLight``,
clustered), M polygons (``FloodZone``, coloured by ``depth``) and a few unclustered
``Vehicle`` markers, written through the store API; ``cityos serve`` in a subprocess;
Debian's Chromium (headless) through Playwright at 1920x1080.

(a) first full render: from navigation start to the dashboard's ``cityos:map-ready``
    mark (features fetched, every layer built and clustered, two frames painted),
    median of R page loads. Baseline: the server's own handling of the same
    ``GET /web/api/features`` (the time an HTTP client takes to get the whole body).
(b) update delay: from just before a ``PATCH`` of a vehicle's location (sent by the page
    itself with ``fetch``) until the marker has moved and a frame has been painted
    (the dashboard's ``cityos:applied`` event), p50/p95 of U updates. Baseline: the
    PATCH round trip alone (the server's handling of the write).

Targets (dashboard issue): first render under 2 s, update delay p95 under 500 ms.

Usage::

    python bench/web.py             # 10,000 points, 500 polygons
    python bench/web.py --quick     # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from cityos.core.store import open_store  # noqa: E402
from cityos.core.tenancy import create_key  # noqa: E402
from cityos.demo import CITY_CENTRE  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TENANT = "default"
VEHICLES = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(database_url: str, points: int, polygons: int) -> str:
    """Write the benchmark city; return an operator key."""
    rng = np.random.default_rng(7)
    lon0, lat0 = CITY_CENTRE
    store = open_store(database_url)
    try:
        xy = rng.uniform(-0.025, 0.025, size=(points, 2))
        lights = [{"id": f"urn:ngsi-ld:StreetLight:b{i:05d}", "type": "StreetLight",
                   "name": {"type": "Property", "value": f"Lamp {i}"},
                   "powerState": {"type": "Property", "value": "on" if i % 7 else "off"},
                   "location": {"type": "GeoProperty", "value": {
                       "type": "Point", "coordinates": [float(lon0 + x), float(lat0 + y)]}}}
                  for i, (x, y) in enumerate(xy)]
        zones = []
        for i in range(polygons):
            x, y = (float(v) for v in rng.uniform(-0.024, 0.022, size=2))
            w, h = (float(v) for v in rng.uniform(0.0005, 0.002, size=2))
            ring = [[lon0 + x, lat0 + y], [lon0 + x + w, lat0 + y],
                    [lon0 + x + w, lat0 + y + h], [lon0 + x, lat0 + y + h],
                    [lon0 + x, lat0 + y]]
            zones.append({"id": f"urn:ngsi-ld:FloodZone:b{i:04d}", "type": "FloodZone",
                          "depth": {"type": "Property", "value": round(float(rng.uniform(0, 60)), 1),
                                    "unitCode": "CMT"},
                          "location": {"type": "GeoProperty", "value": {
                              "type": "Polygon", "coordinates": [ring]}}})
        vehicles = [{"id": f"urn:ngsi-ld:Vehicle:b{i:02d}", "type": "Vehicle",
                     "name": {"type": "Property", "value": f"Bus {i}"},
                     "location": {"type": "GeoProperty", "value": {
                         "type": "Point", "coordinates": [lon0 + 0.001 * i, lat0]}}}
                    for i in range(VEHICLES)]
        everything = lights + zones + vehicles
        for start in range(0, len(everything), 1000):
            result = store.upsert_entities(TENANT, everything[start:start + 1000])
            if result.errors:
                raise SystemExit(f"seeding failed: {result.errors[0]}")
        token, _ = create_key(store, TENANT, "operator", "bench")
        return token
    finally:
        store.close()


def start_server(database_url: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}
    env["CITYOS_DATABASE_URL"] = database_url
    log = open(workdir / "server.log", "w")  # noqa: SIM115 (lives as long as the server)
    process = subprocess.Popen([sys.executable, "-m", "cityos.cli", "serve", "--port",
                                str(port), "--log-level", "warning"], stdout=log,
                               stderr=subprocess.STDOUT, env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"cityos serve did not start: {(workdir / 'server.log').read_text()}")


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(np.array(values), share * 100))


UPDATE_SCRIPT = """async ([id, key, lon, lat]) => {
    const applied = new Promise((resolve) => {
        const listener = (event) => {
            if (event.detail.ids.includes(id)) {
                document.removeEventListener("cityos:applied", listener);
                resolve(performance.now());
            }
        };
        document.addEventListener("cityos:applied", listener);
    });
    const t0 = performance.now();
    const response = await fetch(`/ngsi-ld/v1/entities/${encodeURIComponent(id)}/attrs`, {
        method: "PATCH",
        headers: {"Authorization": `Bearer ${key}`, "Content-Type": "application/json"},
        body: JSON.stringify({location: {type: "GeoProperty",
                                         value: {type: "Point", coordinates: [lon, lat]}}}),
    });
    const written = performance.now();
    if (response.status !== 204) throw new Error(`PATCH: HTTP ${response.status}`);
    const shown = await applied;
    const element = document.querySelector(`[data-entity-id="${id}"]`);
    return {write_ms: written - t0, shown_ms: shown - t0, present: !!element};
}"""


def run(points: int, polygons: int, loads: int, updates: int) -> dict:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="cityos-bench-web-") as tmp:
        workdir = Path(tmp)
        database_url = f"sqlite:///{workdir / 'bench.db'}"
        key = seed(database_url, points, polygons)
        process, url = start_server(database_url, workdir)
        try:
            headers = {"Authorization": f"Bearer {key}"}
            features_s = []
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                client.get("/web/api/features").raise_for_status()  # warm the store's cache
                for _ in range(loads):
                    started = time.perf_counter()
                    body = client.get("/web/api/features").content
                    features_s.append(time.perf_counter() - started)
            feature_count = len(json.loads(body)["features"])
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True,
                    args=["--no-sandbox", "--disable-background-networking"])
                context = browser.new_context(viewport={"width": 1920, "height": 1080})
                session = json.dumps({"key": key, "name": "bench", "tenant": None})
                context.add_init_script(
                    f"sessionStorage.setItem('cityos.session', {json.dumps(session)})")
                render_ms = []
                page = None
                for _ in range(loads):
                    if page is not None:
                        page.close()
                    page = context.new_page()
                    page.goto(url + "/")
                    page.wait_for_selector("body[data-map-ready=true]", timeout=60_000)
                    render_ms.append(page.evaluate(
                        "performance.getEntriesByName('cityos:map-ready')[0].startTime"))
                page.wait_for_selector("#live-status[data-state=live]", timeout=10_000)
                on_map = page.evaluate("window.cityos.map.items.size")
                writes, shown = [], []
                lon0, lat0 = CITY_CENTRE
                for index in range(updates):
                    vehicle = f"urn:ngsi-ld:Vehicle:b{index % VEHICLES:02d}"
                    result = page.evaluate(UPDATE_SCRIPT, [
                        vehicle, key, lon0 + 0.001 * (index % VEHICLES),
                        lat0 + 0.0002 * (index + 1)])
                    writes.append(result["write_ms"])
                    shown.append(result["shown_ms"])
                    time.sleep(0.05)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=20)
    return {"points": points, "polygons": polygons, "features": feature_count,
            "on_map": on_map, "features_ms": statistics.median(features_s) * 1000,
            "render_ms": statistics.median(render_ms), "render_all": render_ms,
            "write_p50": percentile(writes, 0.5), "write_p95": percentile(writes, 0.95),
            "shown_p50": percentile(shown, 0.5), "shown_p95": percentile(shown, 0.95),
            "updates": updates}


def print_table(r: dict) -> None:
    print(f"\nDashboard in Chromium (headless, 1920x1080): {r['points']:,} points + "
          f"{r['polygons']:,} polygons + {VEHICLES} vehicles; {r['on_map']:,} on the map\n")
    print("| measure | dashboard | baseline (server's own handling) | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| first full render (median of {len(r['render_all'])}) | "
          f"{r['render_ms']:,.0f} ms | {r['features_ms']:,.0f} ms (GET /web/api/features, "
          f"{r['features']:,} features) | {r['render_ms'] / r['features_ms']:.1f}x | < 2,000 ms |")
    print(f"| update delay p50 ({r['updates']} PATCHes) | {r['shown_p50']:,.0f} ms | "
          f"{r['write_p50']:,.0f} ms (PATCH round trip) | "
          f"{r['shown_p50'] / r['write_p50']:.1f}x | |")
    print(f"| update delay p95 | {r['shown_p95']:,.0f} ms | {r['write_p95']:,.0f} ms | "
          f"{r['shown_p95'] / r['write_p95']:.1f}x | < 500 ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--polygons", type=int, default=500)
    parser.add_argument("--loads", type=int, default=3, help="page loads timed")
    parser.add_argument("--updates", type=int, default=40, help="live updates timed")
    parser.add_argument("--quick", action="store_true", help="1,000 points, 50 polygons")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    if args.quick:
        args.points, args.polygons, args.loads, args.updates = 1000, 50, 1, 10
    print_table(run(args.points, args.polygons, args.loads, args.updates))


if __name__ == "__main__":
    main()
