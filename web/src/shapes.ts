// Small triangle meshes for markers: spheres for points, tubes for distances (RAS mm).
import type { Vec3 } from "./room";

export type Shape = { positions: Float32Array; indices: Uint32Array };

export function sphere(center: Vec3, radius: number, rings = 8, segments = 12): Shape {
  const positions: number[] = [];
  const indices: number[] = [];
  for (let r = 0; r <= rings; r++) {
    const theta = (r * Math.PI) / rings;
    for (let s = 0; s <= segments; s++) {
      const phi = (s * 2 * Math.PI) / segments;
      positions.push(
        center[0] + radius * Math.sin(theta) * Math.cos(phi),
        center[1] + radius * Math.sin(theta) * Math.sin(phi),
        center[2] + radius * Math.cos(theta),
      );
    }
  }
  for (let r = 0; r < rings; r++) {
    for (let s = 0; s < segments; s++) {
      const a = r * (segments + 1) + s;
      const b = a + segments + 1;
      indices.push(a, b, a + 1, b, b + 1, a + 1);
    }
  }
  return { positions: Float32Array.from(positions), indices: Uint32Array.from(indices) };
}

export function tube(from: Vec3, to: Vec3, radius: number, segments = 10): Shape {
  const axis = to.map((v, i) => v - from[i]) as Vec3;
  const length = Math.hypot(...axis) || 1;
  const dir = axis.map((v) => v / length) as Vec3;
  const helper: Vec3 = Math.abs(dir[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0];
  const u = normalise(cross(dir, helper));
  const v = cross(dir, u);
  const positions: number[] = [];
  const indices: number[] = [];
  for (const end of [from, to]) {
    for (let s = 0; s < segments; s++) {
      const a = (s * 2 * Math.PI) / segments;
      for (let i = 0; i < 3; i++)
        positions.push(end[i] + radius * (Math.cos(a) * u[i] + Math.sin(a) * v[i]));
    }
  }
  for (let s = 0; s < segments; s++) {
    const n = (s + 1) % segments;
    indices.push(s, segments + s, n, n, segments + s, segments + n);
  }
  return { positions: Float32Array.from(positions), indices: Uint32Array.from(indices) };
}

export function merge(shapes: Shape[]): Shape {
  const total = shapes.reduce((n, s) => n + s.positions.length, 0);
  const positions = new Float32Array(total);
  const indices: number[] = [];
  let offset = 0;
  for (const s of shapes) {
    positions.set(s.positions, offset);
    const base = offset / 3;
    for (const i of s.indices) indices.push(i + base);
    offset += s.positions.length;
  }
  return { positions, indices: Uint32Array.from(indices) };
}

function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

function normalise(a: Vec3): Vec3 {
  const n = Math.hypot(...a) || 1;
  return [a[0] / n, a[1] / n, a[2] / n];
}
