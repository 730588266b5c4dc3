"""Checks of the URI parameters of the temporal consumption operations (clauses 5.7.3,
5.7.4 and 6.3.20), run before the routes of :mod:`cityos.core.ngsi_ld.temporal_api`.

An undefined parameter, or an ``options`` / ``format`` value the operations do not
define, is ``InvalidRequest``; ``pick`` / ``omit`` follow clause 4.21 (no linked
entities: the temporal operations do not join), a ``q`` term may not address a linked
entity, ``csf`` must parse and ``orderBy`` may only name ``id``.
"""

from __future__ import annotations

from fastapi import Request

from cityos.core.entities import is_uri
from cityos.core.errors import BadRequestData, InvalidRequest
from cityos.core.ngsi_ld import query_params as qp
from cityos.core.ngsi_ld.projection import check_projections, parse_projection

_WINDOW = {"timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods",
           "aggrPeriodDuration"}
RETRIEVE_TEMPORAL_PARAMS = frozenset({
    "attrs", "type", "pick", "omit", "options", "format", "lang", "datasetId", "local",
    "via",
    *_WINDOW})
QUERY_TEMPORAL_PARAMS = frozenset({
    "id", "type", "idPattern", "attrs", "pick", "omit", "q", "csf", "georel", "geometry",
    "coordinates", "geoproperty", "lang", "scopeQ", "options", "format", "limit", "offset",
    "count", "datasetId", "orderBy", "local", "via", *_WINDOW})
#: Defined by the standard, checked here, but not applied by CityOS's temporal routes.
_NOT_IMPLEMENTED = ("pick", "omit", "format", "lang", "datasetId")
_OPTIONS = ("temporalValues", "aggregatedValues", "count", "normalized", "sysAttrs",
            "simplified", "keyValues", "concise")
_FORMATS = ("temporalValues", "aggregatedValues", "normalized", "simplified", "keyValues",
            "concise")


def _common(request: Request, allowed: frozenset) -> None:
    params = request.query_params
    for key in params:
        if key not in allowed:
            raise InvalidRequest(f"{key}: not a query parameter of this operation "
                                 f"(defined: {', '.join(sorted(allowed))})")
    for option in (o.strip() for o in (params.get("options") or "").split(",")):
        if option and option not in _OPTIONS:
            raise InvalidRequest(f"options: {option!r} is not one of {', '.join(_OPTIONS)}")
    form = params.get("format")
    if form is not None and form not in _FORMATS:
        raise InvalidRequest(f"format: {form!r} is not one of {', '.join(_FORMATS)}")
    attrs = qp.attrs_list(params.get("attrs"))
    pick = parse_projection(params.get("pick"), "pick")
    omit = parse_projection(params.get("omit"), "omit")
    check_projections(pick, omit, attrs, 0)
    for name in _NOT_IMPLEMENTED:
        if params.get(name) is not None:
            raise qp.NotImplementedFeature(f"{name}: not supported by the temporal "
                                           "operations (docs/conformance.md)")


def check_query(request: Request) -> None:
    """FastAPI dependency of ``GET /temporal/entities``.

    Raises
    ------
    InvalidRequest
        For an undefined parameter, ``options`` or ``format`` value.
    BadRequestData
        For a malformed projection, a linked ``q`` term, a bad ``csf``, an ``orderBy``
        other than ``id``, or a query naming only system attributes.
    """
    _common(request, QUERY_TEMPORAL_PARAMS)
    params = request.query_params
    q = params.get("q")
    if q is not None and "{" in q:
        raise BadRequestData("q: the temporal query does not retrieve linked entities, so "
                             "a term cannot address one")
    csf = params.get("csf")
    if csf is not None:
        from cityos.core.ngsi_ld.qlang import parse_q

        parse_q(csf)
    order_by = params.get("orderBy")
    if order_by is not None:
        keys = [key.strip() for key in order_by.split(",")]
        if any(key.split(";")[0] != "id" for key in keys):
            raise BadRequestData("orderBy: the temporal query orders by id only")
        if any(key not in ("id", "id;asc") for key in keys):
            raise qp.NotImplementedFeature("orderBy: results come in ascending id order "
                                           "only (docs/conformance.md)")
    attrs = qp.attrs_list(params.get("attrs")) or []
    if attrs and all(a in qp.SYSTEM_NAMES for a in attrs) and not any(
            params.get(p) for p in ("type", "q", "georel", "local")):
        raise BadRequestData("a temporal query needs at least one of type, attrs, q or a "
                             "geo-query (or local=true); system attributes alone do not "
                             "count")


def check_retrieve(request: Request, entity_id: str) -> None:
    """FastAPI dependency of ``GET /temporal/entities/{entityId}`` (see
    :func:`check_query`); a non-URI id is BadRequestData."""
    if not is_uri(entity_id):
        raise BadRequestData(f"id: {entity_id!r} is not a URI")
    _common(request, RETRIEVE_TEMPORAL_PARAMS)
