"""The transit app's contract: what it offers CityOS and where (see
:mod:`cityos.apps.registry`)."""

from cityos.apps.registry import AppSpec

APP = AppSpec(
    name="transit",
    title={"en": "Bus operations", "ja": "バス運行"},
    entity_types=("GtfsAgency", "GtfsStop", "GtfsRoute", "Vehicle", "RoadSegment"),
    cli=".cli:app",
    router=".api:router",
    services=".api:services",
    layers=".web:TRANSIT_LAYERS",
    views=".web:TRANSIT_VIEWS",
    demo_builder=".demo:build_transit_demo",  # the GTFS feed, stops, routes
    simulator=".sim:run",  # the demo city's buses through ingest
    benchmark="bench/transit.py",
    settings=("transit_vehicle_stale_s",),
)
