// The manifest lists every origin the plugin talks to, and nothing else: the source manifest the
// production defaults (origins.mjs), the built one (dist/) exactly this build's MASCOT_API_BASE and
// MASCOT_SERVICE_BASE. Figma blocks any other origin (CSP), so a missing one is a broken feature.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { buildOrigins, DEFAULT_API_BASE, DEFAULT_SERVICE_BASE, DEMO_SERVER_PORT, EXAMPLE_SERVICE_PORT } from "../origins.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, "../..");
const read = (p) => fs.readFileSync(path.join(root, p), "utf8");
const source = JSON.parse(read("plugin/manifest.json"));

test("the source manifest allows the production backend and generation service, over https", () => {
  assert.deepEqual(source.networkAccess.allowedDomains, [DEFAULT_API_BASE, DEFAULT_SERVICE_BASE]);
  for (const origin of source.networkAccess.allowedDomains) {
    assert.equal(new URL(origin).origin, origin, `${origin} is an origin`);
    assert.equal(new URL(origin).protocol, "https:", origin);
  }
  assert.match(source.networkAccess.reasoning, /backend/);
  assert.match(source.networkAccess.reasoning, /generator/);
});

test("devAllowedDomains has the demo server's and the example service's local ports, as the scripts use them", () => {
  const dev = source.networkAccess.devAllowedDomains;
  for (const port of [DEMO_SERVER_PORT, EXAMPLE_SERVICE_PORT]) {
    for (const host of ["localhost", "127.0.0.1"]) assert.ok(dev.includes(`http://${host}:${port}`), `http://${host}:${port} in ${dev}`);
  }
  // The same ports as the demo and the example's own default.
  assert.match(read("scripts/demo"), new RegExp(`PORT:-${DEMO_SERVER_PORT}\\b`));
  assert.match(read("scripts/demo"), new RegExp(`GENERATOR_PORT:-${EXAMPLE_SERVICE_PORT}\\b`));
  assert.match(read("examples/generator/server.js"), new RegExp(`process\\.env\\.PORT \\?\\? ${EXAMPLE_SERVICE_PORT}\\b`));
});

test("the built manifest allows exactly the origins this build talks to, and the UI calls them", () => {
  const built = path.join(root, "plugin/dist/manifest.json");
  assert.ok(fs.existsSync(built), "build the plugin first (scripts/build-plugin; scripts/test-plugin does)");
  const { api, service } = buildOrigins();
  const manifest = JSON.parse(fs.readFileSync(built, "utf8"));
  assert.deepEqual(manifest.networkAccess.allowedDomains, [...new Set([api, service])], "run with the build's MASCOT_API_BASE and MASCOT_SERVICE_BASE");
  assert.deepEqual(manifest.networkAccess.devAllowedDomains, source.networkAccess.devAllowedDomains);
  const code = fs.readFileSync(path.join(root, "plugin/dist/code.js"), "utf8");
  assert.ok(code.includes(JSON.stringify(api)) && code.includes(JSON.stringify(service)), "code.js hands both origins to the UI");
});

test("origins are checked at build time", () => {
  assert.throws(() => buildOrigins({ MASCOT_API_BASE: "not a url" }), /MASCOT_API_BASE/);
  assert.throws(() => buildOrigins({ MASCOT_SERVICE_BASE: "ftp://x" }), /MASCOT_SERVICE_BASE/);
  assert.deepEqual(buildOrigins({ MASCOT_API_BASE: "http://127.0.0.1:9/x/", MASCOT_SERVICE_BASE: "http://127.0.0.1:10/" }), { api: "http://127.0.0.1:9", service: "http://127.0.0.1:10" });
});
