"""Drainage-pump commands over MQTT, with acknowledgement and time-out.

The platform turns a pump on or off the FIWARE IoT-Agent way: the command is an
attribute of the ``Pump`` entity (``switch``, with ``switch_id``, ``switch_status`` and
``switch_info``) and travels to the pump controller over MQTT, on topics of five levels
so the core ingester (which takes four) never sees them:

- the platform publishes, QoS 1, on ``cityos/<tenant>/cmd/Pump/<pump>``
  ``{"id": ..., "switch": "on"|"off", "issuedAt": ISO-8601, "expiresAt": ISO-8601}``;
- the controller answers, QoS 1, on ``cityos/<tenant>/cmdexe/Pump/<pump>``
  ``{"id": ..., "status": "OK"|"ERROR", "info": "..."}``, then reports its state as an
  ordinary observation ``{"status": "on"}`` on ``cityos/<tenant>/Pump/<pump>``.

``switch_status`` goes ``PENDING`` (written before the publish) -> ``DELIVERED`` (the
broker acknowledged the publish, PUBACK) -> ``OK`` or ``ERROR`` (the controller's
answer), or ``EXPIRED`` when no answer came before ``expiresAt``; an expired command
raises an ``Alert`` (category ``infrastructure``, sub-category ``pumpNotResponding``).
A late answer to an expired command is ignored: the pump's reported ``status`` tells
what it really did. A controller must ignore a command received after its
``expiresAt``; the publish also carries that time-out as the MQTT v5 message expiry, so
the broker drops a command nobody took in time. When the broker's PUBACK says no client
subscribes to the command topic (MQTT v5 reason 0x10), ``switch_info`` says so at once;
the time-out still settles the command.

A newer command for the same pump supersedes an older one still open: the older is
marked ``SUPERSEDED`` in memory only (the entity's ``switch_*`` attributes describe the
newest command) and its late answer is ignored.

When the commander is not connected to the broker, :meth:`PumpCommander.send` raises
:class:`PumpCommandUnavailable` and writes nothing: an operator learns at once that the
command did not go, and a queued command is never delivered minutes late. A connection
lost after the publish leaves the command open; it expires, with its alert.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson

from cityos.core.alerts import alert_entity, raise_alert
from cityos.core.clock import now as clock_now
from cityos.core.errors import AlreadyExists, BadRequestData, ResourceNotFound
from cityos.core.timefmt import format_datetime, parse_datetime
from cityos.core.urls import redact_url

__all__ = ["ACK_TOPIC_FILTER", "COMMAND_STATUSES", "NO_CONTROLLER_INFO", "SETTINGS", "CommandAck",
           "CommandError", "CommandMessage", "CommanderStats", "PumpCommand",
           "PumpCommandUnavailable", "PumpCommander", "ack_topic", "command_topic", "decode_ack",
           "decode_command", "encode_ack", "encode_command", "parse_ack_topic",
           "parse_command_topic", "pump_entity_id", "pump_local_id"]

log = logging.getLogger(__name__)

TOPIC_ROOT = "cityos"
PUMP_TYPE = "Pump"
COMMAND_LEVEL, ACK_LEVEL = "cmd", "cmdexe"
#: What the commander subscribes to: every tenant's pump answers.
ACK_TOPIC_FILTER = f"{TOPIC_ROOT}/+/{ACK_LEVEL}/{PUMP_TYPE}/+"

SETTINGS = ("on", "off")
PENDING, DELIVERED, OK, ERROR, EXPIRED = "PENDING", "DELIVERED", "OK", "ERROR", "EXPIRED"
#: In memory only: a newer command for the pump took this one's place.
SUPERSEDED = "SUPERSEDED"
COMMAND_STATUSES = (PENDING, DELIVERED, OK, ERROR, EXPIRED, SUPERSEDED)
OPEN_STATUSES = (PENDING, DELIVERED)
ANSWERS = (OK, ERROR)

#: ``switch_info`` of a command the broker took but no controller subscribes to.
NO_CONTROLLER_INFO = "the broker has no pump controller subscribed for this pump"
_NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT v5 PUBACK reason code

MAX_REASON_CHARS = 300
MAX_INFO_CHARS = 500  # a controller's longer text is cut, not refused: the answer counts
MAX_ID_CHARS = 128

# the tenant rule of the core ingester (cityos.core.ingest.observations)
_TENANT = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_LOCAL_ID = re.compile(r"^[A-Za-z0-9._~\-]{1,128}$")
_PUMP_URN = f"urn:ngsi-ld:{PUMP_TYPE}:"


class CommandError(ValueError):
    """A bad command, topic or payload; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class PumpCommandUnavailable(RuntimeError):
    """No command can go out now: no broker configured, or not connected to it."""


