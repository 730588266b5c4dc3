"""The flood watch's periodic work: nowcasts of every site and the pumps' controllers.

:func:`attach_control` adds two tasks to a
:class:`~cityos.apps.floodwatch.service.FloodWatchService`'s sweep:

- **nowcasts.** Each site gets a :class:`~cityos.apps.floodwatch.nowcast.SiteNowcaster`
  fitted on its stored history (usable depth readings and its gauge's rain, on a
  one-minute grid) in a background thread when the tenant is first watched and again
  every ``REFIT_EVERY_S``; the model is chosen per site by validation skill. Every
  sweep, a site with a reading in the last ``STALE_S`` gets a nowcast of depth at 10,
  20 and 30 minutes written onto its entity (``depthForecast10min`` ...,
  ``nowcastModel``). A site with too little history is not nowcast (no number is
  better than a made-up one).
- **pumps.** See :mod:`cityos.apps.floodwatch.pumps_live`.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import numpy as np

from cityos.apps.floodwatch.history import on_grid, series
from cityos.apps.floodwatch.models import SITE_TYPE
from cityos.apps.floodwatch.nowcast import Nowcast, nowcast_sites

log = logging.getLogger(__name__)

DT_S = 60.0  # the nowcast grid
TRAIN_DAYS = 14.0  # history a site's models learn from
MIN_TRAIN_S = 12 * 3600.0  # less history than this: no nowcast
RECENT_SPAN_S = 3 * 3600.0  # readings a nowcast starts from (the models' memory)
STALE_S = 15 * 60.0  # a site silent longer is not nowcast
REFIT_EVERY_S = 24 * 3600.0


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def fit_site(store, tenant: str, site, now: float, days: float = TRAIN_DAYS):
    """A :class:`SiteNowcaster` fitted on the site's stored history, or None.

    Parameters
    ----------
    store : ContextStore
    tenant : str
    site : Site
    now : float
        The end of the history, POSIX seconds.
    days : float
        How much history to learn from.
    """
    from cityos.apps.floodwatch.nowcast import NowcastInputError, SiteNowcaster

    begin = now - days * 86_400.0
    depth_t, depth = series(store, tenant, site.site_id, "depth", start_t=begin, end_t=now,
                            usable_only=True)
    if len(depth_t) < 2 or depth_t[-1] - depth_t[0] < MIN_TRAIN_S:
        return None
    rain_t, rain = (series(store, tenant, site.gauge_id, "precipitation", start_t=begin,
                           end_t=now, usable_only=True)
                    if site.gauge_id else (depth_t[:0], depth[:0]))
    import numpy as np

    grid = np.arange(depth_t[0], depth_t[-1] + DT_S / 2, DT_S)
    rain_grid, depth_grid = on_grid(depth_t, depth, rain_t, rain, grid)
    try:
        return SiteNowcaster().fit(grid, rain_grid, depth_grid)
    except NowcastInputError as error:
        log.warning("floodwatch: nowcast of %s not fitted: %s", site.site_id, error)
        return None


class NowcastTask:
    """The sweep's nowcast step, with the fitted models per tenant and site."""

    def __init__(self, service) -> None:
        self.service = service
        self.models: dict[tuple[str, str], object] = {}
        self.fitted_at: dict[str, float] = {}
        self._fitting: set[str] = set()
        self._lock = threading.Lock()

    def fit_tenant(self, state, now: float) -> None:
        """Fit every site of a tenant (run in a background thread)."""
        choices = {}
        for site_id, watch in list(state.sites.items()):
            try:
                model = fit_site(self.service.store, state.tenant, watch.site, now)
            except Exception:  # noqa: BLE001 (one site's history must not stop the others)
                log.exception("floodwatch: fitting the nowcast of %s failed", site_id)
                model = None
            with self._lock:
                if model is None:
                    self.models.pop((state.tenant, site_id), None)
                else:
                    self.models[(state.tenant, site_id)] = model
                    choices[site_id] = {"model": model.chosen, "reason": model.reason,
                                        "skill": {name: {"rmse_cm": s.rmse_cm,
                                                         "rmse_wet_cm": s.rmse_wet_cm}
                                                  for name, s in model.skill.items()}}
        state.nowcast_choice = choices
        with self._lock:
            self._fitting.discard(state.tenant)
        log.info("floodwatch: nowcasts of %s fitted for %d of %d sites", state.tenant,
                 len(choices), len(state.sites))

    def __call__(self, state, now: float) -> None:
        with self._lock:
            due = now - self.fitted_at.get(state.tenant, -1e18) >= REFIT_EVERY_S
            if due and state.tenant not in self._fitting:
                self._fitting.add(state.tenant)
                self.fitted_at[state.tenant] = now
                threading.Thread(target=self.fit_tenant, args=(state, now), daemon=True,
                                 name=f"floodwatch-fit {state.tenant}").start()
        fragments = self.nowcast(state, now)
        if fragments:
            self.service.store.upsert_entities(state.tenant, fragments, replace=False)

    def nowcast(self, state, now: float) -> list[dict]:
        """Nowcast every fitted site with recent readings; the fragments to write.

        Sites whose chosen model is the conceptual one are stepped together
        (:func:`~cityos.apps.floodwatch.nowcast.nowcast_sites`, one array operation
        per reading for all of them; the same numbers as each site's own model), the
        others one by one: a city of ten thousand sensors is nowcast in well under
        its one-minute reporting interval.
        """
        state.nowcasts = getattr(state, "nowcasts", {})
        together: dict[int, list[tuple[str, object, tuple]]] = {}
        casts: dict[str, Nowcast] = {}
        for site_id in list(state.sites):
            with self._lock:
                model = self.models.get((state.tenant, site_id))
            if model is None:
                continue
            recent = state.recent_series(site_id, dt_s=DT_S, span_s=RECENT_SPAN_S)
            if recent is None or now - recent[0][-1] > STALE_S or len(recent[0]) < 3:
                continue
            if model.chosen == "conceptual" and abs(model.dt_s - DT_S) < 1e-6:
                together.setdefault(len(recent[0]), []).append((site_id, model, recent))
            else:
                casts[site_id] = model.predict(*recent)
        for group in together.values():
            depth = nowcast_sites([model.models["conceptual"].params for _, model, _ in group],
                                  np.array([recent[1] for _, _, recent in group]),
                                  np.array([recent[2] for _, _, recent in group]), DT_S,
                                  horizons_min=group[0][1].horizons_min)
            for (site_id, model, recent), row in zip(group, depth.tolist(), strict=True):
                issued = float(recent[0][-1])
                casts[site_id] = Nowcast(
                    issued_s=issued, horizons_min=model.horizons_min,
                    valid_s=[issued + 60.0 * h for h in model.horizons_min], depth_cm=row,
                    model="conceptual", by_model={"conceptual": row})
        fragments = []
        for site_id, cast in casts.items():
            state.nowcasts[site_id] = cast
            stamp = _stamp(cast.issued_s)
            fragment = {"id": site_id, "type": SITE_TYPE,
                        "nowcastModel": {"type": "Property", "value": cast.model,
                                         "observedAt": stamp}}
            for horizon, value in zip(cast.horizons_min, cast.depth_cm, strict=True):
                fragment[f"depthForecast{int(horizon)}min"] = {
                    "type": "Property", "value": round(float(value), 1), "unitCode": "CMT",
                    "observedAt": stamp}
            fragments.append(fragment)
        return fragments


def attach_control(service) -> None:
    """Add the nowcast and pump-control steps to a service's sweep."""
    from cityos.apps.floodwatch.pumps_live import PumpTask

    nowcasts = NowcastTask(service)
    service.nowcasts = nowcasts
    service.periodic.append(nowcasts)
    pumps = PumpTask(service)
    service.pumps = pumps
    service.periodic.append(pumps)
