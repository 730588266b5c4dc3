// Message catalogues (JSON, one per language, served from /web/locales/) and
// locale-aware formatting of dates and numbers with the browser's Intl.

const LANG_KEY = "cityos.lang";
let lang = "en";
let messages = {};
let fallback = {};
const listeners = [];

export function currentLanguage() {
  return lang;
}

/** The language to start in: the saved choice, else the browser's, else English. */
export function preferredLanguage(available) {
  const codes = available.map((l) => l.code);
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && codes.includes(saved)) return saved;
  for (const wanted of navigator.languages || []) {
    const code = wanted.slice(0, 2).toLowerCase();
    if (codes.includes(code)) return code;
  }
  return "en";
}

async function fetchCatalogue(code) {
  const response = await fetch(`/web/locales/${code}.json`);
  if (!response.ok) throw new Error(`catalogue ${code}: HTTP ${response.status}`);
  return response.json();
}

/** Switch the interface to `code`: load its catalogue, retranslate, notify. */
export async function setLanguage(code) {
  if (!Object.keys(fallback).length) fallback = await fetchCatalogue("en");
  messages = code === "en" ? fallback : await fetchCatalogue(code);
  lang = code;
  localStorage.setItem(LANG_KEY, code);
  document.documentElement.lang = code;
  translateDocument();
  for (const listener of listeners) listener(code);
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

/** The message `key` with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = messages[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Translate the static page: data-i18n (text), data-i18n-placeholder, data-i18n-aria. */
export function translateDocument(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-aria]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAria));
  }
  document.title = t("app.documentTitle");
}

/** A title given per language ({en: ..., ja: ...}) in the current language. */
export function pick(titles) {
  if (!titles) return "";
  if (typeof titles === "string") return titles;
  return titles[lang] || titles.en || Object.values(titles)[0] || "";
}

export function formatNumber(value, options = {}) {
  const digits = Math.abs(value) >= 100 ? 1 : 2;
  return new Intl.NumberFormat(lang, { maximumFractionDigits: digits, ...options }).format(value);
}

export function formatDateTime(value, options = { dateStyle: "medium", timeStyle: "medium" }) {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return new Intl.DateTimeFormat(lang, options).format(date);
}

export function formatTime(value) {
  return formatDateTime(value, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** "5 minutes ago" in the current language. */
export function formatRelative(value, now = Date.now()) {
  const seconds = Math.round((new Date(value).getTime() - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}
