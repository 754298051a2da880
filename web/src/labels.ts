// Label colour table for the overlay: registry colours, per-label visibility and opacity.
import type { Structure } from "./api";

export type LabelState = Structure & { visible: boolean; opacity: number };

/** NiiVue's label colormap: index I gets colour R,G,B and alpha A; 0 stays transparent. */
export type LabelColormap = {
  R: number[];
  G: number[];
  B: number[];
  A: number[];
  I: number[];
  labels: string[];
};

export function initialStates(structures: Structure[]): LabelState[] {
  return structures.map((s) => ({ ...s, visible: true, opacity: 1 }));
}

// NiiVue rounds any value above the table's minimum up to at least 2/256 of the table and
// filters the table linearly, which tints background (0) with the first label's colour. A
// transparent entry far below 0 keeps 0 in the middle of its own transparent texel.
const PAD_INDEX = -256;

export function labelColormap(states: LabelState[]): LabelColormap {
  const map: LabelColormap = { R: [0, 0], G: [0, 0], B: [0, 0], A: [0, 0], I: [PAD_INDEX, 0], labels: ["", ""] };
  for (const s of [...states].sort((a, b) => a.value - b.value)) {
    map.I.push(s.value);
    map.R.push(s.color[0]);
    map.G.push(s.color[1]);
    map.B.push(s.color[2]);
    map.A.push(s.visible ? Math.round(255 * Math.min(1, Math.max(0, s.opacity))) : 0);
    map.labels.push(s.name);
  }
  return map;
}

export function hex(color: [number, number, number]): string {
  return "#" + color.map((c) => c.toString(16).padStart(2, "0")).join("");
}

export function rgbOf(hexColor: string): [number, number, number] {
  const n = parseInt(hexColor.replace("#", ""), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
