// The NiiVue viewer: three orthogonal slices and a 3D render, overlay, organ meshes, markers.
import { NVMesh, Niivue, SHOW_RENDER, SLICE_TYPE } from "@niivue/niivue";
import type { LabelColormap } from "./labels";
import { RENDER, multiLayout, orientationLetters, type Letters } from "./layout";
import { percentileRange } from "./presets";
import type { OrganMesh } from "./glb";
import type { Shape } from "./shapes";
import type { Vec3, ViewState } from "./room";

export const LAYOUTS: Record<string, SLICE_TYPE> = {
  multi: SLICE_TYPE.MULTIPLANAR,
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
  render: SLICE_TYPE.RENDER,
};

type ImageFromUrlOptions = Parameters<Niivue["loadVolumes"]>[0][number];
export type LoadRequest = {
  imageUrl: string;
  labelsUrl: string | null;
  headers: Record<string, string>;
  colormap: LabelColormap | null;
  window: [number, number] | null;
};
export type Location = { mm: Vec3; label: number };
export type ViewerEvents = {
  location?: (where: Location) => void;
  view?: () => void;
  pointer?: (mm: Vec3) => void;
};

const EDGES = ["left", "right", "top", "bottom"] as const;
export type OrientationLabel = { view: number; edge: (typeof EDGES)[number]; letter: string };

