"""The flood watch on the dashboard: sensor, gauge and pump layers, and its view.

Flood sensors are coloured by their current alert level (``floodLevel``, written by
the service), rain gauges by the last reading's rain, pumps by their reported state.
The *Flood watch* view lists the sites with their depth, level, quality and nowcast,
lets operators switch pumps, and opens the event report.
"""

from __future__ import annotations

from cityos.appkit.dashboard import ColorCategories, ColorSteps, LayerSpec, ViewSpec

FLOOD_LAYERS = (
    LayerSpec("WaterObserved", {"en": "Flood sensors", "ja": "冠水センサー"}, color="#48cae4",
              geometry="point", cluster=False, order=70,
              color_by=ColorSteps("depth", (10.0, 20.0, 30.0),
                                  ("#48cae4", "#ffd166", "#ff9f1c", "#e63946"), "cm")),
    LayerSpec("WeatherObserved", {"en": "Rain gauges", "ja": "雨量計"}, color="#b5e48c",
              geometry="point", cluster=False, order=60,
              color_by=ColorSteps("precipitation", (0.1, 1.0, 3.0),
                                  ("#8d99ae", "#b5e48c", "#4cc9f0", "#3a0ca3"), "mm")),
    LayerSpec("Pump", {"en": "Drainage pumps", "ja": "排水ポンプ"}, color="#adb5bd",
              geometry="point", cluster=False, order=65, marker="square",
              color_by=ColorCategories("status", {"on": "#2ec4b6", "off": "#6c757d"},
                                       other="#adb5bd",
                                       labels={"on": {"en": "Running", "ja": "運転中"},
                                               "off": {"en": "Stopped", "ja": "停止"}})),
)

FLOOD_VIEWS = (
    ViewSpec("floodwatch", {"en": "Flood watch", "ja": "冠水監視"}, "/apps/floodwatch/watch",
             order=20),
)
