"""The NGSI-LD entity API (ETSI GS CIM 009 v1.6 shapes), thin over the ContextStore.

Entities, attributes, batch operations, ``/types`` and ``/attributes``, mounted under
``/ngsi-ld/v1`` (the consumption operations on entities, retrieve and query, are in
:mod:`cityos.core.ngsi_ld.consumption_api`). Each route checks its parameters (so
bad input comes back as a 400 naming the parameter before the store is touched),
renames names between the client's ``@context`` and the stored canonical names
(:mod:`cityos.core.ngsi_ld.context`), calls one store method and renders the result as
JSON, JSON-LD or GeoJSON. Routes are plain ``def``: the store is synchronous and FastAPI
runs them in its thread pool.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Response

from cityos.core.entities import (
    attribute_instances,
    attribute_names,
    entity_types,
    is_uri,
    normalise_entity,
)
from cityos.core.errors import BadRequestData, InvalidRequest, ResourceNotFound, TooManyResults
from cityos.core.ngsi_ld import query_params as qp
from cityos.core.ngsi_ld.context import (
    JSON_LD,
    LdBody,
    LdContext,
    accept_json,
    canonical_entity,
    canonical_q,
    link_context,
    read_body,
)
from cityos.core.ngsi_ld.merge import refuse_null
from cityos.core.store.base import BatchResult, UpdateResult
from cityos.core.tenancy import Caller, get_store, require

router = APIRouter(tags=["NGSI-LD"])

#: Most entities one batch operation accepts.
MAX_BATCH_ENTITIES = 1000
RESULTS_COUNT_HEADER = "NGSILD-Results-Count"
ENTITIES_PATH = "/ngsi-ld/v1/entities/"



# ==================================================================== parameters
def int_param(text: str | None, name: str, default: int | None = None,
              minimum: int = 0) -> int | None:
    """An integer query parameter; BadRequestData naming it when it is not one."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequestData(f"{name}: {text!r} is not an integer") from None
    if value < minimum:
        raise BadRequestData(f"{name}: {value} is less than {minimum}")
    return value


def bool_param(text: str | None, name: str) -> bool:
    """A ``true``/``false`` query parameter (absent is false)."""
    if text is None or text == "":
        return False
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise BadRequestData(f"{name}: {text!r} is neither true nor false")


