// The study list: each study with its series and the states of its jobs.
import type { Api, Job, Study } from "./api";

export async function showStudies(api: Api, open: (study: Study, jobs: Job[]) => void): Promise<void> {
  const rows = document.querySelector<HTMLTableSectionElement>("#study-rows")!;
  const error = document.querySelector<HTMLElement>("#studies-error")!;
  error.textContent = "";
  const [studies, jobs] = await Promise.all([api.studies(), api.jobs()]);
  rows.replaceChildren();
  for (const study of studies) {
    const mine = jobs.filter((j) => j.study_id === study.id);
    const row = document.createElement("tr");
    row.dataset.study = study.id;
    const series = study.series.filter((s) => s.is_image);
    const jobCell = mine.length
      ? mine.map((j) => `<span class="job ${j.state}" title="${j.model}">${j.model}: ${j.state}${j.state === "running" ? ` ${Math.round(j.progress * 100)}%` : ""}</span>`).join(" ")
      : "<em>no jobs</em>";
    row.innerHTML = `<td><code>${study.id.slice(0, 8)}</code> ${study.identified ? "" : "<small>de-identified</small>"}</td>
      <td>${series.map((s) => `${s.modality} ${escapeHtml(s.description)}`).join("<br>")}</td>
      <td>${jobCell}</td><td><button class="open">Open room</button></td>`;
    row.querySelector("button")!.addEventListener("click", () => open(study, mine));
    rows.append(row);
  }
  if (!studies.length) error.textContent = "No studies you may see yet: upload one with POST /api/studies.";
}

export function escapeHtml(text: string): string {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}
