"""The access log of a real ``cityos serve`` never prints a token from a URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from cityos.web.security import redact

pytestmark = pytest.mark.slow

SECRET = "cty_0123456789ab_SeCrEtSeCrEtSeCrEtSeCrEt-_42"


def test_redact_hides_secret_parameters_and_tokens_only():
    line = (f'127.0.0.1:5 - "GET /apps/x?day=2&api_key={SECRET}&Token=t0k&display=d1&'
            f'key=k9&monkey=banana HTTP/1.1" 200')
    assert redact(line) == ('127.0.0.1:5 - "GET /apps/x?day=2&api_key=***&Token=***&'
                            'display=***&key=***&monkey=banana HTTP/1.1" 200')
    assert redact(f"GET /files/{SECRET}/x") == "GET /files/cty_***/x"
    assert redact("GET /apps/transit/stops/S004/board") == "GET /apps/transit/stops/S004/board"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_served_request_with_a_token_in_its_query_logs_no_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}
    env["CITYOS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'city.db'}"
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "cityos.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        queries = [f"api_key={SECRET}", "token=tok-A1", "display=disp-B2", "key=key-C3",
                   f"other={SECRET}"]
        for query in queries:
            assert httpx.get(f"{url}/web/api/me?{query}&day=7").status_code == 401
        assert httpx.get(f"{url}/health?marker=last").status_code == 200
        deadline = time.monotonic() + 30
        while "marker=last" not in log_path.read_text():  # the log is written by then
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=15)
    text = log_path.read_text()
    assert text.count('"GET /web/api/me?') == len(queries)  # uvicorn's access lines
    assert "GET /web/api/me?api_key=***&day=7" in text
    assert "GET /web/api/me?other=cty_***&day=7" in text
    for secret in (SECRET, "SeCrEt", "tok-A1", "disp-B2", "key-C3"):
        assert secret not in text
