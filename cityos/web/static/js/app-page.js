// What every app page shares (stop boards, analytics, flood watch): the caller's key, the
// language, authenticated fetch.
//
// The key comes from ?api_key= (a viewer key for a public screen) or from the
// dashboard's signed-in session (sessionStorage, shared with a dashboard view that
// opens this page in a frame); the language from ?lang=, the dashboard's choice, or
// the browser's. Texts come from the dashboard's catalogues (/web/locales/).

const params = new URLSearchParams(location.search);
let session = null;
try { session = JSON.parse(sessionStorage.getItem("cityos.session")); } catch { session = null; }

export const key = params.get("api_key") || (session && session.key) || null;
export const tenant = params.get("tenant") || (session && session.tenant) || null;
export let lang = "en";
let messages = {};
let fallback = {};

/** The text of `name` in the chosen language, with `{var}` filled in. */
export function t(name, vars = {}) {
  let text = messages[name] || fallback[name] || name;
  for (const [k, v] of Object.entries(vars)) text = text.replace(`{${k}}`, v);
  return text;
}

/** The entry of a `{lang: text}` map for the chosen language. */
export function pick(texts) {
  if (!texts || typeof texts !== "object") return texts || "";
  return texts[lang] || texts.en || texts[""] || Object.values(texts)[0] || "";
}

async function catalogue(code) {
  const response = await fetch(`/web/locales/${code}.json`);
  return response.ok ? response.json() : {};
}

/** Choose the language, load its texts and fill every `[data-i18n]` element. */
export async function chooseLanguage(titleKey) {
  const wanted = [params.get("lang"), localStorage.getItem("cityos.lang"),
                  ...(navigator.languages || []).map((l) => l.slice(0, 2).toLowerCase())];
  fallback = await catalogue("en");
  let offered = ["en"];
  try {
    const config = await (await fetch("/web/api/config")).json();
    offered = config.languages.map((l) => l.code);
  } catch { /* English only */ }
  for (const code of wanted) {
    if (!code || !offered.includes(code)) continue;
    if (code === "en") break;
    const found = await catalogue(code);
    if (Object.keys(found).length) { messages = found; lang = code; break; }
  }
  document.documentElement.lang = lang;
  if (titleKey) document.title = t(titleKey);
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

/** An HTTP error with the server's NGSI-LD problem detail. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

/** fetch() a CityOS path as the caller: JSON in, JSON out (null for 204). */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (tenant) headers["NGSILD-Tenant"] = tenant;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let detail = "";
    try { const problem = await response.json(); detail = problem.detail || problem.title; } catch { /* text */ }
    throw new ApiError(response.status, detail);
  }
  return response.status === 204 ? null : response.json();
}
