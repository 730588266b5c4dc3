// Operations analytics of one service date, and the service-alert desk. Every
// number comes from the transit API (/apps/transit/analytics/*, /alerts); the
// page only draws it. Key and language as every app page (app-page.js).
import "/web/static/js/sign-in.js"; // needs the dashboard's session
import { api, chooseLanguage, lang, pick, t } from "/web/static/js/app-page.js";

const $ = (id) => document.getElementById(id);
const CAUSES = ["UNKNOWN_CAUSE", "OTHER_CAUSE", "TECHNICAL_PROBLEM", "STRIKE", "DEMONSTRATION",
  "ACCIDENT", "HOLIDAY", "WEATHER", "MAINTENANCE", "CONSTRUCTION", "POLICE_ACTIVITY",
  "MEDICAL_EMERGENCY"];
const EFFECTS = ["UNKNOWN_EFFECT", "NO_SERVICE", "REDUCED_SERVICE", "SIGNIFICANT_DELAYS",
  "DETOUR", "ADDITIONAL_SERVICE", "MODIFIED_SERVICE", "OTHER_EFFECT", "STOP_MOVED",
  "NO_EFFECT", "ACCESSIBILITY_ISSUE"];
const SEVERITIES = ["UNKNOWN_SEVERITY", "INFO", "WARNING", "SEVERE"];
const charts = {};
let canWithdraw = false;
const number = (v, digits = 0) => v === null || v === undefined || Number.isNaN(v) ? "–"
  : new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(v);
const percent = (share) => share === null || share === undefined ? "–" : `${number(100 * share, 1)} %`;
const minutes = (s) => s === null || s === undefined ? "–" : number(s / 60, 1);