def list_param(text: str | None) -> list[str]:
    """The items of a comma-separated parameter."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def parse_options(text: str | None, allowed: tuple[str, ...]) -> set[str]:
    """The ``options`` of a request; BadRequestData for one that is not ``allowed``."""
    options = set(list_param(text))
    for option in sorted(options):
        if option not in allowed:
            raise BadRequestData(f"options: {option!r} is not one of {', '.join(allowed)}")
    return options


def page_params(settings, limit: str | None, offset: str | None,
                count: bool) -> tuple[int, int]:
    """``limit`` and ``offset`` checked against the settings' maximum.

    Raises
    ------
    TooManyResults
        When ``limit`` is above ``settings.max_query_limit``.
    BadRequestData
        When either is not a non-negative integer, or ``limit=0`` without count.
    """
    page = int_param(limit, "limit", settings.default_query_limit)
    start = int_param(offset, "offset", 0)
    if page > settings.max_query_limit:
        raise TooManyResults(f"limit: {page} is larger than the maximum "
                             f"{settings.max_query_limit}")
    if page == 0 and not count:
        raise BadRequestData("limit: 0 is only allowed together with count=true")
    return page, start


def type_names(text: str | None, context: LdContext) -> list[str] | None:
    """The entity types of a ``type`` parameter (``A,B`` or ``A|B``: any of them)."""
    if text is None:
        return None
    if any(c in text for c in ";()"):
        raise BadRequestData(f"type: {text!r}: only lists of types ('A,B' or 'A|B', any of "
                             "them) are supported, not ';' or parentheses")
    names = [n.strip() for n in re.split(r"[,|]", text)]
    if not all(names):
        raise BadRequestData(f"type: {text!r} has an empty type name")
    return [context.to_canonical(n) for n in names]


def attr_names(text: str | list | None, context: LdContext, field: str = "attrs"
               ) -> list[str] | None:
    """Stored names of an ``attrs`` parameter (comma-separated text or a list)."""
    if text is None:
        return None
    names = list_param(text) if isinstance(text, str) else text
    if not all(isinstance(n, str) and n for n in names):
        raise BadRequestData(f"{field}: every attribute name must be a non-empty string")
    return [context.to_canonical(n) for n in names]


def entity_ids(text: str | list | None, field: str = "id") -> list[str] | None:
    """The URIs of an ``id`` parameter."""
    if text is None:
        return None
    ids = list_param(text) if isinstance(text, str) else text
    for entity_id in ids:
        if not is_uri(entity_id):
            raise BadRequestData(f"{field}: {entity_id!r} is not a URI")
    return ids


def id_pattern(text: str | None, field: str = "idPattern") -> str | None:
    """A checked ``idPattern`` regular expression."""
    if text is None:
        return None
    try:
        re.compile(text)
    except re.error as error:
        raise BadRequestData(f"{field}: {text!r} is not a regular expression: {error}") \
            from None
    return text


def q_expression(text: str | None, context: LdContext, settings, field: str = "q"):
    """Parse ``q`` (length-checked) and rename its attributes to stored names."""
    if text is None:
        return None
    from cityos.core.ngsi_ld.qlang import parse_q

    if not isinstance(text, str):
        raise BadRequestData(f"{field}: must be a string")
    return canonical_q(parse_q(text, settings.max_q_length), context)


def geo_query(georel: str | None, geometry: str | None, coordinates: Any,
              geoproperty: str | None, context: LdContext, field: str = ""):
    """Parse a geo-query (``georel``, ``geometry``, ``coordinates``, ``geoproperty``).

    ``coordinates`` is the JSON text of a query parameter or an already parsed array
    (``geoQ`` of a body). ``field`` prefixes the member named in errors (``geoQ.`` for
    a body). Returns None when no geo-query is asked for.
    """
    if georel is None and geometry is None and coordinates is None:
        if geoproperty is not None:
            raise BadRequestData(f"{field}geoproperty: only allowed together with georel")
        return None
    for name, value in (("georel", georel), ("geometry", geometry),
                        ("coordinates", coordinates)):
        if value is None:
            raise BadRequestData(f"{field}{name} is required for a geo-query (georel, "
                                 "geometry and coordinates go together)")
    from cityos.core.geo import parse_geo_query

    canonical_geoproperty = context.to_canonical(geoproperty) if geoproperty else "location"
    try:
        return parse_geo_query(georel=georel, geometry=geometry, coordinates=coordinates,
                               geoproperty=canonical_geoproperty)
    except BadRequestData as error:
        if not field:
            raise
        # parse_geo_query names the member ("coordinates[0]: ..."); in a body it sits
        # under geoQ, so the client is told "geoQ.coordinates[0]: ..."
        raise BadRequestData(field + error.detail) from None


# ===================================================================== rendering
def respond(content: Any, media: str, context: LdContext, status: int = 200,
            headers: dict | None = None) -> Response:
    """A JSON / JSON-LD / GeoJSON response carrying the request's context.

    ``application/ld+json`` puts ``@context`` in the body (in each element of a list);
    the others send the context in a ``Link`` header.
    """
    headers = dict(headers or {})
    if media == JSON_LD:
        ld = context.response_context()
        if isinstance(content, list):
            content = [{**item, "@context": ld} if isinstance(item, dict) else item
                       for item in content]
        elif isinstance(content, dict):
            content = {**content, "@context": ld}
    else:
        links = headers.get("Link")  # pagination links stay beside the context's
        headers["Link"] = context.link_header() + (f", {links}" if links else "")
    return Response(orjson.dumps(content), status_code=status, headers=headers,
                    media_type=media)


def page_links(path: str, page: int, start: int, total: int, media: str) -> str | None:
    """The ``Link`` header's ``prev`` / ``next`` pages of a listing (clause 5.5.9),
    or None when there is only one page."""
    links = []
    if start > 0 and page > 0:
        links.append(f'<{path}?limit={page}&offset={max(0, start - page)}>; rel="prev"; '
                     f'type="{media}"')
    if page > 0 and start + page < total:
        links.append(f'<{path}?limit={page}&offset={start + page}>; rel="next"; '
                     f'type="{media}"')
    return ", ".join(links) or None


def update_response(result: UpdateResult, context: LdContext) -> Response:
    """204 when every attribute was written, else 207 with updated / notUpdated."""
    if not result.not_updated:
        return Response(status_code=204)
    body = {"updated": [context.from_canonical(n) for n in result.updated],
            "notUpdated": [{**item, "attributeName": context.from_canonical(
                item["attributeName"])} for item in result.not_updated]}
    return Response(orjson.dumps(body), status_code=207, media_type="application/json")


def location_of(entity_id: str) -> str:
    """The ``Location`` header of a created entity."""
    return ENTITIES_PATH + quote(entity_id, safe=":@!$&'()*+,;=-._~")


# ====================================================================== entities
@router.post("/entities", status_code=201)
def create_entity(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                  body: LdBody = Depends(read_body)) -> Response:
    """Create an entity: 201 with its ``Location``; 409 AlreadyExists if the id is taken."""
    if not isinstance(body.data, dict):  # 6.4.3.1: the payload is not an entity at all
        raise InvalidRequest("an entity must be a JSON object (for several, use "
                             "/entityOperations/create)")
    entity = canonical_entity(body.data, body.context)
    refuse_null(entity)
    entity = normalise_entity(entity)
    store.create_entity(caller.tenant, entity)
    return Response(status_code=201, headers={"Location": location_of(entity["id"])})


@router.put("/entities/{entity_id}", status_code=204)
def replace_entity(entity_id: str, caller: Caller = Depends(require("operator")),
                   store=Depends(get_store), body: LdBody = Depends(read_body)) -> Response:
    """Replace every attribute of an existing entity."""
    data = body.data
    if not isinstance(data, dict):
        raise BadRequestData("an entity must be a JSON object")
    if "id" in data and data["id"] != entity_id:
        raise BadRequestData(f"id: {data['id']!r} in the body differs from {entity_id!r} "
                             "in the URL")
    entity = canonical_entity(data, body.context)
    refuse_null(entity)
    store.replace_entity(caller.tenant, entity_id, entity)
    return Response(status_code=204)


# Merge Entity, Delete Entity and the attribute routes (append, update, partial
# update, replace, delete) are in cityos.core.ngsi_ld.provision_api.


# ===================================================================== batch ops
def _batch_items(body: LdBody) -> list:
    data = body.data
    if not isinstance(data, list):
        raise BadRequestData("the body of a batch operation must be a JSON array")
    if not data:
        raise BadRequestData("the batch is empty")
    if len(data) > MAX_BATCH_ENTITIES:
        raise BadRequestData(f"the batch has {len(data)} entities; at most "
                             f"{MAX_BATCH_ENTITIES} are accepted in one request")
    return data


def _batch_entities(body: LdBody, failed: BatchResult) -> list:
    """The batch's entities with stored names; one whose ``@context`` does not go with
    the Content-Type fails alone (into ``failed``), a null item fails the request."""
    items = _batch_items(body)
    entities = []
    for index, item in enumerate(items):
        if item is None:  # not an entity that fails alone: the request is malformed
            raise BadRequestData(f"entity {index}: null is not an entity")
        try:
            context = body.context_of(item, f"entity {index}: ")
        except BadRequestData as error:
            failed.fail(item.get("id") if isinstance(item, dict) else None, error)
            continue
        entities.append(canonical_entity(item, context))
    return entities


def _without_nulls(entities: list, failed: BatchResult) -> list:
    """The entities to create that hold no NGSI-LD Null (the others fail alone)."""
    kept = []
    for index, entity in enumerate(entities):
        try:
            refuse_null(entity, f"entity {index}: ")
        except BadRequestData as error:
            failed.fail(entity.get("id") if isinstance(entity, dict) else None, error)
            continue
        kept.append(entity)
    return kept


def _with_failed(result, failed: BatchResult):
    """``result`` with the entities refused before the store (``failed``) among its
    errors."""
    result.errors = failed.errors + result.errors
    return result


def _batch_response(result, created_status: int = 201,
                    created: list[str] | None = None) -> Response:
    if result.errors:
        body = {"success": result.success, "errors": result.errors}
        return Response(orjson.dumps(body), status_code=207, media_type="application/json")
    if created is None or created:
        ids = result.success if created is None else created
        return Response(orjson.dumps(ids), status_code=created_status,
                        media_type="application/json")
    return Response(status_code=204)


@router.post("/entityOperations/create")
def batch_create(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                 body: LdBody = Depends(read_body)) -> Response:
    """Create many entities: 201 with their ids, or 207 with success and errors."""
    failed = BatchResult()
    entities = _without_nulls(_batch_entities(body, failed), failed)
    result = _with_failed(store.create_entities(caller.tenant, entities), failed)
    return _batch_response(result)


@router.post("/entityOperations/upsert")
def batch_upsert(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                 body: LdBody = Depends(read_body), options: str | None = None) -> Response:
    """Create or replace (``options=replace``, default) / merge (``options=update``).

    201 with the ids of the entities created, 204 when all existed, 207 on any error.
    """
    chosen = parse_options(options, ("update", "replace"))
    if chosen == {"update", "replace"}:
        raise BadRequestData("options: update and replace exclude each other")
    failed = BatchResult()
    entities = _batch_entities(body, failed)
    result = _with_failed(store.upsert_entities(caller.tenant, entities,
                                                replace="update" not in chosen), failed)
    return _batch_response(result, created=list(dict.fromkeys(result.created)))


@router.post("/entityOperations/update")
def batch_update(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                 body: LdBody = Depends(read_body), options: str | None = None) -> Response:
    """Append attributes to existing entities (``options=noOverwrite``): 204 or 207."""
    chosen = parse_options(options, ("noOverwrite",))
    failed = BatchResult()
    entities = _batch_entities(body, failed)
    result = _with_failed(store.update_entities(caller.tenant, entities,
                                                no_overwrite="noOverwrite" in chosen), failed)
    return _batch_response(result, created=[])


@router.post("/entityOperations/delete")
def batch_delete(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                 body: LdBody = Depends(read_body)) -> Response:
    """Delete entities by id: 204 or 207."""
    ids = _batch_items(body)
    for index, entity_id in enumerate(ids):
        if not isinstance(entity_id, str):
            raise BadRequestData(f"entity {index}: {entity_id!r} is not an entity id "
                                 "(a URI string)")
    result = store.delete_entities(caller.tenant, ids)
    return _batch_response(result, created=[])


# ============================================================ types, attributes
def _list_id(kind: str) -> str:
    return f"urn:ngsi-ld:{kind}:{uuid.uuid4()}"


@router.get("/types", dependencies=[Depends(qp.defined_params(qp.TYPES_PARAMS))])
@router.get("/types/", dependencies=[Depends(qp.defined_params(qp.TYPES_PARAMS))],
            include_in_schema=False)  # before /types/{type_name:path}, which takes ""
def list_types(caller: Caller = Depends(require("viewer")), store=Depends(get_store),
               context: LdContext = Depends(link_context), media: str = Depends(accept_json),
               details: str | None = None) -> Response:
    """The entity types in use (EntityTypeList), or with ``details=true`` their
    attribute names (a list of EntityType)."""
    summary = store.entity_types_summary(caller.tenant)
    names = sorted(summary)
    if bool_param(details, "details"):
        content: Any = [{"id": context.iri(name), "type": "EntityType",
                         "typeName": context.from_canonical(name),
                         "attributeNames": [context.from_canonical(a) for a in
                                            sorted(summary[name]["attributes"])]}
                        for name in names]
    else:
        content = {"id": _list_id("EntityTypeList"), "type": "EntityTypeList",
                   "typeList": [context.from_canonical(n) for n in names]}
    return respond(content, media, context)


@router.get("/types/{type_name:path}",
            dependencies=[Depends(qp.defined_params(qp.TYPE_INFO_PARAMS))])
def type_info(type_name: str, caller: Caller = Depends(require("viewer")),
              store=Depends(get_store), context: LdContext = Depends(link_context),
              media: str = Depends(accept_json)) -> Response:
    """EntityTypeInfo: how many entities have the type and the attributes they use."""
    name = context.to_canonical(type_name)
    info = store.entity_types_summary(caller.tenant).get(name)
    if info is None:
        raise ResourceNotFound(f"entity type {type_name} does not exist")
    details = [{"id": context.iri(attr), "type": "Attribute",
                "attributeName": context.from_canonical(attr),
                "attributeTypes": sorted(kinds)}
               for attr, kinds in sorted(info["attributes"].items())]
    content = {"id": context.iri(name), "type": "EntityTypeInfo",
               "typeName": context.from_canonical(name), "entityCount": info["count"],
               "attributeDetails": details}
    return respond(content, media, context)


def attribute_summary(store, tenant: str) -> dict[str, dict]:
    """Per attribute name: instance count, attribute types and entity types using it."""
    summary: dict[str, dict] = {}
    for record in store.scan(tenant):
        types = entity_types(record.entity)
        for name in attribute_names(record.entity):
            info = summary.setdefault(name, {"count": 0, "kinds": set(), "types": set()})
            instances = attribute_instances(record.entity[name])
            info["count"] += len(instances)
            info["kinds"].update(i.get("type") for i in instances)
            info["types"].update(types)
    return summary


def _attribute(name: str, info: dict, context: LdContext, full: bool) -> dict:
    out = {"id": context.iri(name), "type": "Attribute",
           "attributeName": context.from_canonical(name)}
    if full:
        out["attributeCount"] = info["count"]
        out["attributeTypes"] = sorted(info["kinds"])
    out["typeNames"] = [context.from_canonical(t) for t in sorted(info["types"])]
    return out


@router.get("/attributes",
            dependencies=[Depends(qp.defined_params(qp.ATTRIBUTES_PARAMS))])
@router.get("/attributes/", dependencies=[Depends(qp.defined_params(qp.ATTRIBUTES_PARAMS))],
            include_in_schema=False)  # before /attributes/{attr_id:path}, which takes ""
def list_attributes(caller: Caller = Depends(require("viewer")), store=Depends(get_store),
                    context: LdContext = Depends(link_context),
                    media: str = Depends(accept_json), details: str | None = None) -> Response:
    """The attribute names in use (AttributeList), or with ``details=true`` a list of
    Attribute objects."""
    summary = attribute_summary(store, caller.tenant)
    if bool_param(details, "details"):
        content: Any = [_attribute(n, summary[n], context, False) for n in sorted(summary)]
    else:
        content = {"id": _list_id("AttributeList"), "type": "AttributeList",
                   "attributeList": [context.from_canonical(n) for n in sorted(summary)]}
    return respond(content, media, context)


@router.get("/attributes/{attr_id:path}",
            dependencies=[Depends(qp.defined_params(qp.ATTRIBUTE_INFO_PARAMS))])
def attribute_info(attr_id: str, caller: Caller = Depends(require("viewer")),
                   store=Depends(get_store), context: LdContext = Depends(link_context),
                   media: str = Depends(accept_json)) -> Response:
    """One Attribute: instance count, attribute types and the entity types using it."""
    name = context.to_canonical(attr_id)
    info = attribute_summary(store, caller.tenant).get(name)
    if info is None:
        raise ResourceNotFound(f"attribute {attr_id} does not exist")
    return respond(_attribute(name, info, context, True), media, context)

