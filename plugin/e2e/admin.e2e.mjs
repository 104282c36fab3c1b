// The operator console (/admin) as an operator uses it, in Debian's headless Chromium, against
// `mascot-server demo` (the real server and the Stripe simulator) on SQLite, or on PostgreSQL
// with ADMIN_E2E_DATABASE_URL. Data is seeded through the API, the simulator and the CLI; every
// page is screenshotted light and dark into artifacts/screenshots/admin-*.png.
// (It lives beside the plugin's browser tests to share playwright-core; it is not the plugin.)
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { axeViolations, launchBrowser, root } from "./harness.mjs";

const bin = process.env.MASCOT_SERVER_BIN ?? path.join(root, "target/debug/mascot-server");
const dbLabel = process.env.ADMIN_E2E_DB ?? "sqlite";
const shots = path.join(root, "artifacts/screenshots");
const PASSWORD = "e2e password 1";
let server, chrome, context, page, dataDir, databaseUrl;
const dialogs = [];

async function startDemo() {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mascot-admin-e2e-"));
  databaseUrl = process.env.ADMIN_E2E_DATABASE_URL ?? `sqlite://${path.join(dataDir, "mascot-demo.db")}?mode=rwc`;
  const args = ["demo", "--port", "0", "--data-dir", dataDir, "--plugin-dir", path.join(root, "plugin")];
  if (process.env.ADMIN_E2E_DATABASE_URL) args.push("--database-url", databaseUrl);
  const child = spawn(bin, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn", STRIPE_SECRET_KEY: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${output}`)), 30_000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const m = output.match(/MASCOT_DEMO_READY api=(\S+) sim=(\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ api: m[1], sim: m[2] });
      }
    });
    child.stderr.on("data", (c) => (output += c));
    child.on("exit", (code) => reject(new Error(`demo exited with ${code}:\n${output}`)));
  });
  return {
    ...ready,
    /** What the demo printed so far (it prints its mails). */
    output: () => output,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The CLI on the demo's database. */
function cli(args) {
  return execFileSync(bin, args, { env: { ...process.env, DATABASE_URL: databaseUrl, STRIPE_SECRET_KEY: "", RUST_LOG: "warn" }, encoding: "utf8" });
}

/** SQL on the demo's database, to break and repair it (sqlite3 through Python, psql for PostgreSQL). */
function sql(statement) {
  if (databaseUrl.startsWith("sqlite://")) {
    const file = databaseUrl.slice("sqlite://".length).split("?")[0];
    execFileSync("python3", ["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=10); c.execute(sys.argv[2]); c.commit()", file, statement]);
  } else {
    execFileSync("psql", [databaseUrl, "-q", "-c", statement]);
  }
}

/** RFC 6238 TOTP: HMAC-SHA-1, 6 digits, 30 s. */
function totp(base32, offsetSteps = 0) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + offsetSteps));
  const h = crypto.createHmac("sha1", key).update(counter).digest();
  const o = h[19] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

