// One open study: image, overlay and meshes in the viewer, its room, tools and immersive mode.
import type { Api, Job, Study, Structure } from "./api";
import { parseGlb } from "./glb";
import { initialStates, labelColormap, rgbOf, type LabelState } from "./labels";
import { conventionCaption } from "./layout";
import { renderAnnotations, renderLabels, renderParticipants } from "./panels";
import { presetsFor, windowRange } from "./presets";
import { forceText, RehearsalState } from "./rehearsal";
import { RoomClient, type Annotation, type PointerState, type Vec3 } from "./room";
import { merge, sphere, tube, type Shape } from "./shapes";
import type { VolumeData } from "./slice";
import { Viewer } from "./viewer";
import { Immersive, xrUnavailable, type XrMode } from "./xr";

type Tool = "navigate" | "comment" | "landmark" | "distance" | "volume" | "grasp";
const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

export class StudyView {
  readonly viewer: Viewer;
  readonly xr: Immersive;
  room: RoomClient | null = null;
  labels: LabelState[] = [];
  tool: Tool = "navigate";
  loaded = false;
  readonly timings: Record<string, number> = {};
  /** Wall-clock ms (epoch) when this page's user clicked to make an annotation, by its id. */
  readonly madeAt: Record<string, number> = {};
  /** Wall-clock ms (epoch) when an annotation first showed in this page's list, by its id. */
  readonly shownAt: Record<string, number> = {};
  /** The room's surgical rehearsal as this page sees it (frames, force, who drives). */
  readonly rehearsal = new RehearsalState(
    (shape, force, state) => this.showRehearsal(shape, force, state),
    (action, position) => this.room?.sendTool(action, position),
  );
  private pending: Vec3 | null = null;
  private lastSent = 0;
  private viewTimer = 0;

  constructor(private readonly api: Api) {
    this.viewer = new Viewer($<HTMLCanvasElement>("#gl"), {
      view: () => this.viewChanged(),
      pointer: (mm) => this.pointerMoved(mm),
    }, $("#orient"));
    this.xr = new Immersive((state) => ($("#status").dataset.xr = JSON.stringify(state)));
    this.wireControls();
  }

  async attach(): Promise<void> {
    await this.viewer.attach();
    await this.checkXr();
  }

  async open(study: Study, jobs: Job[]): Promise<void> {
    this.loaded = false;
    this.room?.close();
    const job = jobs.find((j) => j.state === "succeeded" && j.results.includes("labels.nii.gz")) ?? null;
    const series = study.series.find((s) => s.series_uid === job?.series_uid) ?? study.series.find((s) => s.is_image);
    const modality = series?.modality ?? "CT";
    $("#study-title").textContent = `${modality} study ${study.id.slice(0, 8)}${job ? ` · ${job.model}` : " · no finished job"}`;
    this.status("loading image…");
    const seriesUid = study.kind === "nifti" ? null : (series?.series_uid ?? null);
    const labelsUrl = job ? this.api.resultUrl(job.id, "labels.nii.gz") : null;
    let t = performance.now();
    const structures = job ? (await this.api.labels(job.id)).structures : [];
    this.labels = initialStates(structures);
    const presets = presetsFor(modality);
    const window = presets[0].relative ? null : windowRange(presets[0], [0, 1]);
    const imageUrl = this.api.imageUrl(study.id, seriesUid);
    const colormap = this.labels.length ? labelColormap(this.labels) : null;
    await this.viewer.load({ imageUrl, labelsUrl, headers: this.api.headers, colormap, window });
    this.setPresets(modality, window === null);
    renderLabels(this.labels, () => this.viewer.setLabelColormap(labelColormap(this.labels)));
    $<HTMLSelectElement>("#rehearse-structure").replaceChildren(...structures.map((s) => new Option(s.name, s.name)));
    this.mark("image", t);
    t = performance.now();
    if (job?.results.includes("meshes.glb")) await this.loadMeshes(job, structures);
    this.mark("meshes", t);
    t = performance.now();
    this.xr.setVolume(volumeData(this.viewer), this.viewer.intensityRange());
    this.mark("xr", t);
    t = performance.now();
    await this.join(study.id);
    this.mark("room", t);
    this.loaded = true;
    this.status("");
  }

