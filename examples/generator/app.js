// The example paid service: POST /generate {name} with the plugin's `Authorization: Bearer mcu_…`.
// It asks Mascot who the user is (verify), holds 5 credits for the job, draws the mascot, and
// captures them (or releases them if drawing fails): {svg, charged, balance}.
import http from "node:http";
import { MascotApiError, MeterError, ServiceClient } from "../../sdk/node/src/index.js";
import { drawMascot, normaliseName } from "./mascot.js";

/** What one mascot costs, in credits. */
export const PRICE = 5;
/** The feature the spend is filed under in the user's history. */
export const FEATURE = "generate";
const MAX_BODY = 4096;
const MAX_NAME = 40;

/**
 * @typedef {object} Options
 * @property {string} apiBase The Mascot server (MASCOT_API_BASE).
 * @property {string} serviceKey This service's mck_… key (MASCOT_SERVICE_KEY).
 * @property {number} [maxInFlight] Requests served at once; more are 503 `busy` (default 32).
 * @property {(line: string) => void} [log] One line per request (never a token).
 * @property {ConstructorParameters<typeof ServiceClient>[0]["retry"]} [retry]
 */

class Refusal extends Error {
  /** @param {number} status @param {string} code @param {string} message @param {Record<string, string>} [headers] */
  constructor(status, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** CORS: the plugin's UI is a sandboxed iframe (origin `null`) and sends a bearer token, no cookies. */
const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
  "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
  "Access-Control-Max-Age": "600",
};

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 * @param {Record<string, string>} [headers]
 */
function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...CORS, "Content-Type": "application/json", "Cache-Control": "no-store", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** @param {http.IncomingMessage} req */
async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Refusal(413, "payload_too_large", `The body is larger than ${MAX_BODY} bytes.`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** `{name, team_id?}`: the name, and the team whose wallet pays (absent: the user's own).
 * @param {string} text */
function parseJob(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Refusal(400, "invalid_body", 'The body must be JSON like {"name": "Ada"}.');
  }
  if (body === null || typeof body !== "object" || typeof body.name !== "string" || (body.team_id !== undefined && typeof body.team_id !== "string")) {
    throw new Refusal(400, "invalid_body", 'The body must be JSON like {"name": "Ada"}.');
  }
  const name = normaliseName(body.name);
  if (name.length === 0 || [...name].length > MAX_NAME || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new Refusal(422, "validation_failed", `Give your mascot a name of 1 to ${MAX_NAME} characters.`);
  }
  const teamId = body.team_id;
  if (teamId !== undefined && (teamId.length === 0 || teamId.length > 255 || /[\u0000-\u001f\u007f]/.test(teamId))) {
    throw new Refusal(422, "validation_failed", "team_id is not a team.");
  }
  return { name, teamId };
}

/** @param {Options} options */
export function createApp({ apiBase, serviceKey, maxInFlight = 32, log = () => {}, retry }) {
  const mascot = new ServiceClient({ apiBase, serviceKey, retry });
  let inFlight = 0;

  /** @param {http.IncomingMessage} req @param {http.ServerResponse} res */
  async function generate(req, res) {
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (!token) throw new Refusal(401, "unauthorized", "Sign in to Mascot first.");
    const { name, teamId } = parseJob(await readBody(req));
    // Who is asking: the plugin sent a short-lived mcu_ token, never its own session token.
    const who = await mascot.verify(token);
    if (!who.active || !who.user) throw new Refusal(401, "unauthorized", "Your sign-in has expired. Please sign in again.");
    if (who.password_change_required) throw new Refusal(403, "password_change_required", "Choose a new password in Mascot first.");
    // A key from the plugin makes a repeated click (or a retry) answer the first job.
    const key = req.headers["idempotency-key"];
    const idempotencyKey = typeof key === "string" && /^[\x21-\x7e]{1,200}$/.test(key) ? `generate:${key}` : undefined;
    const done = await mascot.withHold(
      { userId: who.user.id, teamId, amount: PRICE, reason: `Generated a mascot: ${name}`, feature: FEATURE, ttlSeconds: 120, idempotencyKey },
      async () => drawMascot(name),
    );
    // A team's balance is for its owner and admins to see: a team job answers without it.
    send(res, 200, { svg: done.value, charged: done.charged, balance: teamId === undefined ? done.balance : null });
  }

  /** @param {unknown} e @param {http.ServerResponse} res */
  function fail(e, res) {
    if (e instanceof Refusal) return send(res, e.status, { error: { code: e.code, message: e.message } }, e.headers);
    if (e instanceof MeterError && e.stage === "work") {
      log(`drawing failed (hold ${e.holdId} released): ${e.cause instanceof Error ? e.cause.message : e.cause}`);
      return send(res, 500, { error: { code: "internal_error", message: "Drawing the mascot failed. Nothing was charged; please try again." } });
    }
    const cause = e instanceof MeterError ? e.cause : e;
    if (cause instanceof MascotApiError) {
      // The user's own problem (too few credits): the server's message is written for them.
      if (cause.status === 402 && cause.code === "insufficient_credits") return send(res, 402, { error: { code: cause.code, message: cause.message } });
      // A team member's cap for the period: the server's words, and when it resets.
      if (cause.status === 402 && cause.code === "member_cap_reached") {
        return send(res, 402, { error: { code: cause.code, message: cause.message, ...(cause.resetsAt ? { resets_at: cause.resetsAt } : {}) } });
      }
      if (cause.code === "key_limit_reached") return send(res, 503, { error: { code: cause.code, message: "The generator has used its credit limit for today. Please try again tomorrow." } });
    }
    log(`Mascot call failed: ${e instanceof Error ? e.message : e}`);
    return send(res, 502, { error: { code: "upstream_error", message: "The generator could not complete your request with Mascot. Please try again." } });
  }

  const server = http.createServer(async (req, res) => {
    const started = Date.now();
    const path = (req.url ?? "/").split("?")[0];
    res.on("finish", () => log(`${req.method} ${path} ${res.statusCode} ${Date.now() - started}ms`));
    try {
      if (req.method === "OPTIONS") {
        res.writeHead(204, CORS);
        res.end();
      } else if (path === "/healthz") {
        send(res, 200, { status: "ok" });
      } else if (path !== "/generate") {
        throw new Refusal(404, "not_found", "No such page. POST /generate {name}.");
      } else if (req.method !== "POST") {
        throw new Refusal(405, "method_not_allowed", "Use POST /generate {name}.", { Allow: "POST, OPTIONS" });
      } else if (inFlight >= maxInFlight) {
        throw new Refusal(503, "busy", "The generator is busy. Please try again in a moment.", { "Retry-After": "1" });
      } else {
        inFlight++;
        try {
          await generate(req, res);
        } finally {
          inFlight--;
        }
      }
    } catch (e) {
      fail(e, res);
    }
  });
  return server;
}
