"""The NGSI-LD temporal API: attribute history under ``/ngsi-ld/v1/temporal/entities``.

Three representations of the history of the matching entities:

* normalised (default): each attribute is the list of its instances, each with
  ``observedAt``, ascending in time;
* ``options=temporalValues``: ``{"type": "Property", "values": [[value, observedAt],
  ...]}`` (``objects`` for a Relationship, ``languageMaps`` for a LanguageProperty);
* ``options=aggregatedValues`` with ``aggrMethods`` and ``aggrPeriodDuration``:
  ``{"type": "Property", "avg": [[value, startAt, endAt], ...], ...}``, computed by
  :mod:`cityos.core.ngsi_ld.aggregation`; buckets start at ``timeAt`` when given, else
  at the first instance of each attribute.

An attribute with several ``datasetId`` instances gives a list of such objects, one per
dataset. Writing (``POST``) records instances in the history through the store, so the
current entity ends up holding the latest instance of each attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter, Depends, Response

from cityos.core.entities import attribute_instances, normalise_attribute, normalise_entity
from cityos.core.errors import AlreadyExists, BadRequestData, ResourceNotFound
from cityos.core.ngsi_ld import temporal_params
from cityos.core.ngsi_ld.aggregation import aggregate, parse_duration, parse_methods
from cityos.core.ngsi_ld.api import (
    RESULTS_COUNT_HEADER,
    attr_names,
    bool_param,
    entity_ids,
    geo_query,
    id_pattern,
    int_param,
    page_params,
    parse_options,
    q_expression,
    respond,
    type_names,
)
from cityos.core.ngsi_ld.context import (
    LdBody,
    LdContext,
    accept_json,
    canonical_entity,
    compact_entity,
    link_context,
    read_body,
)
from cityos.core.ngsi_ld.entity_filters import parse_scope_query, scope_matches
from cityos.core.ngsi_ld.paths import path_entity_id
from cityos.core.store.base import EntityQuery, TemporalQuery, temporal_window
from cityos.core.tenancy import Caller, get_app_settings, get_store, require
from cityos.core.timefmt import format_datetime, from_micros, parse_datetime, to_micros

router = APIRouter(tags=["NGSI-LD temporal"])

TEMPORAL_PATH = "/ngsi-ld/v1/temporal/entities/"
_OPTIONS = ("temporalValues", "aggregatedValues", "count", "normalized", "sysAttrs")
_VALUE_MEMBER = {"Relationship": ("object", "objects"),
                 "LanguageProperty": ("languageMap", "languageMaps")}


@dataclass
class TimeWindow:
    """The checked ``timerel`` / ``timeAt`` / ``endTimeAt`` / ``lastN`` of a request."""

    timerel: str | None
    time_at: Any
    end_time_at: Any
    last_n: int | None


def time_window(timerel: str | None, time_at: str | None, end_time_at: str | None,
                last_n: str | None, timeproperty: str | None) -> TimeWindow:
    """Check the temporal parameters; BadRequestData naming the one that is wrong."""
    if timeproperty not in (None, "observedAt"):
        raise BadRequestData(f"timeproperty: {timeproperty!r} is not supported; history is "
                             "kept by observedAt")
    if timerel is None and time_at is not None:
        raise BadRequestData("timerel is required with timeAt (before, after or between)")
    if end_time_at is not None and timerel != "between":
        raise BadRequestData("endTimeAt: only allowed with timerel=between")
    start = parse_datetime(time_at, "timeAt") if time_at is not None else None
    end = parse_datetime(end_time_at, "endTimeAt") if end_time_at is not None else None
    temporal_window(timerel, start, end)  # checks timerel and the order of the instants
    return TimeWindow(timerel, start, end, int_param(last_n, "lastN", None, minimum=1))


@dataclass
class Aggregation:
    """What ``options=aggregatedValues`` asks for."""

    methods: list[str]
    period_us: int


def aggregation_params(methods: str | None, period: str | None) -> Aggregation:
    """Check ``aggrMethods`` and ``aggrPeriodDuration`` (default ``PT0S``, one bucket)."""
    return Aggregation(parse_methods(methods), parse_duration(period or "PT0S"))


def _instant_us(instance: dict) -> int:
    return to_micros(parse_datetime(instance["observedAt"], "observedAt"))


def _by_dataset(instances: list[dict]) -> dict[str | None, list[dict]]:
    groups: dict[str | None, list[dict]] = {}
    for instance in instances:
        groups.setdefault(instance.get("datasetId"), []).append(instance)
    return groups


def _one_or_many(parts: list[dict]) -> dict | list[dict]:
    return parts[0] if len(parts) == 1 else parts


def temporal_values(instances: list[dict]) -> dict | list[dict]:
    """The simplified temporal representation of one attribute's instances."""
    parts = []
    for dataset, group in _by_dataset(instances).items():
        kind = group[0].get("type", "Property")
        member, plural = _VALUE_MEMBER.get(kind, ("value", "values"))
        part: dict = {"type": kind, plural: [[i.get(member), i.get("observedAt")]
                                             for i in group]}
        if dataset is not None:
            part["datasetId"] = dataset
        parts.append(part)
    return _one_or_many(parts)