# ------------------------------------------------------------------ names and topics
def _tenant(tenant: object, field: str = "tenant") -> str:
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise CommandError(field, f"{tenant!r} is not a valid tenant name "
                                  "(letters, digits, '-', '_', '.', at most 64)")
    return tenant


def pump_local_id(pump_id: object, field: str = "pump_id") -> str:
    """The pump's local id (``pump-3``) from a local id or ``urn:ngsi-ld:Pump:pump-3``.

    Raises
    ------
    CommandError
        When ``pump_id`` is neither: the local id is one MQTT topic level, so it may
        hold only letters, digits, ``-``, ``_``, ``.`` and ``~``.
    """
    local = pump_id
    if isinstance(local, str) and local.startswith(_PUMP_URN):
        local = local[len(_PUMP_URN):]
    if not isinstance(local, str) or not _LOCAL_ID.match(local):
        raise CommandError(field, f"{pump_id!r} is not a pump id (a local id of letters, "
                                  f"digits, '-', '_', '.', '~', or {_PUMP_URN}<local id>)")
    return local


def pump_entity_id(pump_id: object, field: str = "pump_id") -> str:
    """The ``Pump`` entity id (``urn:ngsi-ld:Pump:<local id>``) of a local id or URN."""
    return _PUMP_URN + pump_local_id(pump_id, field)


def command_topic(tenant: str, pump_id: str) -> str:
    """The topic commands to a pump go out on: ``cityos/<tenant>/cmd/Pump/<pump>``."""
    return f"{TOPIC_ROOT}/{_tenant(tenant)}/{COMMAND_LEVEL}/{PUMP_TYPE}/{pump_local_id(pump_id)}"


def ack_topic(tenant: str, pump_id: str) -> str:
    """The topic a pump answers on: ``cityos/<tenant>/cmdexe/Pump/<pump>``."""
    return f"{TOPIC_ROOT}/{_tenant(tenant)}/{ACK_LEVEL}/{PUMP_TYPE}/{pump_local_id(pump_id)}"


def _parse_topic(topic: object, level: str) -> tuple[str, str]:
    shape = f"{TOPIC_ROOT}/<tenant>/{level}/{PUMP_TYPE}/<pump>"
    if not isinstance(topic, str):
        raise CommandError("topic", f"{topic!r} is not a string, expected {shape}")
    levels = topic.split("/")
    if len(levels) != 5:
        raise CommandError("topic", f"{topic} has {len(levels)} levels, expected {shape}")
    root, tenant, kind, entity_type, local = levels
    if root != TOPIC_ROOT or kind != level or entity_type != PUMP_TYPE:
        raise CommandError("topic", f"{topic} is not of the form {shape}")
    return (_tenant(tenant, f"topic {topic}: tenant"),
            pump_entity_id(local, f"topic {topic}: pump"))


def parse_command_topic(topic: str) -> tuple[str, str]:
    """``(tenant, pump entity id)`` of a command topic (what a controller listens on).

    Raises
    ------
    CommandError
        When the topic is not ``cityos/<tenant>/cmd/Pump/<pump>`` with valid levels.
    """
    return _parse_topic(topic, COMMAND_LEVEL)


def parse_ack_topic(topic: str) -> tuple[str, str]:
    """``(tenant, pump entity id)`` of an acknowledgement topic.

    Raises
    ------
    CommandError
        When the topic is not ``cityos/<tenant>/cmdexe/Pump/<pump>`` with valid levels.
    """
    return _parse_topic(topic, ACK_LEVEL)


# ------------------------------------------------------------------------ payloads
@dataclass(frozen=True)
class CommandMessage:
    """A command as the controller reads it (times in seconds since the epoch)."""

    command_id: str
    setting: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class CommandAck:
    """A controller's answer to a command."""

    command_id: str
    status: str
    info: str


