// The dashboard's start-up and wiring: configuration, sign-in, map, feed, panel, live stream.

import { AlertFeed } from "./alerts.js";
import { api, clearSession, loadSession, saveSession, streamEvents } from "./api.js";
import {
  currentLanguage, formatNumber, formatTime, onLanguageChange, pick, preferredLanguage,
  setLanguage, t,
} from "./i18n.js";
import { CityMap, escapeHtml } from "./map.js";
import { EntityPanel } from "./panel.js";

const $ = (id) => document.getElementById(id);
const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

const state = {
  config: null, session: null, me: null, map: null, feed: null, panel: null,
  stream: null, pending: [], flushScheduled: false, lastUpdate: null, applied: 0,
};
window.cityos = state;  // for the browser tests and the benchmark

async function boot() {
  const config = await (await fetch("/web/api/config")).json();
  state.config = config;
  const select = $("language");
  select.innerHTML = config.languages
    .map((l) => `<option value="${l.code}">${escapeHtml(l.name)}</option>`).join("");
  const lang = preferredLanguage(config.languages);
  select.value = lang;
  select.addEventListener("change", () => setLanguage(select.value));
  await setLanguage(lang);
  onLanguageChange(relocalise);

  state.map = new CityMap($("map"), {
    onSelect: (id) => state.panel && state.panel.open(id),
    onLayersChanged: renderLayers,
  });
  state.map.setSpecs(config.layers);
  if (config.tile_url) state.map.addTiles(config.tile_url);
  const basemap = fetch(config.basemap_url).then((r) => r.json())
    .then((collection) => state.map.addVectorBasemap(collection));
  $("basemap-toggle").addEventListener("change", (e) => state.map.setBasemapVisible(e.target.checked));
  setInterval(tick, 1000);
  tick();

  const session = loadSession();
  if (session) {
    try {
      await start(session, basemap);
      return;
    } catch (error) {
      clearSession();
      showSignIn(error.message);
      return;
    }
  }
  showSignIn();
}

// --------------------------------------------------------------------- sign-in
function showSignIn(message = "") {
  const dialog = $("signin");
  const error = $("signin-error");
  error.hidden = !message;
  error.textContent = message;
  if (!dialog.open) dialog.showModal();
  $("signin-key").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const session = {
    key: $("signin-key").value.trim(),
    name: $("signin-name").value.trim(),
    tenant: $("signin-tenant").value.trim() || null,
  };
  try {
    await start(session);
    saveSession(session);
    $("signin").close();
    $("signin-key").value = "";
  } catch (error) {
    showSignIn(error.status === 401 ? t("signin.badKey") : error.message);
  }
});
$("signin").addEventListener("cancel", (event) => event.preventDefault());

$("signout").addEventListener("click", () => {
  clearSession();
  if (state.stream) state.stream.abort();
  window.location.reload();
});

// ----------------------------------------------------------------------- start
async function start(session, basemapLoaded = Promise.resolve()) {
  const me = await api(session, "/web/api/me");
  state.session = session;
  state.me = me;
  renderWho();
  $("signout").hidden = false;
  $("keys-button").hidden = !me.canManageKeys;
  renderViews();
  state.panel = new EntityPanel({ session, cityMap: state.map });
  state.feed = new AlertFeed({ session, me, cityMap: state.map });
  const features = await api(session, "/web/api/features");
  await state.map.loadFeatures(features);
  await Promise.all([state.feed.load(), basemapLoaded]);
  renderSummary();
  await nextFrame();
  await nextFrame();
  performance.mark("cityos:map-ready");
  document.body.dataset.mapReady = "true";
  const controller = new AbortController();
  state.stream = controller;
  streamEvents(session, { onEvent, onState: renderLiveState, signal: controller.signal });
}

// -------------------------------------------------------------------- app views
const ROLE_RANK = { viewer: 0, operator: 1, admin: 2 };

/** The apps' pages (analytics, service alerts...) as buttons in the top bar. */
function renderViews() {
  const nav = $("views");
  const rank = ROLE_RANK[state.me.role] ?? 0;
  const views = (state.config.views || []).filter((v) => (ROLE_RANK[v.role] ?? 0) <= rank);
  nav.innerHTML = views.map((v) => `<button type="button" class="btn ghost small" ` +
    `data-view="${escapeHtml(v.view_id)}">${escapeHtml(pick(v.title))}</button>`).join("");
  nav.hidden = views.length === 0;
}

