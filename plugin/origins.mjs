// Where the plugin talks to, decided at build time (build.mjs) and checked against the manifest
// (test/manifest.test.mjs): the Mascot backend and the service that does the paid work.
//   MASCOT_API_BASE      the backend (default: production)
//   MASCOT_SERVICE_BASE  the generation service the Create tab calls (default: production)

export const DEFAULT_API_BASE = "https://mascot-production.up.railway.app";
export const DEFAULT_SERVICE_BASE = "https://mascot-generator.up.railway.app";
/** Local development: the demo server (scripts/demo) and the example service (examples/generator). */
export const DEMO_SERVER_PORT = 8080;
export const EXAMPLE_SERVICE_PORT = 8081;

/** The origin of `raw` (scheme, host, port), or an Error naming the variable. */
export function originOf(name, raw) {
  try {
    const url = new URL(raw);
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("not http(s)");
    return url.origin;
  } catch {
    throw new Error(`${name} must be a URL like https://mascot.example.com (got ${raw})`);
  }
}

/** The origins this build uses, from the environment. */
export function buildOrigins(env = process.env) {
  return {
    api: originOf("MASCOT_API_BASE", env.MASCOT_API_BASE ?? DEFAULT_API_BASE),
    service: originOf("MASCOT_SERVICE_BASE", env.MASCOT_SERVICE_BASE ?? DEFAULT_SERVICE_BASE),
  };
}
