"""Publishing readings as a device or a gateway does: over MQTT or to the HTTP ingest.

An app's simulator (and any feeder) sends observations through the same ingest path a
real device uses, so what the demo shows is what a city's sensors would give:

* :class:`MqttPublisher`: QoS 1 to ``cityos/<tenant>/<type>/<id>``, the topics the
  core's MQTT ingester reads (:mod:`cityos.core.ingest.mqtt`); it can also listen to
  a command topic (``cityos/<tenant>/cmd/<type>/+``) and answer on
  ``cityos/<tenant>/cmdexe/<type>/<id>``;
* :class:`HttpPublisher`: batches to ``POST /apps/ingest/observations`` with an API
  key, as a gateway would (no commands).

Both offer ``publish(entity_type, local_id, body)``, ``flush()`` and ``close()``;
:func:`demo_publisher` picks the one a :class:`~cityos.appkit.demo.DemoContext` asks
for and waits until its broker or server answers.

Example
-------
::

    publisher = demo_publisher(demo, client_id="cityos-parking-sim", label="parking sim")
    if publisher is not None:
        try:
            publisher.publish("ParkingSpot", "P1", {"status": "free",
                                                    "observedAt": "2026-03-02T09:00:00Z"})
            publisher.flush()
        finally:
            publisher.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import orjson

log = logging.getLogger(__name__)

__all__ = ["BATCH_MAX", "HttpPublisher", "MqttPublisher", "demo_publisher"]

#: Observations per HTTP request.
BATCH_MAX = 500


class MqttPublisher:
    """Publishes as the devices do, with one paho client; optionally takes commands.

    Parameters
    ----------
    url : str
        ``mqtt://host:port`` (``mqtts://`` for TLS, user and password in the URL).
    tenant : str
    client_id : str
    command_type : str, optional
        With ``on_command``: the entity type whose commands to take, from
        ``cityos/<tenant>/cmd/<command_type>/+`` (subscribed again after every
        reconnect, the session being clean).
    on_command : callable, optional
        ``on_command(local_id, payload)`` for each command; an exception it raises is
        logged and the next command is still taken.
    connect_timeout_s : float
        ConnectionError when the broker has not answered by then.
    label : str
        Names the publisher in log lines (``"floodwatch sim"``).
    """

    def __init__(self, url: str, tenant: str, *, client_id: str,
                 command_type: str | None = None,
                 on_command: Callable[[str, bytes], None] | None = None,
                 connect_timeout_s: float = 15.0, label: str = "publisher"):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from cityos.core.ingest.mqtt import broker_address

        host, port, tls, user, password = broker_address(url)
        self.tenant = tenant
        self.label = label
        self.on_command = on_command
        self.command_topic = (f"cityos/{tenant}/cmd/{command_type}/+"
                              if command_type and on_command else None)
        self.subscribed = threading.Event()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=True)
        if tls:
            self.client.tls_set()
        if user:
            self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)  # keep everything while the broker is away
        self.client.reconnect_delay_set(0.5, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(connect_timeout_s):
            self.client.loop_stop()
            raise ConnectionError(f"MQTT broker {host}:{port} did not answer in "
                                  f"{connect_timeout_s} s")
        self._last = None
        self.published = 0

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.set()
        if self.command_topic is not None:
            client.subscribe(self.command_topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        if self.on_command is None:
            return
        try:
            self.on_command(message.topic.rsplit("/", 1)[-1], message.payload)
        except Exception:  # one bad command must not stop the feed
            log.exception("%s: command on %s failed", self.label, message.topic)

    def publish(self, entity_type: str, local_id: str, body: dict, *,
                answer: bool = False) -> None:
        """Publish ``body`` (the device's message) to
        ``cityos/<tenant>/<entity_type>/<local_id>``, QoS 1; ``answer=True`` sends a
        command's answer to ``cityos/<tenant>/cmdexe/<entity_type>/<local_id>``."""
        channel = f"cmdexe/{entity_type}" if answer else entity_type
        self._last = self.client.publish(f"cityos/{self.tenant}/{channel}/{local_id}",
                                         orjson.dumps(body), qos=1)
        self.published += 1

    def flush(self) -> None:
        """Nothing is buffered here (paho sends in the background)."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait (up to ``timeout_s``) for the broker to acknowledge the last message,
        then disconnect."""
        deadline = time.monotonic() + timeout_s
        if self._last is not None:
            while not self._last.is_published() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()


class HttpPublisher:
    """Publishes in batches to ``POST /apps/ingest/observations``, as a gateway does.

    Parameters
    ----------
    base_url : str
        The server, e.g. ``http://127.0.0.1:8000``.
    api_key : str
        An operator key of ``tenant`` (empty for a server without authentication).
    tenant : str
    timeout_s : float
    label : str
        Names the publisher in log lines.
    """

    def __init__(self, base_url: str, api_key: str, tenant: str, *, timeout_s: float = 10.0,
                 label: str = "publisher"):
        import httpx

        headers = {"NGSILD-Tenant": tenant}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)
        self.label = label
        self._batch: list[dict] = []
        self.published = 0

    def publish(self, entity_type: str, local_id: str, body: dict, *,
                answer: bool = False) -> None:
        """Queue one observation of ``urn:ngsi-ld:<entity_type>:<local_id>``; sent by
        :meth:`flush` (or when :data:`BATCH_MAX` are waiting). A command's answer
        (``answer=True``) has no HTTP channel and is dropped."""
        if answer:
            return
        self._batch.append({"id": f"urn:ngsi-ld:{entity_type}:{local_id}",
                            "type": entity_type, **body})
        if len(self._batch) >= BATCH_MAX:
            self.flush()

    def flush(self) -> None:
        """Send what is waiting; kept for the next try when the server is away."""
        if not self._batch:
            return
        import httpx

        try:
            response = self.client.post("/apps/ingest/observations", json=self._batch)
        except httpx.TransportError as error:
            log.warning("%s: ingest unreachable (%s); will retry", self.label, error)
            return
        if response.status_code >= 500:
            log.warning("%s: ingest answered %s; will retry", self.label,
                        response.status_code)
            return
        if response.status_code == 207:
            log.warning("%s: some observations refused: %s", self.label,
                        response.text[:500])
        elif response.status_code >= 400:
            log.warning("%s: ingest refused the batch: %s %s", self.label,
                        response.status_code, response.text[:500])
        self.published += len(self._batch)
        self._batch = []

    def server_up(self) -> bool:
        """Whether the server answers ``/health``."""
        import httpx

        try:
            return self.client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        """Send what is waiting, then close the connection."""
        self.flush()
        self.client.close()


