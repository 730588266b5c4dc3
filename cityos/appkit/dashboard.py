"""How an app shows on the dashboard: its map layers and its pages in the top bar.

An app lists its :class:`LayerSpec` and :class:`ViewSpec` values in its ``web`` module
and names them in its :class:`~cityos.apps.registry.AppSpec` (``layers``, ``views``);
the dashboard registers them when it starts. The types are the dashboard's own
(:mod:`cityos.web.layers`, :mod:`cityos.web.views`), re-exported here so that an app
never imports ``cityos.web``.
"""

from cityos.web.layers import ColorCategories, ColorSteps, LayerSpec
from cityos.web.views import ViewSpec

__all__ = ["ColorCategories", "ColorSteps", "LayerSpec", "ViewSpec"]
