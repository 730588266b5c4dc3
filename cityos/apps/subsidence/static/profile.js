// Chainage profile of the caller's linear assets: rate and cumulative displacement
// per bin along the line, from /apps/subsidence/assets/{id}/profile.
import "/web/static/js/sign-in.js"; // needs the dashboard's session
import { api, chooseLanguage } from "/web/static/js/app-page.js";

const $ = (id) => document.getElementById(id);
const charts = {};
const esc = (t) => String(t ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function plot(id, x, y, color) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new uPlot({ width: Math.min(1000, innerWidth - 80), height: 220,
    scales: { x: { time: false } }, axes: [{ label: "chainage (m)" }, {}],
    series: [{}, { label: id, stroke: color, points: { show: true } }] }, [x, y], $(id));
}

async function show() {
  const id = $("asset").value;
  if (!id) return;
  try {
    const p = await api(`/apps/subsidence/assets/${encodeURIComponent(id)}/profile?bin_m=${Number($("bin").value) || 50}`);
    plot("rate", p.chainage_m, p.rate_mm_yr, "#e63946");
    plot("cumulative", p.chainage_m, p.cumulative_mm, "#4cc9f0");
    $("status").textContent = `${p.name}: ${(p.length_m / 1000).toFixed(2)} km, ${p.points} points within ${p.buffer_m} m, to ${p.last_date}`;
    document.body.dataset.loaded = "true";
    document.body.dataset.bins = String(p.count.length);
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = error.message;
  }
}

await chooseLanguage();
const assets = await api("/apps/subsidence/assets").catch((e) => { $("status").textContent = e.message; return []; });
$("asset").innerHTML = assets.map((a) => `<option value="${esc(a.id)}">${esc(a.name ?? a.id)}</option>`).join("");
$("assets").innerHTML = "<tr><th>asset</th><th>mean (mm/yr)</th><th>fastest bin (mm/yr)</th><th>risk</th></tr>" +
  assets.map((a) => `<tr><td>${esc(a.name ?? a.id)}</td><td>${a.subsidenceRate ?? "–"}</td><td>${a.subsidenceRateMin ?? "–"}</td><td>${esc(a.riskClass ?? "–")}</td></tr>`).join("");
$("asset").addEventListener("change", show);
$("bin").addEventListener("change", show);
await show();
