// Compile the web unit tests (tsc, CommonJS) into .test-out/ and run them with node's test runner.
import { execFileSync } from "node:child_process";
import { readdirSync, rmSync, writeFileSync } from "node:fs";

rmSync(".test-out", { recursive: true, force: true });
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.test.json"], { stdio: "inherit" });
writeFileSync(".test-out/package.json", '{ "type": "commonjs" }\n');
const tests = readdirSync(".test-out/tests").filter((name) => name.endsWith(".test.js"));
execFileSync(process.execPath, ["--test", ...tests.map((name) => `.test-out/tests/${name}`)], { stdio: "inherit" });