function viewUrl(view) {
  const url = new URL(view.url, location.origin);
  url.searchParams.set("lang", currentLanguage());
  return url.pathname + url.search;
}

$("views").addEventListener("click", (event) => {
  const button = event.target.closest("[data-view]");
  if (!button) return;
  const view = state.config.views.find((v) => v.view_id === button.dataset.view);
  if (!view) return;
  // same origin: the page reads the signed-in session from sessionStorage
  const url = viewUrl(view);
  $("view-title").textContent = pick(view.title);
  $("view-open").href = url;
  $("view-frame").src = url;
  $("view-dialog").dataset.view = view.view_id;
  $("view-dialog").showModal();
});
$("view-close").addEventListener("click", () => $("view-dialog").close());
$("view-dialog").addEventListener("close", () => { $("view-frame").src = "about:blank"; });

function renderWho() {
  const me = state.me;
  const who = $("who");
  const name = state.session.name || me.name || me.keyId || "";
  who.innerHTML = `<strong>${escapeHtml(name)}</strong> · ${escapeHtml(me.tenant)}` +
    `<span class="role-badge">${escapeHtml(t(`role.${me.role}`))}</span>`;
  who.hidden = false;
}

// ------------------------------------------------------------------ live events
function onEvent(event, data) {
  if (event === "entity") {
    state.pending.push(data);
    if (!state.flushScheduled) {
      state.flushScheduled = true;
      requestAnimationFrame(flush);
    }
  } else if (event === "resync" || event === "reconnected") {
    resync();
  } else if (event === "denied") {
    clearSession();
    showSignIn(t("signin.expired"));
  }
}

async function flush() {
  state.flushScheduled = false;
  const messages = state.pending;
  state.pending = [];
  const ids = state.map.applyMessages(messages);
  for (const message of messages) {
    if (message.type === "Alert") state.feed.apply(message);
    state.panel.entityChanged(message.id);
  }
  state.lastUpdate = new Date();
  state.applied += messages.length;
  renderSummary();
  await nextFrame();
  document.dispatchEvent(new CustomEvent("cityos:applied", { detail: { ids } }));
}

async function resync() {
  const features = await api(state.session, "/web/api/features");
  await state.map.loadFeatures(features);
  await state.feed.load();
  renderSummary();
}

function renderLiveState(liveState) {
  $("live-status").dataset.state = liveState;
  $("live-text").textContent = t(`live.${liveState}`);
}

// -------------------------------------------------------------- layers, summary
function legendHtml(spec) {
  const rule = spec.color_by;
  if (!rule) return "";
  const unit = rule.unit ? ` ${escapeHtml(rule.unit)}` : "";
  const rows = [];
  if (rule.kind === "steps") {
    const n = rule.thresholds;
    rule.colors.forEach((color, i) => {
      const text = i === 0 ? `< ${formatNumber(n[0])}`
        : i === n.length ? `≥ ${formatNumber(n[n.length - 1])}`
          : `${formatNumber(n[i - 1])} – ${formatNumber(n[i])}`;
      rows.push(`<li><span class="layer-swatch" data-color="${escapeHtml(color)}"></span>${text}${unit}</li>`);
    });
  } else {
    for (const [value, color] of Object.entries(rule.colors)) {
      const label = rule.labels && rule.labels[value] ? pick(rule.labels[value])
        : (t(`severity.${value}`) !== `severity.${value}` ? t(`severity.${value}`) : value);
      rows.push(`<li><span class="layer-swatch" data-color="${escapeHtml(color)}"></span>${escapeHtml(label)}</li>`);
    }
  }
  return `<p class="visually-hidden">${escapeHtml(t("layers.legend"))}: ${escapeHtml(rule.attribute)}</p>` +
    `<ul class="legend" aria-label="${escapeHtml(rule.attribute)}">${rows.join("")}</ul>`;
}

