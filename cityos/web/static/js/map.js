// The live city map (Leaflet): the base map, one layer per entity type, live updates.
//
// Points are small HTML markers (keyboard-focusable, clustered when a layer is dense);
// lines and polygons go to one canvas renderer. Each map item remembers its entity's
// map feature so that a live event only moves or recolours what changed.

import { pick } from "./i18n.js";

const FALLBACK_PALETTE = ["#4cc9f0", "#f72585", "#b5e48c", "#ffd166", "#c77dff",
  "#ff9f1c", "#80ffdb", "#f4a261", "#90be6d", "#e0aaff"];
/** A layer clusters by itself once it has this many points (unless its spec says). */
const AUTO_CLUSTER_POINTS = 150;
const BASEMAP_STYLE = {
  boundary: { color: "#4a6a93", weight: 2, dashArray: "6 6", fill: false },
  water: { color: "#1d5a8a", weight: 1, fillColor: "#123a5c", fillOpacity: 1 },
  park: { color: "#1d4a2e", weight: 1, fillColor: "#13301f", fillOpacity: 1 },
  building: { color: "#2b3d56", weight: 1, fillColor: "#1a2638", fillOpacity: 1 },
  major: { color: "#3a4f6e", weight: 4 },
  minor: { color: "#223249", weight: 1.5 },
};

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function hashColor(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return FALLBACK_PALETTE[hash % FALLBACK_PALETTE.length];
}

/** The spec of a type nobody registered: its name as title, a colour from its name. */
export function fallbackSpec(type) {
  return {
    entity_type: type, title: { en: type }, color: hashColor(type), geometry: "any",
    cluster: null, color_by: null, label_attribute: "name", marker: "dot", app_url: null,
    visible: true, order: 50,
  };
}

/** The colour of a feature under its layer's rule (the server's ColorSteps/Categories). */
export function featureColor(spec, props) {
  const rule = spec.color_by;
  if (!rule) return spec.color;
  const value = props[rule.attribute];
  if (rule.kind === "steps") {
    if (typeof value !== "number") return spec.color;
    let index = 0;
    for (const limit of rule.thresholds) if (value >= limit) index += 1;
    return rule.colors[index];
  }
  return rule.colors[value] ?? rule.other;
}

export function featureLabel(spec, feature) {
  const props = feature.properties || {};
  return props[spec.label_attribute] || props.name || feature.id;
}

function isPoint(geometry) {
  return geometry && geometry.type === "Point";
}

function sameCoordinates(a, b) {
  return JSON.stringify(a.coordinates) === JSON.stringify(b.coordinates);
}

export class CityMap {
  /**
   * @param {HTMLElement} element  where the map goes
   * @param {object} options  {onSelect(id), onLayersChanged()}
   */
  constructor(element, { onSelect, onLayersChanged }) {
    this.onSelect = onSelect;
    this.onLayersChanged = onLayersChanged;
    this.specs = new Map();
    this.groups = new Map();  // type -> {spec, points, shapes, visible, clustered}
    this.items = new Map();   // entity id -> {type, kind, layer, color, feature}
    this.map = L.map(element, { zoomControl: true, preferCanvas: false, keyboard: true, zoomSnap: 0.25,
      attributionControl: true, minZoom: 3, maxZoom: 19 });
    this.map.attributionControl.setPrefix("Leaflet");
    L.control.scale({ imperial: false }).addTo(this.map);
    this.map.createPane("basemap").style.zIndex = 250;
    this.shapeRenderer = L.canvas({ padding: 0.3, tolerance: 4 });
    this.map.setView([3.1466, 101.6958], 14);
  }

  // ------------------------------------------------------------- base map
  /** Draw a raster tile layer (online deployments). */
  addTiles(url) {
    L.tileLayer(url, { maxZoom: 19, pane: "basemap" }).addTo(this.map);
  }

