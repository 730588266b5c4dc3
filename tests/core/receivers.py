"""A real HTTP notification receiver for subscription tests (core and apps)."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A real HTTP server that records every POST and answers scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: deque[int] = deque()  # answered in turn, then 204
        self.gate = threading.Event()  # cleared: requests wait until it is set
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                receiver.gate.wait(10)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.popleft() if receiver.statuses else 204
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": json.loads(raw), "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    @property
    def delivered(self) -> list[dict]:
        """Bodies of the notifications that were answered 2xx."""
        return [r["body"] for r in self.requests if 200 <= r["status"] < 300]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
