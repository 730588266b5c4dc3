"""Ingestion over HTTP, mounted under ``/apps/ingest``.

``POST /observations``
    Batch upsert for gateways that cannot speak MQTT: a JSON array of observations,
    each the body a device would publish plus its ``id`` and ``type`` (keyValues or
    normalised attributes, an optional top-level ``observedAt``). Each one is merged
    into its entity with history, through the same store write the MQTT ingester
    uses (``upsert_entities(..., replace=False)``). Attribute names are taken as
    they are, as on MQTT (no ``@context`` expansion); an attribute without
    ``observedAt`` is stamped with the time the request arrived (plus the item's
    index in microseconds, so readings of one request stay apart in the history).
    Operator role; the tenant is the ``NGSILD-Tenant`` header (else the key's own
    tenant).

    Answers, as NGSI-LD batch operations do:

    - **204** (no body) when every observation was stored;
    - **207** with ``{"success": [entity ids], "errors": [{"index", "entityId",
      "error": ProblemDetails}]}`` when one or more were refused, even when all were.
      Each refused observation is also kept as a dead letter (source ``http``) with
      the same reason; the good ones are stored all the same;
    - **400** ProblemDetails when the body itself is unusable (not JSON, not an
      array, empty, more than :data:`MAX_BATCH_OBSERVATIONS` items): nothing stored.

``GET /deadletters``
    The tenant's dead letters, newest first: ``source`` (the MQTT topic, or
    ``http``), ``payload``, ``reason``, ``receivedAt``. ``limit`` (default
    ``settings.default_query_limit``, at most ``settings.max_query_limit``) and
    ``offset`` page it. Viewer role. ``unrouted=true`` lists the messages whose topic
    named no usable or allowed tenant; it needs an admin key for every tenant.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Response

from cityos.core.errors import BadRequestData, Forbidden, NgsiLdError
from cityos.core.ingest.deadletters import (
    UNROUTED_TENANT,
    list_dead_letters,
    record_dead_letter,
)
from cityos.core.ingest.observations import (
    is_transient,
    observation_entity,
    received_stamped,
)
from cityos.core.ngsi_ld.api import bool_param, page_params
from cityos.core.ngsi_ld.context import LdBody, read_body
from cityos.core.tenancy import (
    ALL_TENANTS,
    KEY_KIND,
    KEYS_TENANT,
    Caller,
    get_app_settings,
    get_store,
    require,
)
from cityos.core.timefmt import now_utc

router = APIRouter(tags=["ingest"])

#: Most observations one request may carry (as many as an NGSI-LD batch operation).
MAX_BATCH_OBSERVATIONS = 1000
#: ``source`` of the dead letters of this endpoint.
HTTP_SOURCE = "http"


def observation_items(data: Any) -> list:
    """The items of a ``POST /observations`` body.

    Raises
    ------
    BadRequestData
        When the body is not a non-empty JSON array of at most
        :data:`MAX_BATCH_OBSERVATIONS` items.
    """
    if not isinstance(data, list):
        raise BadRequestData("body: must be a JSON array of observations "
                             "(objects with id, type and attributes)")
    if not data:
        raise BadRequestData("body: the array of observations is empty")
    if len(data) > MAX_BATCH_OBSERVATIONS:
        raise BadRequestData(f"body: {len(data)} observations; at most "
                             f"{MAX_BATCH_OBSERVATIONS} are accepted in one request")
    return data


def store_observations(store, tenant: str, items: list) -> tuple[list[str], list[dict]]:
    """Validate and merge a gateway's observations; dead-letter the bad ones.

    Parameters
    ----------
    store : ContextStore
    tenant : str
    items : list
        The decoded JSON items, in the order the gateway sent them.

    Returns
    -------
    success : list of str
        Entity ids of the observations stored, in request order.
    errors : list of dict
        ``{"index", "entityId", "error"}`` per refused observation, ``error`` being
        a ProblemDetails whose detail starts with ``entity <index>:`` and names the
        field at fault.
    """
    refused: list[tuple[int, Any, Any, dict]] = []  # index, item, entity id, problem
    valid: list[tuple[int, dict]] = []
    received = now_utc()
    for index, item in enumerate(items):
        try:
            entity = observation_entity(item, where=f"entity {index}: ")
            # without observedAt, readings of one sensor in one request would share the
            # write time and keep one history row: each gets its own instant instead
            valid.append((index, received_stamped(
                entity, received + timedelta(microseconds=index))))
        except NgsiLdError as error:
            refused.append((index, item, _raw_id(item), error.problem()))
    success: list[str] = []
    for index, entity, problem in _merged(store, tenant, valid):
        if problem is None:
            success.append(entity["id"])
        else:
            problem = {**problem, "detail": f"entity {index}: {problem.get('detail')}"}
            refused.append((index, items[index], entity["id"], problem))
    # dead letters only once the good ones are in: a store outage above leaves none, so
    # the gateway's retry of the whole batch does not file them twice
    refused.sort(key=lambda r: r[0])
    errors = [_refused(store, tenant, *rejection) for rejection in refused]
    return success, errors


def _merged(store, tenant: str, valid: list[tuple[int, dict]]) -> list[tuple]:
    """Merge the entities in one transaction: ``(index, entity, problem or None)`` each.

    A write the backend itself refuses (PostgreSQL cannot keep U+0000 in a string, for
    one) fails the whole transaction: the entities are then written one by one so that
    only the one at fault is refused. A store that is down is not an observation's
    fault: that error goes up (500) and the gateway sends the batch again.
    """
    if not valid:
        return []
    try:
        result = store.upsert_entities(tenant, [entity for _, entity in valid],
                                       replace=False)
    except NgsiLdError:
        raise
    except Exception as error:
        if is_transient(error):
            raise
        if len(valid) > 1:
            return [outcome for item in valid for outcome in _merged(store, tenant, [item])]
        problem = BadRequestData(f"store error: {type(error).__name__}: {error}").problem()
        return [(valid[0][0], valid[0][1], problem)]
    # the store reports errors by entity id in request order: give each to the next
    # observation of that entity, as the MQTT ingester does
    refused: dict[str, list[dict]] = {}
    for error in result.errors:
        refused.setdefault(error.get("entityId"), []).append(error["error"])
    outcomes = []
    for index, entity in valid:
        problems = refused.get(entity["id"])
        outcomes.append((index, entity, problems.pop(0) if problems else None))
    return outcomes


def _refused(store, tenant: str, index: int, item: Any, entity_id: Any,
             problem: dict) -> dict:
    # kept as the JSON the gateway sent (a bare string item stays quoted)
    record_dead_letter(store, tenant, HTTP_SOURCE, orjson.dumps(item), problem["detail"])
    return {"index": index, "entityId": entity_id, "error": problem}


def _raw_id(item: Any) -> Any:
    entity_id = item.get("id") if isinstance(item, dict) else None
    return entity_id if isinstance(entity_id, str) else None


@router.post("/observations", status_code=204, responses={
    204: {"description": "every observation was stored"},
    207: {"description": "some (or all) were refused: success and errors lists"},
    400: {"description": "the body is not a usable array of observations"}})
def post_observations(caller: Caller = Depends(require("operator")),
                      store=Depends(get_store),
                      body: LdBody = Depends(read_body)) -> Response:
    """Merge a gateway's batch of observations into the store, with history."""
    items = observation_items(body.data)
    success, errors = store_observations(store, caller.tenant, items)
    if errors:
        return Response(orjson.dumps({"success": success, "errors": errors}),
                        status_code=207, media_type="application/json")
    return Response(status_code=204)


@router.get("/deadletters")
def get_dead_letters(caller: Caller = Depends(require("viewer")), store=Depends(get_store),
                     settings=Depends(get_app_settings), limit: str | None = None,
                     offset: str | None = None, unrouted: str | None = None) -> Response:
    """The tenant's dead letters, newest first."""
    page, start = page_params(settings, limit, offset, False)
    tenant = caller.tenant
    if bool_param(unrouted, "unrouted"):
        _check_platform_admin(store, caller)
        tenant = UNROUTED_TENANT
    letters = list_dead_letters(store, tenant, limit=page, offset=start, newest_first=True)
    return Response(orjson.dumps(letters), media_type="application/json")


def _check_platform_admin(store, caller: Caller) -> None:
    # unrouted messages belong to no tenant: only an admin of every tenant sees them
    # (or anyone when auth is off, where every caller is admin without a key)
    if caller.key_id is None and caller.role == "admin":
        return
    key = store.get_document(KEYS_TENANT, KEY_KIND, caller.key_id) if caller.key_id else None
    if caller.role != "admin" or key is None or key.get("tenant") != ALL_TENANTS:
        raise Forbidden("unrouted: the dead letters of no tenant need an admin key for "
                        f"every tenant ({ALL_TENANTS!r})")
