"""NGSI-LD subscriptions: validation, storage, matching and delivery to real receivers.

Notifications go to a real HTTP server on a free local port and to the real Mosquitto
broker at 127.0.0.1:1883 (``CITYOS_TEST_MQTT_URL``); nothing is mocked.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import warnings
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from cityos.config import Settings
from cityos.core import subscriptions as subs
from cityos.core.errors import (
    AlreadyExists,
    BadRequestData,
    ResourceNotFound,
)
from cityos.core.store import open_store
from cityos.core.timefmt import format_datetime, now_utc, parse_datetime
from tests.core.receivers import Receiver

with warnings.catch_warnings():  # starlette's testclient warns about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

MQTT_URL = os.environ.get("CITYOS_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
API = "/ngsi-ld/v1"
TENANT = "city"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def store(tmp_path):
    opened = open_store(f"sqlite:///{tmp_path}/x.db")
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request, tmp_path):
    """The SQLite store, then the PostgreSQL one (the conftest's throwaway database)."""
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path}/x.db")
    else:
        opened = open_store(request.getfixturevalue("postgres_url"))
        for tenant in (TENANT, "north", "south"):  # left by an earlier test
            for doc in opened.list_documents(tenant, subs.SUBSCRIPTION_KIND):
                subs.delete_subscription(opened, tenant, doc["id"])
    yield opened
    opened.close()


def settings(**overrides) -> Settings:
    values = dict(database_url="sqlite:///unused.db", mqtt_url=None, bus_url="memory://",
                  auth_required=False, notification_retries=3, notification_backoff_s=0.01)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def manager(store):
    notifier = subs.SubscriptionManager(store, settings())
    notifier.start()
    yield notifier
    notifier.stop()


# ======================================================================= helpers
def vehicle(number, speed=30.0, lon=8.54, lat=47.37, kind="Vehicle", **extra) -> dict:
    entity = {"id": f"urn:ngsi-ld:{kind}:{number}", "type": kind,
              "speed": {"type": "Property", "value": speed},
              "location": {"type": "GeoProperty",
                           "value": {"type": "Point", "coordinates": [lon, lat]}}}
    entity.update(extra)
    return entity


def subscribe(store, uri, tenant=TENANT, **members) -> dict:
    body = {"entities": [{"type": "Vehicle"}], "notification": {"endpoint": {"uri": uri}}}
    body.update(members)
    return subs.create_subscription(store, tenant, body)


def notified_ids(receiver) -> list[str]:
    return [entity["id"] for body in receiver.delivered for entity in body["data"]]


