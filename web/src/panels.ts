// Side panels: participants, annotations, structures (visibility and opacity per label).
import { escapeHtml } from "./studies";
import { hex, type LabelState } from "./labels";
import type { Annotation, Participant } from "./room";

export function renderParticipants(list: Participant[], me: Participant | null, presenter: string | null): void {
  const ul = document.querySelector("#participants")!;
  ul.replaceChildren(
    ...list.map((p) => {
      const li = document.createElement("li");
      li.dataset.participant = p.name;
      li.innerHTML = `<span class="dot" style="background:${p.color}"></span>${escapeHtml(p.name)}${p.id === me?.id ? " (you)" : ""}${p.name === presenter ? " ★ presenting" : ""}`;
      return li;
    }),
  );
  document.querySelector("#presenter")!.textContent = presenter ? `presenter: ${presenter}` : "no presenter";
}

export function renderAnnotations(list: Annotation[], onGo: (a: Annotation) => void, onDelete: (a: Annotation) => void): void {
  const ul = document.querySelector("#annotations")!;
  ul.replaceChildren(
    ...list.map((a) => {
      const li = document.createElement("li");
      li.dataset.annotation = a.id;
      li.dataset.kind = a.kind;
      const value = a.kind === "distance" ? ` ${a.value?.toFixed(1)} mm` : a.kind === "volume" ? ` ${a.value?.toFixed(1)} mL` : "";
      const where = a.points[0].map((c) => c.toFixed(1)).join(", ");
      li.innerHTML = `<span class="dot" style="background:${a.color}"></span><b>${a.kind}</b>${value} <span class="text">${escapeHtml(a.text)}</span> <small>${escapeHtml(a.author)} @ (${where})</small> <button class="go">go</button><button class="del">✕</button>`;
      li.querySelector(".go")!.addEventListener("click", () => onGo(a));
      li.querySelector(".del")!.addEventListener("click", () => onDelete(a));
      return li;
    }),
  );
}

export function renderLabels(states: LabelState[], changed: () => void): void {
  const ul = document.querySelector("#labels")!;
  const all = document.createElement("li");
  all.innerHTML = `<label><input type="checkbox" id="all-labels" checked/> all structures</label>`;
  all.querySelector("input")!.addEventListener("change", (event) => {
    const visible = (event.target as HTMLInputElement).checked;
    states.forEach((s) => (s.visible = visible));
    ul.querySelectorAll<HTMLInputElement>("li[data-label] input[type=checkbox]").forEach((box) => (box.checked = visible));
    changed();
  });
  ul.replaceChildren(
    ...(states.length ? [all] : []),
    ...states.map((s) => {
      const li = document.createElement("li");
      li.dataset.label = String(s.value);
      li.innerHTML = `<label><input type="checkbox" ${s.visible ? "checked" : ""}/> <span class="dot" style="background:${hex(s.color)}"></span>${escapeHtml(s.name)}</label> <small>${s.volume_ml.toFixed(1)} mL</small> <input type="range" min="0" max="1" step="0.05" value="${s.opacity}" aria-label="opacity of ${escapeHtml(s.name)}"/>`;
      const [box, slider] = li.querySelectorAll("input");
      box.addEventListener("change", () => {
        s.visible = box.checked;
        changed();
      });
      slider.addEventListener("input", () => {
        s.opacity = Number(slider.value);
        changed();
      });
      return li;
    }),
  );
}