function renderLayers() {
  const list = $("layer-list");
  list.innerHTML = state.map.layerSummary().map(({ type, spec, count, visible }) => `
    <li class="layer-item" data-layer="${escapeHtml(type)}">
      <label class="toggle">
        <input type="checkbox" ${visible ? "checked" : ""} data-type="${escapeHtml(type)}">
        <span class="layer-swatch" data-color="${escapeHtml(spec.color)}"></span>
        <span class="layer-title">${escapeHtml(pick(spec.title))}</span>
        <span class="layer-count">${formatNumber(count)}</span>
      </label>
      ${legendHtml(spec)}
    </li>`).join("");
  // colours through the CSSOM: the Content-Security-Policy refuses style attributes
  for (const swatch of list.querySelectorAll("[data-color]")) swatch.style.background = swatch.dataset.color;
  for (const box of list.querySelectorAll("input[data-type]")) {
    box.addEventListener("change", () => state.map.setVisible(box.dataset.type, box.checked));
  }
}

function renderSummary() {
  if (!state.map) return;
  const rows = [
    [t("summary.entities"), formatNumber(state.map.items.size)],
    [t("summary.layers"), formatNumber(state.map.groups.size)],
    [t("summary.openAlerts"), formatNumber(state.feed ? [...state.feed.alerts.values()]
      .filter((a) => a.props.status !== "resolved").length : 0)],
    [t("summary.lastUpdate"), state.lastUpdate ? formatTime(state.lastUpdate) : "—"],
  ];
  $("summary").innerHTML = rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join("");
}

function tick() {
  $("clock").textContent = formatTime(new Date());
}

function relocalise() {
  $("language").value = currentLanguage();
  renderLayers();
  renderSummary();
  tick();
  if (state.me) { renderWho(); renderViews(); }
  renderLiveState($("live-status").dataset.state);
  if (state.feed) state.feed.relocalise();
  if (state.panel) state.panel.relocalise();
}

// --------------------------------------------------------------------- search
$("search").addEventListener("input", () => {
  const found = state.map ? state.map.search($("search").value) : [];
  $("search-results").innerHTML = found.map((f) => `<li><button type="button" data-id="${escapeHtml(f.id)}">` +
    `${escapeHtml(f.label)}<small>${escapeHtml(state.map.layerTitle(f.type))}</small></button></li>`).join("");
  for (const button of $("search-results").querySelectorAll("button")) {
    button.addEventListener("click", () => {
      state.map.focus(button.dataset.id);
      state.panel.open(button.dataset.id);
    });
  }
});

// ------------------------------------------------------------------- API keys
async function renderKeys() {
  const rows = await api(state.session, "/web/api/keys");
  $("keys-rows").innerHTML = rows.map((k) => `<tr>
    <td><code>${escapeHtml(k.key_id)}</code></td><td>${escapeHtml(t(`role.${k.role}`))}</td>
    <td>${escapeHtml(k.name)}</td><td>${escapeHtml(t(k.revoked ? "keys.revoked" : "keys.active"))}</td>
    <td>${k.revoked || k.key_id === state.me.keyId ? "" : `<button class="btn small danger" type="button" data-revoke="${escapeHtml(k.key_id)}">${escapeHtml(t("keys.revoke"))}</button>`}</td>
  </tr>`).join("");
  for (const button of $("keys-rows").querySelectorAll("[data-revoke]")) {
    button.addEventListener("click", async () => {
      await api(state.session, `/web/api/keys/${button.dataset.revoke}/revoke`, { method: "POST" });
      renderKeys();
    });
  }
}

$("keys-button").addEventListener("click", async () => {
  $("key-token").hidden = true;
  $("keys-error").hidden = true;
  $("keys-dialog").showModal();
  await renderKeys();
});
$("keys-close").addEventListener("click", () => $("keys-dialog").close());
$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const created = await api(state.session, "/web/api/keys", {
      method: "POST", body: { role: $("key-role").value, name: $("key-name").value },
    });
    $("key-token").textContent = `${t("keys.shownOnce")} ${created.token}`;
    $("key-token").hidden = false;
    $("key-name").value = "";
    await renderKeys();
  } catch (error) {
    $("keys-error").textContent = error.message;
    $("keys-error").hidden = false;
  }
});

boot().catch((error) => {
  console.error("dashboard start-up failed", error);
});
