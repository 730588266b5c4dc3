"""Ground motion on the dashboard: building, linear-asset and area layers, and pages.

InSAR points are not entities (a product has millions), so they are drawn by the
*Ground motion* page from ``/apps/subsidence/points``, coloured by vertical velocity on
a diverging scale (:data:`VELOCITY_STEPS`: red sinking, blue rising); a click shows the
point's series with the fitted model. Buildings and linear assets that the service
summarised are coloured by their risk class; areas of interest are outlined. The
*Asset profile* and *Levelling* pages are views too.
"""

from __future__ import annotations

from cityos.appkit.dashboard import ColorCategories, ColorSteps, LayerSpec, ViewSpec

#: Diverging velocity scale (mm/yr), sinking red to rising blue; the pages use it too.
VELOCITY_STEPS = ColorSteps(
    "subsidenceRate", (-20.0, -10.0, -5.0, -2.0, 2.0, 5.0, 10.0),
    ("#67001f", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7", "#d1e5f0", "#92c5de", "#2166ac"),
    "mm/yr")
RISK_COLORS = {"negligible": "#8ecae6", "low": "#ffd166", "medium": "#f4a261",
               "high": "#e63946"}
RISK_LABELS = {"negligible": {"en": "Negligible risk", "ja": "リスク極小"},
               "low": {"en": "Low risk", "ja": "リスク低"},
               "medium": {"en": "Medium risk", "ja": "リスク中"},
               "high": {"en": "High risk", "ja": "リスク高"}}

SUBSIDENCE_LAYERS = (
    # buildings without a subsidence summary keep the core's building colour
    LayerSpec("Building", {"en": "Buildings", "ja": "建物"}, color="#f4a261",
              geometry="polygon", order=20,
              color_by=ColorCategories("riskClass", RISK_COLORS, other="#f4a261",
                                       labels=RISK_LABELS)),
    LayerSpec("LinearAsset", {"en": "Rail, canals, roads (ground motion)",
                              "ja": "鉄道・運河・道路（地盤変動）"}, color="#adb5bd",
              geometry="line", order=30,
              color_by=ColorCategories("riskClass", RISK_COLORS, other="#adb5bd",
                                       labels=RISK_LABELS)),
    LayerSpec("SubsidenceArea", {"en": "Ground motion areas", "ja": "地盤変動の監視範囲"},
              color="#9d4edd", geometry="polygon", order=10, visible=False),
)

SUBSIDENCE_VIEWS = (
    ViewSpec("subsidence", {"en": "Ground motion", "ja": "地盤変動"},
             "/apps/subsidence/pages/ground", order=30),
    ViewSpec("subsidence-profile", {"en": "Asset profile", "ja": "縦断プロファイル"},
             "/apps/subsidence/pages/profile", order=31),
    ViewSpec("subsidence-levelling", {"en": "Levelling", "ja": "水準測量との比較"},
             "/apps/subsidence/pages/levelling", order=32),
)
