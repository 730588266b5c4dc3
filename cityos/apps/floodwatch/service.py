"""The flood watch's live service: every reading checked, alerts raised, nowcasts issued,
pumps switched.

:class:`FloodWatchService` is the background service the server runs (see
:func:`cityos.apps.floodwatch.api.services`). Per tenant it keeps a
:class:`TenantFloodWatch`: the sites (``WaterObserved`` flood-depth sensors), rain
gauges (``WeatherObserved``) and pumps (``Pump``) read from the store, with a quality
checker and an alert tracker per sensor.

How a reading flows:

1. A device's reading reaches the store through the core ingest path (MQTT or HTTP).
   The store publishes an event; the service's handler, on the publisher's thread,
   only picks out ``depth`` and ``precipitation`` readings and queues them.
2. A worker thread runs each reading through its sensor's
   :class:`~cityos.apps.floodwatch.quality.QualityChecker`. A flagged reading gets its
   flags written back onto the entity with the reading's own ``observedAt``
   (``depthQuality``, ``depthUsable``), so the history keeps each flag beside the
   reading it belongs to; a clean reading needs no write.
3. Usable depths go to the site's :class:`~cityos.apps.floodwatch.alerting.AlertTracker`.
   A level reached opens (or raises) the site's flood ``Alert`` entity; a lower level
   updates it; the all-clear resolves it; a fast rise raises its own alert. Alerts are
   ordinary entities, so the core's subscriptions (webhook, MQTT) deliver them and the
   dashboard shows them.
4. Every ``NOWCAST_EVERY_S`` the sites with recent readings get a nowcast of depth at
   10, 20 and 30 minutes (``depthForecast10min`` ...), and the pumps are switched by
   their controllers on the current depth (``rule``) or the nowcast (``predictive``);
   switching goes out as a pump command (:mod:`cityos.apps.floodwatch.commands`).
5. A sweep marks sensors that went silent (``offline``).

Writes of the service's own attributes come back as events; those are recognised by
their attribute names and ignored, so there is no loop.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from cityos.apps.floodwatch.alerting import AlertEvent, AlertLevel, AlertLevels, AlertTracker
from cityos.apps.floodwatch.history import on_grid
from cityos.apps.floodwatch.models import (
    GAUGE_TYPE,
    PUMP_TYPE,
    SITE_TYPE,
    PumpConfig,
    Site,
    SiteConfigError,
    value_of,
)
from cityos.apps.floodwatch.quality import QualityChecker, SensorProfile, Verdict
from cityos.core.clock import now as clock_now
from cityos.core.timefmt import format_datetime, parse_datetime

log = logging.getLogger(__name__)

#: Attributes the service writes; an event that changed only these is its own.
DERIVED_ATTRIBUTES = frozenset({
    "depthQuality", "depthUsable", "precipitationQuality", "precipitationUsable",
    "floodLevel", "floodLevelName", "depthForecast10min", "depthForecast20min",
    "depthForecast30min", "nowcastModel", "sensorStatus",
})
#: Attributes that change how a site, gauge or pump is watched: the tenant is reloaded.
CONFIG_ATTRIBUTES = frozenset({
    "alertLevels", "sensorProfile", "refWeatherObserved", "refPump", "refWaterObserved",
    "onLevel", "offLevel", "minOnTime", "minOffTime", "controlMode", "location", "name",
})
QUEUE_MAX = 200_000
BATCH_MAX = 5_000
SWEEP_EVERY_S = 60.0
RECENT_S = 6 * 3600.0  # readings kept in memory per sensor for nowcasts
SEVERITY_BY_LEVEL = ("informational", "high", "critical")
LEVEL_NAMES = ("watch", "warning", "danger")


@dataclass
class Reading:
    """One sensor reading taken from a store event."""

    tenant: str
    entity_id: str
    entity_type: str
    t: float
    value: float
    battery: float | None = None


@dataclass
class SensorState:
    """What the service keeps per sensor."""

    checker: QualityChecker
    recent: deque = field(default_factory=deque)  # (t, usable value)
    offline: bool = False

    def keep(self, t: float, value: float) -> None:
        self.recent.append((t, value))
        while self.recent and self.recent[0][0] < t - RECENT_S:
            self.recent.popleft()


@dataclass
class SiteWatch:
    """A site, its sensor's state and its alert state."""

    site: Site
    sensor: SensorState
    tracker: AlertTracker
    alert_id: str | None = None  # the open flood alert of this episode
    level: int = -1


