// What every app page shares (stop boards, analytics, flood watch): the caller's key, the
// language, authenticated fetch.
//
// The key is a display session (a public screen opened with a display link) or the
// dashboard's signed-in session (sessionStorage, shared with a dashboard view that
// opens this page in a frame); the language from ?lang=, the dashboard's choice, or
// the browser's. Texts come from the dashboard's catalogues (/web/locales/).
//
// A display link carries its token in the URL fragment (#display=cty_...), which the
// browser never sends: the page takes it out of the address bar at once (history,
// bookmarks and screenshots never keep it), exchanges it once for a display session
// (POST /web/api/display-session, the token in the body) and renews the session at
// half time. A key is never read from the URL.

const DISPLAY_STORAGE = "cityos.display";
const params = new URLSearchParams(location.search);
let session = null;
try { session = JSON.parse(sessionStorage.getItem("cityos.session")); } catch { session = null; }

/** The display token of the address's fragment, removed from the address bar. */
function takeDisplayToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("display");
  if (!token) return null;
  fragment.delete("display");
  const rest = fragment.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return token;
}

async function postSession(path, body, bearer) {
  const headers = { Accept: "application/json", "Content-Type": "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  try {
    const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    return response.ok ? response.json() : null;
  } catch {
    return null;
  }
}

function keepDisplaySession(display) {
  if (display) sessionStorage.setItem(DISPLAY_STORAGE, JSON.stringify(display));
  else sessionStorage.removeItem(DISPLAY_STORAGE);
  return display;
}

/** This page's display session: from a display link just opened, else the one this
 * tab already holds for this page; null when there is none. */
async function displaySession() {
  const token = takeDisplayToken();
  if (token) return keepDisplaySession(await postSession("/web/api/display-session", { token }));
  let held = null;
  try { held = JSON.parse(sessionStorage.getItem(DISPLAY_STORAGE)); } catch { held = null; }
  if (!held || held.page !== location.pathname) return null;
  // reloaded: how much of it is left is not known here, so start a fresh one
  return keepDisplaySession(await postSession("/web/api/display-session/renew", {}, held.session));
}

const display = await displaySession();

export let key = (display && display.session) || (session && session.key) || null;
export const tenant = (display && display.tenant) || params.get("tenant") || (session && session.tenant) || null;

/** Renew the display session in `seconds`: at half its life, or in a minute when the
 * last try failed (offline; a revoked link fails until its session ends). */
function renewIn(current, seconds) {
  setTimeout(async () => {
    const renewed = await postSession("/web/api/display-session/renew", {}, current.session);
    if (renewed) {
      key = renewed.session;
      keepDisplaySession(renewed);
      renewIn(renewed, Math.max(renewed.expiresIn / 2, 60));
    } else {
      renewIn(current, 60);
    }
  }, seconds * 1000);
}
if (display) renewIn(display, Math.max(display.expiresIn / 2, 60));

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
