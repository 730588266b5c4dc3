"""The live service's nowcast step: sites whose chosen model is the conceptual one are
stepped together, the others one by one, and every site gets the same numbers its own
model gives (and writes them onto its entity)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import numpy as np
import pytest

from cityos.apps.floodwatch.api import site_entities
from cityos.apps.floodwatch.control import NowcastTask
from cityos.apps.floodwatch.nowcast import SiteNowcaster
from cityos.apps.floodwatch.service import FloodWatchService
from cityos.apps.floodwatch.synthetic import synthetic_catchment
from cityos.core.store import open_store
from cityos.core.timefmt import format_datetime

TENANT = "city"
WINDOW = 180  # readings the live nowcast starts from (3 h)


def _stamp(t: float) -> str:
    return format_datetime(datetime.fromtimestamp(t, UTC))


@pytest.fixture(scope="module")
def catchment():
    return synthetic_catchment(seed=5, days=7.0, sites=2, storms_per_day=1.2)


@pytest.fixture(scope="module")
def fitted(catchment):
    """Each site's nowcaster, fitted on all but the last day."""
    end = catchment.t_s.size - 1440
    return [SiteNowcaster().fit(catchment.t_s[:end], catchment.rain_mm[s, :end],
                                catchment.depth_cm[s, :end]) for s in range(2)]


def test_conceptual_sites_stepped_together_match_their_own_models(tmp_path, catchment,
                                                                  fitted):
    assert all("conceptual" in model.models for model in fitted)
    store = open_store(f"sqlite:///{tmp_path}/live.db")
    # three sites: two conceptual, one (a copy of the first) held to persistence
    sites = {"north": 0, "south": 1, "east": 0}
    for local in sites:
        store.upsert_entities(TENANT, site_entities(
            {"id": local, "lon": 104.9, "lat": 11.55, "alertLevels": [10, 20, 30],
             "gauge": f"gauge-{local}"}))
    service = FloodWatchService(store)
    service.start()
    try:
        # the last day's wettest moment, with three hours before it
        last_day = slice(catchment.t_s.size - 1440, catchment.t_s.size)
        peak = last_day.start + int(np.argmax(catchment.depth_cm[0, last_day]))
        end = max(peak, last_day.start + WINDOW)
        for k in range(end - WINDOW + 1, end + 1):
            stamp = _stamp(float(catchment.t_s[k]))
            for local, s in sites.items():
                store.upsert_entities(TENANT, [
                    {"id": f"urn:ngsi-ld:WeatherObserved:gauge-{local}",
                     "type": "WeatherObserved",
                     "precipitation": {"type": "Property",
                                       "value": float(catchment.rain_mm[s, k]),
                                       "unitCode": "MMT", "observedAt": stamp}},
                    {"id": f"urn:ngsi-ld:WaterObserved:{local}", "type": "WaterObserved",
                     "depth": {"type": "Property", "value": float(catchment.depth_cm[s, k]),
                               "unitCode": "CMT", "observedAt": stamp}}], replace=False)
        assert service.wait_idle(60)
        state = service.tenant(TENANT)
        task = NowcastTask(service)
        persistence = copy.copy(fitted[0])
        persistence.chosen = "persistence"
        models = {"north": fitted[0], "south": fitted[1], "east": persistence}
        for local, model in models.items():
            task.models[(TENANT, f"urn:ngsi-ld:WaterObserved:{local}")] = model
        now = float(catchment.t_s[end]) + 30.0
        fragments = task.nowcast(state, now)
        assert {f["id"].rsplit(":", 1)[1] for f in fragments} == set(models)
        wet = False
        for local, model in models.items():
            site_id = f"urn:ngsi-ld:WaterObserved:{local}"
            alone = model.predict(*state.recent_series(site_id, span_s=3 * 3600.0))
            cast = state.nowcasts[site_id]
            assert cast.model == model.chosen
            assert cast.depth_cm == pytest.approx(alone.depth_cm, abs=1e-9)
            fragment = next(f for f in fragments if f["id"] == site_id)
            assert fragment["depthForecast30min"]["value"] == round(alone.depth_cm[-1], 1)
            assert fragment["nowcastModel"]["value"] == model.chosen
            issued = datetime.fromisoformat(
                fragment["depthForecast30min"]["observedAt"].replace("Z", "+00:00"))
            assert issued.timestamp() == float(catchment.t_s[end])
            wet = wet or max(alone.depth_cm) > 1.0
        assert wet  # the window holds a storm: the comparison is not of zeros
        # a site silent for longer than the stale limit is not nowcast
        assert task.nowcast(state, now + 3600.0) == []
    finally:
        service.stop()
        store.close()
