// No HTML parsing anywhere in the app: every string from a study, a user or a room is text.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";

// Compiled to .test-out/tests/: the sources are two folders up.
const SRC = resolve(__dirname, "../../src");
// Every DOM API that parses a string as markup (or runs it).
const SINKS = /\b(innerHTML|outerHTML|insertAdjacentHTML|createContextualFragment|parseFromString|document\.write|srcdoc)\b/;

function sources(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) return entry.name === "generated" ? [] : sources(path);
    return /\.(ts|js|mjs)$/.test(entry.name) ? [path] : [];
  });
}

test("no source file of the app uses an HTML-parsing DOM API", () => {
  const files = sources(SRC);
  assert.ok(files.some((path) => path.endsWith("ward.ts")), `sources not found under ${SRC}`);
  const offenders = files.flatMap((path) =>
    readFileSync(path, "utf8")
      .split("\n")
      .map((line, i) => ({ line, at: `${path}:${i + 1}` }))
      .filter(({ line }) => SINKS.test(line) && !line.trimStart().startsWith("//"))
      .map(({ at, line }) => `${at}: ${line.trim()}`),
  );
  assert.deepEqual(offenders, []);
});