  /** Draw the city's own vector base map (GeoJSON with `kind` on each feature). */
  addVectorBasemap(collection) {
    const renderer = L.canvas({ pane: "basemap", padding: 0.5 });
    this.basemap = L.geoJSON(collection, {
      pane: "basemap", renderer, interactive: false,
      style: (f) => {
        const kind = f.properties.kind;
        return { ...(kind === "road" ? BASEMAP_STYLE[f.properties.class] : BASEMAP_STYLE[kind]),
          interactive: false };
      },
    }).addTo(this.map);
    const boundary = collection.features.find((f) => f.properties.kind === "boundary");
    if (boundary) this.map.fitBounds(L.geoJSON(boundary).getBounds(), { padding: [10, 10] });
  }

  setBasemapVisible(visible) {
    if (!this.basemap) return;
    if (visible) this.basemap.addTo(this.map);
    else this.basemap.remove();
  }

  // --------------------------------------------------------------- layers
  setSpecs(specs) {
    for (const spec of specs) this.specs.set(spec.entity_type, spec);
  }

  spec(type) {
    if (!this.specs.has(type)) this.specs.set(type, fallbackSpec(type));
    return this.specs.get(type);
  }

  /** The layers present, in drawing order: [{type, spec, count, visible}]. */
  layerSummary() {
    return [...this.groups.entries()]
      .map(([type, g]) => ({ type, spec: g.spec, count: g.count, visible: g.visible }))
      .sort((a, b) => (b.spec.order - a.spec.order) || a.type.localeCompare(b.type));
  }

  _group(type, pointCount = 0) {
    let group = this.groups.get(type);
    if (group) return group;
    const spec = this.spec(type);
    const clustered = spec.cluster ?? pointCount >= AUTO_CLUSTER_POINTS;
    const points = clustered
      ? L.markerClusterGroup({
        showCoverageOnHover: false, maxClusterRadius: 45, disableClusteringAtZoom: 18,
        chunkedLoading: true, spiderfyOnMaxZoom: false,
        iconCreateFunction: (cluster) => {
          const n = cluster.getChildCount();
          const size = n < 10 ? 28 : n < 100 ? 34 : n < 1000 ? 42 : 50;
          // built as a node, its colour and size through the CSSOM: the
          // Content-Security-Policy refuses style attributes
          const badge = document.createElement("span");
          badge.className = "cx-cluster";
          badge.style.setProperty("--c", spec.color);
          badge.style.width = badge.style.height = `${size}px`;
          badge.textContent = String(n);
          return L.divIcon({ className: "cx-marker", iconSize: [size, size], html: badge });
        },
      })
      : L.layerGroup();
    const shapes = L.featureGroup();
    group = { spec, points, shapes, clustered, visible: spec.visible !== false, count: 0 };
    this.groups.set(type, group);
    if (group.visible) {
      points.addTo(this.map);
      shapes.addTo(this.map);
    }
    return group;
  }

  setVisible(type, visible) {
    const group = this.groups.get(type);
    if (!group) return;
    group.visible = visible;
    for (const layer of [group.points, group.shapes]) {
      if (visible) layer.addTo(this.map);
      else layer.remove();
    }
  }

  // ------------------------------------------------------------ features
  _iconClass(spec, feature) {
    const props = feature.properties || {};
    let cls = spec.marker === "square" ? "vehicle" : spec.marker === "pulse" ? "alert" : "";
    if (spec.marker === "pulse" && props.status === "resolved") cls += " done";
    return `cx-dot ${cls}`;
  }

  /** What the marker looks like, to tell whether an update changes it. */
  _iconKey(spec, feature, color) {
    return `${this._iconClass(spec, feature)}|${color}|${feature.id}`;
  }

  /** The marker's dot, its colour through the CSSOM (the CSP refuses style attributes). */
  _iconElement(spec, feature, color) {
    const dot = document.createElement("span");
    dot.className = this._iconClass(spec, feature);
    dot.style.setProperty("--c", color);
    dot.dataset.entityId = feature.id;
    return dot;
  }

