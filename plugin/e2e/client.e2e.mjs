// The compiled Wasm client (plugin/pkg) against the real server, in Chromium from an opaque
// origin like Figma's iframe: accounts, packs, balance, history, checkout and typed errors.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import * as esbuild from "esbuild";
import { launchBrowser, root, startDemo, startSmtp } from "./harness.mjs";

let smtp;
let demo;
let chrome;
let page;

before(async () => {
  // A real SMTP server: a team invitation is accepted only once the email is confirmed by mail.
  smtp = await startSmtp();
  demo = await startDemo(0, smtp.env);
  chrome = await launchBrowser();
  page = await chrome.browser.newPage();
  // A page of the local server: Chromium refuses loopback fetches from about:blank.
  await page.goto(`${demo.api}/healthz`);
  // The glue imports the client's JS snippet (pkg/snippets/): bundle them into one module, as
  // the plugin build does.
  const bundled = await esbuild.build({
    entryPoints: [path.join(root, "plugin/pkg/plugin_client.js")],
    bundle: true,
    format: "esm",
    write: false,
    logLevel: "error",
  });
  const glue = bundled.outputFiles[0].text;
  const wasm = fs.readFileSync(path.join(root, "plugin/pkg/plugin_client_bg.wasm")).toString("base64");
  await page.evaluate(
    async ({ glue, wasm }) => {
      const url = URL.createObjectURL(new Blob([glue], { type: "text/javascript" }));
      const mod = await import(url);
      await mod.default({ module_or_path: Uint8Array.from(atob(wasm), (c) => c.charCodeAt(0)) });
      window.MascotClient = mod.MascotClient;
    },
    { glue, wasm },
  );
});

after(async () => {
  await chrome?.close();
  await demo?.stop();
  smtp?.stop();
});

/** Runs `body(client)` in the page; returns its result or the rejection value as {error}. */
function run(body, args = {}) {
  return page.evaluate(
    async ({ src, api, args }) => {
      const client = new window.MascotClient(api, args.token ?? null);
      try {
        return { value: await new Function("client", "args", `return (${src})(client, args)`)(client, args), token: client.token() ?? null };
      } catch (error) {
        return { error };
      }
    },
    { src: body.toString(), api: demo.api, args },
  );
}

