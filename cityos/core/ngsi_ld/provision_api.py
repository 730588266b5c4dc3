"""NGSI-LD context provision routes of ETSI GS CIM 009 that write with Fragments.

Merge Entity (``PATCH /entities/{id}``, 5.6.17), Update Attributes
(``PATCH .../attrs``, 5.6.2), Append Attributes (``POST .../attrs``, 5.6.3), Partial
Attribute Update (``PATCH .../attrs/{attr}``, 5.6.4), Replace Attribute
(``PUT .../attrs/{attr}``, 5.6.19), Delete Entity and Delete Attribute with their
``type`` selector, Batch Merge (``POST /entityOperations/merge``, 5.6.20) and Purge
Entities (``DELETE /entities``, 5.6.21). The app mounts this router before
:mod:`cityos.core.ngsi_ld.api`, so these routes answer first; the writing itself is in
:mod:`cityos.core.ngsi_ld.merge`.

Every route that names an entity in its path refuses an id that is not a URI (or no
id at all, ``/entities//attrs``) with 400 BadRequestData before the store is touched.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from cityos.core.entities import (
    RESERVED_KEYS,
    entity_types,
    is_uri,
)
from cityos.core.errors import BadRequestData, ResourceNotFound
from cityos.core.ngsi_ld import merge, temporal_instances
from cityos.core.ngsi_ld.api import (
    MAX_BATCH_ENTITIES,
    bool_param,
    geo_query,
    id_pattern,
    list_param,
    parse_options,
    q_expression,
    type_names,
    update_response,
)
from cityos.core.ngsi_ld.context import (
    LdBody,
    LdContext,
    canonical_entity,
    canonical_fragment,
    link_context,
    read_body,
)
from cityos.core.ngsi_ld.paths import path_attribute, path_entity_id
from cityos.core.ngsi_ld.purge import purge
from cityos.core.store.base import (
    BatchResult,
    EntityQuery,
)
from cityos.core.tenancy import Caller, get_app_settings, get_store, require

router = APIRouter(tags=["NGSI-LD"])

#: System attributes: they neither qualify a purge nor can be dropped.
SYSTEM_ATTRIBUTES = frozenset({"createdAt", "modifiedAt", "deletedAt", "observedAt",
                               "expiresAt"})


# ================================================================== checks
def gate_type(store, tenant: str, entity_id: str, text: str | None,
              context: LdContext) -> None:
    """The ``type`` selector of a write (4.17): 404 unless the entity has one of them."""
    wanted = type_names(text, context)
    if not wanted:
        return
    record = store.get_record(tenant, entity_id)
    if not set(wanted) & set(entity_types(record.entity)):
        raise ResourceNotFound(f"entity {entity_id} has none of the types "
                               f"{', '.join(wanted)}")


def _fragment(body: LdBody, entity_id: str, *, allow_empty: bool = False) -> dict:
    data = body.data
    if not isinstance(data, dict):
        raise BadRequestData("the request body must be a JSON object of attributes")
    if "id" in data and data["id"] != entity_id:
        raise BadRequestData(f"id: {data['id']!r} in the body differs from {entity_id!r} "
                             "in the URL")
    fragment = canonical_entity(data, body.context)
    fragment.pop("id", None)
    if not allow_empty and not [k for k in fragment if k not in ("id", "@context")]:
        raise BadRequestData("the request body names no attribute")
    return fragment


# ============================================================ empty path ids
def _no_entity_id() -> Response:
    raise BadRequestData("the path names no entity id")


def _without_slash(request: Request) -> Response:
    """``GET``/``POST``/``DELETE /entities/``: the same 307 redirect to ``/entities`` that the
    router gives any other path with a trailing slash (a route on ``/entities/`` for
    the other methods would otherwise answer them 405)."""
    url = request.url
    return RedirectResponse(url.replace(path=url.path.rstrip("/")), status_code=307)


router.add_api_route("/entities/", _without_slash, methods=["GET", "POST", "DELETE"],
                     include_in_schema=False)
for _path, _methods in (("/entities/", ["PATCH", "PUT"]),
                        ("/entities//attrs", ["POST", "PATCH"]),
                        ("/entities//attrs/", ["POST", "PATCH"]),
                        ("/entities//attrs/{attr_id}", ["PATCH", "PUT", "DELETE"])):
    router.add_api_route(_path, _no_entity_id, methods=_methods, include_in_schema=False)


# ================================================================ entities
@router.patch("/entities/{entity_id}")
def merge_entity(entity_id: str, caller: Caller = Depends(require("operator")),
                 store=Depends(get_store), body: LdBody = Depends(read_body),
                 type: str | None = None) -> Response:  # noqa: A002
    """Merge a Fragment into an entity (5.6.17): 204, or 404 when there is none."""
    path_entity_id(entity_id)
    fragment = _fragment(body, entity_id, allow_empty=True)
    gate_type(store, caller.tenant, entity_id, type, body.context)
    merge.write_fragment(store, caller.tenant, entity_id, fragment, "merge")
    return Response(status_code=204)


@router.delete("/entities/{entity_id}", status_code=204)
def delete_entity(entity_id: str, caller: Caller = Depends(require("operator")),
                  store=Depends(get_store), context: LdContext = Depends(link_context),
                  type: str | None = None) -> Response:  # noqa: A002
    """Delete an entity (its history stays for the temporal API)."""
    path_entity_id(entity_id)
    gate_type(store, caller.tenant, entity_id, type, context)
    store.delete_entity(caller.tenant, entity_id)
    return Response(status_code=204)


# ============================================================== attributes
@router.post("/entities/{entity_id}/attrs")
def append_attributes(entity_id: str, caller: Caller = Depends(require("operator")),
                      store=Depends(get_store), body: LdBody = Depends(read_body),
                      options: str | None = None,
                      type: str | None = None) -> Response:  # noqa: A002
    """Append attributes (5.6.3); ``options=noOverwrite`` keeps existing ones (207)."""
    path_entity_id(entity_id)
    chosen = parse_options(options, ("noOverwrite",))
    fragment = _fragment(body, entity_id)
    gate_type(store, caller.tenant, entity_id, type, body.context)
    result = merge.write_fragment(store, caller.tenant, entity_id, fragment, "append",
                                  no_overwrite="noOverwrite" in chosen)
    return update_response(result, body.context)


@router.patch("/entities/{entity_id}/attrs")
def update_attributes(entity_id: str, caller: Caller = Depends(require("operator")),
                      store=Depends(get_store), body: LdBody = Depends(read_body),
                      type: str | None = None) -> Response:  # noqa: A002
    """Update existing attributes (5.6.2); the others are listed as notUpdated (207)."""
    path_entity_id(entity_id)
    fragment = _fragment(body, entity_id)
    gate_type(store, caller.tenant, entity_id, type, body.context)
    result = merge.write_fragment(store, caller.tenant, entity_id, fragment, "update")
    return update_response(result, body.context)


@router.patch("/entities/{entity_id}/attrs/{attr_id}", status_code=204)
def partial_attribute_update(entity_id: str, attr_id: str,
                             caller: Caller = Depends(require("operator")),
                             store=Depends(get_store), body: LdBody = Depends(read_body),
                             type: str | None = None) -> Response:  # noqa: A002
    """Change some members of one attribute instance (``datasetId`` picks it)."""
    path_entity_id(entity_id)
    context = body.context
    name = path_attribute(attr_id, context)
    if name == "scope":
        raise BadRequestData("scope: is not an attribute; merge or update the entity to "
                             "change it")
    if not isinstance(body.data, dict) or not body.data:
        raise BadRequestData(f"{attr_id}: the body must be a non-empty JSON object")
    gate_type(store, caller.tenant, entity_id, type, context)
    merge.patch_attribute(store, caller.tenant, entity_id, name,
                          canonical_fragment(body.data, context))
    return Response(status_code=204)


@router.put("/entities/{entity_id}/attrs/{attr_id}", status_code=204)
def replace_attribute(entity_id: str, attr_id: str,
                      caller: Caller = Depends(require("operator")),
                      store=Depends(get_store), body: LdBody = Depends(read_body),
                      type: str | None = None) -> Response:  # noqa: A002
    """Replace one attribute instance (5.6.19): 404 when the entity or attribute is
    absent; the body's ``datasetId`` picks the instance."""
    path_entity_id(entity_id)
    context = body.context
    name = path_attribute(attr_id, context)
    if name in RESERVED_KEYS:
        raise BadRequestData(f"{attr_id}: is not an attribute that can be replaced")
    data = body.data
    if not isinstance(data, dict):
        raise BadRequestData(f"{attr_id}: the body must be a JSON object (an attribute)")
    if attr_id in data and isinstance(data[attr_id], (dict, list)) and "type" not in data:
        data = data[attr_id]  # the attribute wrapped in its name
    gate_type(store, caller.tenant, entity_id, type, context)
    instance = canonical_fragment(data, context)
    merge.replace_attribute(store, caller.tenant, entity_id, name, instance)
    return Response(status_code=204)