def aggregated_values(instances: list[dict], aggregation: Aggregation,
                      window: TimeWindow) -> dict | list[dict]:
    """The aggregated temporal representation of one attribute's instances."""
    anchor, end = aggregation_bounds(window, aggregation.period_us)
    parts = []
    for dataset, group in _by_dataset(instances).items():
        kind = group[0].get("type", "Property")
        member = _VALUE_MEMBER.get(kind, ("value",))[0]
        series = aggregate([_instant_us(i) for i in group], [i.get(member) for i in group],
                           aggregation.methods, aggregation.period_us, anchor, end)
        part: dict = {"type": kind}
        for method, buckets in series.items():
            part[method] = [[value, _iso(start), _iso(stop)] for value, start, stop in buckets]
        if dataset is not None:
            part["datasetId"] = dataset
        parts.append(part)
    return _one_or_many(parts)


def aggregation_bounds(window: TimeWindow, period_us: int) -> tuple[int | None, int | None]:
    """Anchor and end of the buckets: periods align to ``timeAt``; a zero period is one
    bucket spanning the query's time range (or the data's, where the range is open)."""
    time_at = to_micros(window.time_at) if window.time_at is not None else None
    if period_us > 0:
        return time_at, None
    if window.timerel == "before":
        return None, time_at
    end = to_micros(window.end_time_at) if window.end_time_at is not None else None
    return time_at, end


def _iso(micros: int) -> str:
    return format_datetime(from_micros(micros))


def render_temporal(item: dict, context: LdContext, options: set[str],
                    aggregation: Aggregation | None, window: TimeWindow) -> dict:
    """One temporal entity from the store in the representation asked for."""
    item = compact_entity(item, context)
    if "temporalValues" not in options and aggregation is None:
        from cityos.core.ngsi_ld.temporal_instances import with_instance_ids

        return with_instance_ids(item)
    out = {"id": item["id"], "type": item["type"]}
    for name, instances in item.items():
        if name in ("id", "type"):
            continue
        out[name] = aggregated_values(instances, aggregation, window) if aggregation \
            else temporal_values(instances)
    return out


def _representation(options: str | None, methods: str | None,
                    period: str | None) -> tuple[set[str], Aggregation | None]:
    chosen = parse_options(options, _OPTIONS)
    if {"temporalValues", "aggregatedValues"} <= chosen:
        raise BadRequestData("options: temporalValues and aggregatedValues exclude each other")
    if "aggregatedValues" in chosen:
        return chosen, aggregation_params(methods, period)
    if methods is not None or period is not None:
        raise BadRequestData("aggrMethods and aggrPeriodDuration need "
                             "options=aggregatedValues")
    return chosen, None


