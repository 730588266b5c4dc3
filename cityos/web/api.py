"""The dashboard's HTTP side: its page, static files, front-end libraries and API.

Routes (``/web/api/...``) sit beside the NGSI-LD API, which the browser also uses
directly (entities, temporal history); tenancy is the core's (``Authorization:
Bearer <key>`` and ``NGSILD-Tenant``) on every route that shows city data:

=========================================  ========  ====================================
``GET /``                                  public    the dashboard page
``GET /web/api/config``                    public    layers, languages, tile URL
``GET /web/api/basemap``                   public    the demo city's base map (GeoJSON)
``GET /web/locales/{code}.json``           public    a message catalogue
``GET /web/api/me``                        viewer    who the key is: tenant, role, name
``GET /web/api/features``                  viewer    every located entity, as GeoJSON
``GET /web/api/stream``                    viewer    live entity events (SSE)
``GET /web/api/alerts/{id}/audit``         viewer    the alert's status history
``POST /web/api/alerts/{id}/acknowledge``  operator  ``{"comment", "actor"}``
``POST /web/api/alerts/{id}/resolve``      operator  ``{"comment", "actor"}``
``GET/POST /web/api/keys``                 admin     list / create the tenant's keys
``POST /web/api/keys/{key_id}/revoke``     admin     revoke one
=========================================  ========  ====================================

Display links for public screens (``/web/api/display-links``, ``/web/api/display-session``)
are :mod:`cityos.web.display`'s. Static files: the dashboard's at ``/web/static``, its
libraries at ``/web/vendor``, each app's page scripts and styles at ``/apps/<app>/static``.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from cityos import __version__
from cityos.core import alerts
from cityos.core.errors import BadRequestData, ResourceNotFound
from cityos.core.tenancy import (
    Caller,
    create_key,
    get_store,
    list_keys,
    require,
    revoke_key,
)
from cityos.web import display, i18n
from cityos.web.basemap import demo_basemap
from cityos.web.core_layers import register_core_layers
from cityos.web.features import map_features
from cityos.web.layers import discover_app_layers, registered_layers
from cityos.web.stream import EventStreamResponse, TenantEventStream
from cityos.web.views import registered_views

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
APPS_DIR = WEB_DIR.parent / "apps"
#: Front-end packages (npm name -> the folder of its built files) and the files the
#: page loads from each.
VENDOR_PACKAGES = {
    "leaflet": ("dist", ("leaflet.js", "leaflet.css")),
    "leaflet.markercluster": ("dist", ("leaflet.markercluster.js", "MarkerCluster.css")),
    "uplot": ("dist", ("uPlot.iife.min.js", "uPlot.min.css")),
}

router = APIRouter(tags=["dashboard"])


# ================================================================ vendor files
def node_modules_dir() -> Path | None:
    """The ``node_modules`` folder with the dashboard's libraries, or None.

    Looked for at the root of the source tree (an editable install, ``make``) and in
    the working directory.
    """
    for root in (WEB_DIR.parents[1], Path.cwd()):
        candidate = root / "node_modules"
        if all((candidate / name / folder / files[0]).is_file()
               for name, (folder, files) in VENDOR_PACKAGES.items()):
            return candidate
    return None


MISSING_LIBRARIES_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CityOS dashboard: libraries missing</title>
<link rel="stylesheet" href="/web/static/css/notice.css"></head><body>
<h1>The dashboard's front-end libraries are not installed</h1>
<p>The map and chart libraries (Leaflet, Leaflet.markercluster, uPlot) come from the npm
registry and are served from <code>node_modules/</code>, never from a CDN. They were not
found next to the CityOS sources or in the working directory.</p>
<p>In a source checkout run <code>make venv</code> (or <code>npm ci</code> at the
repository root), then restart <code>cityos serve</code>. The NGSI-LD API at
<code>/ngsi-ld/v1</code> works without them.</p>
</body></html>"""


# ====================================================================== pages
@router.get("/", include_in_schema=False)
def dashboard_page() -> Response:
    """The dashboard, or a page saying how to install its libraries."""
    if node_modules_dir() is None:
        return HTMLResponse(MISSING_LIBRARIES_PAGE, status_code=503)
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


@router.get("/web/api/config")
def dashboard_config(request: Request) -> dict:
    """What the page needs before sign-in: layers, languages, base map source."""
    settings = request.app.state.settings
    return {
        "version": __version__,
        "tile_url": getattr(settings, "tile_url", None),
        "basemap_url": "/web/api/basemap",
        "languages": i18n.available_languages(),
        "layers": [spec.to_json() for spec in registered_layers()],
        "views": [view.to_json() for view in registered_views()],
        "default_tenant": settings.default_tenant,
        "severities": list(alerts.SEVERITIES),
    }


@router.get("/web/api/basemap")
def basemap() -> Response:
    """The demo city's base map (roads, water, parks, buildings, boundary)."""
    return Response(orjson.dumps(demo_basemap()), media_type="application/geo+json",
                    headers={"Cache-Control": "max-age=3600"})


@router.get("/web/locales/{code}.json")
def catalogue(code: str) -> Response:
    """The message catalogue of one language."""
    if code not in i18n.LANGUAGES or not i18n.catalogue_path(code).exists():
        raise ResourceNotFound(f"no message catalogue for language {code!r}")
    return FileResponse(i18n.catalogue_path(code), media_type="application/json")


