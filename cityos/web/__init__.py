"""The operations-centre dashboard: a live city map, charts and alerts in the browser.

Served by ``cityos serve`` at ``/`` (see :mod:`cityos.web.api`), on top of the
NGSI-LD store and event bus. Apps describe how their entity types look on the map
with the types of :mod:`cityos.appkit.dashboard`, listed in their ``web`` module and
named in their :class:`~cityos.apps.registry.AppSpec` (``layers``, ``views``); the
registration API is re-exported here for layers registered by hand::

    from cityos.web import ColorSteps, LayerSpec, register_layer

    register_layer(LayerSpec(
        "FloodZone", {"en": "Flood zones", "ja": "浸水区域"}, geometry="polygon",
        color_by=ColorSteps("depth", (10, 30, 50), ("#bde0fe", "#48cae4", "#0077b6",
                                                    "#03045e"), "cm"),
        app_url="/apps/floodwatch/#zone={id}"))

The dashboard registers every app's layers and views when it starts.
"""

from cityos.web.layers import (
    ColorCategories,
    ColorSteps,
    LayerSpec,
    layer_for,
    register_layer,
    registered_layers,
    unregister_layer,
)


def mount_dashboard(app) -> None:
    """Add the dashboard's routes and static files to a CityOS FastAPI app."""
    from cityos.web.api import mount_dashboard as mount

    mount(app)


__all__ = ["ColorCategories", "ColorSteps", "LayerSpec", "layer_for", "mount_dashboard",
           "register_layer", "registered_layers", "unregister_layer"]
