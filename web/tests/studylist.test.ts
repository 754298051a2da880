// What the study list says about a study: readable series lines, unique modalities, ISO dates.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Series, Study } from "../src/api";
import { isoMinute, modalities, patientLine, seriesLine, studyLine } from "../src/studylist";

function series(uid: string, modality: string, description: string, instances: number, rows = 256): Series {
  return { series_uid: uid, modality, description, instances, rows, columns: rows, is_image: true };
}

function study(list: Series[], kind: Study["kind"] = "dicom"): Study {
  return { id: "0123456789", study_uid: "1.2", kind, identified: false, created_at: "2026-12-03T18:04:05Z", created_by: "rita", description: "", series: list };
}

test("de-identified MR series with blank descriptions still read apart (not 'MR MR MR')", () => {
  const mr = study([series("1", "MR", "", 35), series("2", "MR", "", 176, 512), series("3", "MR", "  ", 1)]);
  const lines = mr.series.map((s) => seriesLine(s, mr.kind));
  assert.deepEqual(lines, ["MR · (no description) · 35 images · 256×256", "MR · (no description) · 176 images · 512×512", "MR · (no description) · 1 image · 256×256"]);
  assert.equal(new Set(lines).size, 3);
  assert.equal(modalities(mr), "MR ×3");
  assert.equal(modalities(study([series("1", "CT", "", 20), series("2", "SEG", "", 1)])), "CT, SEG");
});

test("a described CT series names its description; a NIfTI study says volume", () => {
  assert.equal(seriesLine(series("1", "CT", "ABDOMEN 2.0 B30f", 20, 512), "dicom"), "CT · ABDOMEN 2.0 B30f · 20 images · 512×512");
  assert.equal(seriesLine(series("1", "MR", "", 1, 0), "nifti"), "MR · (no description) · NIfTI volume");
});

test("dates are ISO 8601 in UTC; something unparseable is shown as it came", () => {
  assert.equal(isoMinute("2026-12-03T18:04:05Z"), "2026-12-03 18:04 UTC");
  assert.equal(isoMinute("2026-12-03T19:04:05+01:00"), "2026-12-03 18:04 UTC");
  assert.equal(isoMinute("not a date"), "not a date");
});

test("the patient line names the patient when the server sends one, else there is none", () => {
  const identified = { ...study([]), identified: true, patient_name: "Doe, Jane", patient_id: "MRN-0042" };
  assert.equal(patientLine(identified), "Doe, Jane · ID MRN-0042");
  assert.equal(patientLine({ ...identified, patient_id: null }), "Doe, Jane · no patient ID");
  assert.equal(patientLine({ ...study([]), patient_name: null, patient_id: null }), null);
  assert.equal(patientLine(study([])), null);
});

test("the study line gives the study's own date and description, or says they are missing", () => {
  assert.equal(studyLine({ ...study([]), study_date: "2020-01-21", description: "Brain MR" }), "2020-01-21 · Brain MR");
  assert.equal(studyLine({ ...study([]), study_date: null, description: " " }), "no study date · (no study description)");
});
