// Immersive mode (WebXR, three.js): organ meshes at life size, room markers, a movable slice.
import * as THREE from "three";
import type { Annotation, PointerState, Vec3 } from "./room";
import { sliceImage, sliceSpacing, type VolumeData } from "./slice";
import { rgbOf } from "./labels";

export type XrMode = "immersive-vr" | "immersive-ar";
/** The rehearsal tool driven by the controller: trigger pressed, held and moved, released. */
export type XrTool = (action: "grasp" | "move" | "release", mm: Vec3) => void;
export type XrState = {
  presenting: boolean;
  mode: XrMode | null;
  frames: number;
  organs: number;
  organSizeM: [number, number, number];
  markers: number;
  sliceIndex: number;
};
// RAS mm -> glTF (+Y up, metres): the matrix io.mesh_export stores in the GLB (row-major).
const RAS_MM_TO_GLTF = new THREE.Matrix4().set(-0.001, 0, 0, 0, 0, 0, 0.001, 0, 0, 0.001, 0, 0, 0, 0, 0, 1);
const PLACE: Record<XrMode, THREE.Vector3> = {
  "immersive-vr": new THREE.Vector3(0, -0.25, -0.7),
  "immersive-ar": new THREE.Vector3(0, -0.3, -0.5),
};

/** Why `mode` cannot start here, or null when it can. */
export async function xrUnavailable(mode: XrMode): Promise<string | null> {
  if (!window.isSecureContext) return "WebXR needs a secure page (https or localhost)";
  if (!navigator.xr) return "this browser has no WebXR (navigator.xr is missing)";
  try {
    if (await navigator.xr.isSessionSupported(mode)) return null;
  } catch (error) {
    return `WebXR refused the check: ${(error as Error).message}`;
  }
  return mode === "immersive-vr" ? "no VR headset found (immersive-vr unsupported)" : "no AR device found (immersive-ar unsupported)";
}

export class Immersive {
  readonly state: XrState = { presenting: false, mode: null, frames: 0, organs: 0, organSizeM: [0, 0, 0], markers: 0, sliceIndex: 0 };
  private renderer: THREE.WebGLRenderer | null = null;
  private readonly scene = new THREE.Scene();
  private readonly camera = new THREE.PerspectiveCamera(60, 1, 0.01, 50);
  private readonly root = new THREE.Group(); // RAS mm inside, placed in metres
  private readonly markers = new THREE.Group();
  private plane: THREE.Mesh | null = null;
  private volume: VolumeData | null = null;
  private window: [number, number] = [-160, 240];
  private drag: { startY: number; startSlice: number } | null = null;
  private session: XRSession | null = null;
  private tool: XrTool | null = null;
  private toolHeld = false;

