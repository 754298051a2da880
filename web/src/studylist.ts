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

/** Modalities of a study's image series, each once, e.g. "CT" or "MR" (not "MR MR MR"). */
export function modalities(study: Study): string {
  return [...new Set(imageSeries(study).map((s) => s.modality || "?"))].join(", ");
}
