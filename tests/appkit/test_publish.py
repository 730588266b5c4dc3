"""``cityos.appkit.publish``: readings reach the store through the server's HTTP ingest
(a live server on a port), and a broker that does not answer is said so without the
URL's password. Over MQTT it is exercised by the flood watch's simulator test
(``tests/apps/floodwatch/test_flood_demo.py``)."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import pytest
import uvicorn

from cityos.appkit.demo import DemoContext
from cityos.appkit.publish import HttpPublisher, MqttPublisher, demo_publisher
from cityos.config import Settings
from cityos.core.tenancy import create_key
from cityos.server import create_app

TENANT = "north"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(sqlite_store):
    """The CityOS app served by uvicorn in a thread: ``(base_url, operator key)``."""
    port = free_port()
    app = create_app(Settings(database_url="sqlite://", default_tenant=TENANT),
                     store=sqlite_store)
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    key, _ = create_key(sqlite_store, TENANT, "operator", "publisher test")
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        served.should_exit = True
        thread.join(10)


def test_http_readings_reach_the_store_with_their_history(server, sqlite_store):
    base_url, key = server
    demo = DemoContext(base_url, key, TENANT, None, sqlite_store)
    publisher = demo_publisher(demo, client_id="unused", label="test sim")
    assert isinstance(publisher, HttpPublisher)  # no broker: the HTTP ingest
    try:
        for minute, depth in ((0, 4.0), (10, 12.5)):
            observed = datetime(2026, 3, 2, 9, minute, tzinfo=UTC).isoformat()
            publisher.publish("WaterObserved", "w-1", {
                "depth": {"type": "Property", "value": depth, "unitCode": "CMT"},
                "observedAt": observed.replace("+00:00", "Z")})
            publisher.flush()
        publisher.publish("Pump", "p-1", {"id": "cmd-1", "status": "OK"}, answer=True)
        publisher.flush()  # an answer has no HTTP channel: nothing is sent
    finally:
        publisher.close()
    assert publisher.published == 2
    entity = sqlite_store.get_entity(TENANT, "urn:ngsi-ld:WaterObserved:w-1")
    assert entity["depth"]["value"] == 12.5 and entity["depth"]["unitCode"] == "CMT"
    history = sqlite_store.history(TENANT, "urn:ngsi-ld:WaterObserved:w-1", ["depth"],
                                   None, None, None)
    assert len(history) == 2
    assert list(sqlite_store.scan(TENANT, types=["Pump"])) == []


def test_a_stopped_demo_gets_no_publisher(sqlite_store):
    demo = DemoContext(f"http://127.0.0.1:{free_port()}", "", TENANT, None, sqlite_store)
    demo.stop.set()
    assert demo_publisher(demo, client_id="unused", label="test sim") is None


def test_a_silent_broker_is_named_without_its_password():
    port = free_port()  # nothing listens there
    with pytest.raises(ConnectionError) as raised:
        MqttPublisher(f"mqtt://sim:s3cret@127.0.0.1:{port}", TENANT, client_id="t",
                      connect_timeout_s=0.5)
    assert str(raised.value) == f"MQTT broker 127.0.0.1:{port} did not answer in 0.5 s"
