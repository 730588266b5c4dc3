// The flood-risk studies published to the tenant: name, return periods, measure
// packages, the expected annual damage without measures and the headline, each with a
// link to its report. Data from /apps/floodrisk/studies with the dashboard's session.
import "/web/static/js/sign-in.js";
import { api, chooseLanguage, lang, t } from "/web/static/js/app-page.js";

const $ = (id) => document.getElementById(id);
const escapeHtml = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => (
  { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const money = (value, currency) => value === null || value === undefined ? "–"
  : `${new Intl.NumberFormat(lang, { maximumFractionDigits: 0 }).format(value)} ${currency || ""}`.trim();

function render(studies) {
  const head = `<thead><tr><th>${escapeHtml(t("floodrisk.name"))}</th>` +
    `<th>${escapeHtml(t("floodrisk.returnPeriods"))}</th>` +
    `<th>${escapeHtml(t("floodrisk.packages"))}</th>` +
    `<th class="num">${escapeHtml(t("floodrisk.baselineEad"))}</th><th></th></tr></thead>`;
  const rows = studies.map((s) => {
    const report = `/apps/floodrisk/pages/report?study=${encodeURIComponent(s.id)}`;
    return `<tr data-study="${escapeHtml(s.id)}"><td>${escapeHtml(s.name || s.id)}</td>` +
      `<td>${escapeHtml((s.return_periods || []).map((p) => `${p}`).join(", "))}</td>` +
      `<td>${escapeHtml((s.packages || []).join(", "))}</td>` +
      `<td class="num">${escapeHtml(money(s.baseline_ead, s.headline && s.headline.currency))}</td>` +
      `<td>${s.report ? `<a class="report-link" href="${escapeHtml(report)}">${escapeHtml(t("floodrisk.openReport"))}</a>` : ""}</td></tr>`;
  });
  $("studies").innerHTML = head + `<tbody>${rows.join("")}</tbody>`;
  $("studies").dataset.rows = String(studies.length);
}

await chooseLanguage("floodrisk.studies");
try {
  const studies = await api("/apps/floodrisk/studies");
  render(studies);
  $("status").textContent = studies.length ? "" : t("floodrisk.none");
} catch (error) {
  $("status").className = "error";
  $("status").textContent = error.message;
}
document.body.dataset.loaded = "true";