async function api(method, pathname, { token, body } = {}) {
  const res = await fetch(`${server.api}${pathname}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function signup(email) {
  const r = await api("POST", "/api/v1/auth/signup", { body: { email, password: PASSWORD } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

async function buy(token, pack, { waitCredited = true } = {}) {
  const r = await api("POST", "/api/v1/billing/checkout", { token, body: { pack_id: pack } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const id = r.body.session_id;
  const paid = await fetch(`${server.sim}/_sim/sessions/${id}/pay`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "method=card" });
  assert.equal(paid.status, 200);
  if (waitCredited) {
    const s = await api("GET", `/api/v1/billing/checkout/${id}?wait=10`, { token });
    assert.equal(s.body.status, "credited");
  }
  return id;
}

async function delivery(mode) {
  const r = await fetch(`${server.sim}/_sim/delivery`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(mode) });
  assert.equal(r.status, 204);
}

/** Screenshots of the current page in light and dark. */
async function shoot(name) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.screenshot({ path: path.join(shots, `admin-${name}-${scheme}.png`), fullPage: true });
  }
  await page.emulateMedia({ colorScheme: "light" });
}

async function goto(pathname) {
  const res = await page.goto(`${server.api}${pathname}`);
  const h = res.headers();
  assert.match(h["content-security-policy"] ?? "", /default-src 'self'/, pathname);
  assert.equal(h["cache-control"], "no-store", pathname);
  return res;
}

let buyer, ops, secret, opsToken;

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  server = await startDemo();
  chrome = await launchBrowser();
  context = await chrome.browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  // An injected <script> that ran would open a dialog: any dialog fails the test.
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  buyer = await signup("<script>alert('email')</script>@example.com");
  await buy(buyer.token, "pack_25");
  await buy(buyer.token, "pack_75");
  const spent = await fetch(`${server.api}/api/v1/credits/spend`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${buyer.token}`, "idempotency-key": "e2e-spend" },
    body: JSON.stringify({ amount: 5, reason: "render" }),
  });
  assert.equal(spent.status, 200);
  ops = await signup("ops@example.com");
  const added = cli(["admins", "add", "--email", "ops@example.com", "--operator", "e2e"]);
  secret = added.match(/secret=([A-Z2-7]+)/)[1];
  cli(["credits", "grant", "--email", buyer.user.email, "--amount", "10", "--reason", "<script>alert('reason')</script>", "--operator", "e2e"]);
  opsToken = cli(["admins", "token", "--email", "ops@example.com"]).match(/mca_[A-Za-z0-9_-]+/)[0];
});

after(async () => {
  await chrome?.close();
  await server?.stop();
});

test("sign in with email, password and a TOTP code; a wrong code is refused", async () => {
  await goto("/admin");
  assert.match(page.url(), /\/admin\/login$/);
  await shoot("login");
  await page.fill("#email", "ops@example.com");
  await page.fill("#password", PASSWORD);
  await page.fill("#code", totp(secret) === "000000" ? "111111" : "000000");
  await page.click("button[type=submit]");
  assert.match(await page.textContent(".error"), /Wrong email, password or authenticator code/);
  await page.fill("#password", PASSWORD);
  await page.fill("#code", totp(secret));
  await page.click("button[type=submit]");
  await page.waitForURL(/\/admin$/);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "mascot_admin");
  assert.ok(session.httpOnly && session.sameSite === "Strict" && session.path === "/", JSON.stringify(session));
});

