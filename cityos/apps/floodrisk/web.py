"""Flood risk on the dashboard: the flood-hazard areas of a published study.

``FloodHazardArea`` polygons (written by ``cityos floodrisk publish`` and the demo
builder) are the maximum-depth classes of one modelled event, coloured by the class's
lower depth bound (``minDepth``, m); ``scenario`` says whether a polygon is the event
without measures (``baseline``) or with a package. ``FloodRiskStudy`` marks the study
area, its headline numbers on the entity. The *Flood risk* view lists the published
studies and opens their reports.
"""

from __future__ import annotations

from cityos.appkit.dashboard import ColorSteps, LayerSpec, ViewSpec
from cityos.apps.floodrisk.api import STUDIES_PAGE  # what the view and the map's link open
from cityos.apps.floodrisk.demo import AREA_TYPE, DEPTH_CLASSES_M, STUDY_TYPE

DEPTH_COLOURS = ("#9ecae1", "#4292c6", "#2171b5", "#08306b")

FLOODRISK_LAYERS = (
    LayerSpec(AREA_TYPE, {"en": "Flood hazard (study)", "ja": "浸水想定区域（検討）"},
              color=DEPTH_COLOURS[0], geometry="polygon", order=30,
              color_by=ColorSteps("minDepth", DEPTH_CLASSES_M[1:], DEPTH_COLOURS, "m"),
              app_url=STUDIES_PAGE),
    LayerSpec(STUDY_TYPE, {"en": "Flood-risk studies", "ja": "洪水リスク検討"},
              color="#3a6ea5", geometry="point", cluster=False, order=31, marker="square",
              visible=False),
)

FLOODRISK_VIEWS = (
    ViewSpec("floodrisk", {"en": "Flood risk", "ja": "洪水リスク"}, STUDIES_PAGE, order=25),
)
