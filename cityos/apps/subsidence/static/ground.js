// InSAR points of the caller's areas, coloured by vertical velocity on a diverging
// scale (line-of-sight velocity for a product without incidence angle: the API's
// "component"); a click shows the point's series with the fitted model.
import "/web/static/js/sign-in.js"; // needs the dashboard's session
import { api, chooseLanguage } from "/web/static/js/app-page.js";

const $ = (id) => document.getElementById(id);
const LIMITS = [-20, -10, -5, -2, 2, 5, 10];  // mm/yr, as web.py VELOCITY_STEPS
const COLORS = ["#67001f", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7", "#d1e5f0",
                "#92c5de", "#2166ac"];
const NO_VALUE = "#6c757d";  // a point whose velocity is unknown (no incidence angle)
const colorOf = (v) => v == null ? NO_VALUE : COLORS[LIMITS.filter((l) => v >= l).length];
const COMPONENTS = { vertical: "vertical; red sinking",
                     los: "line of sight, no incidence angle; red away from the satellite",
                     east: "east-west; red westward" };
let chart = null;
let map = null;

function small(text) {
  const el = document.createElement("small");
  el.textContent = text;
  return el;
}

function legend(component) {
  // built as nodes: a colour set through the CSSOM, never a style attribute (the CSP)
  const items = COLORS.flatMap((c, k) => {
    const label = k === 0 ? `< ${LIMITS[0]}` : k === LIMITS.length ? `≥ ${LIMITS[k - 1]}`
      : `${LIMITS[k - 1]}..${LIMITS[k]}`;
    const swatch = document.createElement("span");
    swatch.style.background = c;
    return [swatch, small(label)];
  });
  $("legend").replaceChildren(...items, " ", small(`mm/yr (${COMPONENTS[component] ?? component})`));
}

async function showSeries(point) {
  const s = await api(`/apps/subsidence/points/${encodeURIComponent(point.id)}/series`);
  const t = s.dates.map((d) => Date.parse(d) / 1000);
  const rate = s.component === "vertical"
    ? s.fitted.velocity_vertical_mm_yr ?? s.fitted.velocity_mm_yr : s.fitted.velocity_mm_yr;
  $("point-title").textContent = `Point ${s.id}: ${rate == null ? "–" : rate.toFixed(1)} mm/yr (${s.component})`;
  if (chart) chart.destroy();
  chart = new uPlot({ width: Math.min(900, innerWidth - 80), height: 260,
    series: [{}, { label: "displacement (mm)", stroke: "#4cc9f0", points: { show: true } },
             { label: "model (mm)", stroke: "#ffd166" }] },
    [t, s.displacement_mm, s.model_mm], $("chart"));
  document.body.dataset.series = s.id;
}

async function load() {
  try {
    const product = await api("/apps/subsidence/product");
    $("product").textContent = `${product.points_in_areas} points, ${product.first} – ${product.last}`;
    map = L.map("map", { preferCanvas: true });
    const areas = L.geoJSON(product.areas.map((a) => ({ type: "Feature", geometry: a.polygon })),
      { style: { color: "#9d4edd", weight: 1, fill: false } }).addTo(map);
    map.fitBounds(areas.getBounds());
    const b = map.getBounds();
    const data = await api(`/apps/subsidence/points?bbox=${b.getWest()},${b.getSouth()},${b.getEast()},${b.getNorth()}`);
    for (const p of data.points) {
      L.circleMarker([p.lat, p.lon], { radius: 4, weight: 0, fillOpacity: 0.9,
        fillColor: colorOf(p.velocity_mm_yr) }).on("click", () => showSeries(p)).addTo(map);
    }
    $("map").dataset.points = String(data.points.length);
    legend(data.component);
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = error.message;
  }
}

await chooseLanguage();
await load();
// where a point is drawn (container pixels), for scripted clicks
window.cityosGround = { showSeries, pixelOf: (lat, lon) => {
  const p = map.latLngToContainerPoint([lat, lon]); return [p.x, p.y]; } };