def valid_body(**members) -> dict:
    body = {"entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
    body.update(members)
    return body


# ==================================================================== validation
@pytest.mark.parametrize("members, field", [
    ({"entities": None}, "entities"),
    ({"id": "not a uri"}, "id"),
    ({"type": "Subscriptions"}, "type"),
    ({"entities": [{"id": "urn:ngsi-ld:Vehicle:1"}]}, "entities[0].type"),
    ({"entities": [{"type": "Vehicle", "idPattern": "urn:("}]}, "entities[0].idPattern"),
    ({"entities": [{"type": "Vehicle", "id": "nope"}]}, "entities[0].id"),
    ({"watchedAttributes": []}, "watchedAttributes"),
    ({"q": "speed>>"}, "q"),
    ({"geoQ": {"georel": "nearby", "geometry": "Point", "coordinates": [8, 47]}},
     "geoQ.georel"),
    ({"geoQ": {"georel": "within", "geometry": "Polygon", "coordinates": [[8, 47]]}},
     "geoQ.coordinates"),
    ({"geoQ": {"georel": "within", "geometry": "Point"}}, "geoQ.coordinates"),
    ({"notification": None}, "notification"),
    ({"notification": {"endpoint": {"uri": "ftp://host/x"}}}, "notification.endpoint.uri"),
    ({"notification": {"endpoint": {"uri": "mqtt://127.0.0.1:1883"}}},
     "notification.endpoint.uri"),
    ({"notification": {"endpoint": {"uri": "mqtt://127.0.0.1:1883/a/#"}}},
     "notification.endpoint.uri"),
    ({"notification": {"format": "verbose", "endpoint": {"uri": "http://h/n"}}},
     "notification.format"),
    ({"notification": {"endpoint": {"uri": "http://h/n", "accept": "text/plain"}}},
     "notification.endpoint.accept"),
    ({"notification": {"endpoint": {"uri": "mqtt://h:1883/t",
                                    "notifierInfo": [{"key": "MQTT-QoS", "value": "3"}]}}},
     "notification.endpoint.notifierInfo"),
    ({"notification": {"endpoint": {"uri": "http://h/n", "receiverInfo": [{"key": 1}]}}},
     "notification.endpoint.receiverInfo[0]"),
    ({"notification": {"attributes": "speed", "endpoint": {"uri": "http://h/n"}}},
     "notification.attributes"),
    ({"throttling": -5}, "throttling"),
    ({"throttling": "often"}, "throttling"),
    ({"expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt"),
    ({"expiresAt": "tomorrow"}, "expiresAt"),
    ({"isActive": "yes"}, "isActive"),
    ({"notificationTrigger": ["entityExploded"]}, "notificationTrigger"),
])
def test_invalid_subscription_is_refused_naming_the_field(members, field):
    with pytest.raises(BadRequestData) as caught:
        subs.validate_subscription(valid_body(**members))
    assert caught.value.detail.startswith(field), caught.value.detail


def test_periodic_subscription_is_checked():
    assert subs.validate_subscription(valid_body(timeInterval=60))["timeInterval"] == 60
    for members, field in (({"timeInterval": 0}, "timeInterval"),
                           ({"timeInterval": True}, "timeInterval"),
                           ({"timeInterval": 5, "watchedAttributes": ["speed"]},
                            "timeInterval"),
                           ({"timeInterval": 5, "throttling": 2}, "throttling")):
        with pytest.raises(BadRequestData, match=f"^{field}"):
            subs.validate_subscription(valid_body(**members))


def test_validation_fills_defaults_and_normalises():
    sub = subs.validate_subscription(valid_body(
        q="speed > 50", name="fast cars",
        geoQ={"georel": "near;maxDistance==500", "geometry": "Point",
              "coordinates": "[8.54, 47.37]"},
        expiresAt=format_datetime(now_utc() + timedelta(days=1))))
    assert sub["id"].startswith("urn:ngsi-ld:Subscription:")
    assert sub["type"] == "Subscription"
    assert sub["q"] == "speed>50"
    assert sub["geoQ"]["coordinates"] == [8.54, 47.37]
    assert sub["subscriptionName"] == "fast cars"
    assert sub["notification"]["format"] == "normalized"
    assert sub["notification"]["endpoint"]["accept"] == "application/json"
    assert "isActive" not in sub and subs.subscription_state(sub) == "active"  # default
    only_watched = subs.validate_subscription({"watchedAttributes": ["speed"],
                                              "notification": valid_body()["notification"]})
    assert "entities" not in only_watched


def test_mqtt_endpoint_is_parsed():
    target = subs.mqtt_endpoint("mqtts://bob:s%40cret@broker.example:8884/city/alerts")
    assert (target.host, target.port, target.tls) == ("broker.example", 8884, True)
    assert (target.username, target.password, target.topic) == ("bob", "s@cret", "city/alerts")
    assert subs.mqtt_endpoint("mqtt://broker/x").port == 1883


# ======================================================================= storage
def test_create_get_list_update_delete(any_store):
    store = any_store
    created = subscribe(store, "http://127.0.0.1:9/n", id="urn:ngsi-ld:Subscription:one")
    assert created["status"] == "active"
    assert created["notification"]["timesSent"] == 0
    with pytest.raises(AlreadyExists):
        subscribe(store, "http://127.0.0.1:9/n", id="urn:ngsi-ld:Subscription:one")
    for n in range(2, 5):
        subscribe(store, "http://127.0.0.1:9/n", id=f"urn:ngsi-ld:Subscription:{n}")
    ids = [s["id"] for s in subs.list_subscriptions(store, TENANT, limit=2, offset=1)]
    assert ids == ["urn:ngsi-ld:Subscription:2", "urn:ngsi-ld:Subscription:3"]
    assert subs.count_subscriptions(store, TENANT) == 4

    updated = subs.update_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one", {
        "notification": {"format": "keyValues", "endpoint": {"uri": "http://127.0.0.1:9/m"}},
        "throttling": 10, "isActive": False})
    assert updated["notification"]["format"] == "keyValues"
    assert updated["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/m"
    with pytest.raises(BadRequestData, match="^notification.endpoint"):  # replaced whole
        subs.update_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one",
                                 {"notification": {"format": "normalized"}})
    assert updated["throttling"] == 10
    assert updated["status"] == "paused"
    assert updated["createdAt"] == created["createdAt"]
    removed = subs.update_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one",
                                       {"throttling": None, "isActive": True})
    assert "throttling" not in removed and removed["status"] == "active"
    with pytest.raises(BadRequestData, match="^notification.format"):
        subs.update_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one",
                                 {"notification": {"format": "fancy"}})
    with pytest.raises(BadRequestData, match="^id"):
        subs.update_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one",
                                 {"id": "urn:ngsi-ld:Subscription:2"})

    subs.delete_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one")
    with pytest.raises(ResourceNotFound):
        subs.get_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one")
    with pytest.raises(ResourceNotFound):
        subs.delete_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one")
    with pytest.raises(ResourceNotFound):
        subs.update_subscription(store, TENANT, "urn:ngsi-ld:Subscription:one", {})