def alert_levels(site: Site) -> AlertLevels:
    """The alert settings of a site: its levels named watch / warning / danger."""
    levels = []
    for index, depth in enumerate(site.levels_cm):
        top = index - len(site.levels_cm)  # the last levels are the severe ones
        name = LEVEL_NAMES[top] if -top <= len(LEVEL_NAMES) else f"level {index + 1}"
        severity = SEVERITY_BY_LEVEL[top] if -top <= len(SEVERITY_BY_LEVEL) else "medium"
        levels.append(AlertLevel(name, float(depth), severity))
    return AlertLevels(tuple(levels))


#: Devices report ``batteryLevel`` as a fraction (Smart Data Models); judged in percent.
BATTERY_DEFAULTS = {"battery_units": "%", "battery_low": 20.0}


def sensor_profile(kind: str, overrides: dict, where: str) -> SensorProfile:
    """The quality settings of a sensor: the kind's defaults, battery in percent, with
    the site's ``sensorProfile`` overrides."""
    try:
        return SensorProfile.for_kind(kind, **{**BATTERY_DEFAULTS, **overrides})
    except (TypeError, ValueError) as error:
        raise SiteConfigError(f"{where}: sensorProfile: {error}") from None


def reading_of(event) -> Reading | None:
    """The depth or rain reading an event carries, or None."""
    types = event.entity_type if isinstance(event.entity_type, list) else [event.entity_type]
    attribute = "depth" if SITE_TYPE in types else "precipitation" if GAUGE_TYPE in types \
        else None
    if attribute is None or event.entity is None:
        return None
    changed = set(event.changed or ())
    if changed and attribute not in changed:
        return None
    instance = event.entity.get(attribute)
    if isinstance(instance, list):
        instance = next((i for i in instance if "datasetId" not in i), None)
    if not isinstance(instance, dict):
        return None
    value = instance.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    stamp = instance.get("observedAt")
    t = parse_datetime(stamp, "observedAt").timestamp() if stamp else clock_now()
    battery = value_of(event.entity, "batteryLevel") if "batteryLevel" in (
        changed or {"batteryLevel"}) else None
    if isinstance(battery, bool) or not isinstance(battery, int | float):
        battery = None
    return Reading(event.tenant, event.entity["id"], SITE_TYPE if attribute == "depth"
                   else GAUGE_TYPE, t, float(value), battery)


def latest_reading(tenant: str, entity: dict) -> Reading | None:
    """The depth reading an entity holds now (as a ``created`` event would carry it)."""
    from types import SimpleNamespace

    event = SimpleNamespace(tenant=tenant, entity_type=entity.get("type"), entity=entity,
                            changed=None)
    try:
        return reading_of(event)
    except ValueError:
        return None


def _stamp(t: float) -> str:
    return format_datetime(datetime.fromtimestamp(t, UTC))


