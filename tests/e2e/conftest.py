"""Browser fixtures: a real ``cityos serve`` on a free port, and Debian's Chromium.

The server runs in a subprocess on a temporary SQLite file with the demo city built
into it (``cityos demo --no-serve``) and keys made with ``cityos keys create``. Every
page is guarded: a request to a host other than the server fails the test, and so
does a console error or an uncaught exception.

The clock is pinned on both sides: the demo server runs on ``CITYOS_CLOCK_START``
(:data:`tests.conftest.PINNED_INSTANT`, a Monday 07:30 in the demo city, ticking at
the real rate from there) and every page's ``Date`` starts at the server's current
instant, in the demo city's time zone, whatever the machine's clock and zone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from cityos.core.clock import CLOCK_START_ENV, parse_clock_start
from tests.conftest import PINNED_INSTANT

CHROMIUM = "/usr/bin/chromium"
TENANT = "default"  # the tenant `cityos demo` builds the demo city in
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
BROWSER_TIMEZONE = "Asia/Kuala_Lumpur"  # the demo city's (the agency_timezone of its feed)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cityos(*args: str, env: dict | None = None) -> str:
    """Run the ``cityos`` command (this interpreter's) and return its stdout."""
    result = subprocess.run([sys.executable, "-m", "cityos.cli", *args], capture_output=True,
                            text=True, timeout=120, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"cityos {' '.join(args)} failed: {result.stderr}")
    return result.stdout


@dataclass
class Server:
    """A running ``cityos serve`` and the keys of the demo tenant."""

    url: str
    keys: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    clock_start: datetime | None = None
    started: float = 0.0  # time.monotonic() when the process was started

    def now(self) -> datetime:
        """The server's current instant: its pinned clock start plus the time it has
        run (a second or so ahead of it: the process reads its clock once up), or the
        system time for a server on the system clock."""
        if self.clock_start is None:
            return datetime.now(UTC)
        return self.clock_start + timedelta(seconds=time.monotonic() - self.started)

    def client(self, role: str, tenant: str = TENANT) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, headers={
            "Authorization": f"Bearer {self.keys[role]}", "NGSILD-Tenant": tenant})


@contextmanager
def serve_cityos(workdir: Path, env: dict, keys: dict[str, str]) -> Iterator[Server]:
    """Run ``cityos serve`` on a free port in ``workdir`` until the block ends.

    ``env`` carries the database URL (and ``CITYOS_CLOCK_START`` for a pinned clock);
    the server log goes to ``workdir/server.log`` and is shown if the server does not
    answer ``/health`` within 30 s.
    """
    port = free_port()
    clock_start = env.get(CLOCK_START_ENV)
    started = time.monotonic()
    log_path = workdir / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cityos.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"cityos serve did not start:\n{log_path.read_text()}")
        time.sleep(0.2)
    try:
        yield Server(url, keys, process, log_path,
                     parse_clock_start(clock_start) if clock_start else None, started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        # make test installs it (scripts/ensure-services.sh): a missing browser is a
        # broken set-up, not a reason to pass without testing the dashboard
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-services.sh (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def front_end_libraries() -> Path:
    from cityos.web.api import node_modules_dir

    found = node_modules_dir()
    if found is None:
        pytest.fail("the dashboard's npm packages are not installed: run `npm ci` at the "
                    "repository root (make test does)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory, front_end_libraries) -> Iterator[Server]:
    """``cityos serve`` on a free port with the demo city and four keys, its clock
    pinned to :data:`~tests.conftest.PINNED_INSTANT` (every ``cityos`` command of it)."""
    workdir = tmp_path_factory.mktemp("e2e-server")
    database_url = f"sqlite:///{workdir / 'e2e.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}
    env["CITYOS_DATABASE_URL"] = database_url
    env[CLOCK_START_ENV] = PINNED_INSTANT.isoformat()
    cityos("demo", "--no-serve", "--database-url", database_url, env=env)
    keys = {role: cityos("keys", "create", "--tenant", TENANT, "--role", role, "--name",
                         f"e2e {role}", env=env).strip()
            for role in ("viewer", "operator", "admin")}
    keys["other"] = cityos("keys", "create", "--tenant", "other", "--role", "operator",
                           env=env).strip()
    with serve_cityos(workdir, env, keys) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium_path):
    import playwright.sync_api as playwright_api  # in the test extra of pyproject.toml
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True,
            args=["--no-sandbox", "--disable-background-networking"])
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class PageGuard:
    """What a page did that it must not: foreign requests, console errors."""

    foreign_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@pytest.fixture
def open_page(browser, server):
    """``open_page(width=1920, height=1080, locale="en-GB", pause_clock=False)``: a
    fresh guarded page (own session) whose clock starts at the server's instant, in
    the demo city's time zone. With ``pause_clock`` the page's time stands still
    there and its timers wait (a refresh every 15 s does not come between what the
    page drew and what the test reads)."""
    contexts = []
    guards = []

    def opener(width: int = 1920, height: int = 1080, locale: str = "en-GB",
               pause_clock: bool = False):
        context = browser.new_context(viewport={"width": width, "height": height},
                                      locale=locale, timezone_id=BROWSER_TIMEZONE)
        at = server.now()
        if pause_clock:
            context.clock.install(time=at)
            context.clock.pause_at(at)
        else:
            context.clock.set_system_time(at)
        guard = PageGuard()

        def route(route_request):
            host = urlparse(route_request.request.url).hostname or ""
            if route_request.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
                route_request.continue_()
            else:
                guard.foreign_requests.append(route_request.request.url)
                route_request.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: guard.console_errors.append(m.text)
                if m.type == "error" else None)
        page.on("pageerror", lambda e: guard.console_errors.append(f"uncaught: {e}"))
        contexts.append(context)
        guards.append(guard)
        return page

    opener.guards = guards  # what each opened page did, in opening order
    yield opener
    for context in contexts:
        context.close()
    for guard in guards:
        assert guard.foreign_requests == [], "requests left the machine"
        assert guard.console_errors == [], "the console reported errors"


@pytest.fixture
def display_link(server):
    """``display_link(board, stops=())``: a new display link's URL for ``board``
    (``transit-stop:S12``), made by the admin through the API."""
    def maker(board: str, stops: tuple[str, ...] = ()) -> str:
        with server.client("admin") as api:
            response = api.post("/web/api/display-links",
                                json={"board": board, "stops": list(stops), "name": "e2e"})
        response.raise_for_status()
        return server.url + response.json()["link"]
    return maker


@pytest.fixture
def sign_in(server):
    """``sign_in(page, role, name)``: open the dashboard, sign in with the key of
    ``role`` and wait until the map is drawn and the live stream is up."""
    def signer(page, role: str, name: str = "") -> None:
        page.goto(server.url + "/")
        page.fill("#signin-key", server.keys[role])
        page.fill("#signin-name", name or f"E2E {role}")
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("body[data-map-ready=true]", timeout=15000)
        page.wait_for_selector("#live-status[data-state=live]", timeout=10000)
    return signer