  private async loadMeshes(job: Job, structures: Structure[]): Promise<void> {
    this.status("loading organ meshes…");
    const { scene, organs } = await parseGlb(await this.api.bytes(this.api.resultUrl(job.id, "meshes.glb")));
    const colors = new Map(structures.map((s) => [s.name, s.color]));
    this.viewer.addOrgans(organs, (name) => colors.get(name) ?? [200, 200, 200]);
    this.viewer.setOrgansVisible($<HTMLInputElement>("#show-meshes").checked);
    this.xr.setOrgans(scene);
  }

  private async join(studyId: string): Promise<void> {
    const room = new RoomClient(studyId, this.api.token, {
      document: (doc) => this.showAnnotations(doc.annotations, doc.presenter),
      presence: (list) => {
        renderParticipants(list, room.me, room.doc?.presenter ?? null);
        for (const key of this.viewer.markerKeys())
          if (key.startsWith("pointer:") && !list.some((p) => `pointer:${p.id}` === key)) this.viewer.setMarker(key, null, [0, 0, 0]);
        this.updateXrMarkers();
      },
      pointer: (id, state) => this.showPointer(id, state),
      view: (view) => {
        if ($<HTMLInputElement>("#follow").checked && !room.isPresenter) this.viewer.applyView(view);
      },
      rehearsal: (message) => {
        if (message.type === "rehearsal_status") this.status(message.text);
        else this.rehearsal.handle(message, room.me?.id ?? null);
      },
      rejected: (detail) => this.status(detail),
      closed: (reason) => this.status(`room: ${reason}`),
    });
    this.room = room;
    await room.connect();
    location.hash = `study=${studyId}`;
  }

  private showAnnotations(list: Annotation[], presenter: string | null): void {
    renderAnnotations(list, (a) => this.viewer.setCrosshairMm(a.points[0]), (a) => this.room?.deleteAnnotation(a.id));
    const now = performance.timeOrigin + performance.now();
    for (const a of list) this.shownAt[a.id] ??= now;
    renderParticipants(this.room?.participants ?? [], this.room?.me ?? null, presenter);
    $("#present").textContent = this.room?.isPresenter ? "Stop presenting" : "Present";
    const byColor = new Map<string, Annotation[]>();
    for (const a of list) byColor.set(a.color, [...(byColor.get(a.color) ?? []), a]);
    for (const key of this.viewer.markerKeys()) if (key.startsWith("notes:")) this.viewer.setMarker(key, null, [0, 0, 0]);
    for (const [color, group] of byColor) {
      const shapes = group.flatMap((a) => [...a.points.map((p) => sphere(p, 3)), ...(a.points.length === 2 ? [tube(a.points[0], a.points[1], 0.8)] : [])]);
      this.viewer.setMarker(`notes:${color}`, merge(shapes), rgbOf(color));
    }
    this.viewer.setPinnedLabels(list.map((a) => ({ text: pinText(a), point: a.points[0], color: rgbOf(a.color) })));
    this.updateXrMarkers();
  }

  private showPointer(id: string, state: PointerState): void {
    const who = this.room?.participants.find((p) => p.id === id);
    if (!who || id === this.room?.me?.id) return;
    const shapes = [state.position ? sphere(state.position, 4) : null, state.crosshair ? sphere(state.crosshair, 2) : null].filter((s) => s !== null);
    this.viewer.setMarker(`pointer:${id}`, shapes.length ? merge(shapes) : null, rgbOf(who.color));
    this.updateXrMarkers();
  }

