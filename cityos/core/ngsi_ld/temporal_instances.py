"""Attribute instances of the temporal representation, by ``instanceId`` (ETSI GS CIM
009, 5.6.12 Delete Attribute, 5.6.14 Partial Update of an Attribute Instance, 5.6.15
Delete an Attribute Instance).

A history row is identified by (entity, attribute, datasetId, instant), so its
``instanceId`` is made of them and needs no column: ``urn:ngsi-ld:Instance:`` followed by
the instant in microseconds since the epoch and, for a non-default datasetId, a short
digest of it. The same instance always shows the same id; :func:`with_instance_ids` adds
it to a temporal entity before it is rendered.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends, Response

from cityos.core.entities import attribute_instances, is_uri, normalise_attribute
from cityos.core.errors import BadRequestData, ResourceNotFound
from cityos.core.ngsi_ld.api import bool_param
from cityos.core.ngsi_ld.context import (
    LdBody,
    LdContext,
    canonical_fragment,
    link_context,
    read_body,
)
from cityos.core.ngsi_ld.paths import path_attribute, path_entity_id
from cityos.core.store.base import DEFAULT_DATASET, HistoryRow, history_rows, instant_micros
from cityos.core.tenancy import Caller, get_store, require

router = APIRouter(tags=["NGSI-LD temporal"])

INSTANCE_PREFIX = "urn:ngsi-ld:Instance:"


def instance_id(instance: dict) -> str:
    """The ``instanceId`` of a history instance (it carries ``observedAt``)."""
    micros = instant_micros(instance["observedAt"])
    dataset = instance.get("datasetId", DEFAULT_DATASET)
    if dataset == DEFAULT_DATASET:
        return f"{INSTANCE_PREFIX}{micros}"
    digest = hashlib.sha256(dataset.encode()).hexdigest()[:12]
    return f"{INSTANCE_PREFIX}{micros}-{digest}"


def with_instance_ids(item: dict) -> dict:
    """A temporal entity (``{"id", "type", attr: [instance, ...]}``) whose instances
    carry their ``instanceId``."""
    out = {}
    for name, value in item.items():
        if name in ("id", "type") or not isinstance(value, list):
            out[name] = value
            continue
        out[name] = [{**i, "instanceId": instance_id(i)} if isinstance(i, dict)
                     and "observedAt" in i else i for i in value]
    return out


def _rows(store, tenant: str, entity_id: str, name: str) -> list[HistoryRow]:
    rows = store.history(tenant, entity_id, [name], None, None, None)
    if rows:
        return rows
    if not store.history(tenant, entity_id, None, None, None, 1):
        store.get_record(tenant, entity_id)  # ResourceNotFound when the entity is unknown
    raise ResourceNotFound(f"entity {entity_id} has no temporal attribute {name}")


def _find(store, tenant: str, entity_id: str, name: str, wanted: str) -> HistoryRow:
    for row in _rows(store, tenant, entity_id, name):
        if instance_id(row.instance) == wanted:
            return row
    raise ResourceNotFound(f"attribute {name} of entity {entity_id} has no instance "
                           f"{wanted}")


def _check_instance_id(text: str) -> str:
    if not is_uri(text):
        raise BadRequestData(f"instanceId {text!r} in the path is not a URI")
    return text


def _no_id() -> Response:
    raise BadRequestData("the path names no entity id or no attribute name")


for _path, _methods in (("/temporal/entities//attrs", ["POST"]),
                        ("/temporal/entities//attrs/", ["POST"]),
                        ("/temporal/entities//attrs/{attr_id}", ["DELETE"]),
                        ("/temporal/entities//attrs/{attr_id}/{instance}", ["PATCH", "DELETE"]),
                        ("/temporal/entities/{entity_id}/attrs//{instance}", ["DELETE"])):
    router.add_api_route(_path, _no_id, methods=_methods, include_in_schema=False)


@router.delete("/temporal/entities/{entity_id}/attrs/{attr_id}", status_code=204)
def delete_temporal_attribute(entity_id: str, attr_id: str,
                              caller: Caller = Depends(require("operator")),
                              store=Depends(get_store),
                              context: LdContext = Depends(link_context),
                              datasetId: str | None = None,  # noqa: N803
                              deleteAll: str | None = None) -> Response:  # noqa: N803
    """Delete the history of an attribute (5.6.12): its default instances, those of one
    ``datasetId``, or with ``deleteAll`` all of them; 404 when there are none."""
    path_entity_id(entity_id)
    name = path_attribute(attr_id, context)
    if datasetId is not None and not is_uri(datasetId):
        raise BadRequestData(f"datasetId: {datasetId!r} is not a URI")
    everything = bool_param(deleteAll, "deleteAll")
    _rows(store, caller.tenant, entity_id, name)
    with store.transaction(caller.tenant) as tx:
        removed = tx.delete_history_rows(entity_id, name,
                                         None if everything else datasetId or DEFAULT_DATASET)
    if not removed:
        raise ResourceNotFound(f"attribute {name} of entity {entity_id} has no instance "
                               f"with datasetId {datasetId or DEFAULT_DATASET}")
    return Response(status_code=204)


@router.delete("/temporal/entities/{entity_id}/attrs/{attr_id}/{instance}",
               status_code=204)
def delete_instance(entity_id: str, attr_id: str, instance: str,
                    caller: Caller = Depends(require("operator")), store=Depends(get_store),
                    context: LdContext = Depends(link_context)) -> Response:
    """Delete one attribute instance of the history (5.6.15)."""
    path_entity_id(entity_id)
    name = path_attribute(attr_id, context)
    row = _find(store, caller.tenant, entity_id, name, _check_instance_id(instance))
    with store.transaction(caller.tenant) as tx:
        tx.delete_history_rows(entity_id, name, row.dataset_id, row.observed_us)
    return Response(status_code=204)


@router.patch("/temporal/entities/{entity_id}/attrs/{attr_id}/{instance}",
              status_code=204)
def update_instance(entity_id: str, attr_id: str, instance: str,
                    caller: Caller = Depends(require("operator")), store=Depends(get_store),
                    body: LdBody = Depends(read_body)) -> Response:
    """Overwrite members of one attribute instance of the history (5.6.14); the
    instance keeps its instant unless the fragment gives another ``observedAt``."""
    path_entity_id(entity_id)
    context = body.context
    name = path_attribute(attr_id, context)
    wanted = _check_instance_id(instance)
    data = body.data
    if isinstance(data, dict) and name in data and "type" not in data:
        data = data[name]  # the fragment wrapped in its attribute name
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or not data:
        raise BadRequestData(f"{attr_id}: the body must be a non-empty JSON object")
    fragment = canonical_fragment(data, context)
    fragment.pop("instanceId", None)
    row = _find(store, caller.tenant, entity_id, name, wanted)
    if fragment.get("datasetId", row.dataset_id) not in (row.dataset_id, None) and not (
            row.dataset_id == DEFAULT_DATASET and "datasetId" not in fragment):
        raise BadRequestData(f"{name}.datasetId: an instance cannot move to another dataset")
    merged = {**row.instance, **fragment}
    new = normalise_attribute(name, merged)
    if isinstance(new, list):
        raise BadRequestData(f"{name}: the fragment must be one instance")
    stand_in = {"id": entity_id, "type": row.entity_type}
    with store.transaction(caller.tenant) as tx:
        tx.delete_history_rows(entity_id, name, row.dataset_id, row.observed_us)
        tx.add_history(history_rows(stand_in, {name: attribute_instances(new)},
                                    row.observed_us))
    return Response(status_code=204)