  constructor(private readonly onChange: (state: XrState) => void) {
    this.root.matrixAutoUpdate = false;
    this.root.add(this.markers);
    this.scene.add(this.root, new THREE.HemisphereLight(0xffffff, 0x444466, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.5);
    sun.position.set(1, 2, 1);
    this.scene.add(sun);
  }

  /** Organs from the GLB scene (RAS mm), shown at life size (1 mm = 1 mm). */
  setOrgans(glbScene: THREE.Group | null): void {
    this.root.children.filter((c) => c !== this.markers && c !== this.plane).forEach((c) => this.root.remove(c));
    if (!glbScene) return;
    const organs = glbScene.clone(true);
    this.root.add(organs);
    let count = 0;
    organs.traverse((node) => (count += node instanceof THREE.Mesh ? 1 : 0));
    this.state.organs = count;
  }

  setVolume(volume: VolumeData | null, window: [number, number]): void {
    this.volume = volume;
    this.window = window;
    this.setSliceFraction(0.5);
  }

  setSliceFraction(fraction: number): void {
    if (!this.volume) return;
    this.showSlice(fraction * (this.volume.dims[2] - 1));
  }

  setMarkers(annotations: Annotation[], pointers: { color: string; state: PointerState }[]): void {
    this.markers.clear();
    for (const a of annotations) {
      const color = new THREE.Color(...rgbOf(a.color).map((c) => c / 255));
      for (const p of a.points) this.markers.add(ball(p, 4, color));
      if (a.points.length === 2) this.markers.add(rod(a.points[0], a.points[1], color));
      this.markers.add(textSprite(a.text || a.kind, a.points[0], color));
    }
    for (const { color, state } of pointers) {
      if (state.position) this.markers.add(ball(state.position, 3, new THREE.Color(color)));
    }
    this.state.markers = this.markers.children.length;
  }

  async enter(mode: XrMode): Promise<void> {
    const xr = navigator.xr;
    if (!xr) throw new Error("no WebXR");
    const renderer = this.ensureRenderer();
    const session = await xr.requestSession(mode, { optionalFeatures: ["local-floor"] });
    this.session = session;
    this.place(mode);
    this.scene.background = mode === "immersive-vr" ? new THREE.Color(0x101218) : null;
    session.addEventListener("end", () => this.ended());
    renderer.xr.setReferenceSpaceType("local");
    await renderer.xr.setSession(session);
    Object.assign(this.state, { presenting: true, mode, frames: 0 });
    renderer.setAnimationLoop(() => this.frame());
    this.onChange(this.state);
  }

  async exit(): Promise<void> {
    await this.session?.end();
  }

  private ensureRenderer(): THREE.WebGLRenderer {
    if (this.renderer) return this.renderer;
    const renderer = new THREE.WebGLRenderer({ antialias: true, alpha: true });
    renderer.xr.enabled = true;
    renderer.domElement.className = "xr-canvas";
    document.body.appendChild(renderer.domElement);
    const controller = renderer.xr.getController(0);
    controller.addEventListener("selectstart", () => this.startDrag(controller));
    controller.addEventListener("selectend", () => this.endDrag(controller));
    this.scene.add(controller);
    this.renderer = renderer;
    return renderer;
  }

  private place(mode: XrMode): void {
    const box = new THREE.Box3();
    this.root.children.forEach((c) => c !== this.markers && box.expandByObject(c));
    const centre = box.isEmpty() ? new THREE.Vector3() : box.getCenter(new THREE.Vector3());
    const toOrigin = new THREE.Matrix4().makeTranslation(-centre.x, -centre.y, -centre.z);
    const placed = new THREE.Matrix4().makeTranslation(PLACE[mode].x, PLACE[mode].y, PLACE[mode].z);
    this.root.matrix.copy(placed).multiply(RAS_MM_TO_GLTF).multiply(toOrigin);
    this.root.updateMatrixWorld(true);
    const size = box.isEmpty() ? new THREE.Vector3() : box.getSize(new THREE.Vector3()).multiplyScalar(0.001);
    this.state.organSizeM = [size.x, size.y, size.z];
  }

  /** While a rehearsal runs and this page drives it, the trigger grasps instead of moving the slice. */
  setTool(tool: XrTool | null): void {
    this.tool = tool;
    if (!tool) this.toolHeld = false;
  }

  /** The controller's position in patient RAS mm (the inverse of the life-size placement). */
  private controllerMm(controller: THREE.Group): Vec3 {
    const world = controller.getWorldPosition(new THREE.Vector3());
    const mm = world.applyMatrix4(this.root.matrixWorld.clone().invert());
    return [mm.x, mm.y, mm.z];
  }

  private startDrag(controller: THREE.Group): void {
    if (this.tool) {
      this.toolHeld = true;
      this.tool("grasp", this.controllerMm(controller));
      return;
    }
    this.drag = { startY: controller.position.y, startSlice: this.state.sliceIndex };
  }

  private endDrag(controller: THREE.Group): void {
    this.drag = null;
    if (this.tool && this.toolHeld) this.tool("release", this.controllerMm(controller));
    this.toolHeld = false;
  }

  private frame(): void {
    const controller = this.renderer!.xr.getController(0);
    if (this.tool && this.toolHeld) this.tool("move", this.controllerMm(controller));
    if (this.drag && this.volume) {
      const moved_mm = (controller.position.y - this.drag.startY) * 1000;
      this.showSlice(this.drag.startSlice + moved_mm / sliceSpacing(this.volume.affine));
    }
    this.renderer!.render(this.scene, this.camera);
    this.state.frames += 1;
  }

  private showSlice(k: number): void {
    if (!this.volume) return;
    const image = sliceImage(this.volume, k, ...this.window);
    this.state.sliceIndex = Math.min(this.volume.dims[2] - 1, Math.max(0, Math.round(k)));
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.Float32BufferAttribute(image.corners.flat(), 3));
    geometry.setAttribute("uv", new THREE.Float32BufferAttribute([0, 0, 1, 0, 0, 1, 1, 1], 2));
    geometry.setIndex([0, 1, 2, 2, 1, 3]);
    const texture = new THREE.DataTexture(image.rgba, image.width, image.height);
    texture.needsUpdate = true;
    const material = new THREE.MeshBasicMaterial({ map: texture, side: THREE.DoubleSide, transparent: true, opacity: 0.85 });
    if (this.plane) {
      this.root.remove(this.plane);
      this.plane.geometry.dispose();
      (this.plane.material as THREE.MeshBasicMaterial).map?.dispose();
    }
    this.plane = new THREE.Mesh(geometry, material);
    this.root.add(this.plane);
    this.onChange(this.state);
  }

  private ended(): void {
    this.renderer?.setAnimationLoop(null);
    this.session = null;
    this.drag = null;
    Object.assign(this.state, { presenting: false, mode: null });
    this.onChange(this.state);
  }
}

function ball(p: number[], radius: number, color: THREE.Color): THREE.Mesh {
  const mesh = new THREE.Mesh(new THREE.SphereGeometry(radius, 16, 12), new THREE.MeshStandardMaterial({ color }));
  mesh.position.set(p[0], p[1], p[2]);
  return mesh;
}

function rod(a: number[], b: number[], color: THREE.Color): THREE.Mesh {
  const start = new THREE.Vector3(...a);
  const end = new THREE.Vector3(...b);
  const length = start.distanceTo(end);
  const mesh = new THREE.Mesh(new THREE.CylinderGeometry(1, 1, length, 8), new THREE.MeshStandardMaterial({ color }));
  mesh.position.copy(start).add(end).multiplyScalar(0.5);
  mesh.quaternion.setFromUnitVectors(new THREE.Vector3(0, 1, 0), end.clone().sub(start).normalize());
  return mesh;
}

function textSprite(text: string, at: number[], color: THREE.Color): THREE.Sprite {
  const canvas = document.createElement("canvas");
  canvas.width = 512;
  canvas.height = 96;
  const context = canvas.getContext("2d")!;
  context.fillStyle = "rgba(10,12,16,0.8)";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = `#${color.getHexString()}`;
  context.font = "40px sans-serif";
  context.fillText(text.slice(0, 40), 16, 62);
  const sprite = new THREE.Sprite(new THREE.SpriteMaterial({ map: new THREE.CanvasTexture(canvas) }));
  sprite.scale.set(80, 15, 1); // millimetres, inside the life-size root
  sprite.position.set(at[0], at[1], at[2] + 15);
  return sprite;
}