function table(el, columns, rows) {
  const head = `<thead><tr>${columns.map((c) =>
    `<th class="${c.num ? "num" : ""}">${escapeHtml(t(c.title))}</th>`).join("")}</tr></thead>`;
  const body = rows.map((row) => `<tr>${columns.map((c) =>
    `<td class="${c.num ? "num" : ""}">${escapeHtml(String(c.value(row)))}</td>`).join("")}</tr>`);
  el.innerHTML = head + `<tbody>${body.join("")}</tbody>`;
  el.dataset.rows = String(rows.length);
}
function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ---------------------------------------------------------------- charts
function barChart(id, hours, series) {
  const el = $(id);
  if (charts[id]) charts[id].destroy();
  const bars = uPlot.paths.bars({ size: [0.8, 40] });
  const opts = {
    width: Math.max(320, el.clientWidth), height: 220,
    scales: { x: { time: false, range: () => [-0.5, 23.5] }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
    axes: [{ stroke: "#9fb0c8", grid: { stroke: "#24365a" }, values: (u, v) => v.map((h) => `${h}`) },
           { stroke: "#9fb0c8", grid: { stroke: "#24365a" } }],
    series: [{ label: t("transit.analytics.hour") }, ...series.map((s) => ({
      label: s.label, stroke: s.color, fill: s.bars ? `${s.color}cc` : undefined,
      width: s.bars ? 0 : 2, paths: s.bars ? bars : undefined, points: { show: !s.bars },
    }))],
  };
  charts[id] = new uPlot(opts, [hours, ...series.map((s) => s.values)], el);
  el.dataset.points = String(hours.length);
}
function byHour(rows, value) {
  const hours = [...new Set(rows.map((r) => r.hour))].sort((a, b) => a - b);
  const out = new Map(hours.map((h) => [h, []]));
  for (const r of rows) out.get(r.hour).push(r);
  return { hours, values: hours.map((h) => value(out.get(h))) };
}
const sum = (rows, name) => rows.reduce((acc, r) => acc + (r[name] || 0), 0);

// --------------------------------------------------------------- loading
function query(extra = {}) {
  const params = new URLSearchParams({ date: $("date").value, ...extra });
  return params.toString();
}
async function loadAnalytics() {
  const window = { early_s: String(60 * Number($("early").value || 0)),
                   late_s: String(60 * Number($("late").value || 0)) };
  const [onHour, onRoute, heads, running, service, fleet, riders, drivers] = await Promise.all([
    api(`/apps/transit/analytics/on-time?${query({ by: "hour", ...window })}`),
    api(`/apps/transit/analytics/on-time?${query({ by: "route", ...window })}`),
    api(`/apps/transit/analytics/headways?${query({ by: "route" })}`),
    api(`/apps/transit/analytics/running-times?${query({ by: "segment,hour" })}`),
    api(`/apps/transit/analytics/service-delivered?${query({ by: "" })}`),
    api(`/apps/transit/analytics/fleet?${query()}`),
    api(`/apps/transit/analytics/ridership?${query({ by: "route,hour" })}`),
    api("/apps/transit/drivers/scores"),
  ]);
  $("status").textContent = onHour.rows.length ? "" : t("transit.analytics.noData");

  const s = service.rows[0];
  $("service").innerHTML = s ? [
    ["transit.analytics.trips", `${number(s.trips_run)} / ${number(s.trips_scheduled)}`, s.share_run],
    ["transit.analytics.km", `${number(s.km_run, 1)} / ${number(s.km_scheduled, 1)}`, null],
    ["transit.analytics.hours", `${number(s.hours_run, 1)} / ${number(s.hours_scheduled, 1)}`, null],
  ].map(([label, value, share]) => `<div class="kpi"><div class="value">${escapeHtml(value)}</div>` +
    `<div class="label">${escapeHtml(t(label))}${share === null ? "" : ` · ${escapeHtml(percent(share))}`}</div></div>`).join("") : "";

  const hourly = onHour.rows;
  const hours = hourly.map((r) => r.hour);
  const share = (name) => hourly.map((r) => r.observed ? 100 * r[name] / r.observed : null);
  barChart("chart-ontime", hours, [
    { label: `${t("transit.analytics.onTime")} %`, color: "#2ec4b6", values: share("on_time"), bars: true },
    { label: `${t("transit.analytics.lateShare")} %`, color: "#ff9f1c", values: share("late") },
    { label: `${t("transit.analytics.earlyShare")} %`, color: "#4cc9f0", values: share("early") },
  ]);
  const fleetRows = fleet.rows;
  barChart("chart-fleet", fleetRows.map((r) => r.hour), [
    { label: t("transit.analytics.vehicles"), color: "#ffd166", values: fleetRows.map((r) => r.vehicles_in_service), bars: true },
  ]);
  const riding = byHour(riders.rows, (rows) => sum(rows, "boardings"));
  const alighting = byHour(riders.rows, (rows) => sum(rows, "alightings"));
  barChart("chart-ridership", riding.hours, [
    { label: t("transit.analytics.boardings"), color: "#3a86ff", values: riding.values, bars: true },
    { label: t("transit.analytics.alightings"), color: "#c77dff", values: alighting.values },
  ]);

  table($("table-ontime"), [
    { title: "transit.analytics.route", value: (r) => r.route },
    { title: "transit.analytics.observed", value: (r) => number(r.observed), num: true },
    { title: "transit.analytics.onTime", value: (r) => percent(r.on_time_share), num: true },
    { title: "transit.analytics.lateShare", value: (r) => percent(r.observed ? r.late / r.observed : null), num: true },
  ], onRoute.rows);
  table($("table-headways"), [
    { title: "transit.analytics.route", value: (r) => r.route },
    { title: "transit.analytics.meanHeadway", value: (r) => minutes(r.mean_s), num: true },
    { title: "transit.analytics.cv", value: (r) => number(r.cv, 2), num: true },
    { title: "transit.analytics.bunching", value: (r) => number(r.bunching), num: true },
    { title: "transit.analytics.gaps", value: (r) => number(r.gaps), num: true },
  ], heads.rows);
  // the slowest segment-hours against their timetable first
  const slow = running.rows.filter((r) => r.scheduled_median_s)
    .sort((a, b) => b.median_s / b.scheduled_median_s - a.median_s / a.scheduled_median_s)
    .slice(0, 15);
  table($("table-running"), [
    { title: "transit.analytics.segment", value: (r) => `${r.from_stop_id} → ${r.to_stop_id}` },
    { title: "transit.analytics.hour", value: (r) => r.hour, num: true },
    { title: "transit.analytics.median", value: (r) => minutes(r.median_s), num: true },
    { title: "transit.analytics.scheduled", value: (r) => minutes(r.scheduled_median_s), num: true },
  ], slow);
  const routes = new Map();
  for (const r of riders.rows) {
    const acc = routes.get(r.route) || { route: r.route, boardings: 0, alightings: 0 };
    acc.boardings += r.boardings; acc.alightings += r.alightings;
    routes.set(r.route, acc);
  }
  table($("table-ridership"), [
    { title: "transit.analytics.route", value: (r) => r.route },
    { title: "transit.analytics.boardings", value: (r) => number(r.boardings), num: true },
    { title: "transit.analytics.alightings", value: (r) => number(r.alightings), num: true },
  ], [...routes.values()].sort((a, b) => b.boardings - a.boardings));
  table($("table-drivers"), [
    { title: "transit.analytics.driver", value: (r) => r.driver },
    { title: "transit.analytics.score", value: (r) => number(r.score, 1), num: true },
    { title: "transit.analytics.events", value: (r) => number(r.events), num: true },
    { title: "transit.analytics.eventsPer100km", value: (r) => number(r.weighted_events_per_100km, 1), num: true },
  ], [...drivers.rows].sort((a, b) => (a.score ?? 101) - (b.score ?? 101)));
}

// ---------------------------------------------------------- service alerts
function fillSelect(id, values, chosen) {
  $(id).innerHTML = values.map((v) => `<option${v === chosen ? " selected" : ""}>${v}</option>`).join("");
}
const list = (text) => text.split(",").map((v) => v.trim()).filter(Boolean);
const when = (seconds) => seconds ? new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "short" })
  .format(new Date(seconds * 1000)) : "–";