  private updateXrMarkers(): void {
    const room = this.room;
    if (!room?.doc) return;
    const pointers = [...room.pointers].filter(([id]) => id !== room.me?.id).map(([id, state]) => ({ color: room.participants.find((p) => p.id === id)?.color ?? "#ffffff", state }));
    this.xr.setMarkers(room.doc.annotations, pointers);
  }

  private showRehearsal(shape: Shape | null, force: Vec3 | null, state: RehearsalState): void {
    this.viewer.setMarker("rehearsal", shape, [236, 112, 99]);
    $("#force").textContent = force ? forceText(force) : "";
    $("#rehearse").textContent = state.running ? (state.driving ? "Stop rehearsal" : "Rehearsal running") : "Start rehearsal";
    if (!state.frames) this.status(state.running ? (state.driving ? "you drive the tool: choose Grasp, then drag on a slice" : "rehearsal running") : "");
    this.xr.setTool(state.driving ? (action, mm) => (action === "grasp" ? state.press(mm) : action === "move" ? state.drag(mm) : state.release(mm)) : null);
  }

  /** The Grasp tool: press, drag and release on a slice drive the rehearsal's tool. */
  private grasp(event: PointerEvent, phase: "press" | "drag" | "release"): void {
    if (this.tool !== "grasp" || !this.rehearsal.driving) return;
    const mm = this.viewer.pointAt(event.clientX, event.clientY);
    if (!mm) return;
    if (phase === "press") this.rehearsal.press(mm);
    else if (phase === "drag") this.rehearsal.drag(mm);
    else this.rehearsal.release(mm);
  }

  private viewChanged(): void {
    if (!this.room?.isPresenter) return;
    window.clearTimeout(this.viewTimer);
    this.viewTimer = window.setTimeout(() => this.room?.sendView(this.viewer.view()), 15);
  }

  private pointerMoved(mm: Vec3): void {
    const now = performance.now();
    if (now - this.lastSent < 50) return;
    this.lastSent = now;
    this.room?.sendPointer({ position: mm, crosshair: this.viewer.crosshairMm() });
  }

  /** A click on a slice with a tool selected: annotate at the clicked 3D point. */
  private clicked(event: MouseEvent): void {
    if (this.tool === "navigate" || this.tool === "grasp" || !this.room) return;
    const point = this.viewer.pointAt(event.clientX, event.clientY) ? this.viewer.crosshairMm() : null;
    if (!point) return;
    const note = $<HTMLInputElement>("#note");
    const clickedAt = performance.timeOrigin + event.timeStamp;
    if (this.tool === "comment") {
      if (!note.value.trim()) return this.hint("type the comment first, then click where it belongs");
      this.madeAt[this.room.addAnnotation("comment", [point], note.value.trim())] = clickedAt;
    } else if (this.tool === "landmark") {
      this.room.addAnnotation("landmark", [point], note.value.trim() || `landmark ${(this.room.doc?.annotations.length ?? 0) + 1}`);
    } else if (this.tool === "distance") {
      if (!this.pending) {
        this.pending = point;
        return this.hint("now click the second point");
      }
      this.room.addAnnotation("distance", [this.pending, point], note.value.trim());
      this.pending = null;
    } else if (this.tool === "volume") {
      this.measureVolume(point, this.viewer.labelAtCrosshair());
    }
    note.value = "";
    this.hint("");
  }

  private measureVolume(point: Vec3, value: number): void {
    const structure = this.labels.find((s) => s.value === value);
    if (!structure) return this.hint("click inside a segmented structure to measure its volume");
    this.room!.addAnnotation("volume", [point], structure.name, { value: structure.volume_ml, label: value });
  }

  private setPresets(modality: string, applyNow: boolean): void {
    const select = $<HTMLSelectElement>("#preset");
    const presets = presetsFor(modality);
    select.replaceChildren(...presets.map((p, i) => new Option(p.name, String(i))));
    const apply = () => this.viewer.setWindow(...windowRange(presets[Number(select.value)], this.viewer.intensityRange()));
    select.onchange = apply;
    if (applyNow) apply();
  }