test("signs up, reads the account and stores the token", async () => {
  const r = await run(async (c) => {
    const auth = await c.signup("wasm@example.com", "correct horse");
    return { auth, me: await c.me(), balance: await c.balance(), packs: await c.packs(), history: await c.history(5, null) };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(r.value.auth.user.email, "wasm@example.com");
  assert.equal(r.token, r.value.auth.token);
  assert.deepEqual(r.value.me, { id: r.value.auth.user.id, email: "wasm@example.com", balance: 0, email_verified: false, signup_credits: 0 });
  assert.deepEqual(r.value.balance, { balance: 0, available: 0, held: 0, expiring: [], low_balance: null, low: false, version: "0.0.0.0.0.0" });
  assert.deepEqual(r.value.packs.packs.map((p) => [p.id, p.credits, p.price_cents]), [["pack_25", 25, 599], ["pack_75", 75, 1299], ["pack_200", 200, 2599]]);
  assert.deepEqual(r.value.history, { entries: [], next_cursor: null });
});

test("errors are typed: http with the envelope code, network when the server is unreachable", async () => {
  const wrong = await run(async (c) => c.login("wasm@example.com", "wrong password"));
  assert.deepEqual(
    { kind: wrong.error.kind, status: wrong.error.status, code: wrong.error.code },
    { kind: "http", status: 401, code: "invalid_credentials" },
  );
  assert.equal(wrong.error.message, "Wrong email or password.");
  const expired = await run(async (c) => c.me(), { token: "mct_not_a_real_token" });
  assert.equal(expired.error.code, "unauthorized");
  const unknownCode = await run(async (c) => {
    await c.login("wasm@example.com", "correct horse");
    return c.redeem("NOT-A-CODE");
  });
  assert.deepEqual({ status: unknownCode.error.status, code: unknownCode.error.code }, { status: 404, code: "code_not_found" });
  const offline = await page.evaluate(async () => {
    const c = new window.MascotClient("http://127.0.0.1:9", null);
    try {
      await c.packs();
      return null;
    } catch (e) {
      return e;
    }
  });
  assert.equal(offline.kind, "network");
  assert.equal(offline.status, 0);
});

test("starts a checkout, waits, and resolves with the credited balance", async () => {
  const signed = await run(async (c) => c.login("wasm@example.com", "correct horse"));
  const token = signed.token;
  const started = await run(async (c) => c.startCheckout("pack_25"), { token });
  assert.ok(started.value.checkout_url.startsWith(demo.sim), started.value.checkout_url);
  const pending = await run(async (c) => c.pendingCheckouts(), { token });
  assert.equal(pending.value.checkouts[0].session_id, started.value.session_id);
  // Pay on the simulated Checkout page while the client waits.
  const waiting = run(async (c, a) => c.waitForCheckout(a.id, 20000), { token, id: started.value.session_id });
  const checkout = await chrome.browser.newPage();
  await checkout.goto(started.value.checkout_url);
  await checkout.click("#pay");
  await checkout.waitForURL(/\/billing\/success/);
  const done = await waiting;
  assert.equal(done.error, undefined, JSON.stringify(done.error));
  assert.deepEqual({ status: done.value.status, credits: done.value.credits, balance: done.value.balance }, { status: "credited", credits: 25, balance: 25 });
  const history = await run(async (c) => c.history(10, null), { token });
  assert.equal(history.value.entries[0].description, "Bought 25 credits ($5.99)");
  await checkout.close();
});

test("a cancelled wait and an unknown pack reject with their kinds", async () => {
  const signed = await run(async (c) => c.login("wasm@example.com", "correct horse"));
  const r = await run(
    async (c) => {
      const s = await c.startCheckout("pack_75");
      const w = c.waitForCheckout(s.session_id, 20000);
      setTimeout(() => c.cancelWait(), 300);
      return w;
    },
    { token: signed.token },
  );
  assert.equal(r.error.kind, "cancelled");
  const bad = await run(async (c) => c.startCheckout("pack_1"), { token: signed.token });
  assert.deepEqual([bad.error.status, bad.error.code], [422, "unknown_pack"]);
});

test("accounts: options, change password (a wrong current one is invalid_credentials), device token, sign out everywhere", async () => {
  const signed = await run(async (c) => c.signup("wasm-accounts@example.com", "first password"));
  assert.equal(signed.error, undefined, JSON.stringify(signed.error));
  const { token, value: auth } = signed;
  assert.match(auth.device_token, /\S/);
  assert.equal(auth.password_change_required, false);
  const options = await run(async (c) => c.authOptions());
  assert.ok(["email", "contact"].includes(options.value.password_reset), JSON.stringify(options.value));
  const wrong = await run(async (c) => c.changePassword("not it", "second password"), { token });
  assert.deepEqual([wrong.error.kind, wrong.error.status, wrong.error.code], ["http", 401, "invalid_credentials"]);
  const changed = await run(async (c) => c.changePassword("first password", "second password"), { token });
  assert.equal(changed.error, undefined, JSON.stringify(changed.error));
  assert.equal(changed.value, undefined, "204: resolves with nothing");
  assert.equal(changed.token, token, "this session stays signed in");
  // The device token of the first sign-in goes with the next login.
  const again = await run(async (c, a) => c.login("wasm-accounts@example.com", "second password", a.device), { device: auth.device_token });
  assert.equal(again.error, undefined, JSON.stringify(again.error));
  const out = await run(async (c) => c.logoutAll(), { token: again.token });
  assert.equal(out.error, undefined, JSON.stringify(out.error));
  assert.equal(out.token, null, "forgotten by the client");
  for (const t of [token, again.token]) {
    assert.equal((await run(async (c) => c.me(), { token: t })).error.code, "unauthorized");
  }
});

test("password reset: 202 for any address, 422 for a malformed one", async () => {
  for (const email of ["wasm-accounts@example.com", "nobody-at-all@example.com"]) {
    const r = await run(async (c, a) => c.requestPasswordReset(a.email), { email });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.value, undefined);
  }
  const bad = await run(async (c) => c.requestPasswordReset("not an email"));
  assert.deepEqual([bad.error.kind, bad.error.status], ["http", 422]);
});

test("browser sign-in: startHandoff, and pollHandoff sends the read key and ends on 404", async () => {
  const start = await run(async (c) => c.startHandoff());
  assert.equal(start.error, undefined, JSON.stringify(start.error));
  assert.match(start.value.user_code, /^[A-Z0-9]{8}$/);
  assert.ok(start.value.url.startsWith(demo.api), start.value.url);
  // Pending: a short wait times out on the client's side (the poll with wait=1 answers pending).
  const pending = await run(async (c, a) => c.pollHandoff(a.id, a.key, 1500), { id: start.value.handoff_id, key: start.value.read_key });
  assert.deepEqual([pending.error.kind, pending.error.code], ["timeout", "timeout"]);
  const wrong = await run(async (c, a) => c.pollHandoff(a.id, `${a.key}x`, 5000), { id: start.value.handoff_id, key: start.value.read_key });
  assert.deepEqual([wrong.error.kind, wrong.error.status, wrong.error.code], ["http", 404, "handoff_not_found"]);
  const cancelled = await run(
    async (c, a) => {
      const w = c.pollHandoff(a.id, a.key, 20000);
      setTimeout(() => c.cancelWait(), 300);
      return w;
    },
    { id: start.value.handoff_id, key: start.value.read_key },
  );
  assert.equal(cancelled.error.kind, "cancelled");
});

test("every other method through the Wasm boundary: spend, checkoutStatus, logout", async () => {
  // wasm@example.com bought 25 credits in the checkout test above.
  const signed = await run(async (c) => c.login("wasm@example.com", "correct horse"));
  const token = signed.token;
  const spent = await run(async (c) => c.spend(3, "render: \"hero\" frame", "wasm-spend-1"), { token });
  assert.equal(spent.error, undefined, JSON.stringify(spent.error));
  const again = await run(async (c) => c.spend(3, "render: \"hero\" frame", "wasm-spend-1"), { token });
  assert.deepEqual(again.value, spent.value, "the same idempotency key spends once");
  const balance = await run(async (c) => c.balance(), { token });
  assert.equal(balance.value.balance, 22);
  const history = await run(async (c) => c.history(1, null), { token });
  assert.equal(history.value.entries[0].delta, -3);
  const started = await run(async (c) => c.startCheckout("pack_25"), { token });
  const status = await run(async (c, a) => c.checkoutStatus(a.id, 0), { token, id: started.value.session_id });
  assert.deepEqual([status.value.session_id, status.value.status], [started.value.session_id, "pending"]);
  const out = await run(async (c) => {
    await c.logout();
    return c.token() ?? null;
  }, { token });
  assert.equal(out.error, undefined, JSON.stringify(out.error));
  assert.equal(out.value, null);
  assert.equal((await run(async (c) => c.me(), { token })).error.code, "unauthorized");
});

test("team methods through the Wasm boundary: create, invite, accept, caps, roles, the wallet selector, errors", async () => {
  const owner = await run(async (c) => c.signup("wasm-owner@example.com", "correct horse"));
  const memberAuth = await run(async (c) => c.signup("wasm-member@example.com", "correct horse"));
  const [ownerToken, memberToken, memberId] = [owner.token, memberAuth.token, memberAuth.value.user.id];
  const made = await run(async (c) => {
    const team = await c.team("create", "Wasm \"team\" <i>");
    const invited = await c.team("invite", team.team_id, "wasm-member@example.com", "member", 3, "day");
    const revoked = await c.team("invite", team.team_id, "nobody@example.com", "admin");
    const pending = await c.team("invitations", team.team_id);
    await c.team("revoke", team.team_id, revoked.invitation_id);
    return { team, invited, pending, after: await c.team("invitations", team.team_id), teams: await c.team("list") };
  }, { token: ownerToken });
  assert.equal(made.error, undefined, JSON.stringify(made.error));
  const teamId = made.value.team.team_id;
  assert.deepEqual(made.value.teams.teams, [{ team_id: teamId, name: "Wasm \"team\" <i>", role: "owner", sees_all: true }]);
  assert.match(made.value.invited.token, /^mci_/);
  assert.deepEqual(made.value.pending.invitations.map((i) => [i.email, i.role, i.cap ?? null]), [
    ["wasm-member@example.com", "member", { credits: 3, period: "day" }],
    ["nobody@example.com", "admin", null],
  ]);
  assert.equal(made.value.after.invitations.length, 1, "revoked");

  const unverified = await run(async (c, a) => c.team("accept", a.code), { token: memberToken, code: made.value.invited.token });
  assert.deepEqual([unverified.error.status, unverified.error.code], [403, "email_unverified"]);
  let confirm;
  for (let i = 0; i < 100 && !confirm; i++) {
    confirm = smtp.mails().find((m) => /^To: wasm-member@example\.com/m.test(m) && /^Subject: Confirm your email/m.test(m));
    if (!confirm) await new Promise((r) => setTimeout(r, 100));
  }
  const link = smtp.link(confirm, "/account/verify");
  const browser = await chrome.browser.newPage();
  await browser.goto(link);
  await browser.getByRole("button", { name: "Confirm my email" }).click();
  await browser.getByRole("heading", { name: "Email confirmed" }).waitFor();
  await browser.close();
  const wrong = await run(async (c) => c.team("accept", "mci_not_a_real_code"), { token: memberToken });
  assert.deepEqual([wrong.error.status, wrong.error.code], [404, "not_found"]);
  const accepted = await run(async (c, a) => c.team("accept", a.code), { token: memberToken, code: made.value.invited.token });
  assert.equal(accepted.error, undefined, JSON.stringify(accepted.error));
  assert.deepEqual(accepted.value, { team_id: teamId, name: "Wasm \"team\" <i>", role: "member", cap: { credits: 3, period: "day" }, sees_all: false });

  const changed = await run(async (c, a) => {
    const admin = await c.team("role", a.team, a.member, "admin");
    const back = await c.team("role", a.team, a.member, "member");
    const uncapped = await c.team("cap", a.team, a.member, null, null);
    const capped = await c.team("cap", a.team, a.member, "day", 2);
    return { admin: admin.role, back: back.role, uncapped: uncapped.cap ?? null, capped: capped.cap, members: await c.team("members", a.team) };
  }, { token: ownerToken, team: teamId, member: memberId });
  assert.equal(changed.error, undefined, JSON.stringify(changed.error));
  assert.deepEqual([changed.value.admin, changed.value.back, changed.value.uncapped, changed.value.capped], ["admin", "member", null, { credits: 2, period: "day" }]);
  assert.equal(changed.value.members.members.length, 2);

  await demo.operator("credits", "grant", "--team", teamId, "--amount", "10", "--reason", "Seed");
  // The member spends from the team (the plugin itself does not; a service does, with team_id).
  const spend = (amount, key) =>
    fetch(`${demo.api}/api/v1/credits/spend`, {
      method: "POST",
      headers: { authorization: `Bearer ${memberToken}`, "content-type": "application/json", "idempotency-key": key },
      body: JSON.stringify({ amount, reason: "render", team_id: teamId }),
    });
  assert.equal((await spend(2, "team-spend-1")).status, 200);
  const refused = await spend(1, "team-spend-2");
  assert.equal(refused.status, 402);
  const capError = (await refused.json()).error;
  assert.equal(capError.code, "member_cap_reached");
  assert.ok(!Number.isNaN(Date.parse(capError.resets_at)), capError.resets_at);
  const spent = await run(async (c, a) => {
    let forbidden = null;
    try {
      await c.team("checkout", a.team, "pack_25");
    } catch (e) {
      forbidden = e;
    }
    return { forbidden, balance: await c.team("balance", a.team), history: await c.team("history", a.team, null, null, 10), usage: await c.team("usage", a.team, null, null, 7), personal: await c.balance() };
  }, { token: memberToken, team: teamId });
  assert.equal(spent.error, undefined, JSON.stringify(spent.error));
  assert.deepEqual([spent.value.forbidden.status, spent.value.forbidden.code], [403, "role_forbidden"]);
  assert.equal(spent.value.balance.balance, null, "a member does not see the team's balance");
  assert.equal(spent.value.balance.available, 0);
  assert.deepEqual([spent.value.balance.cap.credits, spent.value.balance.cap.used], [2, 2]);
  assert.deepEqual(spent.value.history.entries.map((e) => e.delta), [-2], "the member's own entries");
  assert.equal(Object.values(spent.value.usage.total_by_feature).reduce((a, b) => a + b, 0), 2);
  assert.equal(spent.value.personal.balance, 0, "the personal wallet is untouched");

  const owned = await run(async (c, a) => {
    const alerts = await c.team("set-alerts", a.team, null, null, 5);
    const checkout = await c.team("checkout", a.team, "pack_25");
    let hasCredits = null;
    try {
      await c.team("delete", a.team);
    } catch (e) {
      hasCredits = e;
    }
    let handOver = null;
    try {
      await c.team("remove", a.team, a.me);
    } catch (e) {
      handOver = e;
    }
    const removed = await c.team("remove", a.team, a.member);
    return { alerts, read: await c.team("alerts", a.team), checkout, hasCredits, handOver, removed: removed ?? null, balance: await c.team("balance", a.team), history: await c.team("history", a.team, null, null, 10) };
  }, { token: ownerToken, team: teamId, member: memberId, me: owner.value.user.id });
  assert.equal(owned.error, undefined, JSON.stringify(owned.error));
  assert.deepEqual([owned.value.alerts, owned.value.read], [{ low_balance: 5 }, { low_balance: 5 }]);
  assert.ok(owned.value.checkout.checkout_url.startsWith(demo.sim));
  assert.deepEqual([owned.value.hasCredits.status, owned.value.hasCredits.code], [409, "team_has_credits"]);
  assert.deepEqual([owned.value.handOver.status, owned.value.handOver.code], [409, "owner_must_hand_over"]);
  assert.equal(owned.value.removed, null, "204: no answer");
  assert.equal(owned.value.balance.balance, 8);
  assert.equal(owned.value.history.entries.find((e) => e.delta === -2).user.email, "wasm-member@example.com");
  const gone = await run(async (c, a) => c.team("members", a.team), { token: memberToken, team: teamId });
  assert.equal(gone.error.status, 404, "a removed member sees nothing of the team");
  const unknown = await run(async (c) => c.team("drop"), { token: ownerToken });
  assert.deepEqual([unknown.error.kind, unknown.error.code], ["decode", "unknown_route"]);
});
