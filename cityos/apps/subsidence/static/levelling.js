// The latest levelling comparison of the caller's tenant; operators upload a new
// benchmarks CSV (it is compared with the points inside the tenant's areas).
import "/web/static/js/sign-in.js"; // needs the dashboard's session
import { ApiError, key, tenant, chooseLanguage, api } from "/web/static/js/app-page.js";

const $ = (id) => document.getElementById(id);
const fmt = (v, d = 2) => v === null || v === undefined ? "–" : Number(v).toFixed(d);
const esc = (t) => String(t ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
let chart = null;

function render(c) {
  const o = c.overall;
  $("overall").innerHTML = "<tr><th></th><th>benchmarks</th><th>n</th><th>mean (mm)</th><th>MAE</th><th>RMSE</th><th>max |diff|</th><th>r</th></tr>" +
    `<tr><td>overall</td><td>${c.compared}</td><td>${o.n}</td><td>${fmt(o.mean_mm)}</td><td>${fmt(o.mae_mm)}</td><td>${fmt(o.rmse_mm)}</td><td>${fmt(o.max_abs_mm)}</td><td>${fmt(o.correlation, 3)}</td></tr>`;
  $("benchmarks").innerHTML = "<tr><th>benchmark</th><th>points</th><th>n</th><th>mean</th><th>MAE</th><th>RMSE</th><th>max</th><th>r</th></tr>" +
    c.benchmarks.map((b) => b.stats ? `<tr><td>${esc(b.id)}</td><td>${b.points}</td><td>${b.stats.n}</td><td>${fmt(b.stats.mean_mm)}</td><td>${fmt(b.stats.mae_mm)}</td><td>${fmt(b.stats.rmse_mm)}</td><td>${fmt(b.stats.max_abs_mm)}</td><td>${fmt(b.stats.correlation, 3)}</td></tr>`
      : `<tr><td>${esc(b.id)}</td><td>${b.points}</td><td colspan="6" class="note">${esc(b.reason)}</td></tr>`).join("");
  const pairs = c.benchmarks.filter((b) => b.stats).flatMap((b) => b.levelling_mm.slice(1).map((x, k) => [x, b.insar_mm[k + 1]]));
  pairs.sort((a, b) => a[0] - b[0]);
  if (chart) chart.destroy();
  chart = new uPlot({ width: Math.min(700, innerWidth - 80), height: 320, scales: { x: { time: false } },
    series: [{}, { label: "InSAR", stroke: "#4cc9f0", paths: () => null, points: { show: true, size: 5 } },
             { label: "1:1", stroke: "#9fb0c8" }] },
    [pairs.map((p) => p[0]), pairs.map((p) => p[1]), pairs.map((p) => p[0])], $("scatter"));
  document.body.dataset.loaded = "true";
  $("overall").dataset.n = String(o.n);
}

async function load() {
  try { render(await api("/apps/subsidence/levelling")); }
  catch (error) { $("status").className = error instanceof ApiError && error.status === 404 ? "note" : "error"; $("status").textContent = error.message; document.body.dataset.loaded = "true"; }
}

$("file").addEventListener("change", async () => {
  const file = $("file").files[0];
  if (!file) return;
  const headers = { "Content-Type": "text/csv" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (tenant) headers["NGSILD-Tenant"] = tenant;
  const response = await fetch(`/apps/subsidence/levelling?radius_m=${Number($("radius").value) || 100}`,
    { method: "POST", headers, body: await file.text() });
  const body = await response.json();
  if (!response.ok) { $("status").className = "error"; $("status").textContent = body.detail || response.status; return; }
  $("status").className = "note"; $("status").textContent = "";
  render(body);
});

await chooseLanguage();
await load();
