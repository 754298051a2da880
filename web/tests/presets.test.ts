// MR windows from percentiles: the bright tail and the zero background do not wash tissue out.
import assert from "node:assert/strict";
import { test } from "node:test";
import { percentileRange, windowRange, MR_PRESETS } from "../src/presets";

test("the percentile range ignores the background and a 1% bright tail", () => {
  const tissue = Array.from({ length: 9_900 }, (_, i) => 100 + (i % 100));
  const data = [...new Array(20_000).fill(0), ...tissue, ...new Array(100).fill(5_000)];
  const [low, high] = percentileRange(data);
  assert.ok(low >= 100 && low <= 102, `low ${low}`);
  assert.ok(high <= 200, `high ${high}: the vessels' 5000 would wash the tissue out`);
  const [wLow, wHigh] = windowRange(MR_PRESETS[0], [low, high]);
  assert.ok(wLow >= 95 && wHigh <= 205);
});

test("slope and intercept apply; an empty image gets a unit range", () => {
  assert.deepEqual(percentileRange([0, 10, 10, 10], 2, 1, 0, 1), [21, 22]);
  assert.deepEqual(percentileRange([0, 0, 0]), [0, 1]);
});