@router.delete("/entities/{entity_id}/attrs/{attr_id}", status_code=204)
def delete_attribute(entity_id: str, attr_id: str,
                     caller: Caller = Depends(require("operator")), store=Depends(get_store),
                     context: LdContext = Depends(link_context),
                     datasetId: str | None = None,  # noqa: N803
                     deleteAll: str | None = None,  # noqa: N803
                     type: str | None = None) -> Response:  # noqa: A002
    """Delete an attribute (its default instance, one ``datasetId``, or ``deleteAll``);
    ``scope`` is deletable too."""
    path_entity_id(entity_id)
    name = path_attribute(attr_id, context)
    if datasetId is not None and not is_uri(datasetId):
        raise BadRequestData(f"datasetId: {datasetId!r} is not a URI")
    gate_type(store, caller.tenant, entity_id, type, context)
    if name == "scope":
        merge.write_fragment(store, caller.tenant, entity_id, {"scope": merge.NGSI_LD_NULL},
                             "merge")
        return Response(status_code=204)
    store.delete_attribute(caller.tenant, entity_id, name, dataset_id=datasetId,
                           delete_all=bool_param(deleteAll, "deleteAll"))
    return Response(status_code=204)


# ============================================================= batch merge
@router.post("/entityOperations/merge")
def batch_merge(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                body: LdBody = Depends(read_body)) -> Response:
    """Merge each entity of the array into the stored one (5.6.20): 204, or 207 with
    success and errors (an entity that does not exist is a ResourceNotFound)."""
    items = batch_items(body.data)
    fragments = []
    for index, item in enumerate(items):
        if not isinstance(item.get("id"), str):
            fragments.append((item.get("id"), BadRequestData(f"entity {index}: id is "
                                                             "required")))
            continue
        try:
            fragment = canonical_entity(item, body.context_of(item, f"entity {index}: "))
        except BadRequestData as error:
            fragments.append((item["id"], error))
            continue
        fragments.append((fragment.pop("id"), fragment))
    result = merge.merge_entities(store, caller.tenant, fragments)
    if result.errors:
        return _multi_status(result)
    return Response(status_code=204)