test("the overview shows what was bought, granted and spent", async () => {
  await goto("/admin");
  // Today: 599 + 1299 cents, 2 purchases, 100 credits sold, 10 granted, 5 spent.
  const today = page.locator("section.stat").first();
  assert.equal(await today.locator("[data-revenue]").getAttribute("data-revenue"), "1898");
  assert.equal(await today.locator("[data-purchases]").textContent(), "2");
  assert.equal(await today.locator("[data-sold]").textContent(), "100");
  assert.equal(await today.locator("[data-granted]").textContent(), "10");
  assert.equal(await today.locator("[data-spent]").textContent(), "5");
  assert.match(await today.textContent(), /\$18\.98/);
  assert.equal(await page.locator(".bar .badge").textContent(), "TEST");
  assert.equal(await page.locator("svg.chart").count(), 2);
  await shoot("overview");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(shots, "admin-overview-phone-light.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("find a user, grant credits, issue a one-time password", async () => {
  await goto("/admin/users?q=alert");
  await shoot("users");
  await page.click(`a[href="/admin/users/${buyer.user.id}"]`);
  await page.waitForURL(/\/admin\/users\//);
  assert.equal(await page.textContent("#balance"), "105");
  await shoot("user");
  await page.fill("input[name=amount]", "3");
  await page.fill("input[name=reason]", "<script>alert('grant')</script>");
  await page.click("text=Grant credits");
  await page.waitForSelector(".flash.ok");
  assert.match(await page.textContent(".flash"), /The balance is now 108/);
  assert.equal(await page.textContent("#balance"), "108");
  await page.click("text=Issue a one-time password");
  const otp = (await page.textContent("#one-time-password")).trim();
  assert.equal(otp.length, 20);
  const login = await api("POST", "/api/v1/auth/login", { body: { email: buyer.user.email, password: otp } });
  assert.equal(login.status, 200);
  assert.equal(login.body.password_change_required, true);
  await shoot("user-one-time-password");
});

test("replay a failing event", async () => {
  // Break fulfilment, let one purchase's deliveries fail until the simulator gives up, repair.
  const before = await api("GET", "/api/v1/admin/events", { token: opsToken });
  sql("ALTER TABLE ledger_entries RENAME TO ledger_entries_away");
  const fresh = await signup("late@example.com");
  await buy(fresh.token, "pack_200", { waitCredited: false });
  let failing;
  for (let i = 0; i < 120 && !failing; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const list = await api("GET", "/api/v1/admin/events?failed=1", { token: opsToken });
    failing = list.body.events.find((e) => e.event_type === "checkout.session.completed" && e.delivery_count >= 6);
  }
  assert.ok(failing, "the event failed and the simulator gave up");
  sql("ALTER TABLE ledger_entries_away RENAME TO ledger_entries");
  assert.ok(before.body.events.every((e) => e.id !== failing.id));
  await goto("/admin/events");
  assert.equal(await page.locator("tbody tr").first().locator("a").textContent(), failing.id, "failing first");
  await shoot("events");
  await page.click(`a[href="/admin/events/${failing.id}"]`);
  await page.waitForSelector("pre");
  assert.match(await page.textContent("pre"), /checkout\.session\.completed/);
  await page.click("text=Replay this event");
  await page.waitForSelector(".flash");
  assert.equal(await page.textContent("#event-status"), "processed");
  await shoot("event");
  const bal = await api("GET", "/api/v1/credits/balance", { token: fresh.token });
  assert.equal(bal.body.balance, 200);
});

test("reconcile in the background credits a paid session whose webhook never came", async () => {
  await delivery({ drop_all: true });
  const missed = await signup("missed@example.com");
  await buy(missed.token, "pack_25", { waitCredited: false });
  await goto("/admin/reconcile");
  await page.click("text=Run reconcile");
  await page.waitForURL(/run=/);
  // The page refreshes itself while the job runs.
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent === "clean", null, { timeout: 30_000 });
  assert.match(await page.textContent("#run-report"), /fixed now \(paid, were not credited\): 1/);
  await shoot("reconcile");
  const bal = await api("GET", "/api/v1/credits/balance", { token: missed.token });
  assert.equal(bal.body.balance, 25);
  await delivery({ drop_all: false });
});

/** The console pages axe-core checks, light and dark. */
const axePages = ["/admin/service-keys", "/admin/codes", "/admin/webhooks", "/admin/webhooks/deliveries"];

async function axeBoth(what) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    assert.deepEqual(await axeViolations(page, page.mainFrame()), [], `${what}, ${scheme}`);
  }
  await page.emulateMedia({ colorScheme: "light" });
}

test("webhooks out: add an endpoint (its secret once), list deliveries; the console pages pass axe-core", async () => {
  await goto("/admin/webhooks");
  // The demo allows private addresses (WEBHOOK_ALLOW_PRIVATE): nothing listens on port 9.
  await page.fill("input[name=url]", "http://127.0.0.1:9/hooks/<b>mascot</b>");
  await page.check("input[name=events][value='credits.purchased']");
  await page.click("text=Add the endpoint");
  const secret = await page.textContent("#webhook-secret");
  assert.match(secret, /^whsec_/);
  await axeBoth("/admin/webhooks with a new secret");
  await shoot("webhooks");
  await goto("/admin/webhooks");
  assert.ok(!(await page.content()).includes(secret), "the secret is shown once");
  assert.match(await page.textContent("table"), /credits\.purchased/);
  for (const pathname of axePages) {
    await goto(pathname);
    await axeBoth(pathname);
  }
  await goto("/admin/webhooks/deliveries?status=failed");
  await shoot("webhook-deliveries");
  assert.deepEqual(dialogs, [], "no injected script ran");
});