  private wireControls(): void {
    $("#gl").addEventListener("click", (event) => this.clicked(event));
    $("#gl").addEventListener("pointerdown", (event) => this.grasp(event, "press"));
    $("#gl").addEventListener("pointermove", (event) => this.grasp(event, "drag"));
    $("#gl").addEventListener("pointerup", (event) => this.grasp(event, "release"));
    $("#rehearse").addEventListener("click", () => {
      const structure = $<HTMLSelectElement>("#rehearse-structure").value;
      this.room?.sendRehearsal(this.rehearsal.running ? "stop" : "start", structure);
    });
    $<HTMLSelectElement>("#layout").addEventListener("change", (event) => this.viewer.setLayout((event.target as HTMLSelectElement).value));
    $<HTMLSelectElement>("#convention").addEventListener("change", (event) => this.setConvention((event.target as HTMLSelectElement).value === "radiological"));
    this.setConvention(true);
    $<HTMLInputElement>("#show-meshes").addEventListener("change", (event) => this.viewer.setOrgansVisible((event.target as HTMLInputElement).checked));
    $("#present").addEventListener("click", () => this.room?.setPresenting(!this.room.isPresenter));
    $<HTMLInputElement>("#follow").addEventListener("change", (event) => {
      const view = this.room?.lastView;
      if ((event.target as HTMLInputElement).checked && view) this.viewer.applyView(view);
    });
    for (const button of document.querySelectorAll<HTMLButtonElement>("#tools button")) {
      button.addEventListener("click", () => {
        this.tool = button.dataset.tool as Tool;
        this.pending = null;
        document.querySelectorAll("#tools button").forEach((b) => b.classList.toggle("active", b === button));
        this.hint(this.tool === "navigate" ? "" : "click a point on a slice");
      });
    }
    $<HTMLInputElement>("#xr-slice").addEventListener("input", (event) => this.xr.setSliceFraction(Number((event.target as HTMLInputElement).value)));
  }

  /** Radiological (default) or neurological display, stated on screen. */
  setConvention(radiological: boolean): void {
    this.viewer.setRadiological(radiological);
    $<HTMLSelectElement>("#convention").value = radiological ? "radiological" : "neurological";
    $("#convention-caption").textContent = conventionCaption(radiological);
  }

  private async checkXr(): Promise<void> {
    for (const [id, mode] of [["#enter-vr", "immersive-vr"], ["#enter-ar", "immersive-ar"]] as [string, XrMode][]) {
      const button = $<HTMLButtonElement>(id);
      const reason = await xrUnavailable(mode);
      button.disabled = reason !== null;
      button.title = reason ?? `start ${mode}`;
      if (reason) $("#xr-reason").textContent = reason;
      button.onclick = () => this.xr.enter(mode).catch((error: Error) => this.status(`WebXR: ${error.message}`));
    }
  }

  private hint(text: string): void {
    $("#tool-hint").textContent = text;
  }

  private mark(step: string, since: number): void {
    this.timings[step] = Math.round(performance.now() - since);
  }

  private status(text: string): void {
    $("#status").textContent = text;
  }
}

function pinText(a: Annotation): string {
  if (a.kind === "distance") return `${a.value?.toFixed(1)} mm ${a.text}`.trim();
  if (a.kind === "volume") return `${a.text}: ${a.value?.toFixed(1)} mL`;
  return a.text;
}

function volumeData(viewer: Viewer): VolumeData | null {
  const image = viewer.nv.volumes[0];
  if (!image?.img || !image.hdr) return null;
  const dims = image.hdr.dims;
  return {
    dims: [dims[1], dims[2], dims[3]],
    data: image.img as ArrayLike<number>,
    affine: image.hdr.affine,
    slope: image.hdr.scl_slope || 1,
    intercept: image.hdr.scl_inter || 0,
  };
}
