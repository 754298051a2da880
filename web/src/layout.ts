// Where the slice views go and which patient directions their edges face (pure, unit-tested).

/** NiiVue's slice types as its screen tiles report them. */
export const AXIAL = 0;
export const CORONAL = 1;
export const SAGITTAL = 2;
export const RENDER = 4;

export type Tile = { sliceType: number; position: [number, number, number, number] };
export type Letters = { left: string; right: string; top: string; bottom: string };

// A volume this much thinner (head-foot) than wide is a slab: its coronal and sagittal views
// are strips at their true aspect, so they get full-width rows instead of a quarter each.
const SLAB_RATIO = 0.5;
const MAX_STRIP = 0.24; // most of the height one strip row may take

/**
 * The "3 slices + 3D" layout for a volume of `extent` mm (x, y, z in RAS) on a canvas of
 * `aspect` = width / height. Each view keeps its physical aspect (NiiVue fits it in its tile).
 */
export function multiLayout(extent: [number, number, number], aspect: number): Tile[] {
  const [x, y, z] = extent.map((e) => Math.max(e, 1e-3));
  if (z >= SLAB_RATIO * Math.max(x, y)) {
    return [
      { sliceType: AXIAL, position: [0, 0, 0.5, 0.5] },
      { sliceType: CORONAL, position: [0.5, 0, 0.5, 0.5] },
      { sliceType: SAGITTAL, position: [0, 0.5, 0.5, 0.5] },
      { sliceType: RENDER, position: [0.5, 0.5, 0.5, 0.5] },
    ];
  }
  const coronal = Math.min((aspect * z) / x, MAX_STRIP);
  const sagittal = Math.min((aspect * z) / y, MAX_STRIP);
  const top = coronal + sagittal;
  return [
    { sliceType: CORONAL, position: [0, 0, 1, coronal] },
    { sliceType: SAGITTAL, position: [0, coronal, 1, sagittal] },
    { sliceType: AXIAL, position: [0, top, 0.5, 1 - top] },
    { sliceType: RENDER, position: [0.5, top, 0.5, 1 - top] },
  ];
}

/**
 * The patient direction each edge of a 2D view faces. Radiological: the patient's left on the
 * screen's right (as if facing the patient); neurological: the patient's left on the left.
 * Sagittal views show the nose on the right either way.
 */
export function orientationLetters(sliceType: number, radiological: boolean): Letters | null {
  const [left, right] = radiological ? ["R", "L"] : ["L", "R"];
  if (sliceType === AXIAL) return { left, right, top: "A", bottom: "P" };
  if (sliceType === CORONAL) return { left, right, top: "S", bottom: "I" };
  if (sliceType === SAGITTAL) return { left: "P", right: "A", top: "S", bottom: "I" };
  return null;
}

/** What the screen says about the convention in force. */
export function conventionCaption(radiological: boolean): string {
  return radiological ? "Radiological: patient's left on screen right" : "Neurological: patient's left on screen left";
}
