// The room document reducer: the server's ordered changes applied to the client's copy.
import assert from "node:assert/strict";
import { test } from "node:test";
import { applyChange, missesChanges, type Annotation, type RoomDocument } from "../src/roomdoc";

function note(id: string, text: string, version: number): Annotation {
  return { id, kind: "comment", points: [[1, 2, 3]], text, value: null, label: null, author: "alice", color: "#ff0000", version };
}

const empty: RoomDocument = { study_id: "s1", version: 0, presenter: null, annotations: [] };

test("an added annotation appears and the document takes the change's version", () => {
  const doc = applyChange(empty, 1, { op: "annotation.add", annotation: note("a", "hilum", 1) });
  assert.equal(doc.version, 1);
  assert.deepEqual(doc.annotations.map((a) => a.text), ["hilum"]);
  assert.deepEqual(empty.annotations, [], "the old document is not changed");
});

test("update replaces only the annotation with that id; delete removes it", () => {
  let doc = applyChange(empty, 1, { op: "annotation.add", annotation: note("a", "one", 1) });
  doc = applyChange(doc, 2, { op: "annotation.add", annotation: note("b", "two", 2) });
  doc = applyChange(doc, 3, { op: "annotation.update", annotation: note("a", "one, edited", 3) });
  assert.deepEqual(doc.annotations.map((a) => [a.id, a.text]), [["a", "one, edited"], ["b", "two"]]);
  doc = applyChange(doc, 4, { op: "annotation.delete", id: "a" });
  assert.deepEqual(doc.annotations.map((a) => a.id), ["b"]);
  assert.equal(doc.version, 4);
});

test("presenter.set sets and clears the presenter", () => {
  const on = applyChange(empty, 1, { op: "presenter.set", presenter: "alice" });
  assert.equal(on.presenter, "alice");
  assert.equal(applyChange(on, 2, { op: "presenter.set", presenter: null }).presenter, null);
});

test("a change the document already holds is ignored (a repeated message adds nothing)", () => {
  const once = applyChange(empty, 1, { op: "annotation.add", annotation: note("a", "x", 1) });
  assert.equal(applyChange(once, 1, { op: "annotation.add", annotation: note("a", "x", 1) }), once);
  const again = applyChange(once, 2, { op: "annotation.add", annotation: note("a", "x again", 2) });
  assert.deepEqual(again.annotations.map((a) => a.text), ["x again"], "same id: replaced, not doubled");
});

test("a skipped version is detected so the client can rejoin", () => {
  const doc = { ...empty, version: 5 };
  assert.equal(missesChanges(doc, 6), false);
  assert.equal(missesChanges(doc, 7), true);
  assert.equal(missesChanges(doc, 5), false);
});
