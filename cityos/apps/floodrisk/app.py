"""The flood-risk app's contract: what it offers CityOS and where (see
:mod:`cityos.apps.registry`)."""

from cityos.apps.registry import AppSpec

APP = AppSpec(
    name="floodrisk",
    title={"en": "Flood risk", "ja": "洪水リスク"},
    entity_types=("FloodRiskStudy", "FloodHazardArea"),
    cli=".cli:app",
    router=".api:router",
    layers=".web:FLOODRISK_LAYERS",
    views=".web:FLOODRISK_VIEWS",
    demo_builder=".demo:build_floodrisk_demo",  # a tiny study and its hazard areas
    benchmark="bench/floodrisk.py",
)
