// Live ward view: one tile per bed (NEWS2 colour band, parameters, sparkline, open alerts),
// updated over the /api/icu/live socket; a bed's detail shows its trend per parameter.
import type { Api } from "./api";
import { h } from "./dom";
import type { components } from "./generated/openapi";

// REST bodies come from the served schema; the live socket's events reuse them.
type AlertState = components["schemas"]["AlertPublic"];
type BedRow = components["schemas"]["BedPublic"];

type Values = Record<string, number | null>;

interface BedState {
  bed_id: string;
  news2: number | null;
  minimum: number;
  completeness: string;
  risk: string | null;
  values: Values;
  history: { at: number; news2: number; values: Values }[];
}

interface ScoreItem {
  bed_id: string;
  observed_at: number;
  news2: number | null;
  news2_minimum: number;
  completeness: string;
  risk: string | null;
  values: Values;
}

const PARAMETERS: [string, string][] = [
  ["respiration_rate", "RR"], ["spo2", "SpO2"], ["supplemental_oxygen", "O2"],
  ["systolic_bp", "SBP"], ["pulse", "HR"], ["consciousness", "ACVPU"], ["temperature", "T"],
];
const ACVPU = ["A", "C", "V", "P", "U"];
const HISTORY = 60;
const REFRESH_MS = 5000;

function band(bed: BedState): string {
  const score = bed.news2 ?? bed.minimum;
  if (score >= 7) return "high";
  if (score >= 5) return "medium";
  return bed.risk === "low-medium" ? "low-medium" : "low";
}

function show(value: number | null | undefined, key: string): string {
  if (value === null || value === undefined) return "–";
  if (key === "consciousness") return ACVPU[Math.round(value)] ?? "?";
  if (key === "supplemental_oxygen") return value >= 0.5 ? "O2" : "air";
  return String(Math.round(value * 10) / 10);
}

const SVG = "http://www.w3.org/2000/svg";

/** A trend line as an SVG element; its only attributes are numbers computed here. */
function sparkline(points: number[], width = 120, height = 28): SVGSVGElement {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  if (points.length < 2) return svg;
  const low = Math.min(...points);
  const high = Math.max(...points, low + 1);
  const step = width / (points.length - 1);
  const xy = points.map((p, i) => `${(i * step).toFixed(1)},${(height - 2 - ((p - low) / (high - low)) * (height - 4)).toFixed(1)}`);
  const line = document.createElementNS(SVG, "polyline");
  for (const [name, value] of [["fill", "none"], ["stroke", "currentColor"], ["stroke-width", "1.5"], ["points", xy.join(" ")]]) {
    line.setAttribute(name, value);
  }
  svg.append(line);
  return svg;
}

export class WardView {
  readonly beds = new Map<string, BedState>();
  readonly alerts = new Map<number, AlertState>();
  socket: WebSocket | null = null;
  live = false;
  detail: string | null = null;

  constructor(readonly api: Api, readonly ward: string, readonly root: HTMLElement) {}

