"""The NGSI-LD consumption operations on entities (clauses 5.7.1, 5.7.2 and 5.7.3).

``GET /entities/{id}``, ``GET /entities`` and ``POST /entityOperations/query``, mounted
under ``/ngsi-ld/v1``. The three read their parameters (URI parameters, or the Query
body) into one :class:`Consumption`: what to select (type expression, ids, pattern,
attrs, q, geo-query, scope query), how to order it and how to render it (form, lang,
datasetId, pick / omit, linked entities). Parameters are checked before the store is
touched: an undefined one or a bad ``options`` / ``format`` is InvalidRequest, a
malformed one BadRequestData naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response

from cityos.core.entities import entity_types, is_uri
from cityos.core.errors import BadRequestData, ResourceNotFound
from cityos.core.ngsi_ld import linked_q, versions
from cityos.core.ngsi_ld import query_params as qp
from cityos.core.ngsi_ld.api import (
    RESULTS_COUNT_HEADER,
    bool_param,
    entity_ids,
    geo_query,
    id_pattern,
    page_params,
    q_expression,
)
from cityos.core.ngsi_ld.context import (
    GEO_JSON,
    LdBody,
    LdContext,
    accept_geojson,
    link_context,
    read_body,
)
from cityos.core.ngsi_ld.entity_filters import (
    TypeSelection,
    parse_scope_query,
    parse_types,
    scope_matches,
)
from cityos.core.ngsi_ld.join import render_flat, render_inline
from cityos.core.ngsi_ld.languages import parse_lang
from cityos.core.ngsi_ld.ordering import order_function, parse_order_by
from cityos.core.ngsi_ld.projection import (
    check_projections,
    is_empty,
    parse_projection,
    picked_attributes,
)
from cityos.core.ngsi_ld.qlang import parse_q
from cityos.core.ngsi_ld.representation import Renderer, respond_entities
from cityos.core.store.base import EntityQuery, StoredEntity
from cityos.core.tenancy import Caller, get_app_settings, get_store, require

router = APIRouter(tags=["NGSI-LD"])

ENTITIES_PATH = "/ngsi-ld/v1/entities"


@dataclass
class Selector:
    """One entity selector: a type expression, ids (which win over the pattern)."""

    types: TypeSelection | None = None
    ids: list[str] | None = None
    pattern: str | None = None

    def matches(self, record: StoredEntity) -> bool:
        entity = record.entity
        if self.types is not None:
            if self.types.candidates is not None and \
                    not set(self.types.candidates) & set(entity_types(entity)):
                return False
            if not self.types.matches(entity):
                return False
        if self.ids is not None and record.id not in self.ids:
            return False
        if self.pattern is not None and not re.search(self.pattern, record.id):
            return False
        return True


@dataclass
class Consumption:
    """A consumption request, parsed: selection, order and rendering."""

    renderer: Renderer
    selectors: list[Selector] = field(default_factory=list)
    attrs: list[str] | None = None
    q: Any = None
    geo: Any = None
    scope: Any = None
    local: bool = False
    join: str | None = None
    join_level: int = 0
    geometry_property: str = "location"
    order: Any = None
    linked_q: Any = None


def _text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BadRequestData(f"{name}: must be a string")


def _common(get, context: LdContext, settings, media: str, *, where: str = ""
            ) -> Consumption:
    """The members shared by the URI parameters and the Query body (``get(name)``)."""
    form = qp.representation(get("options"), get("format"), ("sysAttrs", "count"))
    for name, why in (("entityMap", "entity maps (clause 5.14) are not kept"),
                      ("expandValues", "values are not expanded against the @context")):
        if get(name) not in (None, "", "false", False):
            raise qp.NotImplementedFeature(f"{name}: {why} (docs/conformance.md)")
    attrs = qp.attrs_list(get("attrs"), f"{where}attrs")
    join, level = qp.join_params(_text(get("join"), "join"), get("joinLevel"))
    pick = parse_projection(get("pick"), f"{where}pick")
    omit = parse_projection(get("omit"), f"{where}omit")
    check_projections(pick, omit, attrs, level)
    geometry_property = get("geometryProperty")
    if geometry_property is not None and media != GEO_JSON:
        raise BadRequestData("geometryProperty: only allowed with Accept: "
                             f"{GEO_JSON}")
    datasets = get("datasetId")
    dataset_ids = None
    if datasets is not None:
        names = datasets.split(",") if isinstance(datasets, str) else datasets
        if not isinstance(names, list) or not all(
                isinstance(n, str) and (n == "@none" or is_uri(n)) for n in names):
            raise BadRequestData(f"datasetId: {datasets!r} is not a list of URIs "
                                 "(or @none)")
        dataset_ids = set(names)
    canonical_attrs = None if attrs is None else [
        context.to_canonical(a) for a in attrs if a not in qp.SYSTEM_NAMES]
    renderer = Renderer(context, form.form, form.sys_attrs, canonical_attrs,
                        parse_lang(_text(get("lang"), "lang")), pick, omit, dataset_ids)
    out = Consumption(renderer, attrs=canonical_attrs, join=join, join_level=level,
                      geometry_property=context.to_canonical(geometry_property or
                                                             "location"))
    return out


def _selection(out: Consumption, get, context: LdContext, settings,
               where: str = "") -> None:
    """q, csf, scopeQ: checked and kept on ``out``."""
    q = get("q")
    if q is not None and not isinstance(q, str):
        raise BadRequestData(f"{where}q: must be a string")
    raw = parse_q(q, settings.max_q_length) if q is not None else None
    if raw is not None and linked_q.hops(raw):
        out.linked_q = linked_q.rename_linked(raw, context.to_canonical)
        _check_linked_q(out)
    else:
        out.q = q_expression(q, context, settings, f"{where}q")
    csf = get("csf")
    if csf is not None:
        parse_q(_text(csf, "csf"), settings.max_q_length)  # syntax only: no sources
    out.scope = parse_scope_query(_text(get("scopeQ"), f"{where}scopeQ"))


def _check_linked_q(out: Consumption) -> None:
    """A q term on a linked entity's attribute (``owner{name}``, clause 4.9) needs
    join, no deeper than joinLevel."""
    hops = linked_q.hops(out.linked_q)
    if out.join is None:
        raise BadRequestData("q: a term on a linked entity's attribute needs join=inline "
                             "or join=flat")
    if hops > out.join_level:
        raise BadRequestData(f"q: a term reaches {hops} linked entities deep, more than "
                             f"joinLevel={out.join_level}")


def _ordering(order_by, order_from, geometry, collation, context: LdContext):
    keys = parse_order_by(order_by, context.to_canonical)
    if keys is None:
        if collation is not None:
            qp.collation_tag(collation)
        return None
    origin = None
    if geometry is not None and not isinstance(geometry, str):
        raise BadRequestData("geometry: must be a GeoJSON geometry type name")
    if order_from is not None:
        coordinates = order_from
        if isinstance(coordinates, str):
            try:
                coordinates = json.loads(coordinates)
            except ValueError:
                raise BadRequestData(f"orderFrom: {order_from!r} is not a JSON array") \
                    from None
        if not isinstance(coordinates, list):
            raise BadRequestData("coordinates: must be a JSON array of coordinates")
        kind = geometry or _geometry_of(coordinates)
        from cityos.core.geo import validate_geometry

        origin = validate_geometry({"type": kind, "coordinates": coordinates},
                                   "orderFrom")
    return order_function(keys, collation=collation, origin=origin)


def _geometry_of(coordinates: list) -> str:
    depth = 0
    value: Any = coordinates
    while isinstance(value, list) and value:
        depth += 1
        value = value[0]
    return {1: "Point", 2: "LineString", 3: "Polygon"}.get(depth, "MultiPolygon")


def _too_wide(out: Consumption, pattern_given: bool) -> None:
    """Clause 5.7.2.4: a query names a type, attrs, q or a geo-query (or local=true)."""
    from cityos.core.ngsi_ld.qlang import q_attribute_names

    has_type = any(s.types is not None for s in out.selectors)
    q_names = q_attribute_names(out.q) - qp.SYSTEM_NAMES if out.q is not None else set()
    if not (has_type or out.attrs or q_names or out.geo is not None or out.local
            or out.linked_q is not None
            or pattern_given or out.scope is not None):
        raise BadRequestData("a query needs at least one of type, attrs, q or a geo-query "
                             "(or local=true); system attributes alone do not count")


def _entity_query(out: Consumption, limit: int, offset: int, count: bool,
                  fetch=None) -> EntityQuery:
    """One store query for the selectors (OR-ed), with the rest as predicates."""
    selectors = out.selectors or [Selector()]
    attrs = out.attrs
    if attrs is None:  # a pick of attributes alone selects the entities having one
        picked = picked_attributes(out.renderer.pick)
        attrs = [out.renderer.context.to_canonical(a) for a in picked] if picked else None
    query = EntityQuery(q=out.q, geo=out.geo, limit=limit, offset=offset, count=count,
                        attrs=attrs or None)
    if len(selectors) == 1:
        only = selectors[0]
        query.types = only.types.candidates if only.types is not None else None
        query.ids, query.id_pattern = only.ids, only.pattern
        needs_where = only.types is not None and only.types.tree is not None
    else:
        candidates = [s.types.candidates if s.types is not None else None
                      for s in selectors]
        query.types = None if None in candidates else sorted(
            {t for c in candidates for t in c})
        if all(s.ids is not None for s in selectors):
            query.ids = sorted({i for s in selectors for i in s.ids})
        needs_where = True
    scope = out.scope
    linked = out.linked_q

    def entities(ids: list[str]) -> dict[str, dict]:
        return {i: r.entity for i, r in fetch(ids).items()}

    def where(record: StoredEntity) -> bool:
        if needs_where and not any(s.matches(record) for s in selectors):
            return False
        if linked is not None and not linked_q.linked_matches(linked, record.entity,
                                                              entities):
            return False
        return scope is None or scope_matches(scope, record.entity)

    if needs_where or scope is not None or linked is not None:
        query.where = where
    query.order = out.order
    return query


def _fetch(store, tenant: str):
    def fetch(ids: list[str]) -> dict[str, StoredEntity]:
        return {r.id: r for r in store.scan(tenant, ids=ids)} if ids else {}
    return fetch


def _render_many(out: Consumption, records: list[StoredEntity], store, tenant: str,
                 media: str) -> Any:
    renderer = out.renderer
    if out.join == "flat":
        return render_flat(renderer, records, _fetch(store, tenant), out.join_level)
    if out.join == "inline":
        rendered = [(r, render_inline(renderer, r, _fetch(store, tenant), out.join_level,
                                      None, None)) for r in records]
    else:
        rendered = [(r, renderer.render(r)) for r in records]
    rendered = [(r, e) for r, e in rendered if not is_empty(e)]
    if media == GEO_JSON:
        return {"type": "FeatureCollection",
                "features": [renderer.feature(r, e, out.geometry_property)
                             for r, e in rendered]}
    return [e for _, e in rendered]


def _page_links(request: Request, limit: int, offset: int, more: bool,
                media: str) -> str | None:
    """``prev`` / ``next`` links of a page (clause 4.12), parameters in name order."""
    if limit == 0:
        return None
    links = []
    params = [(k, v) for k, v in request.query_params.multi_items()
              if k not in ("limit", "offset")]

    def link(start: int, rel: str) -> str:
        items = sorted([*params, ("limit", str(limit)), ("offset", str(start))])
        query = "&".join(f"{k}={quote(v, safe=':/*.-_~()[]{}|;!$@+')}" for k, v in items)
        return f'<{ENTITIES_PATH}?{query}>; rel="{rel}";type="{media}"'

    if offset > 0:
        links.append(link(max(offset - limit, 0), "prev"))
    if more:
        links.append(link(offset + limit, "next"))
    return ", ".join(links) or None


def _answer(out: Consumption, store, caller: Caller, request: Request | None,
            media: str, page: int, start: int, counting: bool) -> Response:
    query = _entity_query(out, page + (1 if request is not None else 0), start, counting,
                          _fetch(store, caller.tenant))
    result = store.query_entities(caller.tenant, query)
    records = result.entities
    more = len(records) > page
    records = records[:page]
    headers: dict[str, str] = {}
    if counting:
        headers[RESULTS_COUNT_HEADER] = str(result.count)
    if request is not None:
        links = _page_links(request, page, start, more, media)
        if links:
            headers["Link"] = links
    content = _render_many(out, records, store, caller.tenant, media)
    return respond_entities(content, media, out.renderer.context, headers=headers)


# ====================================================================== routes
@router.get("/entities", dependencies=[Depends(qp.defined_params(qp.QUERY_ENTITIES_PARAMS))])
def query_entities(request: Request, caller: Caller = Depends(require("viewer")),
                   store=Depends(get_store), settings=Depends(get_app_settings),
                   context: LdContext = Depends(link_context),
                   media: str = Depends(accept_geojson)) -> Response:
    """Query entities (clause 5.7.2): type, id, idPattern, attrs, q, geo-query, scopeQ,
    pick / omit, lang, join, orderBy; one page, with ``prev`` / ``next`` links."""
    params = request.query_params
    get = params.get
    out = _common(get, context, settings, media)
    counting = qp.representation(get("options"), None, ("sysAttrs", "count")).count or \
        bool_param(get("count"), "count")
    page, start = page_params(settings, get("limit"), get("offset"), counting)
    local = get("local")
    out.local = bool_param(local, "local")
    types = parse_types(get("type"), context.to_canonical)
    if types is not None and types.candidates is None and local is not None and \
            not out.local:
        raise BadRequestData("type: '*' (every type) cannot be combined with local=false")
    ids = entity_ids(get("id"))
    pattern = None if ids else id_pattern(get("idPattern"))
    out.selectors = [Selector(types, ids, pattern)]
    _selection(out, get, context, settings)
    qp.check_near(get("georel"))
    out.geo = geo_query(get("georel"), get("geometry"), get("coordinates"),
                        get("geoproperty"), context)
    out.order = _ordering(get("orderBy"), get("orderFrom"), None, get("collation"),
                          context)
    _too_wide(out, pattern is not None)
    return _answer(out, store, caller, request, media, page, start, counting)


@router.get("/entities/{entity_id}",
            dependencies=[Depends(qp.defined_params(qp.RETRIEVE_ENTITY_PARAMS))])
def retrieve_entity(entity_id: str, request: Request,
                    caller: Caller = Depends(require("viewer")), store=Depends(get_store),
                    settings=Depends(get_app_settings),
                    context: LdContext = Depends(link_context),
                    media: str = Depends(accept_geojson)) -> Response:
    """One entity (clause 5.7.1): attrs or pick / omit, lang, datasetId, join; 404 when
    it does not exist or nothing of it is left to show."""
    if not is_uri(entity_id):
        raise BadRequestData(f"id: {entity_id!r} is not a URI")
    get = request.query_params.get
    out = _common(get, context, settings, media)
    types = parse_types(get("type"), context.to_canonical)
    record = store.get_record(caller.tenant, entity_id)
    if types is not None and not Selector(types).matches(record):
        raise ResourceNotFound(f"entity {entity_id} has none of the types "
                               f"{get('type')}")
    if out.attrs and not any(a in record.entity for a in out.attrs):
        raise ResourceNotFound(f"entity {entity_id} has none of the attributes "
                               f"{get('attrs')}")
    renderer = out.renderer
    fetch = _fetch(store, caller.tenant)
    if out.join == "flat":
        content: Any = render_flat(renderer, [record], fetch, out.join_level)
        if not content:
            raise ResourceNotFound(f"entity {entity_id}: pick / omit leave nothing")
        # no linked entity found: the entity alone, as without join
        return respond_entities(content if len(content) > 1 else content[0], media,
                                context)
    if out.join == "inline":
        rendered = render_inline(renderer, record, fetch, out.join_level, None, None)
    else:
        rendered = renderer.render(record)
    if is_empty(rendered):
        raise ResourceNotFound(f"entity {entity_id}: pick / omit leave nothing of it")
    status, headers = 200, {}
    version = versions.preferred_version(request.headers.get("prefer"))
    if version is not None:
        rendered, altered = versions.downgrade_entity(rendered, version)
        status = 203 if altered else 200
        headers["Preference-Applied"] = versions.applied(version)
    if media == GEO_JSON:
        rendered = renderer.feature(record, rendered, out.geometry_property)
    return respond_entities(rendered, media, context, status, headers)


@router.post("/entityOperations/query",
             dependencies=[Depends(qp.defined_params(qp.POST_QUERY_PARAMS))])
def batch_query(request: Request, caller: Caller = Depends(require("viewer")),
                store=Depends(get_store), settings=Depends(get_app_settings),
                body: LdBody = Depends(read_body),
                media: str = Depends(accept_geojson)) -> Response:
    """Query entities with a Query object in the body (clause 5.7.2 via 6.23): its
    ``entities``, ``attrs``, ``pick`` / ``omit``, ``q``, ``geoQ``, ``scopeQ``, ``lang``,
    ``join`` and ``ordering``; ``limit``, ``offset`` and ``count`` are URI parameters."""
    context = body.context
    data = body.data
    if not isinstance(data, dict) or data.get("type") != "Query":
        raise BadRequestData("type: the body must be a Query object ({\"type\": \"Query\", "
                             "...})")
    qp.no_temporal_members(data)
    params = request.query_params

    def get(name: str) -> Any:
        if name in ("options", "format", "geometryProperty"):
            return params.get(name)
        if name == "lang" and "lang" not in data:
            return params.get(name)
        return data.get(name)

    out = _common(get, context, settings, media)
    counting = qp.representation(params.get("options"), None,
                                 ("sysAttrs", "count")).count or \
        bool_param(params.get("count"), "count")
    page, start = page_params(settings, params.get("limit"), params.get("offset"),
                              counting)
    out.local = data.get("local") is True or bool_param(params.get("local"), "local")
    out.selectors = _selectors(data.get("entities"), context)
    _selection(out, get, context, settings)
    geo = data.get("geoQ")
    if geo is not None and not isinstance(geo, dict):
        raise BadRequestData("geoQ: must be an object with georel, geometry and coordinates")
    geo = geo or {}
    qp.check_near(geo.get("georel"), "geoQ.georel")
    out.geo = geo_query(geo.get("georel"), geo.get("geometry"), geo.get("coordinates"),
                        geo.get("geoproperty"), context, "geoQ.")
    ordering = data.get("ordering")
    if ordering is not None:
        if not isinstance(ordering, dict):
            raise BadRequestData("ordering: must be an object with orderBy")
        out.order = _ordering(ordering.get("orderBy"), ordering.get("coordinates"),
                              ordering.get("geometry"), ordering.get("collation"), context)
    elif data.get("orderBy") is not None:
        out.order = _ordering(data.get("orderBy"), data.get("orderFrom"), None,
                              data.get("collation"), context)
    if not (out.selectors or out.attrs or out.q is not None or out.geo is not None
            or out.local or out.scope is not None):
        raise BadRequestData("a Query needs at least one of entities, attrs, q or geoQ")
    return _answer(out, store, caller, None, media, page, start, counting)


def _selectors(entities: Any, context: LdContext) -> list[Selector]:
    """The EntitySelectors of a Query body (Table 5.2.33-1)."""
    if entities is None:
        return []
    if not isinstance(entities, list) or not entities:
        raise BadRequestData("entities: must be a non-empty array of {type, id, idPattern}")
    selectors = []
    for index, item in enumerate(entities):
        where = f"entities[{index}]."
        if not isinstance(item, dict):
            raise BadRequestData(f"entities[{index}]: must be an object")
        types = item.get("type")
        if not isinstance(types, str) or not types:
            raise BadRequestData(f"{where}type: the type of the selector is required "
                                 "(a string)")
        ids = item.get("id")
        if ids is not None:
            ids = ids if isinstance(ids, list) else [ids]
            if not ids:
                raise BadRequestData(f"{where}id: must not be an empty array")
            for entity_id in ids:
                if not is_uri(entity_id):
                    raise BadRequestData(f"{where}id: {entity_id!r} is not a URI")
        pattern = id_pattern(item.get("idPattern"), f"{where}idPattern")
        selectors.append(Selector(parse_types(types, context.to_canonical, f"{where}type"),
                                  ids, None if ids else pattern))
    return selectors
