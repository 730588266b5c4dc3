// The alerts feed: NGSI-LD Alert entities, live; acknowledge / resolve with a comment;
// the audit trail; a sound-free flash for a new critical alert.

import { api } from "./api.js";
import { formatDateTime, formatNumber, formatRelative, t } from "./i18n.js";
import { escapeHtml } from "./map.js";

const SEVERITY_RANK = { critical: 4, high: 3, medium: 2, low: 1, informational: 0 };
const SEVERITY_COLOR = { critical: "#ff3b30", high: "#f39c12", medium: "#f4d03f", low: "#58d68d", informational: "#5dade2" };
const FLASH_MS = 10000;

function alertTime(alert) {
  return alert.props.dateIssued || alert.props.validFrom || "";
}

export class AlertFeed {
  constructor({ session, me, cityMap }) {
    this.session = session;
    this.me = me;
    this.cityMap = cityMap;
    this.alerts = new Map();
    this.list = document.getElementById("alert-feed");
    this.showResolved = document.getElementById("show-resolved");
    this.showResolved.addEventListener("change", () => this.render());
    this.flashTimer = null;
    this.flashId = null;
    document.getElementById("critical-show").addEventListener("click", () => {
      if (this.flashId) this.locate(this.flashId);
      this.stopFlash();
    });
    this.clock = setInterval(() => this.refreshTimes(), 30000);
  }

  /** Load every Alert of the tenant through the NGSI-LD API. */
  async load() {
    const found = await api(this.session, "/ngsi-ld/v1/entities?type=Alert&options=keyValues&limit=1000");
    this.alerts.clear();
    for (const entity of found) {
      const { id, type, location, ...props } = entity;
      this.alerts.set(id, { id, props, geometry: location || null });
    }
    this.render();
  }

  /** A live message of an Alert entity (from the event stream). */
  apply(message, { live = true } = {}) {
    if (message.kind === "deleted") {
      this.alerts.delete(message.id);
      this.render();
      return;
    }
    const feature = message.feature;
    const known = this.alerts.has(message.id);
    this.alerts.set(message.id, { id: message.id, props: feature.properties, geometry: feature.geometry });
    this.render(known ? null : message.id);
    if (live && !known && feature.properties.severity === "critical") this.flash(message.id);
  }

  visibleAlerts() {
    const all = [...this.alerts.values()];
    const shown = this.showResolved.checked ? all : all.filter((a) => a.props.status !== "resolved");
    return shown.sort((a, b) => {
      const done = (a.props.status === "resolved") - (b.props.status === "resolved");
      if (done) return done;
      return alertTime(b).localeCompare(alertTime(a))
        || (SEVERITY_RANK[b.props.severity] ?? -1) - (SEVERITY_RANK[a.props.severity] ?? -1);
    });
  }

  render(freshId = null) {
    const alerts = this.visibleAlerts();
    const keep = new Set(alerts.map((a) => a.id));
    for (const li of [...this.list.children]) if (!keep.has(li.dataset.alertId)) li.remove();
    const existing = new Map([...this.list.children].map((li) => [li.dataset.alertId, li]));
    alerts.forEach((alert, index) => {
      let li = existing.get(alert.id);
      if (!li) {
        li = this.createItem(alert);
        if (alert.id === freshId) li.classList.add("fresh");
      }
      this.fillItem(li, alert);
      if (this.list.children[index] !== li) this.list.insertBefore(li, this.list.children[index] || null);
    });
    const open = [...this.alerts.values()].filter((a) => a.props.status !== "resolved").length;
    const badge = document.getElementById("alert-count");
    badge.textContent = formatNumber(open);
    badge.toggleAttribute("data-zero", open === 0);
    document.getElementById("alerts-empty").hidden = alerts.length > 0;
  }

