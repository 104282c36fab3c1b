// The real server for the SDK's and the example's tests: the release binary scripts/test-sdk points
// at (MASCOT_SERVER_BIN, default target/container/mascot-server, built by
// scripts/build-server-release), started with `serve` on a fresh SQLite database; a service key
// from `mascot-server service-keys add`, users from POST /api/v1/auth/signup, credits from
// `mascot-server credits grant`. Each server stops (and its files go) with `stop()`.
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../../..");
/** The password every test user gets; scripts/scan-logs knows it, so a log line carrying it fails the run. */
export const PASSWORD = "correct horse battery";

function binary() {
  const bin = process.env.MASCOT_SERVER_BIN ?? path.join(root, "target/container/mascot-server");
  if (!fs.existsSync(bin)) {
    throw new Error(`no server binary at ${bin}: these tests run against the release server. Run scripts/test-sdk (it builds it with scripts/build-server-release), or set MASCOT_SERVER_BIN.`);
  }
  return bin;
}

function baseEnv(databaseUrl) {
  return {
    PATH: process.env.PATH ?? "",
    DATABASE_URL: databaseUrl,
    STRIPE_SECRET_KEY: "sk_test_x",
    STRIPE_WEBHOOK_SECRET: "whsec_x",
    LOG_FORMAT: "json",
    RUST_LOG: "info",
    RATE_LIMIT_SIGNUPS_PER_HOUR: "10000",
  };
}

let started = 0;

export async function startServer(label = "sdk") {
  const bin = binary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mascot-sdk-"));
  const databaseUrl = `sqlite://${path.join(dir, "mascot.db")}?mode=rwc`;
  // Kept with the test suite's other logs when scripts/test collects them (then scanned for secrets).
  const logDir = process.env.MASCOT_TEST_LOG_DIR ?? dir;
  fs.mkdirSync(logDir, { recursive: true });
  const log = path.join(logDir, `${label}-node-${process.pid}-${started++}.log`);
  const out = fs.openSync(log, "w");
  const child = spawn(bin, ["serve"], {
    env: { ...baseEnv(databaseUrl), HOST: "127.0.0.1", PORT: "0" },
    stdio: ["ignore", out, out],
  });
  fs.closeSync(out);
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const deadline = Date.now() + 20_000;
  let base = null;
  while (!base) {
    const text = fs.readFileSync(log, "utf8");
    const line = text.split("\n").find((l) => l.includes("mascot-server listening"));
    if (line) {
      base = `http://${JSON.parse(line).address}`;
      break;
    }
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}) before listening:\n${text}`);
    if (Date.now() > deadline) throw new Error(`the server did not start in 20 s:\n${text}`);
    await new Promise((r) => setTimeout(r, 20));
  }

  // RUST_LOG=warn: the server logs to stdout, and `service-keys add` must leave only the key there.
  async function cli(...args) {
    const { stdout } = await run(bin, args, { env: { ...baseEnv(databaseUrl), RUST_LOG: "warn" } });
    return stdout;
  }

  return {
    base,
    databaseUrl,
    bin,
    log,
    cli,
    /** A new service key (`service-keys add` prints only the key on stdout). */
    async serviceKey(name = `test-${randomUUID().slice(0, 8)}`) {
      const key = (await cli("service-keys", "add", "--name", name)).trim();
      if (!/^mck_\S+$/.test(key)) throw new Error(`not a key: ${JSON.stringify(key)}`);
      return key;
    },
    async grant(email, amount) {
      await cli("credits", "grant", "--email", email, "--amount", String(amount), "--reason", "SDK test credits");
    },
    /** A new user signed up through the plugin API, with `credits` granted. */
    async user(credits = 0) {
      const email = `sdk-${randomUUID()}@example.com`;
      const response = await fetch(`${base}/api/v1/auth/signup`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email, password: PASSWORD }),
      });
      if (response.status !== 201 && response.status !== 200) throw new Error(`signup: ${response.status} ${await response.text()}`);
      const auth = await response.json();
      if (credits > 0) await this.grant(email, credits);
      return new TestUser(base, auth.user.id, email, auth.token);
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The three figures of a BalanceResponse. */
export function funds({ balance, available, held }) {
  return { balance, available, held };
}

/** A plugin user: id (as verify names it), email, plugin token (mct_…). */
export class TestUser {
  constructor(base, id, email, token) {
    Object.assign(this, { base, id, email, token });
  }

  async #api(method, path) {
    const response = await fetch(`${this.base}${path}`, { method, headers: { Authorization: `Bearer ${this.token}` } });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** POST /api/v1/auth/service-token: a mcu_… token for services. */
  async serviceToken() {
    return (await this.#api("POST", "/api/v1/auth/service-token")).token;
  }

  /** The user's own view of their balance: balance, available, held (other fields the answer may
   * grow are left out, so the tests compare what they are about). */
  async balance() {
    return funds(await this.#api("GET", "/api/v1/credits/balance"));
  }

  async history() {
    return (await this.#api("GET", "/api/v1/credits/history?limit=50")).entries;
  }

  async logout() {
    await this.#api("POST", "/api/v1/auth/logout");
  }
}