  private async get<T>(path: string): Promise<T> {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${this.api.token}` } });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return (await response.json()) as T;
  }

  async start(): Promise<void> {
    await this.refresh();
    this.connect();
    this.render();
    // Writers outside this service process (`medverse icu listen`, replay) are not on the
    // socket: read the stored state again every few seconds.
    setInterval(() => void this.refresh().then(() => this.render()), REFRESH_MS);
  }

  private async refresh(): Promise<void> {
    const ward = encodeURIComponent(this.ward);
    for (const b of await this.get<BedRow[]>(`/api/icu/wards/${ward}/beds`)) {
      const known = this.beds.get(`${b.ward}/${b.bed}`);
      if (known && known.history.length && known.history[known.history.length - 1].at >= b.observed_at) continue;
      this.score({
        bed_id: `${b.ward}/${b.bed}`, observed_at: b.observed_at, news2: b.news2_total,
        news2_minimum: b.news2_minimum, completeness: b.completeness, risk: b.risk ?? null,
        values: b.values,
      });
    }
    for (const a of await this.get<AlertState[]>("/api/icu/alerts")) this.alert(a);
  }

  private connect(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/icu/live`);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "join", token: this.api.token }));
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data));
      if (message.type === "joined") this.live = true;
      if (message.type === "alert") this.alert(message as AlertState);
      if (message.type === "scores") for (const item of message.items as ScoreItem[]) this.score(item);
      this.render();
    };
    socket.onclose = () => {
      this.live = false;
      setTimeout(() => this.connect(), 2000);
    };
  }

  private score(item: ScoreItem): void {
    if (!item.bed_id.startsWith(`${this.ward}/`)) return;
    const bed = this.beds.get(item.bed_id) ?? {
      bed_id: item.bed_id, news2: null, minimum: 0, completeness: "incomplete", risk: null,
      values: {}, history: [],
    };
    bed.values = { ...bed.values, ...item.values };
    bed.news2 = item.news2;
    bed.minimum = item.news2_minimum;
    bed.completeness = item.completeness;
    bed.risk = item.risk;
    bed.history.push({ at: item.observed_at, news2: item.news2 ?? item.news2_minimum, values: { ...bed.values } });
    if (bed.history.length > HISTORY) bed.history.shift();
    this.beds.set(item.bed_id, bed);
  }

  private alert(alert: AlertState): void {
    if (alert.ward !== this.ward) return;
    if (alert.resolved_at !== null) this.alerts.delete(alert.id);
    else this.alerts.set(alert.id, alert);
  }

  async acknowledge(id: number): Promise<void> {
    const response = await fetch(`/api/icu/alerts/${id}/acknowledge`, {
      method: "POST", headers: { Authorization: `Bearer ${this.api.token}` },
    });
    if (!response.ok) throw new Error(`acknowledge: HTTP ${response.status}`);
    this.alert((await response.json()) as AlertState);
    this.render();
  }

  render(): void {
    const tiles = [...this.beds.values()].sort((a, b) => a.bed_id.localeCompare(b.bed_id)).map((bed) => this.tile(bed));
    const title = h("h2", {}, `Ward ${this.ward} ${this.live ? "(live)" : "(connecting)"}`);
    const detail = h("div", { attrs: { id: "bed-detail" } }, ...this.detailNodes());
    this.root.replaceChildren(title, h("div", { class: "ward-grid" }, ...tiles), detail);
  }

  /** One bed's tile; every string (bed, alert reason, user) goes in as text. */
  private tile(bed: BedState): HTMLDivElement {
    const alerts = [...this.alerts.values()].filter((a) => a.bed_id === bed.bed_id);
    const score = bed.news2 !== null ? `NEWS2 ${bed.news2}` : `${bed.completeness} ≥${bed.minimum}`;
    const params = PARAMETERS.flatMap(([key, label], i) => [i ? " " : "", h("span", {}, `${label} ${show(bed.values[key], key)}`)]);
    const tile = h(
      "div",
      { class: `bed-tile band-${band(bed)}`, data: { bed: bed.bed_id } },
      h("strong", {}, bed.bed_id.split("/")[1] ?? bed.bed_id), " ", h("span", { class: "news2" }, score),
      h("div", { class: "params" }, ...params),
      sparkline(bed.history.map((point) => point.news2)),
      ...alerts.map((a) => this.alertNode(a)),
    );
    tile.onclick = () => {
      this.detail = bed.bed_id;
      this.render();
    };
    return tile;
  }

  private alertNode(alert: AlertState): HTMLDivElement {
    let action: HTMLElement;
    if (alert.acknowledged_by) {
      action = h("em", {}, `acknowledged by ${alert.acknowledged_by}`);
    } else {
      action = h("button", { class: "ack", data: { alertId: String(alert.id) } }, "Acknowledge");
      action.onclick = (event) => {
        event.stopPropagation();
        void this.acknowledge(alert.id);
      };
    }
    const data = { alertId: String(alert.id), level: alert.level };
    return h("div", { class: "ward-alert", data }, `${alert.level}: ${alert.reason} `, action);
  }

  private detailNodes(): Node[] {
    const bed = this.detail ? this.beds.get(this.detail) : undefined;
    if (!bed) return [];
    const rows = PARAMETERS.map(([key, label]) => {
      const points = bed.history.map((point) => point.values[key]).filter((v): v is number => typeof v === "number");
      return h("div", { class: "trend" }, h("span", {}, label), sparkline(points, 320, 48), h("span", {}, show(bed.values[key], key)));
    });
    return [h("h3", {}, `${bed.bed_id}: trends`), ...rows];
  }
}

const STYLE = `
#ward .ward-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 8px; }
#ward .bed-tile { border: 2px solid #888; border-left-width: 10px; padding: 6px; cursor: pointer; }
#ward .band-low { border-color: #4caf50; } #ward .band-low-medium { border-color: #ffc107; }
#ward .band-medium { border-color: #ff9800; } #ward .band-high { border-color: #f44336; }
#ward .params span { margin-right: 6px; font-size: 0.85em; }
#ward .ward-alert { background: #fdecea; margin-top: 4px; padding: 3px; font-size: 0.85em; }
#ward .trend { display: flex; gap: 8px; align-items: center; }
`;

export async function showWard(api: Api, ward: string): Promise<WardView> {
  for (const id of ["signin", "studies", "viewer"]) {
    const section = document.getElementById(id);
    if (section) section.hidden = true;
  }
  let root = document.getElementById("ward");
  if (!root) {
    root = document.createElement("section");
    root.id = "ward";
    document.body.appendChild(root);
    const style = document.createElement("style");
    style.textContent = STYLE;
    document.head.appendChild(style);
  }
  const view = new WardView(api, ward, root);
  (window as unknown as { medverseWard: WardView }).medverseWard = view;
  await view.start();
  return view;
}
