// The entity panel: current attributes (with units) from the NGSI-LD API and the
// recent history of one numeric attribute as a uPlot chart from the temporal API.

import { api } from "./api.js";
import { formatDateTime, formatNumber, t } from "./i18n.js";
import { escapeHtml } from "./map.js";

/** UN/CEFACT common codes (NGSI-LD unitCode) the city's sensors use, as symbols. */
const UNITS = {
  CMT: "cm", MMT: "mm", MTR: "m", KMT: "km", KMH: "km/h", MTS: "m/s", CEL: "°C",
  FAH: "°F", DD: "°", P1: "%", SEC: "s", MIN: "min", HUR: "h", KGM: "kg", TNE: "t",
  LTR: "L", MQH: "m³/h", MQS: "m³/s", A97: "hPa", PAL: "Pa", KWT: "kW", WTT: "W",
  KWH: "kWh", VLT: "V", AMP: "A", "2N": "dB", GQ: "µg/m³", "4N": "mm/h", H67: "mm/h",
  C62: "", E50: "", MMQ: "mm³",
};
const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

export function unitSymbol(code) {
  if (!code) return "";
  return UNITS[code] ?? code;
}

function instancesOf(attr) {
  return Array.isArray(attr) ? attr : [attr];
}

function formatValue(instance) {
  if (instance.type === "Relationship") return null;
  if (instance.type === "GeoProperty") {
    const g = instance.value;
    if (g && g.type === "Point") {
      return `${formatNumber(g.coordinates[1], { maximumFractionDigits: 5 })}, ${formatNumber(g.coordinates[0], { maximumFractionDigits: 5 })}`;
    }
    return g ? g.type : "";
  }
  const value = instance.type === "LanguageProperty" ? instance.languageMap : instance.value;
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "boolean") return t(value ? "value.yes" : "value.no");
  if (typeof value === "string" && ISO_DATE.test(value)) return formatDateTime(value);
  if (typeof value === "string") return t(`value.${value}`) === `value.${value}` ? value : t(`value.${value}`);
  const text = JSON.stringify(value);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