test("a team in the console; every console page passes axe-core light and dark, at desktop and phone width", async () => {
  // A team whose name is markup, bought into by its owner, one member capped.
  const lead = await signup("lead@example.com");
  const team = await api("POST", "/api/v1/teams", { token: lead.token, body: { name: "<script>alert('team')</script> Studio" } });
  assert.equal(team.status, 201, JSON.stringify(team.body));
  const teamId = team.body.team_id;
  const member = await signup("designer@example.com");
  // With mail on (the demo prints its mails), accepting needs a confirmed email: confirm it.
  let link = null;
  for (let i = 0; i < 50 && !link; i++) {
    const mail = server.output().split("----- mail to designer@example.com -----")[1] ?? "";
    link = mail.match(/http:\/\/127\.0\.0\.1:\d+\/account\/verify\?token=mcv_[A-Za-z0-9_-]+/)?.[0] ?? null;
    if (!link) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(link, "the confirmation mail was printed");
  await page.goto(link);
  await page.click("button:has-text('Confirm my email')");
  await page.waitForLoadState();
  const inv = await api("POST", `/api/v1/teams/${teamId}/invitations`, { token: lead.token, body: { email: "designer@example.com", role: "member", cap: { credits: 5, period: "week" } } });
  assert.equal(inv.status, 201, JSON.stringify(inv.body));
  assert.equal((await api("POST", "/api/v1/teams/invitations/accept", { token: member.token, body: { token: inv.body.token } })).status, 200);
  await goto(`/admin/teams?q=designer`);
  await page.click(`a[href="/admin/teams/${teamId}"]`);
  await page.waitForURL(new RegExp(`/admin/teams/${teamId}$`));
  assert.match(await page.textContent("h1"), /<script>alert\('team'\)<\/script> Studio/, "the name shown as text");
  await page.fill("input[name=amount]", "40");
  await page.fill("input[name=reason]", "Support: onboarding");
  await page.click("button:has-text('Grant credits')");
  assert.match(await page.textContent("#balance"), /^\s*40\s*$/);
  assert.match(await page.textContent("section:has(h2:text('Members'))"), /5 a week/);
  await shoot("team");

  const eventId = (await page.goto(`${server.api}/admin/events`), await page.getAttribute("tbody a[href^='/admin/events/']", "href"));
  const pages = [
    "/admin",
    "/admin/users?q=example",
    `/admin/users/${buyer.user.id}`,
    "/admin/teams",
    `/admin/teams/${teamId}`,
    "/admin/purchases",
    "/admin/events",
    ...(eventId ? [eventId] : []),
    "/admin/reconcile",
    "/admin/codes",
    "/admin/service-keys",
    "/admin/webhooks",
    "/admin/webhooks/deliveries",
    "/admin/audit",
  ];
  for (const [width, height] of [[1280, 900], [390, 844]]) {
    await page.setViewportSize({ width, height });
    for (const pathname of pages) {
      await goto(pathname);
      await axeBoth(`${pathname} at ${width} px`);
      // Wide tables scroll inside their box; the page itself never scrolls sideways.
      const overflow = await page.evaluate(() => {
        const over = document.documentElement.scrollWidth - window.innerWidth;
        if (over <= 0) return null;
        // Name the widest element that sticks out, for the message.
        const out = [...document.querySelectorAll("body *")]
          .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5 )
          .map((e) => `${e.tagName.toLowerCase()}.${e.className} (${Math.round(e.getBoundingClientRect().right)} px)`);
        return `${over} px too wide (client ${document.documentElement.clientWidth}, inner ${window.innerWidth}): ${out.slice(0, 8).join(", ")}`;
      });
      assert.equal(overflow, null, `${pathname} at ${width} px`);
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.deepEqual(dialogs, [], "no injected script ran");
});

test("purchases and the audit trail; nothing injected ran", async () => {
  await goto("/admin/purchases?status=credited");
  assert.ok((await page.locator("tbody tr").count()) >= 4);
  await shoot("purchases");
  await goto("/admin/audit");
  const text = await page.textContent("table");
  for (const action of ["admins.add", "credits.grant", "console.sign_in", "users.reset_password", "events.replay", "reconcile"]) {
    assert.ok(text.includes(action), `${action} in the audit trail`);
  }
  assert.ok(text.includes("<script>alert('reason')</script>"), "shown as text");
  await shoot("audit");
  assert.deepEqual(dialogs, [], "no injected script ran");
  // Sign out: the cookie no longer opens the console.
  await page.click("text=Sign out");
  await page.waitForURL(/\/admin\/login$/);
  await goto("/admin");
  assert.match(page.url(), /\/admin\/login$/);
});
