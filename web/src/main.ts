// Entry point: sign in with a token, list studies, open a study's shared room.
import "./style.css";
import { Api, type Job, type Study } from "./api";
import { showStudies } from "./studies";
import { StudyView } from "./studyview";
import { showWard } from "./ward";

const TOKEN_KEY = "medverse.token";
const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

declare global {
  interface Window {
    medverse: { view: StudyView | null; api: Api | null; ready: boolean };
  }
}
window.medverse = { view: null, api: null, ready: false };

async function open(study: Study, jobs: Job[]): Promise<void> {
  const view = window.medverse.view!;
  show("viewer");
  if (!window.medverse.ready) {
    await view.attach();
    window.medverse.ready = true;
  }
  await view.open(study, jobs);
}

function show(section: "signin" | "studies" | "viewer"): void {
  for (const id of ["signin", "studies", "viewer"]) $(`#${id}`).hidden = id !== section;
}

async function signIn(token: string): Promise<void> {
  const api = new Api(token);
  const me = await api.whoami();
  sessionStorage.setItem(TOKEN_KEY, token);
  window.medverse.api = api;
  $("#whoami").textContent = `${me.name} (${me.role})`;
  $("#sign-out").hidden = false;
  const view = new StudyView(api);
  window.medverse.view = view;
  const ward = new URLSearchParams(location.hash.slice(1)).get("ward");
  if (ward) return void (await showWard(api, ward));
  await showStudies(api, open);
  const wanted = new URLSearchParams(location.hash.slice(1)).get("study");
  if (wanted) {
    const studies = await api.studies();
    const study = studies.find((s) => s.id === wanted);
    if (study) return open(study, await api.jobs(study.id));
  }
  show("studies");
}

$("#signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $<HTMLInputElement>("#token").value.trim();
  signIn(token).catch((error: Error) => ($("#signin-error").textContent = `Sign-in failed: ${error.message}`));
});
$("#sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "";
  location.reload();
});
$("#back").addEventListener("click", () => {
  window.medverse.view?.room?.close();
  location.hash = "";
  show("studies");
  if (window.medverse.api) void showStudies(window.medverse.api, open);
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved).catch(() => show("signin"));
else show("signin");
