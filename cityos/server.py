"""The CityOS web application: :func:`create_app` builds the FastAPI app.

One process serves the NGSI-LD API (``/ngsi-ld/v1``), ingestion (``/apps/ingest``),
the apps' routers and ``/health``; its lifespan starts and stops the subscription
notifier and, when ``settings.mqtt_url`` is set, MQTT ingestion. Every error leaves
as an NGSI-LD ProblemDetails body (``application/json``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cityos import __version__
from cityos.config import Settings, get_settings
from cityos.core.clock import clock_from_start, set_clock
from cityos.core.errors import (
    ERROR_BASE,
    BadRequestData,
    InvalidRequest,
    NgsiLdError,
    PayloadTooLarge,
)
from cityos.core.ngsi_ld.context import load_context_dir
from cityos.core.store import ContextStore, open_store
from cityos.web.security import SecurityHeadersMiddleware, redact_access_log

log = logging.getLogger(__name__)

NGSI_LD_PREFIX = "/ngsi-ld/v1"
#: Routers mounted when their module exists: (module, prefix).
OPTIONAL_ROUTERS = (
    ("cityos.core.ngsi_ld.subscriptions_api", NGSI_LD_PREFIX),
    ("cityos.core.ingest.api", "/apps/ingest"),
)


# ===================================================================== errors
def problem_response(error: NgsiLdError, headers: dict | None = None) -> JSONResponse:
    """The ProblemDetails response of an NGSI-LD error (with the headers its class
    asks for, e.g. ``WWW-Authenticate`` on a 401)."""
    headers = {**getattr(error, "headers", {}), **(headers or {})} or None
    return JSONResponse(error.problem(), status_code=error.status, headers=headers,
                        media_type="application/json")


async def _ngsi_ld_error(request: Request, error: NgsiLdError) -> JSONResponse:
    return problem_response(error)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    first = problems[0] if problems else {}
    if first.get("type") == "json_invalid":
        detail = "request body is not valid JSON"
        try:
            json.loads(await request.body())
        except json.JSONDecodeError as parse_error:
            detail += f": line {parse_error.lineno} column {parse_error.colno}: " \
                      f"{parse_error.msg}"
        except (UnicodeDecodeError, RuntimeError):
            pass
        return problem_response(InvalidRequest(detail))
    parts = []
    for problem in problems:
        location = [str(p) for p in problem.get("loc", ()) if p not in ("query", "path",
                                                                          "header", "body")]
        name = ".".join(location) or "request"
        parts.append(f"{name}: {problem.get('msg', 'invalid')}")
    return problem_response(BadRequestData("; ".join(parts) or "invalid request"))


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    if error.status_code == 404:
        kind, title = "ResourceNotFound", "Resource not found"
        detail = f"no such resource: {request.method} {request.url.path}"
    elif error.status_code == 405:
        kind, title = "OperationNotSupported", "Method not allowed"
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        kind, title = "InvalidRequest", "Invalid request"
        detail = str(error.detail)
    body = {"type": ERROR_BASE + kind, "title": title, "status": error.status_code,
            "detail": detail}
    return JSONResponse(body, status_code=error.status_code,
                        headers=getattr(error, "headers", None), media_type="application/json")


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {"type": ERROR_BASE + "InternalError", "title": "Internal error", "status": 500,
            "detail": f"internal error: {type(error).__name__}"}
    return JSONResponse(body, status_code=500, media_type="application/json")


# ============================================================ body size limit
class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413 ProblemDetails.

    The body is read before the application sees it, at most ``max_bytes + 1`` bytes
    of it, whatever ``Content-Length`` says (a missing or lying header changes
    nothing); a declared length over the limit is refused without reading.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"request body is larger than the limit of {self.max_bytes} "
                                "bytes")
        response = problem_response(error, headers={"Connection": "close"})
        await response(scope, receive, send)


# ================================================================== lifecycle
def _optional(module_name: str) -> Any | None:
    """Import an optional module; None (with a warning) when it is not there yet."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            log.warning("%s is not available: %s", module_name, error)
            return None
        raise


async def _call(method) -> None:
    """Call ``start``/``stop`` whether it is synchronous or a coroutine function."""
    result = method()
    if inspect.isawaitable(result):
        await result