def batch_items(data: Any) -> list[dict]:
    """The entities of a batch body: a non-empty array of objects (400 otherwise: a
    null or non-object item fails the whole batch)."""
    if not isinstance(data, list):
        raise BadRequestData("the body of a batch operation must be a JSON array")
    if not data:
        raise BadRequestData("the batch is empty")
    if len(data) > MAX_BATCH_ENTITIES:
        raise BadRequestData(f"the batch has {len(data)} entities; at most "
                             f"{MAX_BATCH_ENTITIES} are accepted in one request")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise BadRequestData(f"entity {index}: {item!r} is not an entity (a JSON object)")
    return data


def _multi_status(result: BatchResult) -> Response:
    import orjson

    return Response(orjson.dumps({"success": result.success, "errors": result.errors}),
                    status_code=207, media_type="application/json")


# =================================================================== purge
@router.delete("/entities", status_code=204)
def purge_entities(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                   settings=Depends(get_app_settings),
                   context: LdContext = Depends(link_context),
                   type: str | None = None, id: str | None = None,  # noqa: A002
                   idPattern: str | None = None, attrs: str | None = None,  # noqa: N803
                   q: str | None = None, georel: str | None = None,
                   geometry: str | None = None, coordinates: str | None = None,
                   geoproperty: str | None = None, keep: str | None = None,
                   drop: str | None = None, local: str | None = None) -> Response:
    """Purge Entities (5.6.21): delete the matching entities, or with ``drop`` / ``keep``
    only some of their attributes. A type, a non-system attribute (in ``attrs`` or
    ``q``), a geo-query or ``local=true`` is required: ids alone are too wide."""
    if keep is not None and drop is not None:
        raise BadRequestData("keep and drop exclude each other")
    if q is not None and "{" in q:
        raise BadRequestData("q: a linked entity query (attr{...}) is not allowed in a purge")
    wanted_attrs = [path_attribute(n, context) for n in list_param(attrs)] or None
    expression = q_expression(q, context, settings)
    q_names = _q_names(expression)
    geo = geo_query(georel, geometry, coordinates, geoproperty, context)
    qualifies = (bool(type) or any(n not in SYSTEM_ATTRIBUTES for n in wanted_attrs or [])
                 or any(n not in SYSTEM_ATTRIBUTES for n in q_names) or geo is not None
                 or bool_param(local, "local"))
    if not qualifies:
        raise BadRequestData("purge: too wide; give a type, a non-system attribute in "
                             "attrs or q, a geo-query or local=true")
    ids = list_param(id) or None
    for entity_id in ids or []:
        path_entity_id(entity_id)
    query = EntityQuery(types=type_names(type, context), ids=ids,
                        id_pattern=id_pattern(idPattern),
                        q=expression if q_names - SYSTEM_ATTRIBUTES or not q_names else None,
                        geo=geo, attrs=wanted_attrs, limit=2**62, offset=0)
    keep_names = [path_attribute(n, context) for n in list_param(keep)]
    drop_names = [path_attribute(n, context) for n in list_param(drop)]
    purge(store, caller.tenant, query, keep=keep_names if keep is not None else None,
                drop=drop_names if drop is not None else None)
    return Response(status_code=204)


def _q_names(expression: Any) -> set[str]:
    if expression is None:
        return set()
    path = getattr(expression, "path", None)
    if path is not None:
        return {path.name}
    return set().union(*(_q_names(p) for p in getattr(expression, "parts", ())))


# the temporal attribute-instance routes answer before temporal_api's too
router.include_router(temporal_instances.router)
