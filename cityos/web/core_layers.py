"""Layers of the entity types the core itself writes: alerts and the demo city's sample.

Apps restyle or add types with the layers their ``AppSpec`` names (their own
``web.py``); these are only the defaults of the Smart Data Models types the core's
demo sample uses.
"""

from __future__ import annotations

from cityos.web.layers import ColorCategories, ColorSteps, LayerSpec, register_layer

#: Smart Data Models Alert severities, least to most urgent, with their colours.
SEVERITY_COLORS = {
    "informational": "#5dade2",
    "low": "#58d68d",
    "medium": "#f4d03f",
    "high": "#f39c12",
    "critical": "#ff3b30",
}

CORE_LAYERS = (
    LayerSpec("Alert", {"en": "Alerts", "ja": "アラート"}, color="#ff3b30", geometry="any",
              cluster=False, order=90, label_attribute="description", marker="pulse",
              color_by=ColorCategories("severity", SEVERITY_COLORS)),
    LayerSpec("Vehicle", {"en": "Vehicles", "ja": "車両"}, color="#ffd166", geometry="point",
              cluster=False, order=80, marker="square"),
    LayerSpec("WaterObserved", {"en": "Water level sensors", "ja": "水位センサー"},
              color="#4cc9f0", geometry="point", order=70,
              color_by=ColorSteps("depth", (10.0, 20.0, 30.0),
                                  ("#48cae4", "#90e0ef", "#ffb703", "#e63946"), "cm")),
    LayerSpec("WeatherObserved", {"en": "Weather stations", "ja": "気象観測所"},
              color="#b5e48c", geometry="point", order=60),
    LayerSpec("GtfsStop", {"en": "Bus stops", "ja": "バス停"}, color="#c77dff",
              geometry="point", order=40),
    LayerSpec("Building", {"en": "Buildings", "ja": "建物"}, color="#f4a261",
              geometry="polygon", order=20),
)


def register_core_layers() -> None:
    """Register the core's default layers (idempotent)."""
    for spec in CORE_LAYERS:
        register_layer(spec, default=True)