  createItem(alert) {
    const li = document.createElement("li");
    li.className = "alert-item";
    li.dataset.alertId = alert.id;
    li.innerHTML = `
      <div class="alert-top"><span class="sev-chip"></span><span class="status-chip"></span><time class="alert-time"></time></div>
      <p class="alert-text"></p>
      <p class="alert-place"></p>
      <div class="alert-actions"></div>
      <form class="alert-form" hidden>
        <label class="visually-hidden" for="c-${escapeHtml(alert.id)}"></label>
        <textarea class="input" id="c-${escapeHtml(alert.id)}" maxlength="2000"></textarea>
        <div class="alert-actions">
          <button class="btn small primary" type="submit"></button>
          <button class="btn small" type="button" data-cancel></button>
        </div>
        <p class="error" role="alert" hidden></p>
      </form>
      <ol class="audit" hidden></ol>`;
    li.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(li, alert.id);
    });
    li.querySelector("[data-cancel]").addEventListener("click", () => {
      li.querySelector("form").hidden = true;
    });
    return li;
  }

  fillItem(li, alert) {
    const p = alert.props;
    const status = p.status || "open";
    li.dataset.status = status;
    li.dataset.severity = p.severity || "";
    li.style.setProperty("--sev", SEVERITY_COLOR[p.severity] || "#9aa5b1");
    li.querySelector(".sev-chip").textContent = t(`severity.${p.severity}`) === `severity.${p.severity}`
      ? (p.severity || "?") : t(`severity.${p.severity}`);
    const chip = li.querySelector(".status-chip");
    chip.dataset.status = status;
    chip.textContent = t(`status.${status}`);
    const time = li.querySelector(".alert-time");
    const when = alertTime(alert);
    time.dateTime = when;
    time.title = when ? formatDateTime(when) : "";
    time.textContent = when ? formatRelative(when) : "";
    li.querySelector(".alert-text").textContent = p.description || p.name || alert.id;
    const kind = [p.category, p.subCategory].filter(Boolean).join(" / ");
    const place = this.placeOf(alert);
    li.querySelector(".alert-place").textContent = [kind, place].filter(Boolean).join(" · ");

    const actions = li.querySelector(".alert-actions");
    const buttons = [];
    if (alert.geometry || (p.alertSource && this.cityMap.centreOf(p.alertSource))) {
      buttons.push(`<button class="btn small" type="button" data-act="locate">${escapeHtml(t("alerts.locate"))}</button>`);
    }
    if (this.me.canAcknowledge && status === "open") {
      buttons.push(`<button class="btn small" type="button" data-act="acknowledge">${escapeHtml(t("alerts.acknowledge"))}</button>`);
    }
    if (this.me.canAcknowledge && status !== "resolved") {
      buttons.push(`<button class="btn small" type="button" data-act="resolve">${escapeHtml(t("alerts.resolve"))}</button>`);
    }
    buttons.push(`<button class="btn small ghost" type="button" data-act="audit">${escapeHtml(t("alerts.history"))}</button>`);
    const html = buttons.join("");
    if (actions.dataset.html !== html) {
      actions.innerHTML = html;
      actions.dataset.html = html;
      for (const button of actions.querySelectorAll("[data-act]")) {
        button.addEventListener("click", () => this.act(li, alert.id, button.dataset.act));
      }
    }
    const form = li.querySelector("form");
    form.querySelector("label").textContent = t("alerts.comment");
    form.querySelector("textarea").placeholder = t("alerts.commentPlaceholder");
    form.querySelector("[data-cancel]").textContent = t("alerts.cancel");
    if (form.dataset.action) {
      form.querySelector("[type=submit]").textContent = t(`alerts.confirm.${form.dataset.action}`);
    }
    if (status === "resolved") form.hidden = true;
  }

  placeOf(alert) {
    const source = alert.props.alertSource;
    if (source) {
      const feature = this.cityMap.feature(source);
      if (feature && feature.properties.name) return feature.properties.name;
    }
    if (alert.props.address) return alert.props.address;
    const g = alert.geometry;
    if (g && g.type === "Point") {
      const f = (v) => formatNumber(v, { maximumFractionDigits: 4, minimumFractionDigits: 4 });
      return `${f(g.coordinates[1])}, ${f(g.coordinates[0])}`;
    }
    return "";
  }

  act(li, id, action) {
    if (action === "locate") return this.locate(id);
    if (action === "audit") return this.showAudit(li, id);
    const form = li.querySelector("form");
    form.hidden = false;
    form.dataset.action = action;
    form.querySelector("[type=submit]").textContent = t(`alerts.confirm.${action}`);
    form.querySelector(".error").hidden = true;
    form.querySelector("textarea").focus();
    return null;
  }

  async submit(li, id) {
    const form = li.querySelector("form");
    const action = form.dataset.action;
    const error = form.querySelector(".error");
    const submit = form.querySelector("[type=submit]");
    submit.disabled = true;
    try {
      const result = await api(this.session, `/web/api/alerts/${encodeURIComponent(id)}/${action}`, {
        method: "POST", body: { comment: form.querySelector("textarea").value, actor: this.session.name || "" },
      });
      const alert = this.alerts.get(id);
      if (alert) alert.props = { ...alert.props, status: result.status };
      form.hidden = true;
      form.querySelector("textarea").value = "";
      this.render();
      if (!li.querySelector(".audit").hidden) this.showAudit(li, id, true);
    } catch (failure) {
      error.textContent = failure.status === 403 ? t("alerts.forbidden") : failure.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  }

  async showAudit(li, id, refresh = false) {
    const list = li.querySelector(".audit");
    if (!list.hidden && !refresh) {
      list.hidden = true;
      return;
    }
    const trail = await api(this.session, `/web/api/alerts/${encodeURIComponent(id)}/audit`);
    list.innerHTML = trail.map((step) => {
      const who = step.actor ? ` — ${escapeHtml(step.actor)}` : "";
      const comment = step.comment ? `: “${escapeHtml(step.comment)}”` : "";
      return `<li><strong>${escapeHtml(t(`status.${step.status}`))}</strong> ${escapeHtml(formatDateTime(step.at))}${who}${comment}</li>`;
    }).join("") || `<li>${escapeHtml(t("alerts.noHistory"))}</li>`;
    list.hidden = false;
  }

  locate(id) {
    const alert = this.alerts.get(id);
    if (!alert) return;
    if (this.cityMap.focus(id)) return;
    const source = alert.props.alertSource;
    if (source && this.cityMap.focus(source)) return;
    if (alert.geometry) {
      const bounds = L.geoJSON(alert.geometry).getBounds();
      this.cityMap.map.fitBounds(bounds, { maxZoom: 16 });
      this.cityMap.highlight(bounds.getCenter());
    }
  }

  flash(id) {
    const alert = this.alerts.get(id);
    this.flashId = id;
    document.getElementById("critical-text").textContent = alert ? (alert.props.description || id) : id;
    document.getElementById("critical-banner").hidden = false;
    document.body.classList.remove("flash-critical");
    void document.body.offsetWidth;  // restart the animation for a second alert
    document.body.classList.add("flash-critical");
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => this.stopFlash(), FLASH_MS);
    if (alert && alert.geometry) this.cityMap.highlight(L.geoJSON(alert.geometry).getBounds().getCenter());
  }

  stopFlash() {
    document.body.classList.remove("flash-critical");
    document.getElementById("critical-banner").hidden = true;
  }

  refreshTimes() {
    for (const li of this.list.children) {
      const time = li.querySelector(".alert-time");
      if (time.dateTime) time.textContent = formatRelative(time.dateTime);
    }
  }

  relocalise() {
    for (const li of this.list.children) {
      const alert = this.alerts.get(li.dataset.alertId);
      if (alert) {
        li.querySelector(".alert-actions").dataset.html = "";
        this.fillItem(li, alert);
      }
    }
  }
}