# ======================================================================= routes
@router.get("/temporal/entities", dependencies=[Depends(temporal_params.check_query)])
def query_temporal(
    caller: Caller = Depends(require("viewer")), store=Depends(get_store),
    settings=Depends(get_app_settings), context: LdContext = Depends(link_context),
    media: str = Depends(accept_json), type: str | None = None,  # noqa: A002
    id: str | None = None, idPattern: str | None = None,  # noqa: A002, N803
    attrs: str | None = None, q: str | None = None, georel: str | None = None,
    geometry: str | None = None, coordinates: str | None = None,
    geoproperty: str | None = None, timerel: str | None = None,
    timeAt: str | None = None, endTimeAt: str | None = None,  # noqa: N803
    timeproperty: str | None = None, lastN: str | None = None,  # noqa: N803
    options: str | None = None, aggrMethods: str | None = None,  # noqa: N803
    aggrPeriodDuration: str | None = None,  # noqa: N803
    limit: str | None = None, offset: str | None = None, count: str | None = None,
    scopeQ: str | None = None,  # noqa: N803
) -> Response:
    """The history of the entities matching type / id / idPattern / q / geo-query /
    scopeQ."""
    chosen, aggregation = _representation(options, aggrMethods, aggrPeriodDuration)
    window = time_window(timerel, timeAt, endTimeAt, lastN, timeproperty)
    counting = "count" in chosen or bool_param(count, "count")
    page, start = page_params(settings, limit, offset, counting)
    wanted = attr_names(attrs, context)
    entity_query = EntityQuery(
        types=type_names(type, context), ids=entity_ids(id), id_pattern=id_pattern(idPattern),
        q=q_expression(q, context, settings),
        geo=geo_query(georel, geometry, coordinates, geoproperty, context),
        limit=page, offset=start)
    scope = parse_scope_query(scopeQ)
    if scope is not None:
        entity_query.where = lambda record: scope_matches(scope, record.entity)
    if not (entity_query.types or entity_query.ids or entity_query.id_pattern or wanted
            or entity_query.q is not None or entity_query.geo is not None):
        raise BadRequestData("a temporal query needs at least one of type, id, idPattern, "
                             "attrs, q or georel")
    headers = None
    if counting:
        total = store.query_entities(caller.tenant, replace(
            entity_query, attrs=wanted, limit=0, offset=0, count=True)).count
        headers = {RESULTS_COUNT_HEADER: str(total)}
    items = store.temporal_query(caller.tenant, TemporalQuery(
        entity_query, wanted, window.timerel, window.time_at, window.end_time_at,
        window.last_n)) if page else []
    if wanted:  # attrs also selects: entities with none of them in range are left out
        items = [i for i in items if any(name in i for name in wanted)]
    content = [render_temporal(i, context, chosen, aggregation, window) for i in items]
    return respond(content, media, context, headers=headers)


@router.get("/temporal/entities/{entity_id}",
            dependencies=[Depends(temporal_params.check_retrieve)])
def retrieve_temporal(
    entity_id: str, caller: Caller = Depends(require("viewer")), store=Depends(get_store),
    context: LdContext = Depends(link_context), media: str = Depends(accept_json),
    attrs: str | None = None, timerel: str | None = None,
    timeAt: str | None = None, endTimeAt: str | None = None,  # noqa: N803
    timeproperty: str | None = None, lastN: str | None = None,  # noqa: N803
    options: str | None = None, aggrMethods: str | None = None,  # noqa: N803
    aggrPeriodDuration: str | None = None,  # noqa: N803
) -> Response:
    """The history of one entity; 404 when the entity does not exist."""
    chosen, aggregation = _representation(options, aggrMethods, aggrPeriodDuration)
    window = time_window(timerel, timeAt, endTimeAt, lastN, timeproperty)
    items = store.temporal_query(caller.tenant, TemporalQuery(
        EntityQuery(ids=[entity_id], limit=1), attr_names(attrs, context), window.timerel,
        window.time_at, window.end_time_at, window.last_n))
    if not items:
        raise ResourceNotFound(f"entity {entity_id} does not exist")
    return respond(render_temporal(items[0], context, chosen, aggregation, window), media,
                   context)


