// Surgical rehearsal in the room: the server simulates the organ; this decodes its frames, shows
// the deformed surface and the force, and turns the driver's mouse or XR controller into tool events.
import type { Vec3 } from "./roomdoc";
import type { Shape } from "./shapes";

export type ToolAction = "move" | "grasp" | "release" | "cut";

export type RehearsalStart = {
  type: "rehearsal_start";
  driver: string;
  vertex_count: number;
  faces_u32: string;
  box_min_mm: Vec3;
  box_size_mm: Vec3;
  rest_u16: string;
};
export type RehearsalFrame = { type: "rehearsal_frame"; seq: number; t: number; vertices_u16: string; force_n: Vec3 };
export type RehearsalMessage = RehearsalStart | RehearsalFrame | { type: "rehearsal_stop" } | { type: "rehearsal_status"; text: string };

/** Bytes of a base64 string (the server's little-endian arrays). */
export function base64Bytes(text: string): Uint8Array {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/** Vertices (RAS mm, x y z per vertex) from uint16 quantised over the start message's box. */
export function decodeVertices(u16: string, start: Pick<RehearsalStart, "box_min_mm" | "box_size_mm">): Float32Array {
  const bytes = base64Bytes(u16);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength / 2);
  for (let i = 0; i < out.length; i++) {
    const axis = i % 3;
    out[i] = start.box_min_mm[axis] + (view.getUint16(2 * i, true) / 65535) * start.box_size_mm[axis];
  }
  return out;
}

/** Triangle indices of the surface (uint32, little-endian). */
export function decodeFaces(u32: string): Uint32Array {
  const bytes = base64Bytes(u32);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(bytes.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(4 * i, true);
  return out;
}

/** Largest distance (mm) of any vertex from its rest position. */
export function maxDisplacement(vertices: Float32Array, rest: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < vertices.length; i += 3) {
    const d = Math.hypot(vertices[i] - rest[i], vertices[i + 1] - rest[i + 1], vertices[i + 2] - rest[i + 2]);
    if (d > worst) worst = d;
  }
  return worst;
}

/** The force readout, e.g. "force 0.42 N (0.10, -0.40, 0.05)". */
export function forceText(force: Vec3): string {
  const size = Math.hypot(...force);
  return `force ${size.toFixed(2)} N (${force.map((f) => f.toFixed(2)).join(", ")})`;
}

const now = () => performance.timeOrigin + performance.now();

/** One page's view of the room's rehearsal. */
export class RehearsalState {
  start: RehearsalStart | null = null;
  faces: Uint32Array | null = null;
  rest: Float32Array | null = null;
  frames = 0;
  force: Vec3 = [0, 0, 0];
  displacementMm = 0;
  /** Epoch ms when this page showed the first frame deformed by more than 1 mm. */
  firstDeformedAt: number | null = null;
  /** Server epoch ms when the frame first shown deformed was sent (latency breakdown). */
  firstDeformedSentAt: number | null = null;
  /** Epoch ms when this page (the driver) sent its first pull after a grasp. */
  pullSentAt: number | null = null;
  /** True when this page's participant drives the tool. */
  driving = false;
  private grasping = false;
  private lastMove = 0;
  private latest: Float32Array | null = null;
  private drawQueued = false;
  private latestSentAt = 0;

  constructor(
    private readonly show: (shape: Shape | null, force: Vec3 | null, state: RehearsalState) => void,
    private readonly sendTool: (action: ToolAction, position: Vec3) => void,
  ) {}

  get running(): boolean {
    return this.start !== null;
  }

  handle(message: RehearsalMessage, myId: string | null): void {
    if (message.type === "rehearsal_start") {
      this.start = message;
      this.faces = decodeFaces(message.faces_u32);
      this.rest = decodeVertices(message.rest_u16, message);
      Object.assign(this, { frames: 0, displacementMm: 0, firstDeformedAt: null, firstDeformedSentAt: null, force: [0, 0, 0] });
      this.show({ positions: this.rest, indices: this.faces }, this.force, this);
      this.driving = message.driver === myId;
    } else if (message.type === "rehearsal_frame" && this.start && this.rest) {
      this.latest = decodeVertices(message.vertices_u16, this.start);
      this.frames += 1;
      this.force = message.force_n;
      this.latestSentAt = message.t * 1000;
      this.displacementMm = maxDisplacement(this.latest, this.rest);
      if (!this.drawQueued) {
        this.drawQueued = true; // frames that arrive before the next paint replace each other
        requestAnimationFrame(() => this.showLatest());
      }
    } else if (message.type === "rehearsal_stop") {
      this.start = this.faces = this.rest = this.latest = null;
      this.driving = this.grasping = false;
      this.show(null, null, this);
    }
  }

  private showLatest(): void {
    this.drawQueued = false;
    if (!this.latest || !this.faces) return;
    this.show({ positions: this.latest, indices: this.faces }, this.force, this);
    if (this.displacementMm > 1 && this.firstDeformedAt === null) {
      this.firstDeformedAt = now();
      this.firstDeformedSentAt = this.latestSentAt;
    }
  }

  /** Mouse (or controller) pressed on the organ: grasp there. */
  press(position: Vec3): void {
    if (!this.driving) return;
    this.grasping = true;
    this.pullSentAt = null;
    this.sendTool("grasp", position);
  }

  /** Mouse (or controller) moved: the tool follows (at most every 16 ms). */
  drag(position: Vec3): void {
    if (!this.driving || !this.grasping) return;
    const t = performance.now();
    if (t - this.lastMove < 16) return;
    this.lastMove = t;
    this.pullSentAt ??= now();
    this.sendTool("move", position);
  }

  /** Released: let go of the tissue. */
  release(position: Vec3): void {
    if (!this.driving || !this.grasping) return;
    this.grasping = false;
    this.sendTool("release", position);
  }
}
