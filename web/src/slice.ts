// One slice of the image volume as RGBA pixels and its four corners in RAS mm (for WebXR).
import type { Vec3 } from "./room";

export type VolumeData = {
  dims: [number, number, number];
  data: ArrayLike<number>;
  affine: number[][]; // voxel index -> RAS mm, 4x4 rows
  slope: number;
  intercept: number;
};

export type SliceImage = { width: number; height: number; rgba: Uint8Array; corners: Vec3[] };

export function voxelToMm(affine: number[][], i: number, j: number, k: number): Vec3 {
  const row = (r: number) => affine[r][0] * i + affine[r][1] * j + affine[r][2] * k + affine[r][3];
  return [row(0), row(1), row(2)];
}

/** Slice `k` (third voxel axis), windowed to [low, high]; corners ordered (0,0) (1,0) (0,1) (1,1). */
export function sliceImage(volume: VolumeData, k: number, low: number, high: number): SliceImage {
  const [nx, ny, nz] = volume.dims;
  const slice = Math.min(nz - 1, Math.max(0, Math.round(k)));
  const rgba = new Uint8Array(nx * ny * 4);
  const scale = 255 / Math.max(high - low, 1e-6);
  const offset = slice * nx * ny;
  for (let p = 0; p < nx * ny; p++) {
    const value = volume.data[offset + p] * volume.slope + volume.intercept;
    const grey = Math.max(0, Math.min(255, (value - low) * scale));
    rgba.set([grey, grey, grey, 255], p * 4);
  }
  const corners = [
    voxelToMm(volume.affine, 0, 0, slice),
    voxelToMm(volume.affine, nx - 1, 0, slice),
    voxelToMm(volume.affine, 0, ny - 1, slice),
    voxelToMm(volume.affine, nx - 1, ny - 1, slice),
  ];
  return { width: nx, height: ny, rgba, corners };
}

/** Millimetres between neighbouring slices (length of the affine's third column). */
export function sliceSpacing(affine: number[][]): number {
  return Math.hypot(affine[0][2], affine[1][2], affine[2][2]) || 1;
}
