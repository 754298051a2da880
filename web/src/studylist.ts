// What the study list says about a study and its series (pure text, tested without a browser).
import type { Series, Study } from "./api";

/** One line per image series: modality, description, size; a blank description is named so. */
export function seriesLine(series: Series, kind: Study["kind"]): string {
  const description = series.description.trim() || "(no description)";
  const count = kind === "nifti" ? "NIfTI volume" : `${series.instances} ${series.instances === 1 ? "image" : "images"}`;
  const matrix = series.rows && series.columns ? ` · ${series.columns}×${series.rows}` : "";
  return `${series.modality || "?"} · ${description} · ${count}${matrix}`;
}

/** Date and time in ISO 8601 order, UTC (no MM/DD ambiguity between sites). */
export function isoMinute(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** The image series of a study, the ones the viewer can open. */
export function imageSeries(study: Study): Series[] {
  return study.series.filter((s) => s.is_image);
}

/** Modalities of a study's image series, each once with its series count: "CT", "MR ×4". */
export function modalities(study: Study): string {
  const counts = new Map<string, number>();
  for (const s of imageSeries(study)) counts.set(s.modality || "?", (counts.get(s.modality || "?") ?? 0) + 1);
  return [...counts].map(([modality, n]) => (n > 1 ? `${modality} ×${n}` : modality)).join(", ");
}

/** The patient, "Doe, Jane · ID MRN-0042"; null when the server sends none (de-identified
 * studies, and researchers, never get one). */
export function patientLine(study: Study): string | null {
  if (!study.patient_name && !study.patient_id) return null;
  const id = study.patient_id ? `ID ${study.patient_id}` : "no patient ID";
  return `${study.patient_name || "(no name)"} · ${id}`;
}

/** The study's own date (DICOM StudyDate, ISO 8601) and description; missing ones named. */
export function studyLine(study: Study): string {
  const description = (study.description ?? "").trim() || "(no study description)";
  return `${study.study_date ?? "no study date"} · ${description}`;
}