  _icon(spec, feature, color) {
    const size = spec.marker === "pulse" ? 22 : 18;
    return L.divIcon({ className: "cx-marker", html: this._iconElement(spec, feature, color),
      iconSize: [size, size], iconAnchor: [size / 2, size / 2] });
  }

  _makePoint(spec, feature) {
    const color = featureColor(spec, feature.properties || {});
    const [lon, lat] = feature.geometry.coordinates;
    const marker = L.marker([lat, lon], {
      icon: this._icon(spec, feature, color), keyboard: true,
      title: String(featureLabel(spec, feature)), riseOnHover: true,
    });
    marker.on("click", () => this.onSelect(feature.id));
    return { kind: "point", layer: marker, color };
  }

  _makeShape(spec, feature) {
    const color = featureColor(spec, feature.properties || {});
    const layer = L.geoJSON(feature, {
      renderer: this.shapeRenderer,
      style: () => ({ color, weight: feature.geometry.type.includes("Line") ? 4 : 1.5,
        fillColor: color, fillOpacity: 0.35, opacity: 0.95 }),
      pointToLayer: (_f, latlng) => L.circleMarker(latlng, { renderer: this.shapeRenderer, radius: 6 }),
    });
    layer.on("click", () => this.onSelect(feature.id));
    layer.bindTooltip(String(featureLabel(spec, feature)), { sticky: true, className: "cx-tooltip" });
    return { kind: "shape", layer, color };
  }

  /** Replace everything on the map with `collection` (a FeatureCollection). */
  loadFeatures(collection) {
    for (const group of this.groups.values()) {
      group.points.clearLayers();
      group.shapes.clearLayers();
      group.count = 0;
    }
    this.items.clear();
    const byType = new Map();
    for (const feature of collection.features) {
      const type = feature.properties.type;
      if (!byType.has(type)) byType.set(type, []);
      byType.get(type).push(feature);
    }
    const pending = [];
    for (const [type, features] of byType) {
      const group = this._group(type, features.filter((f) => isPoint(f.geometry)).length);
      const markers = [];
      for (const feature of features) {
        const item = isPoint(feature.geometry)
          ? this._makePoint(group.spec, feature) : this._makeShape(group.spec, feature);
        this.items.set(feature.id, { ...item, type, feature });
        if (item.kind === "point") markers.push(item.layer);
        else group.shapes.addLayer(item.layer);
      }
      group.count = features.length;
      if (group.clustered) {
        pending.push(new Promise((resolve) => {
          group.points.options.chunkProgress = (done, total) => { if (done >= total) resolve(); };
          group.points.addLayers(markers);
          if (!group.visible || !markers.length) resolve();
        }));
      } else {
        for (const marker of markers) group.points.addLayer(marker);
      }
    }
    this.onLayersChanged();
    return Promise.all(pending);
  }

  /** Apply live messages ({kind, id, type, feature}); returns the ids changed. */
  applyMessages(messages) {
    const latest = new Map();
    for (const message of messages) latest.set(message.id, message);
    let layersChanged = false;
    for (const message of latest.values()) {
      const item = this.items.get(message.id);
      const feature = message.feature;
      if (message.kind === "deleted" || !feature || !feature.geometry) {
        if (item) {
          this._remove(message.id, item);
          layersChanged = true;
        }
        continue;
      }
      if (!item) {
        this._add(message.type, feature);
        layersChanged = true;
        continue;
      }
      this._update(message.id, item, feature);
    }
    if (layersChanged) this.onLayersChanged();
    return [...latest.keys()];
  }

  _add(type, feature) {
    const group = this._group(type, 0);
    const item = isPoint(feature.geometry)
      ? this._makePoint(group.spec, feature) : this._makeShape(group.spec, feature);
    this.items.set(feature.id, { ...item, type, feature });
    (item.kind === "point" ? group.points : group.shapes).addLayer(item.layer);
    group.count += 1;
  }

