"""The pumps' controllers on the live service: depth in, pump commands out.

Every sweep, each ``Pump`` whose ``controlMode`` is ``rule`` or ``predictive`` gets the
latest usable depth of its site (and, for ``predictive``, the site's nowcast) through
its controller from :mod:`cityos.apps.floodwatch.pump_control`, with the pump's own
on/off levels and minimum on/off times. A switch the controller decides goes out as a
pump command (:class:`~cityos.apps.floodwatch.commands.PumpCommander`), its reason
kept with it. ``manual`` pumps are left to the operators. Without a commander (no
broker) the decisions are only recorded.
"""

from __future__ import annotations

import logging
from collections import deque

log = logging.getLogger(__name__)

DECISIONS_KEPT = 500


class PumpTask:
    """The sweep's pump step, with a controller per tenant and pump."""

    def __init__(self, service) -> None:
        self.service = service
        self.controllers: dict[tuple[str, str], object] = {}
        self.decisions: deque = deque(maxlen=DECISIONS_KEPT)

    def _controller(self, tenant: str, pump):
        from cityos.apps.floodwatch.pump_control import controller_for

        key = (tenant, pump.pump_id)
        current = self.controllers.get(key)
        if current is None or getattr(current, "config", None) != pump:
            current = controller_for(pump)
            self.controllers[key] = current
        return current

    def __call__(self, state, now: float) -> None:
        nowcasts = getattr(state, "nowcasts", {})
        for pump in list(state.pumps.values()):
            if pump.mode == "manual" or pump.site_id not in state.sites:
                continue
            watch = state.sites[pump.site_id]
            with state.lock:
                recent = watch.sensor.recent[-1] if watch.sensor.recent else None
            if recent is None:
                continue
            t, depth = recent
            cast = nowcasts.get(pump.site_id)
            forecast = None
            if pump.mode == "predictive" and cast is not None:
                forecast = dict(zip(cast.horizons_min, cast.depth_cm, strict=True))
            decision = self._controller(state.tenant, pump).decide(t, depth, forecast)
            if decision is None:
                continue
            setting, reason = decision
            self.decisions.append({"tenant": state.tenant, "pump": pump.pump_id, "t": t,
                                   "setting": setting, "reason": reason})
            commander = self.service.commander
            if commander is None:
                continue
            try:
                commander.send(state.tenant, pump.pump_id, setting, reason)
            except Exception as error:  # noqa: BLE001 (the broker may be away: next sweep)
                log.warning("floodwatch: pump %s not switched %s: %s", pump.pump_id, setting,
                            error)
