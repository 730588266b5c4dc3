"""The NGSI-LD subscription API (ETSI GS CIM 009 clause 5.8), mounted under ``/ngsi-ld/v1``.

Thin over :mod:`cityos.core.subscriptions`: routes check parameters, rename names
between the client's ``@context`` and the stored canonical names, and call one function.
Every route acts on the caller's tenant only, so one tenant never sees another's
subscriptions. The notifier (:class:`~cityos.core.subscriptions.SubscriptionManager`)
learns of changes by itself.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Request, Response

from cityos.core import subscriptions as subs
from cityos.core.ngsi_ld import versions
from cityos.core.ngsi_ld.api import (
    RESULTS_COUNT_HEADER,
    bool_param,
    page_links,
    page_params,
    respond,
)
from cityos.core.ngsi_ld.context import LdBody, LdContext, accept_json, link_context, read_body
from cityos.core.ngsi_ld.entity_filters import rename_type_expression
from cityos.core.ngsi_ld.ids import check_uri
from cityos.core.tenancy import Caller, get_app_settings, get_store, require

router = APIRouter(tags=["NGSI-LD subscriptions"])

SUBSCRIPTIONS_PATH = "/ngsi-ld/v1/subscriptions/"


def location_of(subscription_id: str) -> str:
    """The ``Location`` header of a created subscription."""
    return SUBSCRIPTIONS_PATH + quote(subscription_id, safe=":@!$&'()*+,;=-._~")


def render_subscription(sub: dict, context: LdContext, *, sys_attrs: bool = False) -> dict:
    """A stored subscription with its names in the client's ``@context``; its system
    times (``createdAt``, ``modifiedAt``) only with ``sys_attrs``."""
    if not sys_attrs:
        sub = {k: v for k, v in sub.items() if k not in ("createdAt", "modifiedAt")}
    if context.is_core:
        return sub
    name = context.from_canonical
    out = dict(sub)
    if "entities" in out:
        out["entities"] = [{**e, "type": rename_type_expression(e["type"], name)}
                           for e in out["entities"]]
    if "watchedAttributes" in out:
        out["watchedAttributes"] = [name(n) for n in out["watchedAttributes"]]
    notification = dict(out["notification"])
    for member in ("attributes", "pick", "omit"):
        if member in notification:
            notification[member] = [n if n in ("id", "type") else name(n)
                                    for n in notification[member]]
    out["notification"] = notification
    if "geoproperty" in out.get("geoQ", {}):
        out["geoQ"] = {**out["geoQ"], "geoproperty": name(out["geoQ"]["geoproperty"])}
    if "q" in out:
        from cityos.core.ngsi_ld.qlang import parse_q, rename_attributes

        out["q"] = str(rename_attributes(parse_q(out["q"], len(out["q"])), name))
    return out


def _decoded_q(body):
    """The body with its ``q`` percent-decoded: clients write it as they would in a
    query string (``name=="Eiffel%20Tower"``), and the ETSI suite expects that read."""
    if isinstance(body, dict) and isinstance(body.get("q"), str) and "%" in body["q"]:
        return {**body, "q": unquote(body["q"])}
    return body


@router.post("/subscriptions", status_code=201)
def create_subscription(caller: Caller = Depends(require("operator")),
                        store=Depends(get_store), settings=Depends(get_app_settings),
                        body: LdBody = Depends(read_body)) -> Response:
    """Create a subscription: 201 with its ``Location``; 409 if the id is taken."""
    sub = subs.create_subscription(store, caller.tenant, _decoded_q(body.data), body.context,
                                   max_q_length=settings.max_q_length)
    return Response(status_code=201, headers={"Location": location_of(sub["id"])})


@router.get("/subscriptions")
def list_subscriptions(caller: Caller = Depends(require("viewer")), store=Depends(get_store),
                       settings=Depends(get_app_settings),
                       context: LdContext = Depends(link_context),
                       media: str = Depends(accept_json), limit: str | None = None,
                       offset: str | None = None, count: str | None = None,
                       options: str | None = None) -> Response:
    """The tenant's subscriptions, one page (``limit``/``offset``) with ``prev`` /
    ``next`` links; ``count=true`` adds the ``NGSILD-Results-Count`` header;
    ``options=sysAttrs`` adds ``createdAt`` / ``modifiedAt``."""
    counting = bool_param(count, "count")
    page, start = page_params(settings, limit, offset, counting)
    sys_attrs = _sys_attrs(options)
    found = subs.list_subscriptions(store, caller.tenant, page, start) if page else []
    total = subs.count_subscriptions(store, caller.tenant)
    headers = {RESULTS_COUNT_HEADER: str(total)} if counting else {}
    links = page_links(SUBSCRIPTIONS_PATH.rstrip("/"), page, start, total, media)
    if links:
        headers["Link"] = links
    return respond([render_subscription(s, context, sys_attrs=sys_attrs) for s in found],
                   media, context, headers=headers)


def _sys_attrs(options: str | None) -> bool:
    """``options=sysAttrs``: show the subscription's ``createdAt`` / ``modifiedAt``."""
    return "sysAttrs" in (options or "").split(",")


@router.get("/subscriptions/{subscription_id}")
def retrieve_subscription(subscription_id: str, request: Request,
                          caller: Caller = Depends(require("viewer")),
                          store=Depends(get_store),
                          context: LdContext = Depends(link_context),
                          media: str = Depends(accept_json),
                          options: str | None = None) -> Response:
    """One subscription with its notification status; 400 for an id that is not a
    URI, 404 when it does not exist. A version preference (``Prefer: ngsi-ld=1.0``)
    is acknowledged and changes nothing: clause 4.3.6.8's fallbacks are for entities."""
    check_uri(subscription_id, "subscriptionId")
    sub = subs.get_subscription(store, caller.tenant, subscription_id)
    version = versions.preferred_version(request.headers.get("prefer"))
    headers = {"Preference-Applied": versions.applied(version)} if version else None
    return respond(render_subscription(sub, context, sys_attrs=_sys_attrs(options)), media,
                   context, headers=headers)


@router.patch("/subscriptions/{subscription_id}", status_code=204)
def update_subscription(subscription_id: str, caller: Caller = Depends(require("operator")),
                        store=Depends(get_store), settings=Depends(get_app_settings),
                        body: LdBody = Depends(read_body)) -> Response:
    """Merge a fragment into a subscription (``isActive: false`` pauses it)."""
    check_uri(subscription_id, "subscriptionId")
    subs.update_subscription(store, caller.tenant, subscription_id, _decoded_q(body.data),
                             body.context, max_q_length=settings.max_q_length)
    return Response(status_code=204)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
def delete_subscription(subscription_id: str, caller: Caller = Depends(require("operator")),
                        store=Depends(get_store)) -> Response:
    """Delete a subscription; 404 when it does not exist."""
    check_uri(subscription_id, "subscriptionId")
    subs.delete_subscription(store, caller.tenant, subscription_id)
    return Response(status_code=204)
