// The study list: each study with its patient (clinical roles), date, description, series and
// the states of its jobs.
import type { Api, Job, Study } from "./api";
import { h } from "./dom";
import { imageSeries, isoMinute, modalities, patientLine, seriesLine, studyLine } from "./studylist";

export async function showStudies(api: Api, open: (study: Study, jobs: Job[]) => void): Promise<void> {
  const rows = document.querySelector<HTMLTableSectionElement>("#study-rows")!;
  const error = document.querySelector<HTMLElement>("#studies-error")!;
  error.textContent = "";
  const [studies, jobs] = await Promise.all([api.studies(), api.jobs()]);
  rows.replaceChildren(...studies.map((study) => studyRow(study, jobs.filter((j) => j.study_id === study.id), open)));
  if (!studies.length) error.textContent = "No studies you may see yet: upload one with POST /api/studies.";
}

function studyRow(study: Study, jobs: Job[], open: (study: Study, jobs: Job[]) => void): HTMLTableRowElement {
  const button = h("button", { class: "open" }, "Open room");
  button.addEventListener("click", () => open(study, jobs));
  const privacy = study.identified ? h("small", { class: "identified" }, "identified") : h("small", { class: "deid" }, "de-identified");
  const patient = patientLine(study);
  const what = h(
    "td", { class: "what" },
    h("b", {}, modalities(study)), " ", privacy,
    patient ? h("div", { class: "patient" }, patient) : null,
    h("div", { class: "study-line" }, studyLine(study)),
    h("code", { title: study.id }, study.id.slice(0, 8)),
  );
  const when = h("td", { class: "when" }, isoMinute(study.created_at), h("br"), h("small", {}, `uploaded by ${study.created_by}`));
  const series = h("td", { class: "series" }, ...imageSeries(study).map((s) => h("div", { class: "series-line" }, seriesLine(s, study.kind))));
  const jobCell = h("td", { class: "jobs" }, ...(jobs.length ? jobs.flatMap((j) => [jobBadge(j), " "]) : [h("em", {}, "no jobs")]));
  return h("tr", { data: { study: study.id } }, what, when, series, jobCell, h("td", {}, button));
}

function jobBadge(job: Job): HTMLSpanElement {
  const progress = job.state === "running" ? ` ${Math.round(job.progress * 100)}%` : "";
  return h("span", { class: `job ${job.state}`, title: job.model }, `${job.model}: ${job.state}${progress}`);
}
