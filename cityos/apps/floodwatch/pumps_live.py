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


class SitePumpControl:
    """One pump's controller on its site's depth (rule or predictive).

    Parameters
    ----------
    config : PumpConfig
        The pump's settings from its entity.
    """

    def __init__(self, config) -> None:
        from cityos.apps.floodwatch.pump_control import (
            PredictiveController,
            PumpRule,
            RuleController,
        )

        self.config = config
        rule = PumpRule(config.pump_id, config.site_id, config.on_level_cm, config.off_level_cm,
                        min_on_s=config.min_on_s, min_off_s=config.min_off_s)
        self.forecast: dict[float, float] | None = None
        if config.mode == "predictive":
            self.controller = PredictiveController([rule], {config.site_id: self._forecaster})
        else:
            self.controller = RuleController([rule])

    def _forecaster(self, t, history):
        import numpy as np

        from cityos.apps.floodwatch.pump_control import DEFAULT_HORIZONS_S

        if not self.forecast:
            return np.full(len(DEFAULT_HORIZONS_S), np.nan)
        minutes = sorted(self.forecast)
        return np.interp(np.asarray(DEFAULT_HORIZONS_S) / 60.0, minutes,
                         [self.forecast[m] for m in minutes])

    def decide(self, t: float, depth_cm: float,
               forecast: dict[float, float] | None = None) -> tuple[str, str]:
        """Feed the latest depth (and nowcast); return the wanted setting and why."""
        self.forecast = forecast
        before = len(self.controller.decisions)
        self.controller.update(t, {self.config.site_id: depth_cm})
        setting = "on" if self.controller.is_on(self.config.pump_id) else "off"
        decided = self.controller.decisions[before:]
        reason = decided[-1].reason if decided else ""
        return setting, reason


class PumpTask:
    """The sweep's pump step: a controller per tenant and pump, and what was sent."""

    def __init__(self, service) -> None:
        self.service = service
        self.controllers: dict[tuple[str, str], SitePumpControl] = {}
        self.sent: dict[tuple[str, str], str] = {}  # the last setting a pump acknowledged
        self.decisions: deque = deque(maxlen=DECISIONS_KEPT)

    def _controller(self, tenant: str, pump) -> SitePumpControl:
        key = (tenant, pump.pump_id)
        current = self.controllers.get(key)
        if current is None or current.config != pump:
            current = SitePumpControl(pump)
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
            key = (state.tenant, pump.pump_id)
            setting, reason = self._controller(state.tenant, pump).decide(t, depth, forecast)
            if reason:
                self.decisions.append({"tenant": state.tenant, "pump": pump.pump_id, "t": t,
                                       "setting": setting, "reason": reason})
            # a pump starts off; send what the controller wants until a command goes out
            if self.sent.get(key, "off") == setting:
                continue
            commander = self.service.commander
            if commander is None:
                continue
            try:
                commander.send(state.tenant, pump.pump_id, setting,
                               reason or f"{pump.mode}: depth {depth:.1f} cm")
                self.sent[key] = setting
            except Exception as error:  # noqa: BLE001 (the broker may be away: next sweep)
                log.warning("floodwatch: pump %s not switched %s: %s", pump.pump_id, setting,
                            error)