def _instance_rounds(attributes: dict) -> list[dict]:
    """Split temporal attributes into write rounds, oldest instances first.

    Round k holds the k-th oldest instance of every (attribute, datasetId) series, so
    writing the rounds in order leaves the latest instance of each as current.
    """
    series: dict[tuple[str, str | None], list[dict]] = {}
    for name, value in attributes.items():
        for instance in attribute_instances(value):
            instance = normalise_attribute(name, instance)  # precise errors before writing
            series.setdefault((name, instance.get("datasetId")), []).append(instance)
    rounds: list[dict] = []
    for (name, _dataset), instances in series.items():
        instances.sort(key=lambda i: (i.get("observedAt") is None, i.get("observedAt", "")))
        for index, instance in enumerate(instances):
            if index == len(rounds):
                rounds.append({})
            rounds[index].setdefault(name, []).append(instance)
    return rounds


def _write_rounds(store, tenant: str, entity_id: str, rounds: list[dict]) -> None:
    for attrs in rounds:
        store.append_attributes(tenant, entity_id, attrs)


@router.post("/temporal/entities")
def create_temporal(caller: Caller = Depends(require("operator")), store=Depends(get_store),
                    body: LdBody = Depends(read_body)) -> Response:
    """Record a temporal entity's instances in the history.

    201 with ``Location`` when the entity is new, 204 when it existed.
    """
    data = canonical_entity(body.data, body.context)
    if not isinstance(data, dict):
        raise BadRequestData("a temporal entity must be a JSON object")
    head = normalise_entity({k: data[k] for k in ("id", "type", "scope") if k in data})
    attributes = {k: v for k, v in data.items() if k not in ("id", "type", "scope")}
    rounds = _instance_rounds(attributes)  # validate every instance before writing
    created = True
    try:
        store.create_entity(caller.tenant, head)
    except AlreadyExists:  # a temporal entity may be posted again with more instances
        created = False
    _write_rounds(store, caller.tenant, head["id"], rounds)
    if created:
        return Response(status_code=201, headers={"Location": TEMPORAL_PATH + head["id"]})
    return Response(status_code=204)


@router.post("/temporal/entities/{entity_id}/attrs", status_code=204)
def append_temporal(entity_id: str, caller: Caller = Depends(require("operator")),
                    store=Depends(get_store), body: LdBody = Depends(read_body)) -> Response:
    """Add attribute instances to the history of an existing entity."""
    path_entity_id(entity_id)
    data = canonical_entity(body.data, body.context)
    if not isinstance(data, dict):
        raise BadRequestData("the request body must be a JSON object of attributes")
    attributes = {k: v for k, v in data.items() if k not in ("id", "type", "scope")}
    if not attributes:
        raise BadRequestData("the request body names no attribute")
    rounds = _instance_rounds(attributes)
    store.get_record(caller.tenant, entity_id)  # 404 before anything is written
    _write_rounds(store, caller.tenant, entity_id, rounds)
    return Response(status_code=204)


@router.delete("/temporal/entities/{entity_id}", status_code=204)
def delete_temporal(entity_id: str, caller: Caller = Depends(require("operator")),
                    store=Depends(get_store)) -> Response:
    """Remove the history of an entity; 404 when there is neither history nor entity."""
    path_entity_id(entity_id)
    removed = store.delete_history(caller.tenant, entity_id)
    if not removed:
        store.get_record(caller.tenant, entity_id)  # raises ResourceNotFound
    return Response(status_code=204)