def test_stored_subscriptions_are_per_tenant(any_store):
    store = any_store
    sub = subscribe(store, "http://127.0.0.1:9/n", tenant="north")
    assert subs.list_subscriptions(store, "south") == []
    with pytest.raises(ResourceNotFound):
        subs.get_subscription(store, "south", sub["id"])
    with pytest.raises(ResourceNotFound):
        subs.delete_subscription(store, "south", sub["id"])
    assert subs.get_subscription(store, "north", sub["id"])["id"] == sub["id"]


# ====================================================================== periodic
def test_periodic_subscription_notifies_every_time_interval(store, receiver):
    """timeInterval: the selected entities every interval, changed or not, and no
    notification on a change in between."""
    notifier = subs.SubscriptionManager(store, settings())
    notifier.periodic_tick_s = 3600.0  # the rounds are driven by the test's own ticks
    notifier.start()
    try:
        store.create_entity(TENANT, vehicle(2, speed=70))
        store.create_entity(TENANT, vehicle(1, speed=30))
        store.create_entity(TENANT, vehicle(3, kind="Bus"))
        subscribe(store, receiver.url(), timeInterval=10, q="speed>20",
                  notification={"format": "keyValues", "attributes": ["speed"],
                                "endpoint": {"uri": receiver.url()}})
        notifier.notify_periodic(tick=100.0)
        store.update_attributes(TENANT, "urn:ngsi-ld:Vehicle:1",
                                {"speed": {"type": "Property", "value": 10}})
        assert notifier.flush()
        notifier.notify_periodic(tick=105.0)  # within the interval: nothing
        notifier.notify_periodic(tick=110.0)
        assert notifier.flush()
    finally:
        notifier.stop()
    assert [[e["id"] for e in b["data"]] for b in receiver.delivered] == [
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"], ["urn:ngsi-ld:Vehicle:2"]]
    assert receiver.delivered[0]["data"][0] == {"id": "urn:ngsi-ld:Vehicle:1",
                                                "type": "Vehicle", "speed": 30}


# ====================================================================== matching
def test_entity_type_selects(store, manager, receiver):
    subscribe(store, receiver.url())
    store.create_entity(TENANT, vehicle(1))
    store.create_entity(TENANT, vehicle(2, kind="Bus"))
    assert manager.flush()
    assert notified_ids(receiver) == ["urn:ngsi-ld:Vehicle:1"]


def test_id_pattern_and_id_select(store, manager, receiver):
    subscribe(store, receiver.url(), entities=[
        {"type": "Vehicle", "idPattern": "urn:ngsi-ld:Vehicle:A.*"},
        {"type": "Bus", "id": "urn:ngsi-ld:Bus:7"}])
    for entity in (vehicle("A1"), vehicle("B1"), vehicle("7"), vehicle(7, kind="Bus"),
                   vehicle(8, kind="Bus")):
        store.create_entity(TENANT, entity)
    assert manager.flush()
    assert sorted(notified_ids(receiver)) == ["urn:ngsi-ld:Bus:7", "urn:ngsi-ld:Vehicle:A1"]


def test_entity_type_expressions_select(store, manager, receiver):
    """Clause 4.17 in a selector: ``(A|B)`` either type, ``A;B`` both."""
    subscribe(store, receiver.url("/either"), entities=[{"type": "(Vehicle|Bus)"}])
    subscribe(store, receiver.url("/both"), entities=[{"type": "Vehicle;Bus"}])
    store.create_entity(TENANT, vehicle(1))
    store.create_entity(TENANT, vehicle(2, kind="Bus"))
    store.create_entity(TENANT, {**vehicle(3, kind="Bus"), "type": ["Bus", "Vehicle"]})
    store.create_entity(TENANT, vehicle(4, kind="Tram"))
    assert manager.flush()
    paths: dict[str, list[str]] = {}
    for request in receiver.requests:
        paths.setdefault(request["path"], []).append(request["body"]["data"][0]["id"])
    assert sorted(paths["/either"]) == ["urn:ngsi-ld:Bus:2", "urn:ngsi-ld:Bus:3",
                                        "urn:ngsi-ld:Vehicle:1"]
    assert paths["/both"] == ["urn:ngsi-ld:Bus:3"]
    with pytest.raises(BadRequestData, match=r"^entities\[0\]\.type"):
        subscribe(store, receiver.url(), entities=[{"type": "(Vehicle|Bus"}])


def test_watched_attributes(store, manager, receiver):
    store.create_entity(TENANT, vehicle(1, fuel={"type": "Property", "value": 40}))
    subscribe(store, receiver.url(), watchedAttributes=["speed"])
    store.update_attributes(TENANT, "urn:ngsi-ld:Vehicle:1",
                            {"fuel": {"type": "Property", "value": 39}})
    assert manager.flush()
    assert receiver.delivered == []
    store.update_attributes(TENANT, "urn:ngsi-ld:Vehicle:1",
                            {"speed": {"type": "Property", "value": 55}})
    assert manager.flush()
    assert [b["data"][0]["speed"]["value"] for b in receiver.delivered] == [55]


def test_watched_attributes_without_entities(store, manager, receiver):
    subs.create_subscription(store, TENANT, {"watchedAttributes": ["speed"], "notification": {
        "endpoint": {"uri": receiver.url()}}})
    store.create_entity(TENANT, vehicle(1, kind="Bus"))
    store.create_entity(TENANT, {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor",
                                 "level": {"type": "Property", "value": 1}})
    assert manager.flush()
    assert notified_ids(receiver) == ["urn:ngsi-ld:Bus:1"]


def test_q_filters(store, manager, receiver):
    subscribe(store, receiver.url(), q="speed>50")
    store.create_entity(TENANT, vehicle(1, speed=30))
    store.create_entity(TENANT, vehicle(2, speed=70))
    store.update_attributes(TENANT, "urn:ngsi-ld:Vehicle:1",
                            {"speed": {"type": "Property", "value": 51}})
    assert manager.flush()
    assert sorted(notified_ids(receiver)) == ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    assert all(b["data"][0]["speed"]["value"] > 50 for b in receiver.delivered)


def test_geo_q_filters(store, manager, receiver):
    # Zurich main station; a vehicle about 300 m away and one in Bern (~95 km)
    subscribe(store, receiver.url(), geoQ={"georel": "near;maxDistance==1000",
                                           "geometry": "Point", "coordinates": [8.5402, 47.3782]})
    store.create_entity(TENANT, vehicle("near", lon=8.5440, lat=47.3770))
    store.create_entity(TENANT, vehicle("far", lon=7.4391, lat=46.9490))
    assert manager.flush()
    assert notified_ids(receiver) == ["urn:ngsi-ld:Vehicle:near"]


def test_key_values_and_attribute_projection(store, manager, receiver):
    sub = subscribe(store, receiver.url(), notification={
        "attributes": ["speed"], "format": "keyValues",
        "endpoint": {"uri": receiver.url(), "receiverInfo": [
            {"key": "X-Auth-Token", "value": "s3cret"}]}})
    store.create_entity(TENANT, vehicle(1, speed=42.5))
    assert manager.flush()
    [request] = receiver.requests
    body = request["body"]
    assert body["type"] == "Notification"
    assert body["id"].startswith("urn:ngsi-ld:Notification:")
    assert body["subscriptionId"] == sub["id"]
    parse_datetime(body["notifiedAt"])
    assert body["data"] == [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": 42.5}]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["ngsild-tenant"] == TENANT
    assert headers["x-auth-token"] == "s3cret"
    assert "ngsi-ld-core-context" in headers["link"]


def test_normalized_format_keeps_attribute_members(store, manager, receiver):
    subscribe(store, receiver.url(), notification={
        "endpoint": {"uri": receiver.url(), "accept": "application/ld+json"}})
    entity = vehicle(1)
    entity["speed"]["unitCode"] = "KMH"
    store.create_entity(TENANT, entity)
    assert manager.flush()
    body = receiver.delivered[0]
    assert body["data"][0]["speed"] == {"type": "Property", "value": 30.0, "unitCode": "KMH"}
    assert body["data"][0]["location"]["type"] == "GeoProperty"
    assert "ngsi-ld-core-context" in body["@context"]


def test_throttling_skips_notifications(store, manager, receiver):
    sub = subscribe(store, receiver.url(), throttling=3600)
    store.create_entity(TENANT, vehicle(1))
    for speed in (40, 50, 60):
        store.update_attributes(TENANT, "urn:ngsi-ld:Vehicle:1",
                                {"speed": {"type": "Property", "value": speed}})
    assert manager.flush()
    assert len(receiver.delivered) == 1
    assert subs.get_subscription(store, TENANT, sub["id"])["notification"]["timesSent"] == 1


def test_expired_subscription_sends_nothing(store, manager, receiver):
    expires = now_utc() + timedelta(seconds=1)
    sub = subscribe(store, receiver.url(), expiresAt=format_datetime(expires))
    while now_utc() <= expires:
        time.sleep(0.05)
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    assert receiver.requests == []
    assert subs.get_subscription(store, TENANT, sub["id"])["status"] == "expired"


def test_paused_subscription_sends_nothing_until_resumed(store, manager, receiver):
    sub = subscribe(store, receiver.url(), isActive=False)
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    assert receiver.requests == []
    subs.update_subscription(store, TENANT, sub["id"], {"isActive": True})
    store.create_entity(TENANT, vehicle(2))
    assert manager.flush()
    assert notified_ids(receiver) == ["urn:ngsi-ld:Vehicle:2"]


def test_subscription_changes_reach_a_running_manager(store, manager, receiver):
    store.create_entity(TENANT, vehicle(1))  # the manager caches "no subscriptions"
    assert manager.flush()
    sub = subscribe(store, receiver.url())
    store.create_entity(TENANT, vehicle(2))
    assert manager.flush()
    subs.update_subscription(store, TENANT, sub["id"], {"q": "speed>100"})
    store.create_entity(TENANT, vehicle(3, speed=50))
    assert manager.flush()
    subs.delete_subscription(store, TENANT, sub["id"])
    store.create_entity(TENANT, vehicle(4, speed=500))
    assert manager.flush()
    assert notified_ids(receiver) == ["urn:ngsi-ld:Vehicle:2"]


def test_deletions_notify_only_when_asked(store, manager, receiver):
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    subscribe(store, receiver.url(), id="urn:ngsi-ld:Subscription:plain")
    subscribe(store, receiver.url("/deletions"), id="urn:ngsi-ld:Subscription:deletions",
              notificationTrigger=["entityDeleted"])
    store.delete_entity(TENANT, "urn:ngsi-ld:Vehicle:1")
    assert manager.flush()
    [request] = receiver.requests
    assert request["path"] == "/deletions"
    [data] = request["body"]["data"]
    assert (data["id"], data["type"]) == ("urn:ngsi-ld:Vehicle:1", "Vehicle")
    parse_datetime(data["deletedAt"])


def test_deleted_entity_shows_its_attributes_as_ngsi_ld_null(store, manager, receiver):
    store.create_entity(TENANT, vehicle(1, speed=40))
    subscribe(store, receiver.url(), notificationTrigger=["entityDeleted"],
              notification={"showChanges": True, "attributes": ["speed"],
                            "endpoint": {"uri": receiver.url()}})
    store.delete_entity(TENANT, "urn:ngsi-ld:Vehicle:1")
    assert manager.flush()
    [data] = receiver.delivered[0]["data"]
    assert data["speed"] == {"type": "Property", "value": "urn:ngsi-ld:null",
                             "previousValue": 40}
    assert "location" not in data  # notification.attributes still applies


def test_attribute_triggers_follow_what_the_change_did(store, manager, receiver):
    """attributeDeleted fires on a removal only, with the attribute as the NGSI-LD
    Null; attributeUpdated with showChanges carries the previous value."""
    store.create_entity(TENANT, vehicle(1, speed=40, driver={
        "type": "Relationship", "object": "urn:ngsi-ld:Person:7"}))
    subscribe(store, receiver.url("/deleted"), notificationTrigger=["attributeDeleted"],
              notification={"format": "keyValues", "endpoint": {"uri": receiver.url("/deleted")}})
    subscribe(store, receiver.url("/updated"), notificationTrigger=["attributeUpdated"],
              notification={"showChanges": True, "endpoint": {"uri": receiver.url("/updated")}})
    store.update_attributes(TENANT, "urn:ngsi-ld:Vehicle:1",
                            {"speed": {"type": "Property", "value": 55}})
    assert manager.flush()
    store.delete_attribute(TENANT, "urn:ngsi-ld:Vehicle:1", "driver")
    assert manager.flush()
    by_path = {}
    for request in receiver.requests:
        by_path.setdefault(request["path"], []).append(request["body"]["data"][0])
    assert [d["speed"] for d in by_path["/updated"]] == [
        {"type": "Property", "value": 55, "previousValue": 40}]
    [deleted] = by_path["/deleted"]
    assert deleted["driver"] == "urn:ngsi-ld:null" and deleted["speed"] == 55


def test_tenants_never_trigger_each_others_subscriptions(store, manager, receiver):
    sub = subscribe(store, receiver.url(), tenant="north")
    store.create_entity("south", vehicle(1))
    assert manager.flush()
    assert receiver.requests == []
    store.create_entity("north", vehicle(2))
    assert manager.flush()
    assert notified_ids(receiver) == ["urn:ngsi-ld:Vehicle:2"]
    assert receiver.requests[0]["headers"]["NGSILD-Tenant"] == "north"
    assert receiver.requests[0]["body"]["subscriptionId"] == sub["id"]


# ====================================================================== delivery
def test_retry_with_backoff_then_success(store, manager, receiver):
    sub = subscribe(store, receiver.url())
    receiver.statuses.extend([500, 503])
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    assert [r["status"] for r in receiver.requests] == [500, 503, 204]
    assert len({r["body"]["id"] for r in receiver.requests}) == 1  # the same notification
    notification = subs.get_subscription(store, TENANT, sub["id"])["notification"]
    assert notification["status"] == "ok"
    assert (notification["timesSent"], notification["timesFailed"]) == (1, 0)
    assert parse_datetime(notification["lastFailure"]) <= \
        parse_datetime(notification["lastSuccess"])


def test_retries_exhausted_records_failure(store, manager, receiver):
    sub = subscribe(store, receiver.url())
    receiver.statuses.extend([500] * 10)
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    assert len(receiver.requests) == 1 + manager.retries  # first try and 3 retries
    notification = subs.get_subscription(store, TENANT, sub["id"])["notification"]
    assert notification["status"] == "failed"
    assert (notification["timesSent"], notification["timesFailed"]) == (0, 1)
    parse_datetime(notification["lastFailure"])
    assert "lastSuccess" not in notification
    # the next notification goes through: the status is ok again, counters add up
    receiver.statuses.clear()
    store.create_entity(TENANT, vehicle(2))
    assert manager.flush()
    notification = subs.get_subscription(store, TENANT, sub["id"])["notification"]
    assert notification["status"] == "ok"
    assert (notification["timesSent"], notification["timesFailed"]) == (1, 1)


def test_client_error_is_not_retried(store, manager, receiver):
    sub = subscribe(store, receiver.url())
    receiver.statuses.append(404)
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    assert len(receiver.requests) == 1
    assert subs.get_subscription(store, TENANT, sub["id"])["notification"]["status"] == "failed"


def test_unreachable_endpoint_fails_after_retries(store, manager):
    sub = subscribe(store, "http://127.0.0.1:9/nobody-listens")
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    notification = subs.get_subscription(store, TENANT, sub["id"])["notification"]
    assert (notification["status"], notification["timesFailed"]) == ("failed", 1)


def test_store_writes_do_not_wait_for_deliveries(store, manager, receiver):
    subscribe(store, receiver.url())
    receiver.gate.clear()  # the receiver hangs until released
    store.create_entity(TENANT, vehicle(1))  # returns although the POST cannot finish
    store.create_entity(TENANT, vehicle(2))
    assert manager.flush(timeout=0.2) is False
    receiver.gate.set()
    assert manager.flush()
    assert sorted(notified_ids(receiver)) == ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]


# ========================================================================== MQTT
def _mqtt_listener(topic: str):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(MQTT_URL)
    messages: list = []
    ready, got = threading.Event(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()

    def on_message(c, u, message):
        messages.append((message.topic, message.qos, json.loads(message.payload)))
        got.set()

    client.on_message = on_message
    client.connect(parts.hostname, parts.port or 1883)
    client.loop_start()
    assert ready.wait(10), f"could not subscribe on the broker at {MQTT_URL}"
    return client, messages, got


@pytest.mark.mqtt
def test_mqtt_notification_is_published(store, manager):
    topic = f"cityos-test/{uuid.uuid4().hex}/notify"
    listener, messages, got = _mqtt_listener(topic)
    try:
        sub = subscribe(store, f"{MQTT_URL}/{topic}", notification={
            "format": "keyValues", "endpoint": {
                "uri": f"{MQTT_URL}/{topic}",
                "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}]}})
        store.create_entity(TENANT, vehicle(1, speed=64))
        assert manager.flush()
        assert got.wait(10)
    finally:
        listener.loop_stop()
        listener.disconnect()
    [(got_topic, qos, payload)] = messages
    assert (got_topic, qos) == (topic, 1)
    assert payload["metadata"]["NGSILD-Tenant"] == TENANT
    assert payload["metadata"]["Content-Type"] == "application/json"
    body = payload["body"]
    assert (body["type"], body["subscriptionId"]) == ("Notification", sub["id"])
    assert body["data"][0]["speed"] == 64
    status = subs.get_subscription(store, TENANT, sub["id"])["notification"]
    assert (status["status"], status["timesSent"]) == ("ok", 1)


def test_mqtt_broker_down_records_failure(store, manager):
    sub = subscribe(store, "mqtt://127.0.0.1:9/cityos/notify")
    store.create_entity(TENANT, vehicle(1))
    assert manager.flush()
    notification = subs.get_subscription(store, TENANT, sub["id"])["notification"]
    assert (notification["status"], notification["timesFailed"]) == ("failed", 1)


# =========================================================================== API
@pytest.fixture
def make_client(tmp_path):
    from cityos.server import create_app

    clients = []

    def build(**overrides):
        app = create_app(settings(database_url=f"sqlite:///{tmp_path}/api.db", **overrides))
        client = TestClient(app)
        client.__enter__()  # runs the lifespan: the notifier starts
        clients.append(client)
        return client
    yield build
    for client in clients:
        client.__exit__(None, None, None)


def _notifier(client) -> subs.SubscriptionManager:
    return next(s for s in client.app.state.services
                if isinstance(s, subs.SubscriptionManager))


def _problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"].endswith("/" + kind)
    return body


def test_api_crud(make_client, receiver):
    client = make_client()
    body = {"id": "urn:ngsi-ld:Subscription:fast", "type": "Subscription",
            "entities": [{"type": "Vehicle"}], "q": "speed>50",
            "notification": {"endpoint": {"uri": receiver.url()}}}
    created = client.post(f"{API}/subscriptions", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"{API}/subscriptions/urn:ngsi-ld:Subscription:fast"
    _problem(client.post(f"{API}/subscriptions", json=body), 409, "AlreadyExists")
    got = client.get(created.headers["Location"]).json()
    assert (got["id"], got["q"], got["status"]) == (body["id"], "speed>50", "active")
    for n in range(3):
        client.post(f"{API}/subscriptions", json={**body, "id": f"urn:ngsi-ld:Subscription:{n}"})
    page = client.get(f"{API}/subscriptions", params={"limit": 2, "offset": 1, "count": "true"})
    assert page.headers["NGSILD-Results-Count"] == "4"
    assert [s["id"] for s in page.json()] == ["urn:ngsi-ld:Subscription:0",
                                             "urn:ngsi-ld:Subscription:1"]
    _problem(client.get(f"{API}/subscriptions", params={"limit": 5000}), 403, "TooManyResults")

    patched = client.patch(created.headers["Location"], json={"throttling": 30})
    assert patched.status_code == 204, patched.text
    assert client.get(created.headers["Location"]).json()["throttling"] == 30
    assert client.delete(created.headers["Location"]).status_code == 204
    _problem(client.get(created.headers["Location"]), 404, "ResourceNotFound")
    _problem(client.delete(created.headers["Location"]), 404, "ResourceNotFound")


def test_api_rejects_bad_subscriptions(make_client):
    client = make_client()
    body = {"entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": "gopher://x/y"}}}
    problem = _problem(client.post(f"{API}/subscriptions", json=body), 400, "BadRequestData")
    assert problem["detail"].startswith("notification.endpoint.uri")
    problem = _problem(client.post(f"{API}/subscriptions", json={"type": "Subscription"}),
                       400, "BadRequestData")
    assert "entities" in problem["detail"]
    good = {**body, "notification": {"endpoint": {"uri": "http://h/n"}}}
    problem = _problem(client.post(f"{API}/subscriptions",
                                   json={**good, "jsonldContext": "unknownContext"}),
                       400, "BadRequestData")
    assert problem["detail"].startswith("jsonldContext")
    problem = _problem(client.post(f"{API}/subscriptions", json={
        **good, "jsonldContext": "https://contexts.example.org/not-held.jsonld"}),
        504, "LdContextNotAvailable")
    assert "not-held.jsonld" in problem["detail"]


def test_api_notifies_on_entity_writes(make_client, receiver):
    client = make_client()
    client.post(f"{API}/subscriptions", json={
        "entities": [{"type": "Vehicle"}], "watchedAttributes": ["speed"],
        "notification": {"format": "keyValues", "attributes": ["speed"],
                         "endpoint": {"uri": receiver.url()}}}).raise_for_status()
    client.post(f"{API}/entities", json=vehicle(1, speed=12)).raise_for_status()
    assert _notifier(client).flush()
    assert [b["data"] for b in receiver.delivered] == [
        [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": 12}]]


def test_api_roles_and_tenant_isolation(make_client, receiver):
    from cityos.core.tenancy import create_key

    client = make_client(auth_required=True)
    store = client.app.state.store
    north_operator, _ = create_key(store, "north", "operator")
    north_viewer, _ = create_key(store, "north", "viewer")
    south_operator, _ = create_key(store, "south", "operator")
    body = {"id": "urn:ngsi-ld:Subscription:north", "entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": receiver.url()}}}

    def auth(token):
        return {"Authorization": f"Bearer {token}"}

    _problem(client.post(f"{API}/subscriptions", json=body), 401, "Unauthorized")
    _problem(client.post(f"{API}/subscriptions", json=body, headers=auth(north_viewer)),
             403, "Forbidden")
    assert client.post(f"{API}/subscriptions", json=body,
                       headers=auth(north_operator)).status_code == 201
    assert [s["id"] for s in client.get(f"{API}/subscriptions",
                                        headers=auth(north_viewer)).json()] == [body["id"]]
    # the south tenant sees, changes and triggers nothing of the north's
    south = auth(south_operator)
    assert client.get(f"{API}/subscriptions", headers=south).json() == []
    path = f"{API}/subscriptions/{body['id']}"
    _problem(client.get(path, headers=south), 404, "ResourceNotFound")
    _problem(client.patch(path, json={"isActive": False}, headers=south), 404,
             "ResourceNotFound")
    _problem(client.delete(path, headers=south), 404, "ResourceNotFound")
    _problem(client.get(path, headers={**south, "NGSILD-Tenant": "north"}), 403, "Forbidden")
    client.post(f"{API}/entities", json=vehicle(1), headers=south).raise_for_status()
    assert _notifier(client).flush()
    assert receiver.requests == []
    client.post(f"{API}/entities", json=vehicle(2), headers=auth(north_operator))
    assert _notifier(client).flush()
    assert notified_ids(receiver) == ["urn:ngsi-ld:Vehicle:2"]


def test_api_json_ld_context_names(make_client, receiver):
    client = make_client()
    context = {"Car": "https://example.org/vocab/Car", "pace": "https://example.org/vocab/pace"}
    response = client.post(f"{API}/subscriptions", headers={
        "Content-Type": "application/ld+json"}, content=json.dumps({
            "@context": context, "id": "urn:ngsi-ld:Subscription:ld",
            "entities": [{"type": "Car"}], "watchedAttributes": ["pace"], "q": "pace>3",
            "notification": {"endpoint": {"uri": receiver.url()}}}))
    assert response.status_code == 201, response.text
    stored = client.get(f"{API}/subscriptions/urn:ngsi-ld:Subscription:ld").json()
    assert stored["entities"] == [{"type": "https://example.org/vocab/Car"}]
    assert stored["watchedAttributes"] == ["https://example.org/vocab/pace"]
    assert stored["q"] == "https://example.org/vocab/pace>3"