def _iso(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def _seconds(text: object, field: str) -> float:
    try:
        return parse_datetime(text, field).timestamp()
    except BadRequestData as error:
        raise CommandError(field, f"{text!r} is not an ISO 8601 date-time") from error


def _json_object(payload: bytes | str) -> dict:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise CommandError("payload", f"is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise CommandError("payload", f"must be a JSON object, got {type(body).__name__}")
    return body


def _command_id(value: object, field: str = "id") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        raise CommandError(field, f"must be a non-empty string of at most {MAX_ID_CHARS} "
                                  f"characters, got {value!r}")
    return value


def _setting(value: object, field: str = "setting") -> str:
    if value not in SETTINGS:
        raise CommandError(field, f"must be one of {', '.join(SETTINGS)}, got {value!r}")
    return value


def encode_command(command: PumpCommand) -> bytes:
    """The JSON payload of a command: ``id``, ``switch``, ``issuedAt``, ``expiresAt``."""
    return orjson.dumps({"id": command.command_id, "switch": command.setting,
                         "issuedAt": _iso(command.issued_at),
                         "expiresAt": _iso(command.expires_at)})


def decode_command(payload: bytes | str) -> CommandMessage:
    """Read a command payload, as a pump controller (or a simulator of one) does.

    Raises
    ------
    CommandError
        Naming the field at fault: ``payload`` (not a JSON object), ``id``, ``switch``,
        ``issuedAt`` or ``expiresAt``.
    """
    body = _json_object(payload)
    issued = _seconds(body.get("issuedAt"), "issuedAt")
    expires = _seconds(body.get("expiresAt"), "expiresAt")
    if expires < issued:
        raise CommandError("expiresAt", "is earlier than issuedAt")
    return CommandMessage(_command_id(body.get("id")), _setting(body.get("switch"), "switch"),
                          issued, expires)


def encode_ack(command_id: str, status: str, info: str = "") -> bytes:
    """The JSON payload of a controller's answer (for controllers and simulators).

    Raises
    ------
    CommandError
        For an empty ``command_id``, a ``status`` other than OK/ERROR or a non-text
        ``info``.
    """
    _command_id(command_id, "command_id")
    if status not in ANSWERS:
        raise CommandError("status", f"must be one of {', '.join(ANSWERS)}, got {status!r}")
    if not isinstance(info, str):
        raise CommandError("info", f"must be a string, got {info!r}")
    return orjson.dumps({"id": command_id, "status": status, "info": info})


def decode_ack(payload: bytes | str) -> CommandAck:
    """Read a controller's answer.

    ``info`` is optional (empty when absent) and cut to :data:`MAX_INFO_CHARS`.

    Raises
    ------
    CommandError
        Naming the field at fault: ``payload`` (not a JSON object), ``id``, ``status``
        (not OK/ERROR) or ``info`` (not a string).
    """
    body = _json_object(payload)
    command_id = _command_id(body.get("id"))
    status = body.get("status")
    if status not in ANSWERS:
        raise CommandError("status", f"must be one of {', '.join(ANSWERS)}, got {status!r}")
    info = body.get("info", "")
    if info is None:
        info = ""
    if not isinstance(info, str):
        raise CommandError("info", f"must be a string, got {info!r}")
    return CommandAck(command_id, status, info[:MAX_INFO_CHARS])


# ------------------------------------------------------------------------ commands
@dataclass
class PumpCommand:
    """One command to one pump and what became of it.

    Parameters
    ----------
    command_id : str
    tenant : str
    pump_id : str
        The ``Pump`` entity id.
    setting : str
        ``"on"`` or ``"off"``.
    issued_at, expires_at : float
        Seconds since the epoch (UTC).
    status : str
        One of :data:`COMMAND_STATUSES`.
    info : str
        The controller's text, or why the command failed or expired.
    reason : str
        Who or what issued it (``"operator ana"``, ``"rule: depth 24 cm >= on-level
        20 cm"``, ``"predictive: ..."``).
    updated_at : float
        When ``status`` last changed.
    """

    command_id: str
    tenant: str
    pump_id: str
    setting: str
    issued_at: float
    expires_at: float
    status: str
    info: str
    reason: str
    updated_at: float

    @property
    def is_open(self) -> bool:
        """Still waiting for the controller (PENDING or DELIVERED)."""
        return self.status in OPEN_STATUSES

    def as_dict(self) -> dict:
        """The command for the API: camelCase keys, ISO 8601 times."""
        return {"id": self.command_id, "tenant": self.tenant, "pump": self.pump_id,
                "switch": self.setting, "issuedAt": _iso(self.issued_at),
                "expiresAt": _iso(self.expires_at), "status": self.status,
                "info": self.info, "reason": self.reason, "updatedAt": _iso(self.updated_at)}


@dataclass
class CommanderStats:
    """Counters of one commander (for the API and the tests)."""

    sent: int = 0
    delivered: int = 0
    ok: int = 0
    error: int = 0
    expired: int = 0
    superseded: int = 0
    acks_ignored: int = 0  # unknown, superseded, expired or mis-addressed command ids
    acks_malformed: int = 0
    store_failures: int = 0
    connected: bool = False


def _property(value, observed_at: str, **sub) -> dict:
    attr = {"type": "Property", "value": value, "observedAt": observed_at}
    attr.update({name: {"type": "Property", "value": v} for name, v in sub.items()})
    return attr


class PumpCommander:
    """Send pump commands over MQTT and track their acknowledgement and time-out.

    Parameters
    ----------
    store : ContextStore
        Holds the ``Pump`` entities; the ``switch*`` attributes and the alerts go here.
    mqtt_url : str or None
        ``mqtt://host:port``; None runs without a broker, and then :meth:`send` raises
        :class:`PumpCommandUnavailable`.
    timeout_s : float
        How long the controller has to answer (``expiresAt - issuedAt``).
    clock : callable
        Seconds since the epoch; ``issuedAt``, ``expiresAt`` and the expiry sweep use it.
    max_recent : int
        Commands kept in memory per tenant for :meth:`recent`.
    client_id : str, optional
        The MQTT client id; unique per commander by default (several API workers may
        each run one: an answer to another worker's command is an unknown id here).

    Attributes
    ----------
    stats : CommanderStats
    """

    def __init__(self, store, mqtt_url: str | None, *, timeout_s: float = 30,
                 clock=clock_now, max_recent: int = 200, client_id: str | None = None):
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
                or not math.isfinite(timeout_s) or timeout_s <= 0:
            raise CommandError("timeout_s", f"must be a positive number, got {timeout_s!r}")
        if isinstance(max_recent, bool) or not isinstance(max_recent, int) or max_recent < 1:
            raise CommandError("max_recent", f"must be a positive integer, got {max_recent!r}")
        if mqtt_url is not None:
            from cityos.core.ingest.mqtt import broker_address

            try:
                broker_address(mqtt_url)
            except ValueError as error:
                raise CommandError("mqtt_url", str(error)) from None
        self.store = store
        self.mqtt_url = mqtt_url
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self.max_recent = max_recent
        self.client_id = client_id or f"cityos-pumps-{uuid.uuid4().hex[:12]}"
        self.stats = CommanderStats()
        # _lock guards the commands and orders their store writes; paho is never called
        # holding it (paho runs on_publish holding its own lock, which publish() takes)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pump_locks: dict[tuple[str, str], threading.Lock] = {}
        self._open: dict[str, PumpCommand] = {}  # command id -> open command
        self._latest: dict[tuple[str, str], str] = {}  # (tenant, pump) -> newest id
        self._recent: dict[str, deque[PumpCommand]] = {}
        self._by_mid: dict[int, str] = {}  # MQTT message id -> command id, until PUBACK
        self._mid_of: dict[str, int] = {}  # the reverse, to forget finished commands
        self._early: dict[int, object] = {}  # PUBACKs that came before publish() returned
        self._last_stamp = -math.inf
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._client = None
        self._sweeper: threading.Thread | None = None
        self._ids = itertools.count()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect (in the background, retrying) and start the expiry sweep.

        Without a broker (``mqtt_url`` None) only the sweep starts.
        """
        self._stopping.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="cityos-pump-expiry",
                                         daemon=True)
        self._sweeper.start()
        if self.mqtt_url is None:
            return
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from cityos.core.ingest.mqtt import broker_address

        host, port, tls, user, password = broker_address(self.mqtt_url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=MQTTProtocolVersion.MQTTv5)
        if tls:
            client.tls_set()
        if user:
            client.username_pw_set(user, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        # the broker keeps the session (and the answers) over a short outage
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = int(max(60.0, 4 * self.timeout_s))
        self._client = client
        client.connect_async(host, port, keepalive=30, clean_start=False,
                             properties=properties)
        client.loop_start()

    def wait_until_ready(self, timeout_s: float = 10.0) -> bool:
        """Block until connected and subscribed to the answers; False on timeout."""
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        """Disconnect and stop the sweep. Open commands stay open in memory."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
            self._sweeper = None
        self._connected.clear()
        self._subscribed.clear()
        self.stats.connected = False

    def __enter__(self) -> PumpCommander:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------- commands
    def send(self, tenant: str, pump_id: str, setting: str, reason: str) -> PumpCommand:
        """Command a pump on or off.

        Writes ``switch``, ``switch_id``, ``switch_status`` = PENDING and ``switch_info``
        (the reason) onto the Pump entity, then publishes the command (QoS 1). The
        status then moves on in the background (:meth:`recent`, the entity).

        Parameters
        ----------
        tenant : str
        pump_id : str
            Local id (``pump-3``) or entity id (``urn:ngsi-ld:Pump:pump-3``).
        setting : str
            ``"on"`` or ``"off"``.
        reason : str
            Who or what issues it, kept with the command (``"operator ana"``).

        Returns
        -------
        PumpCommand
            A snapshot of the command as sent (status PENDING, or DELIVERED when the
            broker was quick).

        Raises
        ------
        CommandError
            A bad ``tenant``, ``pump_id``, ``setting`` or ``reason``, or no Pump entity
            of that id in the tenant.
        PumpCommandUnavailable
            No broker is configured, or the commander is not connected to it now;
            nothing is written then.
        """
        _tenant(tenant)
        pump = pump_entity_id(pump_id)
        _setting(setting)
        if not isinstance(reason, str) or not reason.strip():
            raise CommandError("reason", f"must be a non-empty string, got {reason!r}")
        if len(reason) > MAX_REASON_CHARS:
            raise CommandError("reason", f"is longer than {MAX_REASON_CHARS} characters")
        reason = reason.strip()
        if self.mqtt_url is None:
            raise PumpCommandUnavailable("pump commands need an MQTT broker: set the MQTT URL "
                                         "(CITYOS_MQTT_URL=mqtt://host:port)")
        client = self._client
        if client is None or not self._subscribed.is_set():
            raise PumpCommandUnavailable(f"not connected to the MQTT broker {redact_url(self.mqtt_url)}: "
                                         f"the command to {pump} was not sent")
        topic = command_topic(tenant, pump)
        key = (tenant, pump)
        with self._lock:
            pump_lock = self._pump_locks.setdefault(key, threading.Lock())
        # one command at a time per pump, so the controller gets them in the order the
        # store records them; other pumps are not held up
        with pump_lock:
            with self._lock:
                now = self._stamp()
                command = PumpCommand(self._new_id(), tenant, pump, setting, now,
                                      now + self.timeout_s, PENDING, reason, reason, now)
                try:
                    self._write(command, {
                        "switch": _property(setting, _iso(now), reason=reason),
                        "switch_id": _property(command.command_id, _iso(now)),
                        "switch_status": _property(PENDING, _iso(now)),
                        "switch_info": _property(reason, _iso(now)),
                    }, raise_errors=True)
                except ResourceNotFound:
                    raise CommandError("pump_id", f"no Pump entity {pump} in tenant "
                                                  f"{tenant}") from None
                self._supersede(key, command)
                self._open[command.command_id] = command
                self._latest[key] = command.command_id
                self._remember(command)
                self.stats.sent += 1
                self._wake.notify_all()
            info = client.publish(topic, encode_command(command), qos=1,
                                  properties=self._publish_properties())
            with self._lock:
                if info.rc != 0:
                    # paho queues it for the next connection; the expiry settles it
                    log.warning("pump command %s to %s not sent now (paho rc %s)",
                                command.command_id, pump, info.rc)
                    command.info = f"not sent: the broker connection was lost ({reason})"
                if info.mid in self._early:  # the PUBACK came before publish() returned
                    self._delivered(command, self._early.pop(info.mid))
                else:
                    self._by_mid[info.mid] = command.command_id
                    self._mid_of[command.command_id] = info.mid
                snapshot = replace(command)
        log.info("pump command %s: %s %s (%s)", command.command_id, pump, setting, reason)
        return snapshot

    def recent(self, tenant: str, pump_id: str | None = None) -> list[PumpCommand]:
        """The tenant's recent commands, newest first (copies), of one pump if given."""
        _tenant(tenant)
        pump = pump_entity_id(pump_id) if pump_id is not None else None
        with self._lock:
            kept = list(self._recent.get(tenant, ()))
            return [replace(c) for c in reversed(kept) if pump is None or c.pump_id == pump]

    def get(self, tenant: str, command_id: str) -> PumpCommand | None:
        """One recent command of the tenant by id (a copy), None when not kept."""
        _tenant(tenant)
        with self._lock:
            command = self._open.get(command_id)
            if command is None:
                command = next((c for c in self._recent.get(tenant, ())
                                if c.command_id == command_id), None)
            if command is None or command.tenant != tenant:
                return None
            return replace(command)

    def sweep(self) -> list[PumpCommand]:
        """Expire the open commands whose ``expiresAt`` has passed; raise their alerts.

        The background sweep calls this; it is public for a caller that drives the
        clock itself.

        Returns
        -------
        list of PumpCommand
            Copies of the commands expired now.
        """
        expired = []
        with self._lock:
            now = self.clock()
            for command in [c for c in self._open.values() if c.expires_at <= now]:
                note = f" ({NO_CONTROLLER_INFO})" if command.info == NO_CONTROLLER_INFO else ""
                self._finish(command, EXPIRED, f"no answer from the pump controller "
                                               f"within {self.timeout_s:g} s{note}")
                self.stats.expired += 1
                self._raise_not_responding(command)
                expired.append(replace(command))
        for command in expired:
            log.warning("pump command %s to %s expired", command.command_id, command.pump_id)
        return expired

    # ------------------------------------------------------------------ internals
    def _new_id(self) -> str:
        return f"{uuid.uuid4().hex[:16]}-{next(self._ids)}"

    def _stamp(self) -> float:
        """The clock, strictly increasing: each status write keeps its history row."""
        now = self.clock()
        if now <= self._last_stamp:
            now = self._last_stamp + 1e-6
        self._last_stamp = now
        return now

    def _publish_properties(self):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = max(1, math.ceil(self.timeout_s))
        return properties

    def _remember(self, command: PumpCommand) -> None:
        kept = self._recent.setdefault(command.tenant, deque(maxlen=self.max_recent))
        kept.append(command)

    def _supersede(self, key: tuple[str, str], newer: PumpCommand) -> None:
        older = self._open.get(self._latest.get(key, ""))
        if older is not None:
            older.status, older.info = SUPERSEDED, f"superseded by {newer.command_id}"
            older.updated_at = newer.issued_at
            self._forget(older)
            self.stats.superseded += 1

    def _forget(self, command: PumpCommand) -> None:
        """Drop a command that is no longer open from the open set and the PUBACK map
        (a PUBACK lost with a connection must not pair a reused message id with it)."""
        self._open.pop(command.command_id, None)
        mid = self._mid_of.pop(command.command_id, None)
        if mid is not None and self._by_mid.get(mid) == command.command_id:
            del self._by_mid[mid]

    def _write(self, command: PumpCommand, attrs: dict, *, raise_errors: bool = False) -> None:
        """Write the command's attributes onto its Pump (holding ``_lock``)."""
        try:
            self.store.append_attributes(command.tenant, command.pump_id, attrs)
        except Exception:
            if raise_errors:
                raise
            # a background write must not kill paho's thread or the sweep; the command
            # in memory still has its status
            self.stats.store_failures += 1
            log.exception("pump command %s: could not write %s onto %s", command.command_id,
                          ", ".join(attrs), command.pump_id)

    def _finish(self, command: PumpCommand, status: str, info: str) -> None:
        now = self._stamp()
        command.status, command.info, command.updated_at = status, info, now
        self._forget(command)
        self._write(command, {"switch_status": _property(status, _iso(now)),
                              "switch_info": _property(info, _iso(now))})

    def _delivered(self, command: PumpCommand, reason_code) -> None:
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            if command.is_open:
                self._finish(command, ERROR, f"the broker refused the command: {reason_code}")
                self.stats.error += 1
            return
        if command.status != PENDING:  # an answer (or a newer command) came first
            return
        now = self._stamp()
        command.status, command.updated_at = DELIVERED, now
        self.stats.delivered += 1
        attrs = {"switch_status": _property(DELIVERED, _iso(now))}
        if getattr(reason_code, "value", None) == _NO_MATCHING_SUBSCRIBERS:
            # nobody, not even a controller's kept session, will get it: say so now,
            # the time-out still settles it (and raises the alert)
            command.info = NO_CONTROLLER_INFO
            attrs["switch_info"] = _property(NO_CONTROLLER_INFO, _iso(now))
        self._write(command, attrs)

    def _raise_not_responding(self, command: PumpCommand) -> None:
        local = pump_local_id(command.pump_id)
        location = None
        try:
            pump = self.store.get_entity(command.tenant, command.pump_id)
            location = (pump.get("location") or {}).get("value")
        except Exception:  # the alert matters more than its map position
            log.warning("pump %s: no location for its alert", command.pump_id)
        alert = alert_entity(
            f"urn:ngsi-ld:Alert:pumpNotResponding-{local}-{command.command_id}",
            category="infrastructure", sub_category="pumpNotResponding",
            # a pump that does not start in a flood is worse than one that does not stop
            severity="high" if command.setting == "on" else "medium",
            description=(f"Pump {local} did not answer the '{command.setting}' command "
                         f"{command.command_id} within {self.timeout_s:g} s "
                         f"(issued by {command.reason})"),
            location=location if isinstance(location, dict) else None,
            alert_source=command.pump_id,
            issued_at=datetime.fromtimestamp(command.updated_at, UTC))
        try:
            raise_alert(self.store, command.tenant, alert)
        except AlreadyExists:
            pass
        except Exception:
            self.stats.store_failures += 1
            log.exception("pump command %s: could not raise its alert", command.command_id)

    def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception:  # a bug must not end the only sweep
                log.exception("pump command expiry sweep failed")
            with self._wake:
                if self._stopping.is_set():
                    return
                due = min((c.expires_at for c in self._open.values()), default=None)
                # the clock may not be the wall clock: never sleep long on its word
                wait = 0.5 if due is None else min(0.5, max(0.01, due - self.clock()))
                self._wake.wait(wait)

    # ------------------------------------------------------------ paho callbacks
    # (these run in paho's network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker refused the pump commander: %s", reason_code)
            return
        self._connected.set()
        self.stats.connected = True
        client.subscribe(ACK_TOPIC_FILTER, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if all(not code.is_failure for code in reason_codes):
            self._subscribed.set()
        else:
            log.error("MQTT broker refused the subscription to %s: %s", ACK_TOPIC_FILTER,
                      reason_codes)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._subscribed.clear()
        self.stats.connected = False
        if not self._stopping.is_set():
            log.warning("pump commander lost the MQTT broker (%s); reconnecting", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            command_id = self._by_mid.pop(mid, None)
            if command_id is None:
                self._early[mid] = reason_code
                return
            self._mid_of.pop(command_id, None)
            command = self._open.get(command_id)
            if command is not None:
                self._delivered(command, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        try:
            tenant, pump = parse_ack_topic(message.topic)
            answer = decode_ack(message.payload)
        except (CommandError, UnicodeDecodeError) as error:
            with self._lock:
                self.stats.acks_malformed += 1
            log.warning("pump commander: dropped a malformed answer on %r: %s",
                        getattr(message, "_topic", b"")[:200], error)
            return
        with self._lock:
            command = self._open.get(answer.command_id)
            if command is None or (command.tenant, command.pump_id) != (tenant, pump):
                self.stats.acks_ignored += 1
                log.info("pump commander: ignored an answer to command %r on %s (unknown, "
                         "superseded, expired or for another pump)", answer.command_id,
                         message.topic)
                return
            info = answer.info or ("done" if answer.status == OK
                                   else "the pump controller reported an error")
            self._finish(command, answer.status, info)
            if answer.status == OK:
                self.stats.ok += 1
            else:
                self.stats.error += 1