export class EntityPanel {
  constructor({ session, cityMap }) {
    this.session = session;
    this.cityMap = cityMap;
    this.el = document.getElementById("panel");
    this.range = "24h";
    this.custom = null;
    this.entity = null;
    this.plot = null;
    this.refreshTimer = null;
    document.getElementById("panel-close").addEventListener("click", () => this.close());
    this.el.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(); });
    document.getElementById("history-attr").addEventListener("change", () => this.drawHistory());
    for (const button of this.el.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => this.pickRange(button.dataset.range));
    }
    document.getElementById("custom-range").addEventListener("submit", (event) => {
      event.preventDefault();
      const from = new Date(document.getElementById("range-from").value);
      const to = new Date(document.getElementById("range-to").value);
      if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || to <= from) {
        this.note(t("range.invalid"));
        return;
      }
      this.custom = { from, to };
      this.drawHistory();
    });
    new ResizeObserver(() => this.resizeChart()).observe(this.el);
  }

  get openId() {
    return this.el.hidden ? null : this.entity && this.entity.id;
  }

  async open(id) {
    this.el.hidden = false;
    this.el.dataset.entityId = id;
    this.entity = null;
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    document.getElementById("chart").dataset.points = "0";
    document.getElementById("panel-title").textContent = t("panel.loading");
    await this.load(id);
    document.getElementById("panel-close").focus({ preventScroll: true });
  }

  close() {
    this.el.hidden = true;
    this.entity = null;
    delete this.el.dataset.entityId;
    if (this.plot) { this.plot.destroy(); this.plot = null; }
  }

  /** Reload the entity (and its chart) when a live update touches it; at most every 2 s. */
  entityChanged(id) {
    if (this.openId !== id || this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      if (this.openId === id) this.load(id, { keepAttribute: true });
    }, 2000);
  }

  async load(id, { keepAttribute = false } = {}) {
    let entity;
    try {
      entity = await api(this.session, `/ngsi-ld/v1/entities/${encodeURIComponent(id)}`);
    } catch (error) {
      document.getElementById("panel-title").textContent = t("panel.gone");
      document.getElementById("panel-attrs").innerHTML = `<tr><td>${escapeHtml(error.message)}</td></tr>`;
      return;
    }
    if (this.el.dataset.entityId !== id) return;
    this.entity = entity;
    this.render(keepAttribute);
    await this.drawHistory();
  }

  render(keepAttribute = false) {
    const entity = this.entity;
    if (!entity) return;
    const type = Array.isArray(entity.type) ? entity.type[0] : entity.type;
    const spec = this.cityMap.spec(type);
    const label = entity[spec.label_attribute] || entity.name;
    document.getElementById("panel-type").textContent = this.cityMap.layerTitle(type);
    document.getElementById("panel-title").textContent =
      label ? String(instancesOf(label)[0].value ?? entity.id) : entity.id;
    document.getElementById("panel-id").textContent = entity.id;
    const link = document.getElementById("panel-app-link");
    link.hidden = !spec.app_url;
    if (spec.app_url) link.href = spec.app_url.replace("{id}", encodeURIComponent(entity.id));

    const rows = [];
    const numeric = [];
    for (const [name, attr] of Object.entries(entity)) {
      if (["id", "type", "@context", "scope"].includes(name)) continue;
      for (const instance of instancesOf(attr)) {
        const when = instance.observedAt
          ? `<span class="when">${escapeHtml(formatDateTime(instance.observedAt))}</span>` : "";
        const dataset = instance.datasetId ? ` <small>(${escapeHtml(instance.datasetId)})</small>` : "";
        let cell;
        if (instance.type === "Relationship") {
          const objects = Array.isArray(instance.object) ? instance.object : [instance.object];
          cell = objects.map((o) => `<button type="button" class="link" data-open="${escapeHtml(o)}">${escapeHtml(o)}</button>`).join(", ");
        } else {
          cell = escapeHtml(formatValue(instance));
          const unit = unitSymbol(instance.unitCode);
          if (unit) cell += `<span class="unit">${escapeHtml(unit)}</span>`;
        }
        rows.push(`<tr><th scope="row">${escapeHtml(name)}${dataset}</th><td>${cell}${when}</td></tr>`);
        if (instance.type === "Property" && typeof instance.value === "number" && !instance.datasetId) {
          numeric.push(name);
        }
      }
    }
    const tbody = document.getElementById("panel-attrs");
    tbody.innerHTML = rows.join("");
    for (const button of tbody.querySelectorAll("[data-open]")) {
      button.addEventListener("click", () => {
        const target = button.dataset.open;
        this.cityMap.focus(target);
        this.open(target);
      });
    }
    const select = document.getElementById("history-attr");
    const previous = select.value;
    const preferred = spec.color_by && numeric.includes(spec.color_by.attribute)
      ? spec.color_by.attribute : numeric[0];
    select.innerHTML = numeric.map((n) => `<option value="${escapeHtml(n)}">${escapeHtml(n)}</option>`).join("");
    select.value = keepAttribute && numeric.includes(previous) ? previous : (preferred || "");
    document.getElementById("history").hidden = numeric.length === 0;
    this.markRange();
  }

  pickRange(range) {
    this.range = range;
    const form = document.getElementById("custom-range");
    form.hidden = range !== "custom";
    if (range === "custom") {
      const to = new Date();
      const from = new Date(to.getTime() - RANGES["24h"]);
      const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
      document.getElementById("range-from").value = local(this.custom ? this.custom.from : from);
      document.getElementById("range-to").value = local(this.custom ? this.custom.to : to);
      this.markRange();
      document.getElementById("range-from").focus();
      return;
    }
    this.markRange();
    this.drawHistory();
  }

  markRange() {
    for (const button of this.el.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === this.range));
    }
  }

  window() {
    if (this.range === "custom" && this.custom) return this.custom;
    const to = new Date(Date.now() + 60e3);  // a reading stamped just now is in range
    return { from: new Date(to.getTime() - (RANGES[this.range] || RANGES["24h"]) - 60e3), to };
  }

  note(text) {
    document.getElementById("chart-note").textContent = text || "";
  }

  async drawHistory() {
    const entity = this.entity;
    const attr = document.getElementById("history-attr").value;
    const chart = document.getElementById("chart");
    if (!entity || !attr) return;
    const { from, to } = this.window();
    const query = new URLSearchParams({
      attrs: attr, options: "temporalValues", timerel: "between",
      timeAt: from.toISOString(), endTimeAt: to.toISOString(),
    });
    let temporal;
    try {
      temporal = await api(this.session, `/ngsi-ld/v1/temporal/entities/${encodeURIComponent(entity.id)}?${query}`);
    } catch (error) {
      this.note(error.message);
      return;
    }
    if (this.entity !== entity) return;
    let series = temporal[attr];
    if (Array.isArray(series)) series = series.find((s) => !s.datasetId) || series[0];
    const values = ((series && series.values) || [])
      .filter(([v]) => typeof v === "number")
      .map(([v, at]) => [new Date(at).getTime() / 1000, v])
      .sort((a, b) => a[0] - b[0]);
    const unitCode = instancesOf(entity[attr])[0].unitCode;
    this.plotSeries(attr, unitSymbol(unitCode), values, from, to);
    chart.dataset.points = String(values.length);
    chart.dataset.attribute = attr;
    this.note(values.length ? t("panel.readings", { count: formatNumber(values.length) }) : t("panel.noHistory"));
  }

  plotSeries(attr, unit, values, from, to) {
    const chart = document.getElementById("chart");
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    if (!values.length) return;
    const spanDays = (to - from) / 86400e3;
    const tick = spanDays > 2 ? { month: "short", day: "numeric" } : { hour: "2-digit", minute: "2-digit" };
    const axis = { stroke: "#93a4b8", grid: { stroke: "rgba(147,164,184,.12)" }, ticks: { stroke: "rgba(147,164,184,.25)" } };
    const opts = {
      width: Math.max(240, chart.clientWidth || 380),
      height: 200,
      scales: { x: { time: true, range: [from.getTime() / 1000, to.getTime() / 1000] } },
      series: [
        { value: (u, v) => (v == null ? "—" : formatDateTime(v * 1000)) },
        { label: unit ? `${attr} (${unit})` : attr, stroke: "#4cc9f0", width: 2,
          fill: "rgba(76,201,240,.12)", points: { show: values.length < 80, size: 5 },
          value: (u, v) => (v == null ? "—" : formatNumber(v)) },
      ],
      axes: [
        { ...axis, space: 70, values: (u, splits) => splits.map((s) => formatDateTime(s * 1000, tick)) },
        { ...axis, size: 56, values: (u, splits) => splits.map((s) => formatNumber(s)) },
      ],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    const data = [values.map((p) => p[0]), values.map((p) => p[1])];
    this.plot = new uPlot(opts, data, chart);
  }

  resizeChart() {
    if (!this.plot) return;
    const chart = document.getElementById("chart");
    this.plot.setSize({ width: Math.max(240, chart.clientWidth), height: 200 });
  }

  /** Re-render with the current language (labels, dates, numbers). */
  relocalise() {
    if (this.entity) {
      this.render(true);
      this.drawHistory();
    }
  }
}
