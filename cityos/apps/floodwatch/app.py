"""The flood watch's contract: what it offers CityOS and where (see
:mod:`cityos.apps.registry`)."""

from cityos.apps.registry import AppSpec

APP = AppSpec(
    name="floodwatch",
    title={"en": "Flood watch", "ja": "冠水監視"},
    entity_types=("WaterObserved", "WeatherObserved", "Pump", "Device",
                  "TrafficFlowObserved"),
    cli=".cli:app",
    router=".api:router",
    services=".api:services",
    layers=".web:FLOOD_LAYERS",
    views=".web:FLOOD_VIEWS",
    demo_builder=".demo:build_floodwatch_demo",  # flood sensors, gauges, pumps
    simulator=".sim:run",  # rain, water and pump controllers
    benchmark="bench/floodwatch.py",
)
