// Room client: joins a study's room, keeps the server's document, sends typed events.

import type { RehearsalMessage, ToolAction } from "./rehearsal";
import { applyChange, missesChanges, type Annotation, type Change, type Kind, type RoomDocument, type Vec3 } from "./roomdoc";

export type { Annotation, Kind, RoomDocument, Vec3 } from "./roomdoc";

export type Participant = { id: string; name: string; role: string; color: string };
export type PointerState = { position: Vec3 | null; crosshair: Vec3 | null };
export type ViewState = {
  crosshair: Vec3;
  slice_type: number;
  azimuth: number;
  elevation: number;
  zoom: number;
};

export type RoomListener = {
  document?: (doc: RoomDocument) => void;
  presence?: (participants: Participant[]) => void;
  pointer?: (id: string, state: PointerState) => void;
  view?: (view: ViewState) => void;
  rehearsal?: (message: RehearsalMessage) => void;
  rejected?: (detail: string) => void;
  closed?: (reason: string) => void;
};

export class RoomClient {
  doc: RoomDocument | null = null;
  me: Participant | null = null;
  participants: Participant[] = [];
  pointers = new Map<string, PointerState>();
  lastView: ViewState | null = null;
  private socket: WebSocket | null = null;
  private ready: Promise<void> | null = null;

  constructor(
    readonly studyId: string,
    private readonly token: string,
    private readonly listener: RoomListener,
  ) {}

  /** Connect and join; resolves once the welcome (document, then live state) has arrived. */
  connect(): Promise<void> {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/rooms/${this.studyId}/ws`);
    this.socket = socket;
    this.ready = new Promise((resolve, reject) => {
      socket.onopen = () => socket.send(JSON.stringify({ type: "join", token: this.token }));
      socket.onmessage = (event) => {
        const message = JSON.parse(String(event.data));
        if (message.type === "welcome") resolve();
        if (message.type === "error" && message.code >= 4000) reject(new Error(message.detail));
        this.handle(message);
      };
      socket.onclose = (event) => {
        reject(new Error(`room closed (${event.code})`));
        this.listener.closed?.(event.reason || `closed (${event.code})`);
      };
    });
    return this.ready;
  }

  close(): void {
    this.socket?.close();
    this.socket = null;
  }

  /** A change went missing (the socket dropped a message): join again for the whole document. */
  private rejoin(): void {
    const socket = this.socket;
    if (socket) socket.onclose = null;
    socket?.close();
    this.connect().catch((error: Error) => this.listener.closed?.(error.message));
  }

  get isPresenter(): boolean {
    return !!this.doc && !!this.me && this.doc.presenter === this.me.name;
  }

  edit(edit: Record<string, unknown>): string {
    const requestId = crypto.randomUUID();
    this.send({ type: "edit", request_id: requestId, base_version: this.doc?.version ?? 0, edit });
    return requestId;
  }

  addAnnotation(kind: Kind, points: Vec3[], text: string, extra: Partial<Annotation> = {}): string {
    const id = crypto.randomUUID();
    const annotation: Record<string, unknown> = { id, kind, points, text };
    if (extra.value !== undefined && extra.value !== null) annotation.value = extra.value;
    if (extra.label !== undefined && extra.label !== null) annotation.label = extra.label;
    this.edit({ op: "annotation.add", annotation });
    return id;
  }

  deleteAnnotation(id: string): void {
    this.edit({ op: "annotation.delete", id });
  }

  setPresenting(present: boolean): void {
    this.edit({ op: "presenter.set", present });
  }

  sendPointer(state: PointerState): void {
    this.send({ type: "pointer", ...state });
  }

  sendView(view: ViewState): void {
    if (this.isPresenter) this.send({ type: "view", view });
  }

  /** Start a rehearsal of ``structure`` (this participant drives the tool), or stop it. */
  sendRehearsal(action: "start" | "stop", structure: string): void {
    this.send({ type: "rehearsal", action, structure });
  }

  sendTool(action: ToolAction, position: Vec3): void {
    this.send({ type: "tool", action, position });
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private handle(message: any): void {
    switch (message.type) {
      case "welcome":
        this.me = message.you;
        this.doc = message.document;
        this.participants = message.participants;
        this.pointers = new Map(Object.entries(message.pointers ?? {}));
        this.lastView = message.view;
        this.listener.document?.(this.doc!);
        this.listener.presence?.(this.participants);
        for (const [id, state] of this.pointers) this.listener.pointer?.(id, state);
        if (this.lastView) this.listener.view?.(this.lastView);
        break;
      case "edit":
        if (!this.doc) return;
        if (missesChanges(this.doc, message.version)) return this.rejoin();
        this.doc = applyChange(this.doc, message.version, message.change as Change);
        this.listener.document?.(this.doc);
        break;
      case "presence":
        this.participants = message.participants;
        for (const id of [...this.pointers.keys()])
          if (!this.participants.some((p) => p.id === id)) this.pointers.delete(id);
        this.listener.presence?.(this.participants);
        break;
      case "pointer":
        this.pointers.set(message.by, { position: message.position, crosshair: message.crosshair });
        this.listener.pointer?.(message.by, this.pointers.get(message.by)!);
        break;
      case "view":
        this.lastView = message.view;
        this.listener.view?.(message.view);
        break;
      case "rehearsal_start":
      case "rehearsal_frame":
      case "rehearsal_stop":
      case "rehearsal_status":
        this.listener.rehearsal?.(message as RehearsalMessage);
        break;
      case "rejected":
      case "error":
        this.listener.rejected?.(message.detail);
        break;
    }
  }
}
