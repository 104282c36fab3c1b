// @ts-check
// Meter Mascot credits from the service that does the paid work (Node 20+, no dependency beyond
// its own fetch). The request and answer types are generated from the server's Rust types
// (crates/api-types) into ./generated/, checked by `cargo test -p api-types`.

/** @typedef {import("./generated/index.js").VerifyResponse} VerifyResponse */
/** @typedef {import("./generated/index.js").BalanceResponse} BalanceResponse */
/** @typedef {import("./generated/index.js").SpendRequest} SpendRequest */
/** @typedef {import("./generated/index.js").SpendResponse} SpendResponse */
/** @typedef {import("./generated/index.js").HoldResponse} HoldResponse */
/** @typedef {import("./generated/index.js").HoldOutcome} HoldOutcome */
/** @typedef {import("./generated/index.js").HoldStatus} HoldStatus */
/** @typedef {import("./generated/index.js").ErrorEnvelope} ErrorEnvelope */
/** @typedef {import("./generated/index.js").User} User */

/**
 * Body of a hold: `HoldRequest` with `ttl_seconds` optional (server default 900 s).
 * @typedef {Omit<import("./generated/index.js").HoldRequest, "ttl_seconds"> & { ttl_seconds?: number | null }} HoldRequest
 */

/**
 * How calls are retried after a network failure or a 429/502/503/504 answer.
 * @typedef {object} RetryPolicy
 * @property {number} attempts Tries in all, the first included (1 = never retry).
 * @property {number} firstDelayMs Wait before the first retry; doubles for each next one (50–100 % of it, jittered).
 * @property {number} maxDelayMs Longest wait between two tries.
 * @property {number} maxRetryAfterMs A `Retry-After` longer than this is not waited for: the call fails with the 429/503.
 */

/**
 * @typedef {object} ServiceClientOptions
 * @property {string} apiBase The Mascot server's origin, e.g. `https://mascot.example.com`.
 * @property {string} serviceKey The `mck_…` key `mascot-server service-keys add` printed.
 * @property {Partial<RetryPolicy>} [retry]
 * @property {number} [timeoutMs] Each try gives up after this long (default 30 s).
 * @property {typeof fetch} [fetch] Another fetch (default: Node's own).
 */

/**
 * One paid job for one user.
 * @typedef {object} Job
 * @property {string} userId The user, as `verify` named them (`user.id`).
 * @property {number} amount Credits to hold: the most the job may cost.
 * @property {string} reason Shown in the user's history, e.g. "Generated a mascot".
 * @property {string} [feature] What the credits pay for, e.g. `generate` (1–64 of `a-z 0-9 _ . -`).
 * @property {number} [ttlSeconds] Seconds until the hold lapses by itself (server default 900; from 30, the server's HOLD_MIN_TTL_SECS default, to 86400): longer than the work may take.
 * @property {string} [idempotencyKey] The job's key (a fresh one by default). Pass your own job id so that a repeated job answers the first one instead of charging twice.
 * @property {string} [teamId] Hold on this team's wallet instead of the user's own (the user must be a member; their cap applies: 402 `member_cap_reached`, with `resetsAt`).
 */

/**
 * A job that was done and paid for.
 * @template T
 * @typedef {object} Metered
 * @property {T} value What the work returned.
 * @property {string} holdId
 * @property {number} charged Credits spent (0 if the work cost nothing: the hold was released).
 * @property {string | null} entryId The ledger entry of the spend (null when nothing was charged).
 * @property {number} balance The user's balance after the charge.
 * @property {number} available
 */

/** @type {RetryPolicy} */
export const DEFAULT_RETRY = Object.freeze({ attempts: 4, firstDelayMs: 200, maxDelayMs: 3000, maxRetryAfterMs: 10_000 });

/** Every error this SDK throws; `kind` says which one. */
export class MascotServiceError extends Error {
  /**
   * @param {"api" | "transport" | "unexpected" | "capture_mismatch" | "config" | "meter"} kind
   * @param {string} message
   * @param {{ cause?: unknown }} [options]
   */
  constructor(kind, message, options) {
    super(message, options);
    this.name = new.target.name;
    this.kind = kind;
  }
}