  _remove(id, item) {
    const group = this.groups.get(item.type);
    if (group) {
      (item.kind === "point" ? group.points : group.shapes).removeLayer(item.layer);
      group.count -= 1;
    }
    this.items.delete(id);
  }

  _update(id, item, feature) {
    const group = this.groups.get(item.type);
    const spec = group.spec;
    const wasPoint = item.kind === "point";
    if (wasPoint !== isPoint(feature.geometry) || !wasPoint) {
      // shapes are redrawn whole: a new outline or colour is one canvas redraw anyway
      this._remove(id, item);
      this._add(item.type, feature);
      return;
    }
    const marker = item.layer;
    if (!sameCoordinates(item.feature.geometry, feature.geometry)) {
      const [lon, lat] = feature.geometry.coordinates;
      const element = marker.getElement();
      if (element) {
        element.classList.add("moving");
        element.style.transition = "transform .8s linear";
        clearTimeout(item.moveTimer);
        item.moveTimer = setTimeout(() => { element.style.transition = ""; }, 900);
      }
      marker.setLatLng([lat, lon]);
    }
    const color = featureColor(spec, feature.properties || {});
    if (this._iconKey(spec, feature, color) !== this._iconKey(spec, item.feature, item.color)) {
      marker.options.icon = this._icon(spec, feature, color);
      const element = marker.getElement();
      if (element) element.replaceChildren(this._iconElement(spec, feature, color));
    }
    const label = String(featureLabel(spec, feature));
    marker.options.title = label;
    if (marker.getElement()) marker.getElement().title = label;
    item.color = color;
    item.feature = feature;
  }

  // -------------------------------------------------------------- focus
  centreOf(id) {
    const item = this.items.get(id);
    if (!item) return null;
    if (item.kind === "point") return item.layer.getLatLng();
    return item.layer.getBounds().getCenter();
  }

  /** Bring an entity into view (opening its cluster) and ring it. */
  focus(id) {
    const item = this.items.get(id);
    if (!item) return false;
    const group = this.groups.get(item.type);
    if (!group.visible) this.setVisible(item.type, true);
    if (item.kind === "point" && group.clustered) {
      group.points.zoomToShowLayer(item.layer, () => this.highlight(item.layer.getLatLng()));
    } else if (item.kind === "point") {
      this.map.setView(item.layer.getLatLng(), Math.max(this.map.getZoom(), 16));
      this.highlight(item.layer.getLatLng());
    } else {
      this.map.fitBounds(item.layer.getBounds(), { maxZoom: 17, padding: [40, 40] });
      this.highlight(item.layer.getBounds().getCenter());
    }
    return true;
  }

  /** Ring a place for a few seconds (an alert's place, a searched entity). */
  highlight(latlng) {
    const ring = L.marker(latlng, {
      icon: L.divIcon({ className: "cx-marker", html: '<span class="cx-highlight"></span>', iconSize: [0, 0] }),
      interactive: false, keyboard: false,
    }).addTo(this.map);
    setTimeout(() => ring.remove(), 5000);
  }

  /** Entities whose label or id contains `text` (at most `limit`). */
  search(text, limit = 8) {
    const needle = text.trim().toLowerCase();
    if (!needle) return [];
    const found = [];
    for (const [id, item] of this.items) {
      const label = String(featureLabel(this.spec(item.type), item.feature));
      if (label.toLowerCase().includes(needle) || id.toLowerCase().includes(needle)) {
        found.push({ id, label, type: item.type });
        if (found.length >= limit) break;
      }
    }
    return found;
  }

  feature(id) {
    const item = this.items.get(id);
    return item ? item.feature : null;
  }

  layerTitle(type) {
    return pick(this.spec(type).title);
  }
}