class TenantFloodWatch:
    """One tenant's sites, gauges and pumps, and the live state of each."""

    def __init__(self, tenant: str, sites: list[Site], gauges: dict[str, dict],
                 pumps: list[PumpConfig]) -> None:
        self.tenant = tenant
        self.lock = threading.RLock()
        self.sites: dict[str, SiteWatch] = {}
        for site in sites:
            profile = sensor_profile("depth", site.profile, site.site_id)
            self.sites[site.site_id] = SiteWatch(
                site, SensorState(QualityChecker(profile)),
                AlertTracker(alert_levels(site), place=site.name))
        self.gauges: dict[str, SensorState] = {
            gauge_id: SensorState(QualityChecker(sensor_profile(
                "rain", value_of(entity, "sensorProfile", {}) or {}, gauge_id)))
            for gauge_id, entity in gauges.items()}
        self.gauge_entities = gauges
        self.pumps = {p.pump_id: p for p in pumps}
        self.latest_at_load: list[Reading] = []  # each site's reading when loaded
        self.readings = 0
        self.flagged = 0
        self.alerts_raised = 0
        self.last_reading_t: float | None = None

    # ------------------------------------------------------------- readings
    def take(self, reading: Reading) -> tuple[list[dict], list[tuple[SiteWatch, AlertEvent]]]:
        """Check one reading; return the fragments to write and the alert events."""
        with self.lock:
            self.readings += 1
            self.last_reading_t = reading.t
            if reading.entity_type == SITE_TYPE:
                watch = self.sites.get(reading.entity_id)
                if watch is None:
                    return [], []
                sensor = watch.sensor
            else:
                sensor = self.gauges.get(reading.entity_id)
                if sensor is None:  # a gauge no site names is still checked
                    sensor = self.gauges.setdefault(reading.entity_id, SensorState(
                        QualityChecker(sensor_profile("rain", {}, reading.entity_id))))
                watch = None
            battery = None
            if reading.battery is not None:
                # devices report a fraction (Smart Data Models batteryLevel); profiles in %
                battery = reading.battery * 100.0 if sensor.checker.profile.battery_units == "%" \
                    and reading.battery <= 1.0 else reading.battery
            verdict = sensor.checker.check(reading.t, reading.value, battery)
            fragments: list[dict] = []
            if sensor.offline:  # back: say so at once rather than at the next sweep
                sensor.offline = False
                fragments.append({"id": reading.entity_id, "type": reading.entity_type,
                                  "sensorStatus": {"type": "Property", "value": "online",
                                                   "observedAt": _stamp(reading.t)}})
            events: list[tuple[SiteWatch, AlertEvent]] = []
            attribute = "depth" if watch is not None else "precipitation"
            # a suspected spike is held (pending) until the next reading settles it; only
            # final verdicts are written, once each (history keeps one row per instant)
            for settled in verdict.settled():
                fragments.extend(self._quality_fragment(reading, attribute, settled))
                if settled.usable and settled.cleaned is not None:
                    sensor.keep(settled.t, settled.cleaned)
                if watch is not None:
                    for event in watch.tracker.update(settled.t, settled.cleaned
                                                      if settled.cleaned is not None
                                                      else settled.value, settled.usable):
                        events.append((watch, event))
            return fragments, events

    def _quality_fragment(self, reading: Reading, attribute: str,
                          verdict: Verdict) -> list[dict]:
        if not verdict.flags:
            return []
        self.flagged += 1
        stamp = _stamp(verdict.t)
        flags = list(verdict.flags)
        return [{"id": reading.entity_id, "type": reading.entity_type,
                 f"{attribute}Quality": {"type": "Property", "value": flags,
                                         "observedAt": stamp},
                 f"{attribute}Usable": {"type": "Property", "value": verdict.usable,
                                        "observedAt": stamp}}]

    def offline_sweep(self, now: float) -> list[dict]:
        """Mark sensors silent for their profile's ``offline_after`` intervals."""
        fragments = []
        with self.lock:
            sensors = [(w.site.site_id, SITE_TYPE, w.sensor) for w in self.sites.values()]
            sensors += [(g, GAUGE_TYPE, s) for g, s in self.gauges.items()]
            for entity_id, entity_type, sensor in sensors:
                silent = sensor.checker.is_offline(now)
                if silent and sensor.checker.pending is not None:
                    # the reading held for a spike check will get no successor: settle it
                    final = sensor.checker.flush()
                    if final is not None:
                        attribute = "depth" if entity_type == SITE_TYPE else "precipitation"
                        fragments.extend(self._quality_fragment(
                            Reading(self.tenant, entity_id, entity_type, final.t, final.value),
                            attribute, final))
                if silent != sensor.offline:
                    sensor.offline = silent
                    fragments.append({"id": entity_id, "type": entity_type, "sensorStatus": {
                        "type": "Property", "value": "offline" if silent else "online",
                        "observedAt": _stamp(now)}})
        return fragments

    # ---------------------------------------------------------------- series
    def recent_series(self, site_id: str, dt_s: float = 60.0, span_s: float = 3 * 3600.0,
                      now: float | None = None):
        """The site's recent usable depth and its gauge's rain on a regular grid.

        Returns ``(t, rain_mm, depth_cm)`` arrays ending at the latest depth reading
        (rain per step: each gauge reading's millimetres spread evenly over the time
        since the gauge's previous reading), or None without enough depth readings.
        """
        with self.lock:
            watch = self.sites[site_id]
            depth = list(watch.sensor.recent)
            gauge = self.gauges.get(watch.site.gauge_id) if watch.site.gauge_id else None
            rain = list(gauge.recent) if gauge is not None else []
        if len(depth) < 2:
            return None
        end = depth[-1][0] if now is None else min(now, depth[-1][0])
        t = np.arange(end - span_s, end + dt_s / 2, dt_s)
        t = t[t >= depth[0][0]]
        if len(t) < 2:
            return None
        dt, dv = np.array(depth).T
        rt, rv = np.array(rain).T if rain else (np.array([]), np.array([]))
        rain_grid, depth_grid = on_grid(dt, dv, rt, rv, t)
        return t, rain_grid, depth_grid


