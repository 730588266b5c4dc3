"""Map layers of the dashboard: one per entity type, registered by whoever owns the type.

The dashboard core draws every entity that has a ``location``; a :class:`LayerSpec`
says how one entity type looks: its title (per language), colour, whether dense
points cluster, and an optional attribute that colours the features (numeric
``ColorSteps`` or categorical ``ColorCategories``) with its legend. An app lists
its layers (and views) in its :class:`~cityos.apps.registry.AppSpec`; the dashboard
registers them when it starts (:func:`discover_app_layers`), so the dashboard core
never names an app. :func:`register_layer` registers one by hand. A type nobody registered still shows, in a colour derived
from its name.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import asdict, dataclass, field
from types import ModuleType

log = logging.getLogger(__name__)

#: Distinct colours for types without a registered style (readable on the dark map).
FALLBACK_PALETTE = ("#4cc9f0", "#f72585", "#b5e48c", "#ffd166", "#c77dff", "#ff9f1c",
                    "#80ffdb", "#f4a261", "#90be6d", "#e0aaff")
GEOMETRY_KINDS = ("point", "line", "polygon", "any")
MARKERS = ("dot", "square", "pulse")


@dataclass(frozen=True)
class ColorSteps:
    """Colour by a numeric attribute: ``colors[i]`` from ``thresholds[i-1]`` upwards.

    Parameters
    ----------
    attribute : str
        The attribute (its value in keyValues form) to read, e.g. ``depth``.
    thresholds : tuple of float
        Ascending limits between the classes; one fewer than ``colors``.
    colors : tuple of str
        CSS colours, lowest class first.
    unit : str
        Unit shown in the legend, e.g. ``cm`` or ``mm/yr``.
    """

    attribute: str
    thresholds: tuple[float, ...]
    colors: tuple[str, ...]
    unit: str = ""

    def __post_init__(self) -> None:
        if len(self.colors) != len(self.thresholds) + 1:
            raise ValueError(f"ColorSteps({self.attribute}): {len(self.colors)} colours need "
                             f"{len(self.colors) - 1} thresholds, got {len(self.thresholds)}")
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError(f"ColorSteps({self.attribute}): thresholds must ascend")

    def color_of(self, value: float) -> str:
        """The colour of ``value`` (the browser applies the same rule)."""
        index = sum(1 for limit in self.thresholds if value >= limit)
        return self.colors[index]

    def to_json(self) -> dict:
        return {"kind": "steps", **asdict(self)}


@dataclass(frozen=True)
class ColorCategories:
    """Colour by a text attribute: ``colors[value]``, ``other`` for anything else.

    ``labels`` maps a value to its title per language (``{"high": {"en": "High",
    "ja": "高"}}``); values without one are shown as they are.
    """

    attribute: str
    colors: dict[str, str]
    other: str = "#9aa5b1"
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"kind": "categories", **asdict(self)}


@dataclass(frozen=True)
class LayerSpec:
    """How the dashboard draws one entity type.

    Parameters
    ----------
    entity_type : str
        The NGSI-LD type, e.g. ``Vehicle``.
    title : dict of str to str
        The layer's name per language code (``{"en": "Buses", "ja": "バス"}``);
        English is the fallback.
    color : str
        CSS colour of the features when ``color_by`` gives none.
    geometry : str
        ``point``, ``line``, ``polygon`` or ``any`` (informative, for the legend).
    cluster : bool or None
        Cluster points; None clusters a layer once it has many points.
    color_by : ColorSteps or ColorCategories, optional
        Attribute-driven colours, shown as the layer's legend.
    label_attribute : str
        Attribute shown as the feature's name.
    marker : str
        How a point looks: ``dot``, ``square`` (vehicles) or ``pulse`` (alerts).
    app_url : str, optional
        Link to the page of the app that owns the entity; ``{id}`` is replaced by
        the URL-encoded entity id.
    visible : bool
        Shown when the dashboard opens.
    order : int
        Drawing and listing order (higher is drawn on top).
    """

    entity_type: str
    title: dict[str, str]
    color: str = "#4cc9f0"
    geometry: str = "any"
    cluster: bool | None = None
    color_by: ColorSteps | ColorCategories | None = None
    label_attribute: str = "name"
    marker: str = "dot"
    app_url: str | None = None
    visible: bool = True
    order: int = 50

    def __post_init__(self) -> None:
        if not self.entity_type:
            raise ValueError("LayerSpec.entity_type must not be empty")
        if "en" not in self.title:
            raise ValueError(f"LayerSpec({self.entity_type}).title needs an 'en' entry")
        if self.geometry not in GEOMETRY_KINDS:
            raise ValueError(f"LayerSpec({self.entity_type}).geometry: {self.geometry!r} is "
                             f"not one of {', '.join(GEOMETRY_KINDS)}")
        if self.marker not in MARKERS:
            raise ValueError(f"LayerSpec({self.entity_type}).marker: {self.marker!r} is not "
                             f"one of {', '.join(MARKERS)}")

    def to_json(self) -> dict:
        """The JSON the browser receives."""
        data = asdict(self)
        data["color_by"] = self.color_by.to_json() if self.color_by else None
        return data


_registry: dict[str, LayerSpec] = {}
_defaults: dict[str, LayerSpec] = {}
_lock = threading.Lock()


def register_layer(spec: LayerSpec, *, default: bool = False) -> LayerSpec:
    """Register (or replace) the layer of ``spec.entity_type``; return it.

    The last registration of a type wins. ``default=True`` (the core's own styles)
    registers a layer that any ordinary registration of the same type overrides,
    whatever the order, so an app can restyle a type the core already describes.
    """
    with _lock:
        (_defaults if default else _registry)[spec.entity_type] = spec
    return spec


def unregister_layer(entity_type: str) -> None:
    """Forget the layer of ``entity_type`` (its entities fall back to the default)."""
    with _lock:
        _registry.pop(entity_type, None)


def registered_layers() -> list[LayerSpec]:
    """Every registered layer, in drawing order."""
    with _lock:
        merged = {**_defaults, **_registry}
    return sorted(merged.values(), key=lambda s: (s.order, s.entity_type))


def fallback_layer(entity_type: str) -> LayerSpec:
    """The layer of a type nobody registered: a stable colour from its name."""
    digest = hashlib.sha256(entity_type.encode()).digest()
    return LayerSpec(entity_type, {"en": entity_type},
                     color=FALLBACK_PALETTE[digest[0] % len(FALLBACK_PALETTE)])


def layer_for(entity_type: str) -> LayerSpec:
    """The registered layer of ``entity_type``, else its fallback."""
    with _lock:
        spec = _registry.get(entity_type) or _defaults.get(entity_type)
    return spec or fallback_layer(entity_type)


def discover_app_layers() -> list[str]:
    """Register the layers and views of every app in the registry; return the names of
    the apps that have any.

    An app whose ``layers`` or ``views`` fail to load is reported by the registry
    (:func:`cityos.apps.registry.load_part`) and skipped: one broken app must not
    take the dashboard down. A reference to a module (an app that registers its own)
    only imports it.
    """
    from cityos.apps.registry import discover, load_part
    from cityos.web.views import ViewSpec, register_view

    found = []
    for spec in discover():
        loaded = False
        for part, kind, register in (("layers", LayerSpec, register_layer),
                                     ("views", ViewSpec, register_view)):
            value = load_part(spec, part)
            if value is None:
                continue
            loaded = True
            if isinstance(value, ModuleType):
                continue
            for item in value:
                if isinstance(item, kind):
                    register(item)
                else:
                    log.warning("app %s: %s: %r is not a %s", spec.name, part, item,
                                kind.__name__)
        if loaded:
            found.append(spec.name)
    return found
