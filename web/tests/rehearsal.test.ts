// Rehearsal frames: the server's uint16 vertices and uint32 faces decoded back to RAS mm.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeFaces, decodeVertices, forceText, maxDisplacement } from "../src/rehearsal";

function base64Of(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

test("vertices come back in millimetres over the start message's box", () => {
  const raw = new DataView(new ArrayBuffer(12));
  [0, 65535, 32768, 65535, 0, 0].forEach((v, i) => raw.setUint16(2 * i, v, true));
  const box = { box_min_mm: [-10, 0, 100] as [number, number, number], box_size_mm: [20, 50, 10] as [number, number, number] };
  const vertices = decodeVertices(base64Of(new Uint8Array(raw.buffer)), box);
  assert.deepEqual(Array.from(vertices.slice(0, 2)), [-10, 50]);
  assert.ok(Math.abs(vertices[2] - 105) < 1e-3);
  assert.deepEqual(Array.from(vertices.slice(3)), [10, 0, 100]);
});

test("faces are little-endian uint32 and the largest displacement is found", () => {
  const raw = new DataView(new ArrayBuffer(12));
  [0, 1, 70000].forEach((v, i) => raw.setUint32(4 * i, v, true));
  assert.deepEqual(Array.from(decodeFaces(base64Of(new Uint8Array(raw.buffer)))), [0, 1, 70000]);
  const rest = new Float32Array([0, 0, 0, 1, 1, 1]);
  assert.equal(maxDisplacement(new Float32Array([0, 0, 0, 1, 4, 5]), rest), 5);
  assert.equal(forceText([0, 3, 4]), "force 5.00 N (0.00, 3.00, 4.00)");
});