def app_routers() -> list[tuple[str, Any, Any]]:
    """``(name, router, services)`` of every app in the registry that has a router.

    An app's ``router`` is mounted at ``/apps/<name>``; its ``services(store,
    settings) -> list`` (None when it has none) gives background services with
    ``start`` and ``stop``, run by the server's lifespan like the core's own. An app
    whose router fails to load is reported by the registry and left out.
    """
    from cityos.apps.registry import discover, load_part

    found = []
    for spec in discover():
        router = load_part(spec, "router")
        if router is not None:
            found.append((spec.name, router, load_part(spec, "services")))
    return found


def _services(app: FastAPI) -> list:
    """The background services of the app: subscriptions, MQTT ingestion, then the
    apps' own."""
    settings: Settings = app.state.settings
    store = app.state.store
    services = []
    subscriptions = _optional("cityos.core.subscriptions")
    if subscriptions is not None and hasattr(subscriptions, "SubscriptionManager"):
        services.append(subscriptions.SubscriptionManager(store, settings))
    if settings.mqtt_url:
        mqtt = _optional("cityos.core.ingest.mqtt")
        if mqtt is not None:
            services.append(mqtt.MqttIngester(store, settings))
    for _name, _router, app_services in app.state.app_routers:
        if app_services is not None:
            services.extend(app_services(store, settings))
    return services


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the subscription notifier and MQTT ingestion; stop them and close the
    store and the event bus at shutdown."""
    started = []
    try:
        for service in _services(app):
            await _call(service.start)
            started.append(service)
        app.state.services = started
        yield
    finally:
        for service in reversed(started):
            try:
                await _call(service.stop)
            except Exception:  # one failing stop must not keep the others running
                log.exception("stopping %s failed", type(service).__name__)
        app.state.store.close()
        if app.state.owns_bus:
            app.state.events.close()


def _open_bus(url: str):
    try:
        from cityos.core.bus_backends import open_bus
    except ImportError:  # the networked backends are optional
        from cityos.core.events import InProcessBus

        return InProcessBus()
    return open_bus(url)


# ==================================================================== the app
def create_app(settings: Settings | None = None, store: ContextStore | None = None) -> FastAPI:
    """Build the CityOS FastAPI application.

    Parameters
    ----------
    settings : Settings, optional
        Read from the ``CITYOS_*`` environment when omitted.
    store : ContextStore, optional
        The context store; opened from ``settings.database_url`` (with the event bus
        of ``settings.bus_url``) when omitted. The app closes it at shutdown.

    Returns
    -------
    FastAPI
        With ``state.settings``, ``state.store`` and ``state.events`` (the bus).
    """
    settings = settings or get_settings()
    if settings.clock_start:  # a pinned morning for tests and demos; else the default
        set_clock(clock_from_start(settings.clock_start))
    app = FastAPI(title="CityOS", version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    if store is None:
        events = _open_bus(settings.bus_url)
        store = open_store(settings.database_url, events=events)
        app.state.owns_bus = True
    else:
        events = store.events
        app.state.owns_bus = False
    app.state.settings = settings
    app.state.store = store
    app.state.events = events
    load_context_dir(getattr(settings, "contexts_dir", None) or "contexts")

    app.add_exception_handler(NgsiLdError, _ngsi_ld_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # outside the body limit, so that its refusals carry the headers too
    app.add_middleware(SecurityHeadersMiddleware, tile_url=settings.tile_url)
    redact_access_log()

    from cityos.core.ngsi_ld import api, consumption_api, provision_api, temporal_api

    # provision_api first: its Fragment-writing routes answer before api's
    app.include_router(provision_api.router, prefix=NGSI_LD_PREFIX)
    app.include_router(api.router, prefix=NGSI_LD_PREFIX)
    app.include_router(consumption_api.router, prefix=NGSI_LD_PREFIX)
    app.include_router(temporal_api.router, prefix=NGSI_LD_PREFIX)
    for module_name, prefix in OPTIONAL_ROUTERS:
        module = _optional(module_name)
        if module is not None:
            app.include_router(module.router, prefix=prefix)
    app.state.app_routers = app_routers()
    for name, router, _services in app.state.app_routers:
        app.include_router(router, prefix=f"/apps/{name}")

    dashboard = _optional("cityos.web")
    if dashboard is not None:  # the operations-centre dashboard at /
        dashboard.mount_dashboard(app)

    @app.get("/health", tags=["system"])
    def health() -> dict:
        """Liveness: no key needed."""
        return {"status": "ok", "backend": store.backend, "version": __version__}

    return app
