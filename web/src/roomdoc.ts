// The room document and the pure reducer that applies the server's ordered changes to it.
// Document and annotation shapes come from the served OpenAPI schema (GET /api/rooms/{id});
// the WebSocket change events are not in that schema, so they are typed here.
import type { components } from "./generated/openapi";

export type Vec3 = [number, number, number];
export type Kind = components["schemas"]["AnnotationKind"];
export type Annotation = components["schemas"]["Annotation"];
/** The document as the room's welcome message sends it (every field present). */
export type RoomDocument = components["schemas"]["RoomDocument"] & {
  annotations: Annotation[];
  presenter: string | null;
};

export type Change =
  | { op: "annotation.add" | "annotation.update"; annotation: Annotation }
  | { op: "annotation.delete"; id: string }
  | { op: "presenter.set"; presenter: string | null };

/**
 * Apply one server change, which produced `version`, to a document (pure: returns a new one).
 * A change the document already holds (version not above its own) leaves it as it is, so a
 * repeated message is harmless; an added annotation whose id is known replaces the old one.
 */
export function applyChange(doc: RoomDocument, version: number, change: Change): RoomDocument {
  if (version <= doc.version) return doc;
  let annotations = doc.annotations;
  let presenter = doc.presenter;
  switch (change.op) {
    case "annotation.add":
      annotations = [...annotations.filter((a) => a.id !== change.annotation.id), change.annotation];
      break;
    case "annotation.update":
      annotations = annotations.map((a) => (a.id === change.annotation.id ? change.annotation : a));
      break;
    case "annotation.delete":
      annotations = annotations.filter((a) => a.id !== change.id);
      break;
    case "presenter.set":
      presenter = change.presenter;
  }
  return { ...doc, version, annotations, presenter };
}

/** True when a change for `version` skips one the document has not seen (rejoin to resync). */
export function missesChanges(doc: RoomDocument, version: number): boolean {
  return version > doc.version + 1;
}