def _flood_alert_id(site_id: str, t: float) -> str:
    local = site_id.rsplit(":", 1)[-1]
    return f"urn:ngsi-ld:Alert:flood-{local}-{datetime.fromtimestamp(t, UTC):%Y%m%d%H%M%S}"


class FloodWatchService:
    """Watches every tenant's flood sensors (see the module notes).

    Parameters
    ----------
    store : ContextStore
    clock : callable
        POSIX seconds now (tests move it).
    commander : PumpCommander, optional
        Sends pump commands; without one, pump decisions are only recorded.
    """

    def __init__(self, store, clock: Callable[[], float] = clock_now, commander=None) -> None:
        self.store = store
        self.clock = clock
        self.commander = commander
        self._tenants: dict[str, TenantFloodWatch | None] = {}
        self._tenants_lock = threading.Lock()
        self._stale: set[str] = set()
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._unsubscribe = None
        self.dropped = 0
        self.periodic: list[Callable[[TenantFloodWatch, float], None]] = []
        self.alert_delays_s: deque = deque(maxlen=10_000)  # reading -> alert written

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Subscribe to the store's events and start the worker."""
        self._stop.clear()
        if self.commander is not None:
            self.commander.start()
        self.catch_up()
        self._unsubscribe = self.store.events.subscribe(self._on_event)
        self._worker = threading.Thread(target=self._run, name="floodwatch-service",
                                        daemon=True)
        self._worker.start()

    def catch_up(self) -> None:
        """Start every tenant's sites from their latest stored reading (written while
        the service was not running), so levels and alerts are known at once."""
        try:
            tenants = self.store.tenants()
        except Exception:  # noqa: BLE001 (a store that cannot list tenants loads lazily)
            log.exception("floodwatch: listing the tenants failed")
            return
        for tenant in tenants:
            state = self.tenant(tenant)
            if state is not None and state.latest_at_load:
                self.process([(r, time.monotonic()) for r in state.latest_at_load])
                state.latest_at_load = []

    def stop(self) -> None:
        """Stop listening and drain the queue."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        if self.commander is not None:
            self.commander.stop()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every reading queued so far is processed; True when it was."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.005)
        return False

    # --------------------------------------------------------------- tenants
    def tenant(self, tenant: str) -> TenantFloodWatch | None:
        """The tenant's watch, loaded on first use (None: it has no flood sensors)."""
        with self._tenants_lock:
            if tenant in self._tenants and tenant not in self._stale:
                return self._tenants[tenant]
        state = self._load(tenant)
        with self._tenants_lock:
            self._tenants[tenant] = state
            self._stale.discard(tenant)
        return state

    def tenant_states(self) -> list[TenantFloodWatch]:
        with self._tenants_lock:
            return [s for s in self._tenants.values() if s is not None]

    def _load(self, tenant: str) -> TenantFloodWatch | None:
        sites, pumps, latest = [], [], []
        for record in self.store.scan(tenant, types=[SITE_TYPE]):
            try:
                sites.append(Site.from_entity(record.entity))
            except SiteConfigError as error:
                log.warning("floodwatch: %s", error)
                continue
            reading = latest_reading(tenant, record.entity)
            if reading is not None:
                latest.append(reading)
        if not sites:
            return None
        gauges = {record.entity["id"]: record.entity
                  for record in self.store.scan(tenant, types=[GAUGE_TYPE])}
        for record in self.store.scan(tenant, types=[PUMP_TYPE]):
            try:
                pumps.append(PumpConfig.from_entity(record.entity))
            except SiteConfigError as error:
                log.warning("floodwatch: %s", error)
        try:
            state = TenantFloodWatch(tenant, sites, gauges, pumps)
        except SiteConfigError as error:
            log.warning("floodwatch: tenant %s: %s", tenant, error)
            return None
        previous = self._tenants.get(tenant)
        if previous is not None:  # a reload keeps what the sensors already told
            for site_id, watch in state.sites.items():
                old = previous.sites.get(site_id)
                if old is not None:
                    watch.sensor, watch.alert_id = old.sensor, old.alert_id
                    if old.site.levels_cm == watch.site.levels_cm:
                        watch.tracker = old.tracker
            for gauge_id, sensor in previous.gauges.items():
                state.gauges.setdefault(gauge_id, sensor)
        state.latest_at_load = latest
        log.info("floodwatch: tenant %s watches %d sites, %d gauges, %d pumps", tenant,
                 len(state.sites), len(state.gauges), len(state.pumps))
        return state

    # ---------------------------------------------------------------- events
    def _on_event(self, event) -> None:
        """On the publisher's thread: keep it quick, never raise."""
        types = event.entity_type if isinstance(event.entity_type, list) else [event.entity_type]
        if not ({SITE_TYPE, GAUGE_TYPE, PUMP_TYPE} & set(types)):
            return
        changed = set(event.changed or ())
        if changed and changed <= DERIVED_ATTRIBUTES:
            return
        if event.kind in ("created", "deleted") or changed & CONFIG_ATTRIBUTES:
            with self._tenants_lock:
                self._stale.add(event.tenant)
        try:
            reading = reading_of(event) if event.kind != "deleted" else None
        except Exception:  # noqa: BLE001 (a bad timestamp must not hurt the publisher)
            reading = None
        if reading is None:
            return
        try:
            self._queue.put_nowait((reading, time.monotonic()))
        except queue.Full:
            self.dropped += 1

    # ---------------------------------------------------------------- worker
    def _run(self) -> None:
        last_sweep = time.monotonic()
        while True:
            items = self._take()
            try:
                if items:
                    self.process(items)
                now = time.monotonic()
                if now - last_sweep >= SWEEP_EVERY_S:
                    last_sweep = now
                    self.sweep()
            except Exception:  # noqa: BLE001 (the worker must live on)
                log.exception("floodwatch: processing readings failed")
            finally:
                for _ in items:
                    self._queue.task_done()
            if self._stop.is_set() and self._queue.empty():
                return

    def _take(self) -> list:
        try:
            items = [self._queue.get(timeout=0.5)]
        except queue.Empty:
            return []
        while len(items) < BATCH_MAX:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def process(self, items: list[tuple[Reading, float]]) -> None:
        """Check a batch of readings, write their flags, raise their alerts."""
        fragments: dict[str, list[dict]] = {}
        alerts: list[tuple[TenantFloodWatch, SiteWatch, AlertEvent, float]] = []
        for reading, queued in items:
            state = self.tenant(reading.tenant)
            if state is None:
                continue
            written, events = state.take(reading)
            if written:
                fragments.setdefault(reading.tenant, []).extend(written)
            alerts.extend((state, watch, event, queued) for watch, event in events)
        for tenant, batch in fragments.items():
            self.store.upsert_entities(tenant, batch, replace=False)
        for state, watch, event, queued in alerts:
            try:
                self._alert(state, watch, event)
                self.alert_delays_s.append(time.monotonic() - queued)
            except Exception:  # noqa: BLE001 (one alert must not stop the others)
                log.exception("floodwatch: alert of %s failed", watch.site.site_id)

    def sweep(self) -> None:
        """Offline detection and the periodic work (nowcasts, pump control)."""
        now = self.clock()
        for state in self.tenant_states():
            fragments = state.offline_sweep(now)
            if fragments:
                self.store.upsert_entities(state.tenant, fragments, replace=False)
            for task in self.periodic:
                try:
                    task(state, now)
                except Exception:  # noqa: BLE001
                    log.exception("floodwatch: periodic task %s failed", task)

    # ---------------------------------------------------------------- alerts
    def _alert(self, state: TenantFloodWatch, watch: SiteWatch, event: AlertEvent) -> None:
        from cityos.core.alerts import alert_entity, handle_alert, raise_alert

        site = watch.site
        location = ({"type": "Point", "coordinates": [site.lon, site.lat]}
                    if site.lon is not None else None)
        when = datetime.fromtimestamp(event.t, UTC)
        level_fragment = {"id": site.site_id, "type": SITE_TYPE,
                          "floodLevel": {"type": "Property", "value": event.level + 1,
                                         "observedAt": _stamp(event.t)},
                          "floodLevelName": {"type": "Property",
                                             "value": event.level_name or "none",
                                             "observedAt": _stamp(event.t)}}
        if event.kind == "rate-of-rise":
            alert = alert_entity(
                _flood_alert_id(site.site_id, event.t).replace(":flood-", ":flood-rise-"),
                category="weather", sub_category="floodRisingFast", severity=event.severity,
                description=event.message, location=location, alert_source=site.site_id,
                issued_at=when)
            raise_alert(self.store, state.tenant, alert)
            state.alerts_raised += 1
            return
        self.store.upsert_entities(state.tenant, [level_fragment], replace=False)
        watch.level = event.level
        if event.kind == "level" and watch.alert_id is None:
            watch.alert_id = _flood_alert_id(site.site_id, event.t)
            raise_alert(self.store, state.tenant, alert_entity(
                watch.alert_id, category="weather", sub_category="flood",
                severity=event.severity, description=event.message, location=location,
                alert_source=site.site_id, issued_at=when))
            state.alerts_raised += 1
        elif event.kind in ("level", "lowered") and watch.alert_id is not None:
            # the same flood, a new level: the open alert follows it (and notifies again)
            self.store.upsert_entities(state.tenant, [{
                "id": watch.alert_id, "type": "Alert",
                "severity": {"type": "Property", "value": event.severity},
                "description": {"type": "Property", "value": event.message}}], replace=False)
        elif event.kind == "all-clear" and watch.alert_id is not None:
            try:
                handle_alert(self.store, state.tenant, watch.alert_id, "resolve",
                             actor="floodwatch", comment=event.message, key_id=None,
                             at=when)
            except Exception as error:  # noqa: BLE001 (an operator resolved it already)
                log.info("floodwatch: all-clear of %s: %s", watch.alert_id, error)
            watch.alert_id = None
