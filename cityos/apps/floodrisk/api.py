"""The flood-risk API, mounted at ``/apps/floodrisk``.

Tenancy is the core's. Studies run offline (``cityos floodrisk run``) and are published
to a tenant with ``cityos floodrisk publish`` (or by the demo builder): their summary
and report are stored as documents, their flood extents as ``FloodHazardArea`` entities.

===============================================  ========  ================================
``GET /studies``                                 viewer    published studies and headlines
``GET /studies/{id}``                            viewer    the study summary (JSON)
``GET /studies/{id}/report``                     viewer    the study report (HTML)
``GET /studies/{id}/areas``                      viewer    its FloodHazardArea entities
``GET /pages/studies``                           public    the study list page (HTML)
``GET /pages/report?study=ID``                   public    a study's report page (HTML)
===============================================  ========  ================================

A browser that opens ``/studies`` or ``/studies/{id}/report`` itself (HTML first in its
``Accept``, no key) is sent (303) to the matching page instead of a JSON 401.

The pages are what a person opens (the dashboard's *Flood risk* view, the map's link):
they carry no data and load it with the dashboard's signed-in session; without one
they say to sign in (``/web/static/js/sign-in.js``).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from cityos.apps.floodrisk.demo import AREA_TYPE, DOC_KIND, STUDY_TYPE
from cityos.core.errors import BadRequestData, ResourceNotFound
from cityos.core.tenancy import Caller, get_app_settings, get_store, request_token, require

router = APIRouter(tags=["floodrisk"])
STATIC = Path(__file__).parent / "static"
PAGES = {"studies": "studies.html", "report": "report.html"}
#: The study list page (the dashboard's view and the map's link open it too).
STUDIES_PAGE = "/apps/floodrisk/pages/studies"
REPORT_PAGE = "/apps/floodrisk/pages/report?study={study_id}"
STUDY_ID = re.compile(r"^[A-Za-z0-9._~\-]{1,64}$")


def _json(data, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
                    status_code=status_code, media_type="application/json")


def opened_by_a_person(page: str):
    """A dependency (listed before the key check) that sends a browser opening this API
    URL to the page showing it: an address bar sends no key and prefers HTML, and
    would get the JSON of a 401. ``page`` may name the route's path parameters."""
    def check(request: Request, settings=Depends(get_app_settings)) -> None:
        accept = request.headers.get("accept", "")
        if (settings.auth_required and request_token(request) is None
                and accept.split(",")[0].split(";")[0].strip() == "text/html"):
            raise HTTPException(303, headers={"Location": page.format(**{
                k: quote(v, safe="") for k, v in request.path_params.items()})})
    return Depends(check)


def _document(store, tenant: str, study_id: str) -> dict:
    if not STUDY_ID.match(study_id):
        raise BadRequestData(f"id: {study_id!r} must be 1-64 letters, digits, '.', '_', "
                             "'~' or '-'")
    doc = store.get_document(tenant, DOC_KIND, study_id)
    if doc is None:
        raise ResourceNotFound(f"study {study_id} is not published for tenant {tenant!r} "
                               "(cityos floodrisk publish OUT_DIR)")
    return doc


@router.get("/studies")
def list_studies(_page=opened_by_a_person(STUDIES_PAGE),
                 caller: Caller = Depends(require("viewer")),
                 store=Depends(get_store)) -> Response:
    """Every published study: id, name, return periods, packages and the headline."""
    rows = []
    for doc in store.list_documents(caller.tenant, DOC_KIND):
        summary = doc.get("summary") or {}
        rows.append({"id": doc["id"], "name": doc.get("name"),
                     "return_periods": summary.get("return_periods"),
                     "packages": summary.get("packages"),
                     "baseline_ead": summary.get("baseline_ead"),
                     "headline": summary.get("headline"),
                     "report": bool(doc.get("report_html")),
                     "entity": f"urn:ngsi-ld:{STUDY_TYPE}:{doc['id']}"})
    return _json(rows)


@router.get("/studies/{study_id}")
def study_summary(study_id: str, caller: Caller = Depends(require("viewer")),
                  store=Depends(get_store)) -> Response:
    """The study's summary: every run's impacts, the appraisals, the headline."""
    return _json(_document(store, caller.tenant, study_id)["summary"])


@router.get("/studies/{study_id}/report", response_class=HTMLResponse)
def study_report(study_id: str, _page=opened_by_a_person(REPORT_PAGE),
                 caller: Caller = Depends(require("viewer")),
                 store=Depends(get_store)) -> HTMLResponse:
    """The study's HTML report (self-contained)."""
    html = _document(store, caller.tenant, study_id).get("report_html")
    if not html:
        raise ResourceNotFound(f"study {study_id} was published without its report")
    return HTMLResponse(html)


@router.get("/studies/{study_id}/areas")
def study_areas(study_id: str, caller: Caller = Depends(require("viewer")),
                store=Depends(get_store)) -> Response:
    """The study's ``FloodHazardArea`` entities (depth classes of the published runs)."""
    _document(store, caller.tenant, study_id)
    target = f"urn:ngsi-ld:{STUDY_TYPE}:{study_id}"
    rows = []
    for record in store.scan(caller.tenant, types=[AREA_TYPE]):
        entity = record.entity
        if (entity.get("refFloodRiskStudy") or {}).get("object") == target:
            rows.append(entity)
    return _json(rows)


# ========================================================================= pages
@router.get("/pages/{page}", include_in_schema=False)
def page(page: str) -> Response:
    """The study list and report pages (public: their data comes with the session)."""
    if page not in PAGES:
        raise ResourceNotFound(f"no page {page!r}")
    return HTMLResponse((STATIC / PAGES[page]).read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})