/** The server answered with its error envelope. `code` is stable (`insufficient_credits`,
 * `not_found`, `key_limit_reached`, `hold_closed`, `captured_differently`,
 * `idempotency_key_reused`, `unauthorized`, …); `message` is written for people (show it for 402). */
export class MascotApiError extends MascotServiceError {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {number | null} retryAfterMs The `Retry-After` of a 429/503 answer.
   * @param {string | null} [resetsAt] `error.resets_at` (RFC 3339): when a team member's cap
   *   resets, on 402 `member_cap_reached`.
   */
  constructor(status, code, message, retryAfterMs = null, resetsAt = null) {
    super("api", message);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.resetsAt = resetsAt;
  }
}

/** No answer: unreachable, connection broken, timed out (after the retries). */
export class MascotTransportError extends MascotServiceError {
  /** @param {unknown} cause */
  constructor(cause) {
    super("transport", `No answer from the Mascot server: ${describe(cause)}`, { cause });
  }
}

/** An answer that is not what the API promises. */
export class MascotUnexpectedError extends MascotServiceError {
  /** @param {number} status @param {string} detail */
  constructor(status, detail) {
    super("unexpected", `Unexpected answer from the Mascot server (HTTP ${status}): ${detail}`);
    this.status = status;
  }
}

/** A capture answered 200 but did not capture what was asked. */
export class CaptureMismatchError extends MascotServiceError {
  /** @param {string} holdId @param {number} asked @param {number | null} captured @param {HoldStatus} holdStatus */
  constructor(holdId, asked, captured, holdStatus) {
    super("capture_mismatch", `Hold ${holdId}: asked to capture ${asked} credits, the server answered ${holdStatus} with ${captured} captured`);
    this.holdId = holdId;
    this.asked = asked;
    this.captured = captured;
    this.holdStatus = holdStatus;
  }
}

/**
 * `meter`/`withHold` failed; `stage` says where:
 * - `hold`: the credits could not be held (`cause` is the MascotApiError, e.g. 402): the work did not run, nothing charged;
 * - `work`: the work threw (`cause` is what it threw); the hold was released (`releaseError` if that failed too);
 * - `cost`: the work reported a cost below 0 or above the hold; released, nothing charged;
 * - `charge`: the work succeeded but the capture failed (`cause`: 409 `hold_closed` if the hold
 *   expired meanwhile, `captured_differently`, a CaptureMismatchError, a transport error). The hold
 *   stays as the server has it: capture or release `holdId`, or let it lapse.
 */
export class MeterError extends MascotServiceError {
  /**
   * @param {"hold" | "work" | "cost" | "charge"} stage
   * @param {string} message
   * @param {{ cause: unknown, holdId?: string | null, releaseError?: unknown, cost?: number }} details
   */
  constructor(stage, message, { cause, holdId = null, releaseError = null, cost }) {
    super("meter", message, { cause });
    this.stage = stage;
    this.holdId = holdId;
    this.releaseError = releaseError;
    this.cost = cost;
  }
}

