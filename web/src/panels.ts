// Side panels: participants, annotations, structures (visibility and opacity per label).
import { dot, h } from "./dom";
import { hex, type LabelState } from "./labels";
import type { Annotation, Participant } from "./room";

export function renderParticipants(list: Participant[], me: Participant | null, presenter: string | null): void {
  const ul = document.querySelector("#participants")!;
  ul.replaceChildren(
    ...list.map((p) =>
      h("li", { data: { participant: p.name } }, dot(p.color), p.name, p.id === me?.id ? " (you)" : null, p.name === presenter ? " ★ presenting" : null),
    ),
  );
  document.querySelector("#presenter")!.textContent = presenter ? `presenter: ${presenter}` : "no presenter";
}

/** The measured value of an annotation as the list shows it (distance in mm, volume in mL). */
export function measuredValue(a: Annotation): string {
  if (a.kind === "distance") return ` ${a.value?.toFixed(1)} mm`;
  if (a.kind === "volume") return ` ${a.value?.toFixed(1)} mL`;
  return "";
}

export function renderAnnotations(list: Annotation[], onGo: (a: Annotation) => void, onDelete: (a: Annotation) => void): void {
  const ul = document.querySelector("#annotations")!;
  ul.replaceChildren(
    ...list.map((a) => {
      const where = a.points[0].map((c) => c.toFixed(1)).join(", ");
      const go = h("button", { class: "go", title: "move the crosshair here" }, "go");
      const del = h("button", { class: "del", title: "delete" }, "✕");
      go.addEventListener("click", () => onGo(a));
      del.addEventListener("click", () => onDelete(a));
      const body = [dot(a.color), h("b", {}, a.kind), measuredValue(a), " ", h("span", { class: "text" }, a.text), " "];
      return h("li", { data: { annotation: a.id, kind: a.kind } }, ...body, h("small", {}, `${a.author} @ (${where})`), " ", go, del);
    }),
  );
}

export function renderLabels(states: LabelState[], changed: () => void): void {
  const ul = document.querySelector("#labels")!;
  const allBox = h("input", { attrs: { type: "checkbox", id: "all-labels" } });
  allBox.checked = true;
  allBox.addEventListener("change", () => {
    states.forEach((s) => (s.visible = allBox.checked));
    ul.querySelectorAll<HTMLInputElement>("li[data-label] input[type=checkbox]").forEach((box) => (box.checked = allBox.checked));
    changed();
  });
  const all = h("li", {}, h("label", {}, allBox, " all structures"));
  ul.replaceChildren(...(states.length ? [all] : []), ...states.map((s) => labelRow(s, changed)));
}

function labelRow(s: LabelState, changed: () => void): HTMLLIElement {
  const box = h("input", { attrs: { type: "checkbox" } });
  box.checked = s.visible;
  const slider = h("input", { attrs: { type: "range", min: "0", max: "1", step: "0.05", "aria-label": `opacity of ${s.name}` } });
  slider.value = String(s.opacity);
  box.addEventListener("change", () => {
    s.visible = box.checked;
    changed();
  });
  slider.addEventListener("input", () => {
    s.opacity = Number(slider.value);
    changed();
  });
  return h("li", { data: { label: String(s.value) } }, h("label", {}, box, " ", dot(hex(s.color)), s.name), " ", h("small", {}, `${s.volume_ml.toFixed(1)} mL`), " ", slider);
}