# ===================================================================== viewer
@router.get("/web/api/me")
def who_am_i(caller: Caller = Depends(require("viewer"))) -> dict:
    """The signed-in key: tenant, role, key id and name, and what it may do."""
    return {"tenant": caller.tenant, "role": caller.role, "keyId": caller.key_id,
            "name": caller.name, "canAcknowledge": caller.can("operator"),
            "canManageKeys": caller.can("admin")}


@router.get("/web/api/features")
def features(caller: Caller = Depends(require("viewer")), store=Depends(get_store),
             type: str | None = None) -> Response:  # noqa: A002
    """Every entity of the tenant that has a location (optionally of some types,
    comma-separated) as a GeoJSON FeatureCollection of map features."""
    types = [t for t in (type or "").split(",") if t] or None
    return Response(orjson.dumps(map_features(store, caller.tenant, types)),
                    media_type="application/geo+json")


@router.get("/web/api/stream")
async def stream(request: Request, caller: Caller = Depends(require("viewer"))):
    """Server-Sent Events of the tenant's entity changes (``event: entity``)."""
    events = TenantEventStream(request.app.state.events, caller.tenant)
    return EventStreamResponse(events.messages(), headers={"Cache-Control": "no-cache",
                                                           "X-Accel-Buffering": "no"})


@router.get("/web/api/alerts/{alert_id}/audit")
def alert_audit(alert_id: str, caller: Caller = Depends(require("viewer")),
                store=Depends(get_store)) -> list[dict]:
    """Who acknowledged and resolved the alert, when and why, oldest first."""
    return alerts.alert_audit_trail(store, caller.tenant, alert_id)


# =================================================================== operator
async def _json_object(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequestData(f"request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequestData("the request body must be a JSON object")
    return data


def _alert_action(action: str):
    async def handle(alert_id: str, request: Request,
                     caller: Caller = Depends(require("operator")),
                     store=Depends(get_store)) -> dict:
        data = await _json_object(request)
        instance = await run_in_threadpool(
            alerts.handle_alert, store, caller.tenant, alert_id, action,
            actor=data.get("actor"), comment=data.get("comment"), key_id=caller.key_id,
            key_name=caller.name)
        return {"id": alert_id, "status": instance["value"], "at": instance["observedAt"],
                "actor": instance["actor"]["value"]}
    handle.__name__ = f"{action}_alert"
    handle.__doc__ = f"{action.capitalize()} an alert, with the operator's name and a comment."
    return handle


for _action in alerts.ACTIONS:
    router.add_api_route(f"/web/api/alerts/{{alert_id}}/{_action}", _alert_action(_action),
                         methods=["POST"])


# ====================================================================== admin
def _own_tenant_keys(store, caller: Caller) -> list:
    return [k for k in list_keys(store) if k.tenant == caller.tenant]


@router.get("/web/api/keys")
def keys(caller: Caller = Depends(require("admin")), store=Depends(get_store)) -> list[dict]:
    """The API keys of the tenant (never their tokens)."""
    return [k.public() for k in _own_tenant_keys(store, caller)]


@router.post("/web/api/keys", status_code=201)
async def new_key(request: Request, caller: Caller = Depends(require("admin")),
                  store=Depends(get_store)) -> dict:
    """Create a key for the tenant: ``{"role", "name"}``; the token is returned once."""
    data = await _json_object(request)
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 120:
        raise BadRequestData("name: must be a string of at most 120 characters")
    token, record = create_key(store, caller.tenant, str(data.get("role", "")), name)
    return {"token": token, **record.public()}


@router.post("/web/api/keys/{key_id}/revoke")
def revoke(key_id: str, caller: Caller = Depends(require("admin")),
           store=Depends(get_store)) -> dict:
    """Revoke one of the tenant's keys."""
    known = {k.key_id: k for k in list_keys(store)}
    record = known.get(key_id)
    if record is None or record.tenant != caller.tenant:
        # platform keys (tenant '*') are revoked with `cityos keys revoke` only
        raise ResourceNotFound(f"API key {key_id} does not exist in tenant {caller.tenant}")
    return revoke_key(store, key_id).public()


# ===================================================================== mount
def mount_dashboard(app: FastAPI) -> None:
    """Add the dashboard to a CityOS app: its routes, static files and libraries.

    Registers the core's layers, then every app's layers and views (from the app
    registry), so they are there before the first page asks for the configuration.
    """
    register_core_layers()
    discover_app_layers()
    app.include_router(router)
    app.include_router(display.router)
    app.mount("/web/static", StaticFiles(directory=STATIC_DIR), name="web-static")
    # each app's page scripts and styles (files, as the Content-Security-Policy wants)
    for folder in sorted(APPS_DIR.glob("*/static")):
        app.mount(f"/apps/{folder.parent.name}/static", StaticFiles(directory=folder),
                  name=f"app-static-{folder.parent.name}")
    modules = node_modules_dir()
    if modules is not None:
        for name, (folder, _files) in VENDOR_PACKAGES.items():
            app.mount(f"/web/vendor/{name}", StaticFiles(directory=modules / name / folder),
                      name=f"web-vendor-{name}")
