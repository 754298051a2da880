// Bundle Swagger UI (swagger-ui-dist from the npm lock) with the viewer, so the service's /docs
// page loads it from its own origin: no CDN, works on an air-gapped hospital network.
import { copyFileSync, mkdirSync } from "node:fs";

const FILES = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"];
const target = "../src/medverse/service/web_dist/assets/swagger";
mkdirSync(target, { recursive: true });
for (const name of FILES) copyFileSync(`node_modules/swagger-ui-dist/${name}`, `${target}/${name}`);