def demo_publisher(demo, *, client_id: str, label: str, command_type: str | None = None,
                   on_command: Callable[[str, bytes], None] | None = None,
                   ) -> MqttPublisher | HttpPublisher | None:
    """The publisher a demo simulator uses: MQTT when ``demo.mqtt_url`` is set (tried
    every 2 s until the broker answers), else HTTP with ``demo.api_key`` once the
    server answers; None when ``demo.stop`` is set first.

    Parameters
    ----------
    demo : DemoContext
    client_id : str
        The MQTT client id.
    label : str
        Names the simulator in log lines (``"transit sim"``).
    command_type, on_command
        As :class:`MqttPublisher` (over HTTP there are no commands).
    """
    if demo.mqtt_url:
        while not demo.stop.is_set():
            try:
                return MqttPublisher(demo.mqtt_url, demo.tenant, client_id=client_id,
                                     command_type=command_type, on_command=on_command,
                                     label=label)
            except ConnectionError as error:
                log.warning("%s: %s", label, error)
                demo.stop.wait(2.0)
        return None
    publisher = HttpPublisher(demo.base_url, demo.api_key, demo.tenant, label=label)
    while not demo.stop.is_set():  # wait for the server to come up
        if publisher.server_up():
            return publisher
        demo.stop.wait(0.5)
    publisher.close()
    return None
