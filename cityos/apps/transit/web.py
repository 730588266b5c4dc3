"""The transit app's map layers on the dashboard: buses by delay, stops, routes.

Buses are coloured by ``punctuality``, the class of their ``delaySeconds`` that the
transit service writes onto each ``Vehicle`` (see :mod:`cityos.apps.transit.service`,
:func:`punctuality`): early, on time, late, very late, with the on-time window of the
operations analytics (-1 / +5 min). A stop links to its stop board.
The analytics charts and the service-alert desk are a dashboard view.
"""

from __future__ import annotations

from cityos.appkit.dashboard import ColorCategories, ColorSteps, LayerSpec, ViewSpec

#: Punctuality classes: colour and title per language.
PUNCTUALITY = {
    "early": ("#4cc9f0", {"en": "Early (> 1 min)", "ja": "早発（1分超）"}),
    "onTime": ("#2ec4b6", {"en": "On time", "ja": "定時"}),
    "late": ("#ff9f1c", {"en": "Late (> 5 min)", "ja": "遅延（5分超）"}),
    "veryLate": ("#e63946", {"en": "Very late (> 10 min)", "ja": "大幅遅延（10分超）"}),
}

TRANSIT_LAYERS = (
    # titles as the core's defaults, so the dashboard reads the same in every language
    LayerSpec("Vehicle", {"en": "Vehicles", "ja": "車両"}, color="#ffd166", geometry="point",
              cluster=False, order=80, marker="square",
              color_by=ColorCategories("punctuality",
                                       {k: v[0] for k, v in PUNCTUALITY.items()},
                                       other="#ffd166",
                                       labels={k: v[1] for k, v in PUNCTUALITY.items()})),
    LayerSpec("GtfsStop", {"en": "Bus stops", "ja": "バス停"}, color="#c77dff",
              geometry="point", order=40, app_url="/apps/transit/stops/{id}/board"),
    LayerSpec("GtfsRoute", {"en": "Bus routes", "ja": "バス路線"}, color="#8d99ae",
              geometry="line", order=30, label_attribute="shortName"),
    # the speed limits that speeding is judged against (hidden until asked for)
    LayerSpec("RoadSegment", {"en": "Speed limits", "ja": "制限速度"}, color="#adb5bd",
              geometry="line", order=20, visible=False,
              color_by=ColorSteps("maximumAllowedSpeed", (35.0, 55.0),
                                  ("#f72585", "#ffd166", "#90be6d"), unit="km/h")),
)

TRANSIT_VIEWS = (
    ViewSpec("transit-analytics", {"en": "Bus analytics", "ja": "バス運行分析"},
             "/apps/transit/analytics", order=10),
)