/** @param {unknown} e */
function describe(e) {
  if (e instanceof Error) {
    const cause = /** @type {{ cause?: unknown }} */ (e).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @param {string} id One path segment, percent-encoded (never trust an id to be a UUID). */
const segment = (id) => encodeURIComponent(id);

/**
 * A client of the Mascot service API for one server and one service key. Every call is retried
 * on a network failure and on 429/502/503/504 (honouring `Retry-After`), with bounded, jittered
 * back-off: the calls that change something are safe to repeat (spend and hold carry an
 * `Idempotency-Key`; capturing the same amount again or releasing again answers the same outcome).
 */
export class ServiceClient {
  #base;
  #authorization;
  #retry;
  #timeoutMs;
  #fetch;

  /** @param {ServiceClientOptions} options */
  constructor({ apiBase, serviceKey, retry = {}, timeoutMs = 30_000, fetch: fetchImpl = globalThis.fetch }) {
    let url;
    try {
      url = new URL(String(apiBase).trim());
    } catch {
      throw new MascotServiceError("config", `The API base must be a URL like https://mascot.example.com (got ${JSON.stringify(apiBase)})`);
    }
    if (!["http:", "https:"].includes(url.protocol) || (url.pathname !== "/" && url.pathname !== "") || url.search) {
      throw new MascotServiceError("config", `The API base must be an origin like https://mascot.example.com (got ${JSON.stringify(apiBase)})`);
    }
    const key = String(serviceKey ?? "").trim();
    if (!key.startsWith("mck_")) {
      throw new MascotServiceError("config", "The service key must be the mck_… key `mascot-server service-keys add` printed");
    }
    this.#base = url.origin;
    this.#authorization = `Bearer ${key}`;
    this.#retry = { ...DEFAULT_RETRY, ...retry };
    this.#retry.attempts = Math.max(1, this.#retry.attempts);
    this.#timeoutMs = timeoutMs;
    this.#fetch = fetchImpl;
  }

  /** Never the key. */
  toJSON() {
    return { apiBase: this.#base };
  }

  [Symbol.for("nodejs.util.inspect.custom")]() {
    return `ServiceClient { apiBase: '${this.#base}' }`;
  }

  /**
   * Who sent a request: the token the plugin sent (`mcu_…` from `POST /api/v1/auth/service-token`,
   * or a plugin `mct_…` token). `{active: false}` for anything that is not a live token.
   * @param {string} token
   * @returns {Promise<VerifyResponse>}
   */
  async verify(token) {
    const answer = await this.#call("POST", "/api/v1/service/verify", { token: String(token ?? "") });
    return /** @type {VerifyResponse} */ (shape(answer, { active: "boolean" }));
  }

  /**
   * @param {string} userId
   * @returns {Promise<BalanceResponse>}
   */
  async balance(userId) {
    const answer = await this.#call("GET", `/api/v1/service/users/${segment(userId)}/balance`);
    return /** @type {BalanceResponse} */ (shape(answer, { balance: "number", available: "number", held: "number" }));
  }

  /**
   * Spends credits at once. The same `idempotencyKey` again answers the same spend and charges
   * nothing more; reused for another spend it is 409 `idempotency_key_reused`. 402
   * `insufficient_credits`, 404 `not_found` (unknown user), 402 `key_limit_reached`.
   * @param {string} userId
   * @param {SpendRequest} request
   * @param {string} idempotencyKey
   * @returns {Promise<SpendResponse>}
   */
  async spend(userId, request, idempotencyKey) {
    const answer = await this.#call("POST", `/api/v1/service/users/${segment(userId)}/spend`, request, idempotencyKey);
    return /** @type {SpendResponse} */ (shape(answer, { balance: "number", entry_id: "string" }));
  }

  /**
   * Reserves credits for a job (the same `idempotencyKey` again answers the same hold). The hold
   * belongs to the services: the user cannot release or capture it.
   * @param {string} userId
   * @param {HoldRequest} request
   * @param {string} idempotencyKey
   * @returns {Promise<HoldResponse>}
   */
  async hold(userId, request, idempotencyKey) {
    const answer = await this.#call("POST", `/api/v1/service/users/${segment(userId)}/holds`, request, idempotencyKey);
    return /** @type {HoldResponse} */ (shape(answer, { hold_id: "string", amount: "number", expires_at: "string", balance: "number", available: "number" }));
  }

  /**
   * Spends `amount` of the held credits (all of them without it) and frees the rest. The same
   * capture again answers the same outcome; 409 `hold_closed` (released or expired), 409
   * `captured_differently`. Anything but `captured` of exactly what was asked throws a
   * CaptureMismatchError.
   * @param {string} holdId
   * @param {number | null} [amount]
   * @returns {Promise<HoldOutcome>}
   */
  async capture(holdId, amount = null) {
    const answer = await this.#call("POST", `/api/v1/service/holds/${segment(holdId)}/capture`, { amount });
    const outcome = /** @type {HoldOutcome} */ (shape(answer, { hold_id: "string", status: "string", amount: "number", balance: "number", available: "number" }));
    const asked = amount ?? outcome.amount;
    if (outcome.status !== "captured" || outcome.captured !== asked) {
      throw new CaptureMismatchError(holdId, asked, outcome.captured ?? null, outcome.status);
    }
    return outcome;
  }

  /**
   * Frees the held credits (again: the same outcome). 409 `hold_closed` if it was captured.
   * @param {string} holdId
   * @returns {Promise<HoldOutcome>}
   */
  async release(holdId) {
    const answer = await this.#call("POST", `/api/v1/service/holds/${segment(holdId)}/release`);
    return /** @type {HoldOutcome} */ (shape(answer, { hold_id: "string", status: "string", amount: "number", balance: "number", available: "number" }));
  }

  /**
   * Holds `job.amount` credits, runs `work`, then captures the cost it returns (`{value, cost}`,
   * 0 ≤ cost ≤ job.amount; 0 releases the hold) or, if it throws, releases the hold. Every request
   * of the job is retried on network failures with the job's one Idempotency-Key, and the capture
   * is checked to have charged exactly `cost`. Throws a MeterError (see its `stage`).
   * @template T
   * @param {Job} job
   * @param {(hold: HoldResponse) => Promise<{ value: T, cost: number }>} work
   * @returns {Promise<Metered<T>>}
   */
  async meter(job, work) {
    const key = job.idempotencyKey ?? crypto.randomUUID();
    /** @type {HoldRequest} */
    const request = { amount: job.amount, reason: job.reason };
    if (job.feature !== undefined) request.feature = job.feature;
    if (job.ttlSeconds !== undefined) request.ttl_seconds = job.ttlSeconds;
    if (job.teamId !== undefined) request.team_id = job.teamId;
    let hold;
    try {
      hold = await this.hold(job.userId, request, key);
    } catch (e) {
      throw new MeterError("hold", `Could not hold the credits: ${describe(e)}`, { cause: e });
    }
    if (hold.amount !== job.amount) {
      const e = new MascotUnexpectedError(201, `asked to hold ${job.amount} credits, the server held ${hold.amount}`);
      throw new MeterError("hold", e.message, { cause: e, holdId: hold.hold_id });
    }
    const holdId = hold.hold_id;
    let done;
    try {
      done = await work(hold);
    } catch (e) {
      const releaseError = await this.release(holdId).then(() => null, (r) => r);
      throw new MeterError("work", `The work failed; hold ${holdId} was ${releaseError ? "not released" : "released"}: ${describe(e)}`, { cause: e, holdId, releaseError });
    }
    const cost = done?.cost;
    if (typeof cost !== "number" || !Number.isInteger(cost) || cost < 0 || cost > job.amount) {
      const releaseError = await this.release(holdId).then(() => null, (r) => r);
      throw new MeterError("cost", `The work cost ${cost} credits, outside 0..${job.amount}: hold ${holdId} released, nothing charged`, { cause: null, holdId, releaseError, cost });
    }
    try {
      if (cost === 0) {
        const outcome = await this.release(holdId);
        return { value: done.value, holdId, charged: 0, entryId: null, balance: outcome.balance, available: outcome.available };
      }
      const outcome = await this.capture(holdId, cost);
      return { value: done.value, holdId, charged: cost, entryId: outcome.entry_id, balance: outcome.balance, available: outcome.available };
    } catch (e) {
      throw new MeterError("charge", `The work succeeded but charging hold ${holdId} failed: ${describe(e)}`, { cause: e, holdId, cost });
    }
  }

  /**
   * `meter` for work that always costs the whole hold: `work` returns only its value, and
   * `job.amount` is captured when it succeeds.
   * @template T
   * @param {Job} job
   * @param {(hold: HoldResponse) => Promise<T>} work
   * @returns {Promise<Metered<T>>}
   */
  withHold(job, work) {
    return this.meter(job, async (hold) => ({ value: await work(hold), cost: job.amount }));
  }

  /**
   * One call, with the retries the policy allows.
   * @param {"GET" | "POST"} method
   * @param {string} path
   * @param {unknown} [body]
   * @param {string} [idempotencyKey]
   * @returns {Promise<unknown>}
   */
  async #call(method, path, body, idempotencyKey) {
    const retry = this.#retry;
    for (let tried = 1; ; tried++) {
      let wait;
      try {
        return await this.#once(method, path, body, idempotencyKey);
      } catch (e) {
        if (e instanceof MascotTransportError) {
          wait = backoff(retry, tried + 1);
        } else if (e instanceof MascotApiError && (e.status === 429 || e.status === 503) && e.retryAfterMs !== null) {
          if (e.retryAfterMs > retry.maxRetryAfterMs) throw e;
          wait = e.retryAfterMs;
        } else if (e instanceof MascotApiError && [429, 502, 503, 504].includes(e.status)) {
          wait = backoff(retry, tried + 1);
        } else {
          throw e;
        }
        if (tried >= retry.attempts) throw e;
      }
      await sleep(wait);
    }
  }

  /**
   * @param {"GET" | "POST"} method
   * @param {string} path
   * @param {unknown} body
   * @param {string | undefined} idempotencyKey
   * @returns {Promise<unknown>}
   */
  async #once(method, path, body, idempotencyKey) {
    /** @type {Record<string, string>} */
    const headers = { Authorization: this.#authorization, Accept: "application/json" };
    if (idempotencyKey !== undefined) headers["Idempotency-Key"] = idempotencyKey;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let status;
    let text;
    let retryAfter;
    try {
      const response = await this.#fetch(this.#base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
        redirect: "error",
      });
      status = response.status;
      retryAfter = response.headers.get("retry-after");
      text = await response.text();
    } catch (e) {
      throw new MascotTransportError(e);
    }
    /** @type {unknown} */
    let json;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (status >= 200 && status < 300) {
      if (json === null || typeof json !== "object") throw new MascotUnexpectedError(status, `not a JSON object: ${excerpt(text)}`);
      return json;
    }
    const seconds = retryAfter !== null && /^\s*\d+\s*$/.test(retryAfter) ? Number(retryAfter) * 1000 : null;
    const error = /** @type {Partial<ErrorEnvelope> | undefined} */ (json)?.error;
    if (error && typeof error.code === "string" && typeof error.message === "string") {
      throw new MascotApiError(status, error.code, error.message, seconds, typeof error.resets_at === "string" ? error.resets_at : null);
    }
    if ([429, 502, 503, 504].includes(status)) {
      // A proxy in front of the server answered without the envelope: still worth a retry.
      throw new MascotApiError(status, "", `HTTP ${status}`, seconds);
    }
    throw new MascotUnexpectedError(status, `not the error envelope: ${excerpt(text)}`);
  }
}

/**
 * The back-off before try `next` (2 = the first retry), jittered to 50–100 %.
 * @param {RetryPolicy} retry
 * @param {number} next
 */
export function backoff(retry, next) {
  const exp = Math.min(retry.firstDelayMs * 2 ** Math.min(next - 2, 16), retry.maxDelayMs);
  return exp / 2 + (exp / 2) * Math.random();
}

/** @param {string} text */
function excerpt(text) {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/**
 * Checks that an answer has the fields the contract promises (of these types).
 * @param {unknown} answer
 * @param {Record<string, "string" | "number" | "boolean">} fields
 * @returns {unknown}
 */
function shape(answer, fields) {
  const object = /** @type {Record<string, unknown>} */ (answer);
  for (const [name, type] of Object.entries(fields)) {
    if (typeof object[name] !== type) {
      throw new MascotUnexpectedError(200, `the answer's ${name} is not a ${type}: ${excerpt(JSON.stringify(answer))}`);
    }
  }
  return answer;
}
