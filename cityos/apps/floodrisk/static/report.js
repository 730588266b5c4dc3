// One flood-risk study's report (?study=ID). The report needs the session's key, so
// it is fetched with it and shown from a blob in a frame: never a URL with a key.
import "/web/static/js/sign-in.js";
import { ApiError, chooseLanguage, key, t, tenant } from "/web/static/js/app-page.js";

const $ = (id) => document.getElementById(id);
const study = new URLSearchParams(location.search).get("study");

async function problemDetail(response) {
  try { const problem = await response.json(); return problem.detail || problem.title; }
  catch { return `HTTP ${response.status}`; }
}

async function show() {
  if (!study) throw new ApiError(400, t("floodrisk.noStudy"));
  const headers = { Accept: "text/html", Authorization: `Bearer ${key}` };
  if (tenant) headers["NGSILD-Tenant"] = tenant;
  const response = await fetch(`/apps/floodrisk/studies/${encodeURIComponent(study)}/report`,
    { headers });
  if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
  const blob = new Blob([await response.text()], { type: "text/html" });
  $("report").src = URL.createObjectURL(blob);
  $("report").hidden = false;
  document.body.dataset.report = "shown";
}

await chooseLanguage("floodrisk.report");
try {
  await show();
} catch (error) {
  $("status").className = "error";
  $("status").textContent = error.message;
}
document.body.dataset.loaded = "true";