export class Viewer {
  readonly nv: Niivue;
  /** Radiological (patient left on screen right, the default) or neurological display. */
  radiological = true;
  private layout = "multi";
  private attached = false;
  private range: [number, number] = [0, 1];
  private organs: NVMesh[] = [];
  private markers = new Map<string, NVMesh>();
  private lastLabel = 0;
  private drawPending = false;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly events: ViewerEvents,
    private readonly letters: HTMLElement,
  ) {
    this.nv = new Niivue({
      backColor: [0.08, 0.09, 0.11, 1],
      show3Dcrosshair: true,
      multiplanarShowRender: SHOW_RENDER.ALWAYS,
      isColorbar: false,
      showLegend: true,
      legendBackgroundColor: [0.1, 0.1, 0.12, 0.7],
      meshThicknessOn2D: 0, // meshes in the 3D view only (slicing them in 2D costs 20x per frame)
      dragAndDropEnabled: false,
      isRadiologicalConvention: true,
      isOrientationTextVisible: false, // the page draws the letters (always, on every 2D view)
      // 0.2% of the field of view wide: a hairline at any zoom (a voxel wide is 14 px on a
      // zoomed-in MR and hides the anatomy it points at)
      crosshairWidth: 0.2,
      crosshairWidthUnit: "percent",
      crosshairColor: [1, 0.3, 0.3, 0.75],
    });
    this.nv.onLocationChange = (data) => this.located(data);
    this.nv.onAzimuthElevationChange = () => this.events.view?.();
    canvas.addEventListener("pointermove", (event) => this.hover(event));
    new ResizeObserver(() => {
      if (this.attached) this.setLayout(this.layout, false);
    }).observe(canvas);
  }

  async attach(): Promise<void> {
    await this.nv.attachToCanvas(this.canvas);
    this.attached = true;
    this.setLayout(this.layout, false);
  }

  /** Load the image and its label overlay (fetched with the token) in one GPU update. */
  async load(request: LoadRequest): Promise<void> {
    for (const mesh of [...this.nv.meshes]) this.dropMesh(mesh);
    this.organs = [];
    this.markers.clear();
    this.nv.document.labels = [];
    const { headers } = request;
    const image = { url: request.imageUrl, headers, name: "image.nii.gz", ...(request.window ? { cal_min: request.window[0], cal_max: request.window[1] } : {}) };
    const volumes: ImageFromUrlOptions[] = [image];
    if (request.labelsUrl) {
      volumes.push({ url: request.labelsUrl, headers, name: "labels.nii.gz", opacity: 0.6 });
    }
    await this.nv.loadVolumes(volumes);
    // loadVolumes does not keep a label table passed with the overlay: set it explicitly.
    if (request.colormap && this.nv.volumes[1]) this.setLabelColormap(request.colormap);
    const base = this.nv.volumes[0];
    this.range = percentileRange(base.img as ArrayLike<number>, base.hdr?.scl_slope || 1, base.hdr?.scl_inter || 0);
    this.nv.scene.renderAzimuth = 120; // from above the side: a thin slab reads as 3D
    this.nv.scene.renderElevation = 30;
    this.setLayout(this.layout, false);
  }

  setLabelColormap(colormap: LabelColormap): void {
    const overlay = this.nv.volumes[1];
    if (!overlay) return;
    overlay.setColormapLabel(colormap);
    this.nv.updateGLVolume();
  }

  setOverlayOpacity(opacity: number): void {
    if (this.nv.volumes[1]) this.nv.setOpacity(1, opacity);
  }

  /** The image's 1st-99th percentile intensities (zero background ignored): the base of MR windows. */
  intensityRange(): [number, number] {
    return this.range;
  }

  setWindow(min: number, max: number): void {
    const image = this.nv.volumes[0];
    if (!image) return;
    image.cal_min = min;
    image.cal_max = max;
    this.nv.updateGLVolume();
  }

  addOrgans(organs: OrganMesh[], colorOf: (name: string) => [number, number, number]): void {
    for (const organ of organs) {
      const [r, g, b] = colorOf(organ.name);
      const rgba = new Uint8Array([r, g, b, 255]);
      const mesh = new NVMesh(organ.positions, organ.indices, organ.name, rgba, 1, true, this.nv.gl);
      this.nv.meshes.push(mesh);
      this.organs.push(mesh);
    }
    this.requestDraw();
  }

  setOrgansVisible(visible: boolean): void {
    for (const mesh of this.organs) mesh.visible = visible;
    this.requestDraw();
  }

  /** Show (or with null remove) one marker mesh, e.g. a participant's pointer. */
  setMarker(key: string, shape: Shape | null, color: [number, number, number]): void {
    const old = this.markers.get(key);
    if (old) this.dropMesh(old);
    this.markers.delete(key);
    if (shape) {
      const rgba = new Uint8Array([...color, 255]);
      const mesh = new NVMesh(shape.positions, shape.indices, key, rgba, 1, true, this.nv.gl);
      this.nv.meshes.push(mesh);
      this.markers.set(key, mesh);
    }
    this.requestDraw();
  }

  markerKeys(): string[] {
    return [...this.markers.keys()];
  }

  /** Pin text labels to 3D points (drawn in the legend with a leader line in 3D). */
  setPinnedLabels(pins: { text: string; point: Vec3; color: [number, number, number] }[]): void {
    this.nv.document.labels = [];
    for (const pin of pins) {
      const rgb = pin.color.map((c) => c / 255);
      const style = {
        textColor: [1, 1, 1, 1],
        textScale: 0.9,
        lineWidth: 2,
        lineColor: [...rgb, 1],
        bulletScale: 0.6,
        bulletColor: [...rgb, 1],
      };
      this.nv.addLabel(pin.text, style as never, pin.point);
    }
    this.requestDraw();
  }

  crosshairMm(): Vec3 {
    const mm = this.nv.frac2mm(this.nv.scene.crosshairPos);
    return [mm[0], mm[1], mm[2]];
  }

  setCrosshairMm(mm: Vec3): void {
    this.nv.scene.crosshairPos = this.nv.mm2frac(mm);
    this.requestDraw();
  }

  labelAtCrosshair(): number {
    return this.lastLabel;
  }

  /** Show one view or all four; "multi" gives each view room at its physical aspect. */
  setLayout(name: string, notify = true): void {
    this.layout = name in LAYOUTS ? name : "multi";
    const image = this.nv.volumes[0];
    const [low, high] = [image?.extentsMinOrtho, image?.extentsMaxOrtho];
    if (this.layout === "multi" && low && high) {
      const extent = [0, 1, 2].map((i) => high[i] - low[i]) as Vec3;
      const box = this.canvas.getBoundingClientRect();
      this.nv.customLayout = multiLayout(extent, box.width / Math.max(box.height, 1));
    } else {
      this.nv.customLayout = [];
    }
    // Set directly and draw once on the next frame: NiiVue's setters each draw the whole scene
    // (seconds per frame in software WebGL on a busy machine).
    this.nv.opts.sliceType = LAYOUTS[this.layout];
    this.requestDraw();
    if (notify) this.events.view?.();
  }

  /** Radiological (true) or neurological display of the 2D views. */
  setRadiological(radiological: boolean): void {
    this.radiological = radiological;
    this.nv.setRadiologicalConvention(radiological);
    this.requestDraw();
  }

  /** The orientation letters on screen now, one per edge of each 2D view. */
  orientationLabels(): OrientationLabel[] {
    return [...this.letters.querySelectorAll<HTMLElement>("[data-edge]")].map((el) => ({
      view: Number(el.dataset.view),
      edge: el.dataset.edge as OrientationLabel["edge"],
      letter: el.textContent ?? "",
    }));
  }

  view(): ViewState {
    const scene = this.nv.scene;
    return {
      crosshair: this.crosshairMm(),
      slice_type: this.nv.opts.sliceType,
      azimuth: scene.renderAzimuth,
      elevation: scene.renderElevation,
      zoom: scene.volScaleMultiplier || 1,
    };
  }

  applyView(view: ViewState): void {
    const name = Object.keys(LAYOUTS).find((key) => LAYOUTS[key] === view.slice_type) ?? "multi";
    if (name !== this.layout) this.setLayout(name, false);
    this.nv.scene.volScaleMultiplier = view.zoom;
    this.nv.scene.renderAzimuth = view.azimuth;
    this.nv.scene.renderElevation = view.elevation;
    this.setCrosshairMm(view.crosshair);
  }

  /** The 3D point under a canvas position, if it is on a 2D slice tile. */
  pointAt(clientX: number, clientY: number): Vec3 | null {
    const box = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const frac = this.nv.canvasPos2frac([(clientX - box.left) * dpr, (clientY - box.top) * dpr]);
    if (frac[0] < 0) return null;
    const mm = this.nv.frac2mm(frac);
    return [mm[0], mm[1], mm[2]];
  }

  /** Draw once on the next animation frame, however many changes came in before it. */
  requestDraw(): void {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      this.nv.drawScene();
      this.placeLetters();
    });
  }

  /** Put the patient-direction letters at the edges of each 2D view NiiVue just drew. */
  private placeLetters(): void {
    const scale = this.canvas.width / Math.max(this.canvas.clientWidth, 1);
    const spans: HTMLElement[] = [];
    for (const tile of this.nv.screenSlices) {
      const letters = tile.axCorSag === RENDER ? null : orientationLetters(tile.axCorSag, this.radiological);
      if (!letters) continue;
      const [left, top, width, height] = tile.leftTopWidthHeight.map((v: number) => v / scale);
      for (const edge of EDGES) spans.push(letterAt(letters, edge, tile.axCorSag, [left, top, width, height]));
    }
    this.letters.replaceChildren(...spans);
  }

  /** Remove a mesh without NiiVue's full volume update (removeMesh re-uploads the volumes). */
  private dropMesh(mesh: NVMesh): void {
    mesh.unloadMesh(this.nv.gl);
    this.nv.meshes = this.nv.meshes.filter((m) => m !== mesh);
  }

  private located(data: unknown): void {
    const location = data as { mm: number[]; values?: { value: number }[] };
    this.lastLabel = Math.round(location.values?.[1]?.value ?? 0);
    const where = { mm: [location.mm[0], location.mm[1], location.mm[2]] as Vec3, label: this.lastLabel };
    this.events.location?.(where);
    this.events.view?.();
  }

  private hover(event: PointerEvent): void {
    const mm = this.pointAt(event.clientX, event.clientY);
    if (mm) this.events.pointer?.(mm);
  }
}

function letterAt(letters: Letters, edge: (typeof EDGES)[number], view: number, [left, top, width, height]: number[]): HTMLElement {
  const span = document.createElement("span");
  span.className = `orient ${edge}`;
  span.dataset.view = String(view);
  span.dataset.edge = edge;
  span.textContent = letters[edge];
  const x = edge === "left" ? left : edge === "right" ? left + width : left + width / 2;
  const y = edge === "top" ? top : edge === "bottom" ? top + height : top + height / 2;
  span.style.left = `${x}px`;
  span.style.top = `${y}px`;
  return span;
}