async function loadAlerts() {
  const alerts = await api("/apps/transit/alerts");
  const rows = alerts.filter((a) => !a.end || a.end * 1000 > Date.now());
  $("alerts-none").hidden = rows.length > 0;
  const el = $("table-alerts");
  el.innerHTML = rows.length ? `<thead><tr><th>${escapeHtml(t("transit.alerts.header"))}</th>` +
    `<th>${escapeHtml(t("transit.alerts.effect"))}</th><th>${escapeHtml(t("transit.alerts.affects"))}</th>` +
    `<th>${escapeHtml(t("transit.alerts.start"))}</th><th>${escapeHtml(t("transit.alerts.end"))}</th><th></th></tr></thead>` : "";
  el.insertAdjacentHTML("beforeend", `<tbody>${rows.map((a) => `<tr data-alert="${escapeHtml(a.id)}">` +
    `<td class="sev-${escapeHtml(a.severity)}">${escapeHtml(pick(a.header))}</td><td>${escapeHtml(a.effect)}</td>` +
    `<td>${escapeHtml([...a.route_ids, ...a.stop_ids].join(", ") || "–")}</td>` +
    `<td>${escapeHtml(when(a.start))}</td><td>${escapeHtml(when(a.end))}</td>` +
    `<td>${canWithdraw ? `<button class="ghost" type="button" data-withdraw="${escapeHtml(a.id)}">${escapeHtml(t("transit.alerts.withdraw"))}</button>` : ""}</td></tr>`).join("")}</tbody>`);
  el.dataset.rows = String(rows.length);
}
$("table-alerts").addEventListener("click", async (event) => {
  const button = event.target.closest("[data-withdraw]");
  if (!button) return;
  try {
    await api(`/apps/transit/alerts/${encodeURIComponent(button.dataset.withdraw)}`, { method: "DELETE" });
    await loadAlerts();
  } catch (error) { showAlertMessage(error); }
});
function showAlertMessage(error) {
  const el = $("alert-message");
  el.className = error ? "error" : "note";
  el.textContent = !error ? t("transit.alerts.published")
    : error.status === 403 ? t("transit.alerts.needsOperator") : error.message;
}
$("alert-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const seconds = (id) => $(id).value ? new Date($(id).value).getTime() / 1000 : null;
  const body = {
    header: { [lang]: $("alert-header").value.trim() },
    cause: $("alert-cause").value, effect: $("alert-effect").value,
    severity: $("alert-severity").value,
    route_ids: list($("alert-routes").value), stop_ids: list($("alert-stops").value),
  };
  const description = $("alert-description").value.trim();
  if (description) body.description = { [lang]: description };
  if (seconds("alert-start")) body.start = seconds("alert-start");
  if (seconds("alert-end")) body.end = seconds("alert-end");
  try {
    await api("/apps/transit/alerts", { method: "POST", body });
    $("alert-form").reset();
    showAlertMessage(null);
    await loadAlerts();
  } catch (error) { showAlertMessage(error); }
});

async function refresh() {
  try {
    await Promise.all([loadAnalytics(), loadAlerts()]);
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = error.message;
  }
}

await chooseLanguage("transit.analytics.title");
fillSelect("alert-cause", CAUSES, "UNKNOWN_CAUSE");
fillSelect("alert-effect", EFFECTS, "SIGNIFICANT_DELAYS");
fillSelect("alert-severity", SEVERITIES, "WARNING");
// only operators publish: a viewer sees the desk read-only rather than a failed submit
const me = await api("/web/api/me").catch(() => null);
if (!me || me.role === "viewer") {
  for (const el of $("alert-form").elements) el.disabled = true;
  $("alert-message").textContent = t("transit.alerts.needsOperator");
}
canWithdraw = Boolean(me && me.role !== "viewer");
document.body.dataset.role = me ? me.role : "";
const status = await api("/apps/transit/status").catch(() => null);
const today = new Intl.DateTimeFormat("en-CA", { timeZone: status ? status.timezone : undefined,
  year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
$("date").value = new URLSearchParams(location.search).get("date") || today;
$("refresh").addEventListener("click", refresh);
await refresh();
setInterval(loadAlerts, 30000);
window.cityosAnalytics = { refresh, charts };
