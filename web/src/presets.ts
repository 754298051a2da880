// Window/level presets for CT (Hounsfield units) and MR (percentiles of the image's range).

export type Preset = { name: string; center: number; width: number; relative?: boolean };

export const CT_PRESETS: Preset[] = [
  { name: "Soft tissue", center: 40, width: 400 },
  { name: "Abdomen", center: 60, width: 360 },
  { name: "Liver", center: 80, width: 150 },
  { name: "Lung", center: -600, width: 1500 },
  { name: "Bone", center: 400, width: 1800 },
  { name: "Brain", center: 40, width: 80 },
];

// MR has no absolute scale: centre and width are fractions of the image's percentile range.
export const MR_PRESETS: Preset[] = [
  { name: "MR default", center: 0.5, width: 1.0, relative: true },
  { name: "MR bright", center: 0.35, width: 0.7, relative: true },
  { name: "MR contrast", center: 0.5, width: 0.5, relative: true },
];

export function presetsFor(modality: string): Preset[] {
  return modality.toUpperCase() === "CT" ? CT_PRESETS : MR_PRESETS;
}

/** The display range [min, max] of a preset; `robust` is the image's own [low, high]. */
export function windowRange(preset: Preset, robust: [number, number]): [number, number] {
  if (!preset.relative) return [preset.center - preset.width / 2, preset.center + preset.width / 2];
  const span = robust[1] - robust[0];
  const center = robust[0] + preset.center * span;
  const half = (preset.width * span) / 2;
  return [center - half, center + half];
}

// MR intensities have a long bright tail (vessels, fat); the full range washes the tissue out.
const MR_LOW = 0.01;
const MR_HIGH = 0.99;
const SAMPLE = 200_000;

/**
 * The [low, high] percentiles of an image's intensities (stored value * slope + intercept),
 * ignoring the zero background, from an even sample of at most 200,000 voxels.
 */
export function percentileRange(data: ArrayLike<number>, slope = 1, intercept = 0, low = MR_LOW, high = MR_HIGH): [number, number] {
  const step = Math.max(1, Math.floor(data.length / SAMPLE));
  const values: number[] = [];
  for (let i = 0; i < data.length; i += step) if (data[i] !== 0) values.push(data[i] * slope + intercept);
  if (!values.length) return [0, 1];
  values.sort((a, b) => a - b);
  const at = (q: number) => values[Math.min(values.length - 1, Math.max(0, Math.round(q * (values.length - 1))))];
  const [lo, hi] = [at(low), at(high)];
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}
