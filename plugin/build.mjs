// Builds the plugin: dist/code.js (main thread) and ONE self-contained dist/ui.html (CSS, JS and
// the Wasm client inlined; Figma loads only that file), plus dist/manifest.json whose
// networkAccess lists the origins this build talks to: the backend (env MASCOT_API_BASE) and the
// generation service of the Create tab (env MASCOT_SERVICE_BASE); see origins.mjs.
import * as esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { buildOrigins } from "./origins.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);
const dist = path.join(here, "dist");
let origin;
let service;
try {
  ({ api: origin, service } = buildOrigins());
} catch (e) {
  console.error(e.message);
  process.exit(2);
}
fs.mkdirSync(dist, { recursive: true });

await esbuild.build({
  entryPoints: [path.join(here, "src/code.ts")],
  bundle: true,
  format: "iife",
  target: "es2020",
  minify: true,
  define: { __API_BASE__: JSON.stringify(origin), __SERVICE_BASE__: JSON.stringify(service) },
  outfile: path.join(dist, "code.js"),
  logLevel: "warning",
});

const ui = await esbuild.build({
  entryPoints: [path.join(here, "src/ui/main.ts")],
  bundle: true,
  format: "iife",
  target: "es2020",
  minify: true,
  write: false,
  // The Wasm is inlined as bytes and instantiated from memory, never fetched.
  loader: { ".wasm": "binary" },
  // wasm-bindgen's default URL lookup is never used (we pass the bytes); keep it inert.
  define: { "import.meta.url": '"about:blank"' },
  logLevel: "warning",
  // wasm-bindgen's glue lists the client's JS snippet once per function it imports directly
  // from it: the same module under the same key, harmless.
  logOverride: { "duplicate-object-key": "silent" },
});
const css = await esbuild.transform(fs.readFileSync(path.join(here, "src/ui/styles.css"), "utf8"), { loader: "css", minify: true });
const js = ui.outputFiles[0].text.replace(/<\/script/gi, "<\\/script");
const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Mascot</title><style>${css.code}</style></head><body><div id="app"></div><script>${js}</script></body></html>`;
fs.writeFileSync(path.join(dist, "ui.html"), html);

const manifest = JSON.parse(fs.readFileSync(path.join(here, "manifest.json"), "utf8"));
manifest.main = "code.js";
manifest.ui = "ui.html";
manifest.networkAccess.allowedDomains = [...new Set([origin, service])];
fs.writeFileSync(path.join(dist, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log(`plugin built for ${origin} (service ${service}): dist/ui.html ${kb(html.length)} (gzip ${kb(zlib.gzipSync(html).length)}), dist/code.js ${kb(fs.statSync(path.join(dist, "code.js")).size)}`);
