// The stop board: the next arrivals at one stop, refreshed every 15 s. Key and
// language as every app page (app-page.js).
import { chooseLanguage, key, lang, pick, t, tenant } from "/web/static/js/app-page.js";
const REFRESH_MS = 15000;
const parts = location.pathname.split("/");
const stop = parts[parts.indexOf("stops") + 1];
let timezone = undefined;

function clockText(seconds) {
  return new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", timeZone: timezone })
    .format(new Date(seconds * 1000));
}
function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}
function render(data) {
  timezone = data.timezone;
  document.getElementById("stop-name").textContent = data.stop.name;
  document.getElementById("stop-code").textContent = data.stop.code || "";
  const rows = document.getElementById("rows");
  rows.replaceChildren();
  for (const row of data.arrivals) {
    const tr = document.createElement("tr");
    tr.dataset.live = String(row.live);
    tr.dataset.late = String(row.live && row.expected_t - row.scheduled_t >= 300);
    tr.dataset.trip = row.trip_id;
    const route = cell("", "route");
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = row.route_short_name;
    route.append(badge);
    const due = cell(row.minutes <= 0 ? t("transit.board.now")
      : row.minutes >= 60 ? clockText(row.expected_t)
        : t("transit.board.minutes", { n: row.minutes }), "due");
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = row.live ? t("transit.board.live") : t("transit.board.scheduled");
    due.append(kind);
    tr.append(route, cell(row.headsign || ""), due);
    rows.append(tr);
  }
  const alerts = document.getElementById("alerts");
  alerts.replaceChildren(...data.alerts.map((a) => {
    const li = document.createElement("li");
    li.textContent = pick(a.header);
    return li;
  }));
  alerts.hidden = data.alerts.length === 0;
  document.getElementById("board").hidden = data.arrivals.length === 0;
  const message = document.getElementById("message");
  message.hidden = data.arrivals.length > 0;
  message.textContent = t("transit.board.none");
  document.getElementById("updated").textContent = clockText(data.now);
}
function showMessage(name) {
  const message = document.getElementById("message");
  message.hidden = false;
  message.textContent = t(name);
  document.getElementById("board").hidden = true;
}
async function refresh() {
  if (!key) { showMessage("transit.board.noKey"); return; }
  const headers = { Accept: "application/json", Authorization: `Bearer ${key}` };
  if (tenant) headers["NGSILD-Tenant"] = tenant;
  try {
    const response = await fetch(`/apps/transit/stops/${stop}/arrivals`, { headers });
    if (response.ok) render(await response.json());
    else if (response.status === 404) showMessage("transit.board.unknownStop");
    else if (response.status === 401 || response.status === 403) showMessage("transit.board.noKey");
    else showMessage("transit.board.offline");
  } catch {
    showMessage("transit.board.offline");
  }
}
function tick() {
  document.getElementById("clock").textContent = clockText(Date.now() / 1000);
}
await chooseLanguage("transit.board.title");
tick();
setInterval(tick, 1000);
await refresh();
setInterval(refresh, REFRESH_MS);
window.cityosBoard = { refresh };
