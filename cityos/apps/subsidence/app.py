"""The ground-motion app's contract: what it offers CityOS and where (see
:mod:`cityos.apps.registry`)."""

from cityos.apps.registry import AppSpec

APP = AppSpec(
    name="subsidence",
    title={"en": "Ground motion", "ja": "地盤変動"},
    # Building is the core's; the app adds its summary (rate, risk class) to it
    entity_types=("SubsidenceArea", "LinearAsset", "Building"),
    cli=".cli:app",
    router=".api:router",
    layers=".web:SUBSIDENCE_LAYERS",
    views=".web:SUBSIDENCE_VIEWS",
    # the InSAR product, an area, buildings, a metro line
    demo_builder=".demo:build_subsidence_demo",
    benchmark="bench/subsidence.py",
)
