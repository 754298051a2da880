// Slice layout at physical aspect and the orientation letters of each convention.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AXIAL, CORONAL, RENDER, SAGITTAL, conventionCaption, multiLayout, orientationLetters } from "../src/layout";

test("radiological puts the patient's right on the screen's left; neurological the reverse", () => {
  assert.deepEqual(orientationLetters(AXIAL, true), { left: "R", right: "L", top: "A", bottom: "P" });
  assert.deepEqual(orientationLetters(CORONAL, true), { left: "R", right: "L", top: "S", bottom: "I" });
  assert.deepEqual(orientationLetters(AXIAL, false), { left: "L", right: "R", top: "A", bottom: "P" });
  assert.deepEqual(orientationLetters(SAGITTAL, true), orientationLetters(SAGITTAL, false));
  assert.equal(orientationLetters(RENDER, true), null);
  assert.match(conventionCaption(true), /left on screen right/);
});

test("a 20-slice CT slab gets full-width coronal and sagittal rows at its true aspect", () => {
  const aspect = 1080 / 827;
  const tiles = multiLayout([500, 500, 40], aspect);
  const coronal = tiles.find((t) => t.sliceType === CORONAL)!;
  assert.equal(coronal.position[2], 1, "full width");
  const pixelAspect = (coronal.position[2] * aspect) / coronal.position[3];
  assert.ok(Math.abs(pixelAspect - 500 / 40) < 1e-9, `tile aspect ${pixelAspect}`);
  const render = tiles.find((t) => t.sliceType === RENDER)!;
  assert.ok(render.position[2] * render.position[3] > 0.3, "the 3D view gets a third of the canvas or more");
  for (const t of tiles) assert.ok(t.position[1] + t.position[3] <= 1 + 1e-9 && t.position[0] + t.position[2] <= 1 + 1e-9);
});

test("an isotropic volume gets a 2x2 grid", () => {
  const tiles = multiLayout([180, 220, 180], 1.3);
  assert.deepEqual(tiles.map((t) => t.position[2] * t.position[3]), [0.25, 0.25, 0.25, 0.25]);
});
