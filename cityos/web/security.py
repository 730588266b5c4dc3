"""Security headers on every response, and access logs without secrets.

:class:`SecurityHeadersMiddleware` sends a strict Content-Security-Policy (no inline
script, no inline style, nothing from another origin but the configured tile
server's images), ``X-Frame-Options: SAMEORIGIN`` (the dashboard frames its own app
views; nothing else may frame it), ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``. Every page's scripts and styles are files under
``/web/static`` or ``/apps/<app>/static``. The one inline style allowed is each app
report's own stylesheet, by its hash: a report is a single self-contained HTML file
(downloaded, or shown from a blob by the flood watch page, which inherits the page's
policy) and needs no script.

:func:`redact_access_log` keeps uvicorn's access log from printing a query string
value that could be a secret (``token``, ``api_key``, ``display``, ``key``...).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import logging
import re
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

APPS_DIR = Path(__file__).parents[1] / "apps"
#: The name, in each app's ``report.py``, of the stylesheet its reports inline.
REPORT_STYLESHEET = "_CSS"
#: Query parameters whose values an access log never shows.
SECRET_PARAMETERS = frozenset({"token", "api_key", "apikey", "display", "key", "session",
                               "access_token"})
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:" + "|".join(sorted(SECRET_PARAMETERS)) + r")=)[^&;#\s\"]*")
# a token anywhere else in a request line (a path segment, a misnamed parameter)
_SECRET_TOKEN = re.compile(r"\b(cty|cds)_[0-9a-f]+_[A-Za-z0-9_-]+")


def _hash_source(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@cache
def report_style_hashes() -> tuple[str, ...]:
    """The CSP hash sources of the apps' report stylesheets.

    Read from the source of each ``cityos/apps/<app>/report.py`` (a module-level
    string constant named :data:`REPORT_STYLESHEET`) rather than by importing it,
    which would load matplotlib into every server.
    """
    found = []
    for path in sorted(APPS_DIR.glob("*/report.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                    and any(isinstance(t, ast.Name) and t.id == REPORT_STYLESHEET
                            for t in node.targets)):
                found.append(_hash_source(node.value.value))
    return tuple(found)


def tile_source(tile_url: str | None) -> str | None:
    """The CSP source of a raster tile URL template, or None without one.

    ``https://{s}.tile.example.org/{z}/{x}/{y}.png`` gives
    ``https://*.tile.example.org``.

    Raises
    ------
    ValueError
        Naming ``tile_url`` when it is not an http(s) URL with a host.
    """
    if not tile_url:
        return None
    parts = urlsplit(tile_url)
    host = re.sub(r"^\{[^}]*\}", "*", parts.netloc)
    if parts.scheme not in ("http", "https") or not host or re.search(r"[{}\s/]", host):
        raise ValueError(f"tile_url: {tile_url!r} is not an http(s) URL template with a "
                         "host ({s} is allowed as its first label)")
    return f"{parts.scheme}://{host}"


def content_security_policy(tile_url: str | None = None) -> str:
    """The policy of every response (see the module's docstring)."""
    images = ["'self'", "data:", "blob:"]
    tiles = tile_source(tile_url)
    if tiles:
        images.append(tiles)
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", *report_style_hashes()],
        "img-src": images,
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        # the flood watch page shows its report from a blob in a frame
        "frame-src": ["'self'", "blob:"],
        "frame-ancestors": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def security_headers(tile_url: str | None = None) -> dict[str, str]:
    """The headers :class:`SecurityHeadersMiddleware` adds."""
    return {
        "Content-Security-Policy": content_security_policy(tile_url),
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


class SecurityHeadersMiddleware:
    """Add :func:`security_headers` to every HTTP response (a response that sets one
    of them itself keeps its own)."""

    def __init__(self, app: ASGIApp, tile_url: str | None = None):
        self.app = app
        self.headers = security_headers(tile_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ================================================================= access log
def redact(text: str) -> str:
    """``text`` with the values of secret query parameters and any CityOS token
    replaced by ``***``."""
    return _SECRET_TOKEN.sub(r"\1_***", _SECRET_QUERY.sub(r"\1***", text))


class RedactSecrets(logging.Filter):
    """A logging filter that redacts :func:`redact`'s secrets from a record's
    arguments (uvicorn's access log passes the request path as one) and message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


ACCESS_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_access_log() -> None:
    """Put :class:`RedactSecrets` on uvicorn's loggers (once; uvicorn's own logging
    set-up keeps a logger's filters)."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
