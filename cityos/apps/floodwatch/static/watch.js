// The flood watch's operations view: every site's depth, alert level, quality flags
// and nowcast, the pumps with their last command, and the event report. Data from
// /apps/floodwatch/*; key and language as every app page (app-page.js).
import "/web/static/js/sign-in.js"; // needs the dashboard's session
import { api, chooseLanguage, key, lang, t, tenant } from "/web/static/js/app-page.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 15000;
let canCommand = false;
const escapeHtml = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => (
  { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const number = (v, digits = 1) => v === null || v === undefined ? "–"
  : new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(v);
const clock = (iso) => iso ? new Intl.DateTimeFormat(lang, { timeStyle: "short" }).format(new Date(iso)) : "–";

function renderSites(sites) {
  const head = `<thead><tr><th>${t("flood.site")}</th><th class="num">${t("flood.depth")}</th>` +
    `<th>${t("flood.level")}</th><th class="num">+10 min</th><th class="num">+20 min</th>` +
    `<th class="num">+30 min</th><th>${t("flood.model")}</th><th>${t("flood.quality")}</th>` +
    `<th>${t("flood.updated")}</th></tr></thead>`;
  const rows = sites.sort((a, b) => (b.floodLevel - a.floodLevel) || ((b.depth?.value ?? 0) - (a.depth?.value ?? 0)))
    .map((s) => `<tr data-site="${escapeHtml(s.id)}">` +
      `<td>${escapeHtml(s.name)}${s.sensorStatus === "offline" ? ` <span class="offline">${t("flood.offline")}</span>` : ""}</td>` +
      `<td class="num">${number(s.depth?.value)} cm</td>` +
      `<td><span class="level" data-level="${s.floodLevel}">${escapeHtml(t(`flood.level.${s.floodLevelName || "none"}`))}</span></td>` +
      [10, 20, 30].map((h) => `<td class="num" data-horizon="${h}">${number(s.forecast[h]?.value)}</td>`).join("") +
      `<td>${escapeHtml(s.nowcastModel ?? "–")}</td>` +
      `<td class="flags">${escapeHtml((s.quality?.value || []).join(", "))}</td>` +
      `<td>${escapeHtml(clock(s.depth?.observedAt))}</td></tr>`);
  $("sites").innerHTML = head + `<tbody>${rows.join("")}</tbody>`;
  $("sites").dataset.rows = String(sites.length);
}

function renderPumps(pumps) {
  const head = `<thead><tr><th>${t("flood.pump")}</th><th>${t("flood.mode")}</th>` +
    `<th>${t("flood.state")}</th><th>${t("flood.command")}</th><th></th></tr></thead>`;
  const rows = pumps.map((p) => `<tr data-pump="${escapeHtml(p.id)}">` +
    `<td>${escapeHtml(p.name)}</td><td>${escapeHtml(p.controlMode)} ` +
    `<span class="note">(${number(p.onLevel, 0)} / ${number(p.offLevel, 0)} cm)</span></td>` +
    `<td class="state">${escapeHtml(p.status ?? "–")}</td>` +
    `<td class="command">${escapeHtml(p.command.switch ?? "")} ${escapeHtml(p.command.status ?? "")}` +
    `${p.command.info ? ` <span class="note">${escapeHtml(p.command.info)}</span>` : ""}</td>` +
    `<td>${["on", "off"].map((s) => `<button type="button" class="ghost" data-switch="${s}"` +
      `${canCommand ? "" : " disabled"}>${escapeHtml(t(`flood.switch.${s}`))}</button>`).join(" ")}</td></tr>`);
  $("pumps").innerHTML = head + `<tbody>${rows.join("")}</tbody>`;
  $("pumps").dataset.rows = String(pumps.length);
}

$("pumps").addEventListener("click", async (event) => {
  const button = event.target.closest("[data-switch]");
  if (!button) return;
  const pump = button.closest("[data-pump]").dataset.pump;
  const message = $("pump-message");
  try {
    const command = await api(`/apps/floodwatch/pumps/${encodeURIComponent(pump)}/commands`,
      { method: "POST", body: { switch: button.dataset.switch } });
    message.className = "note";
    message.textContent = t("flood.sent", { status: command.status });
    await refresh();
  } catch (error) {
    message.className = "error";
    message.textContent = error.message;
  }
});

$("report-button").addEventListener("click", async () => {
  // the report needs the key: fetch it and show it from a blob, never a URL with a key
  const headers = { Authorization: `Bearer ${key}` };
  if (tenant) headers["NGSILD-Tenant"] = tenant;
  const response = await fetch("/apps/floodwatch/report", { headers });
  if (!response.ok) {
    $("status").className = "error";
    $("status").textContent = `${t("flood.report")}: ${response.status}`;
    return;
  }
  const blob = new Blob([await response.text()], { type: "text/html" });
  $("report").src = URL.createObjectURL(blob);
  $("report-section").hidden = false;
  document.body.dataset.report = "shown";
});

async function refresh() {
  try {
    const [sites, pumps] = await Promise.all([api("/apps/floodwatch/sites"), api("/apps/floodwatch/pumps")]);
    renderSites(sites);
    renderPumps(pumps);
    $("status").className = "note";
    $("status").textContent = "";
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = error.message;
  }
}

await chooseLanguage("flood.title");
const me = await api("/web/api/me").catch(() => null);
canCommand = Boolean(me && me.role !== "viewer");
await refresh();
setInterval(refresh, REFRESH_MS);
window.cityosFlood = { refresh };
