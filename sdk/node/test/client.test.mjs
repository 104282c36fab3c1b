// The Node SDK against the real release server (see helpers/server.mjs): every call of the
// service API, and the hold-run-capture helper with the network failing under it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CaptureMismatchError, MascotApiError, MascotServiceError, MascotTransportError, MeterError, ServiceClient } from "../src/index.js";
import { startProxy } from "./helpers/proxy.mjs";
import { funds, startServer } from "./helpers/server.mjs";

let server;
let proxy;
before(async () => {
  server = await startServer("sdk");
  proxy = await startProxy(server.base);
});
after(async () => {
  await proxy?.stop();
  await server?.stop();
});

/** A client with short back-off (the tests wait for it), direct or through the proxy. */
async function client({ viaProxy = false } = {}) {
  return new ServiceClient({
    apiBase: viaProxy ? proxy.base : server.base,
    serviceKey: await server.serviceKey(),
    retry: { firstDelayMs: 20, maxDelayMs: 100 },
  });
}

/** The API error a promise rejects with, as [status, code]. */
async function apiError(promise) {
  const e = await promise.then(
    (v) => assert.fail(`expected an API error, got ${JSON.stringify(v)}`),
    (e) => e,
  );
  assert.ok(e instanceof MascotApiError, `${e}`);
  return [e.status, e.code];
}

async function meterError(promise) {
  const e = await promise.then(
    (v) => assert.fail(`expected a MeterError, got ${JSON.stringify(v)}`),
    (e) => e,
  );
  assert.ok(e instanceof MeterError, `${e}`);
  return e;
}

describe("the service API", () => {
  test("settings are checked, and the key never shows", async () => {
    assert.throws(() => new ServiceClient({ apiBase: "not a url", serviceKey: "mck_x" }), MascotServiceError);
    assert.throws(() => new ServiceClient({ apiBase: "http://127.0.0.1:1/api", serviceKey: "mck_x" }), /origin/);
    assert.throws(() => new ServiceClient({ apiBase: "http://127.0.0.1:1", serviceKey: "mct_userToken" }), /mck_/);
    const c = new ServiceClient({ apiBase: "http://127.0.0.1:1/", serviceKey: "mck_secretSecret" });
    const { inspect } = await import("node:util");
    assert.ok(!inspect(c).includes("secretSecret") && !JSON.stringify(c).includes("secretSecret"));
  });

  test("verify names the user of a plugin token and of a service token, and nothing else", async () => {
    const mascot = await client();
    const user = await server.user();
    const now = Math.floor(Date.now() / 1000);

    const byPluginToken = await mascot.verify(user.token);
    assert.equal(byPluginToken.active, true);
    assert.deepEqual(byPluginToken.user, { id: user.id, email: user.email });
    assert.equal(byPluginToken.password_change_required, false);
    assert.ok(byPluginToken.exp > now);

    const mcu = await user.serviceToken();
    assert.match(mcu, /^mcu_/);
    const byServiceToken = await mascot.verify(mcu);
    assert.equal(byServiceToken.active, true);
    assert.equal(byServiceToken.user.id, user.id);
    assert.ok(byServiceToken.exp > now && byServiceToken.exp <= now + 605, `a service token lives 10 minutes (${byServiceToken.exp - now} s)`);

    for (const junk of ["", "mcu_notAToken", "mct_notAToken", "mck_notAToken"]) {
      assert.deepEqual(await mascot.verify(junk), { active: false }, junk);
    }
    await user.logout();
    assert.deepEqual(await mascot.verify(user.token), { active: false }, "a signed-out token is no one");
  });

  test("a wrong key is 401 unauthorized and never retried", async () => {
    const wrong = new ServiceClient({ apiBase: proxy.base, serviceKey: `mck_${"A".repeat(43)}` });
    const sent = proxy.count("/service/verify");
    assert.deepEqual(await apiError(wrong.verify("mcu_x")), [401, "unauthorized"]);
    assert.equal(proxy.count("/service/verify") - sent, 1);
  });

  test("balance, and a spend retried with its key charges once", async () => {
    const mascot = await client();
    const user = await server.user(50);
    assert.deepEqual(funds(await mascot.balance(user.id)), { balance: 50, available: 50, held: 0 });

    const first = await mascot.spend(user.id, { amount: 7, reason: "SDK test spend", feature: "export" }, "job-1");
    assert.equal(first.balance, 43);
    assert.deepEqual(await mascot.spend(user.id, { amount: 7, reason: "SDK test spend", feature: "export" }, "job-1"), first, "the same key is the same spend");
    assert.deepEqual(await user.balance(), { balance: 43, available: 43, held: 0 });
    assert.deepEqual(await apiError(mascot.spend(user.id, { amount: 8, reason: "SDK test spend" }, "job-1")), [409, "idempotency_key_reused"]);

    const spends = (await user.history()).filter((e) => e.kind === "spend");
    assert.equal(spends.length, 1);
    assert.equal(spends[0].delta, -7);
    assert.equal(spends[0].feature, "export");
    assert.equal(spends[0].id, first.entry_id);
  });

  test("too few credits is 402, an unknown user 404", async () => {
    const mascot = await client();
    const user = await server.user(5);
    const refused = await mascot.spend(user.id, { amount: 6, reason: "too much" }, "too-much").catch((e) => e);
    assert.ok(refused instanceof MascotApiError);
    assert.deepEqual([refused.status, refused.code], [402, "insufficient_credits"]);
    assert.ok(refused.message.length > 0, "a message for people");
    assert.deepEqual(await apiError(mascot.hold(user.id, { amount: 6, reason: "too much" }, "too-much-hold")), [402, "insufficient_credits"]);
    assert.deepEqual(await user.balance(), { balance: 5, available: 5, held: 0 });

    const nobody = "01900000-0000-7000-8000-000000000000";
    assert.deepEqual(await apiError(mascot.balance(nobody)), [404, "not_found"]);
    assert.deepEqual(await apiError(mascot.spend(nobody, { amount: 1, reason: "x" }, "nobody")), [404, "not_found"]);
  });

  test("hold, capture and release", async () => {
    const mascot = await client();
    const user = await server.user(50);
    const hold = { amount: 10, reason: "SDK test hold", feature: "render" };

    const held = await mascot.hold(user.id, hold, "hold-1");
    assert.deepEqual([held.amount, held.balance, held.available], [10, 50, 40]);
    assert.equal((await mascot.hold(user.id, hold, "hold-1")).hold_id, held.hold_id, "a replay");
    assert.deepEqual(await user.balance(), { balance: 50, available: 40, held: 10 });

    const captured = await mascot.capture(held.hold_id, 6);
    assert.deepEqual(
      [captured.status, captured.amount, captured.captured, captured.balance, captured.available],
      ["captured", 10, 6, 44, 44],
    );
    assert.deepEqual(await mascot.capture(held.hold_id, 6), captured, "the same capture again replays it");
    assert.deepEqual(await apiError(mascot.capture(held.hold_id, 5)), [409, "captured_differently"]);
    assert.deepEqual(await apiError(mascot.release(held.hold_id)), [409, "hold_closed"]);

    const second = await mascot.hold(user.id, hold, "hold-2");
    const released = await mascot.release(second.hold_id);
    assert.deepEqual([released.status, released.captured, released.balance, released.available], ["released", null, 44, 44]);
    assert.equal((await mascot.release(second.hold_id)).status, "released", "released again: same answer");
    assert.deepEqual(await apiError(mascot.capture(second.hold_id)), [409, "hold_closed"]);

    const third = await mascot.hold(user.id, { ...hold, amount: 4 }, "hold-3");
    const all = await mascot.capture(third.hold_id);
    assert.deepEqual([all.captured, all.balance], [4, 40]);
    assert.deepEqual(await user.balance(), { balance: 40, available: 40, held: 0 });

    const renders = (await user.history()).filter((e) => e.feature === "render").map((e) => e.delta);
    assert.deepEqual(renders, [-4, -6]);
    assert.deepEqual(await apiError(mascot.release("no-such-hold")), [404, "not_found"]);
  });
});

describe("meter and withHold", () => {
  test("capture on success, with the feature in the user's history", async () => {
    const mascot = await client();
    const user = await server.user(20);
    let ran = 0;
    const done = await mascot.withHold({ userId: user.id, amount: 5, reason: "Generated a mascot", feature: "generate" }, async (hold) => {
      ran++;
      assert.equal(hold.amount, 5);
      return "<svg/>";
    });
    assert.equal(ran, 1);
    assert.deepEqual([done.value, done.charged, done.balance, done.available], ["<svg/>", 5, 15, 15]);
    const [entry] = await user.history();
    assert.deepEqual([entry.kind, entry.delta, entry.feature, entry.id], ["spend", -5, "generate", done.entryId]);

    const cheaper = await mascot.meter({ userId: user.id, amount: 5, reason: "Generated a small mascot", feature: "generate" }, async () => ({ value: null, cost: 2 }));
    assert.deepEqual([cheaper.charged, cheaper.balance, cheaper.available], [2, 13, 13]);
    const free = await mascot.meter({ userId: user.id, amount: 5, reason: "Nothing to do" }, async () => ({ value: null, cost: 0 }));
    assert.deepEqual([free.charged, free.entryId, free.balance], [0, null, 13]);
    assert.deepEqual(await user.balance(), { balance: 13, available: 13, held: 0 });
  });

  test("release on failure; without credits the work never runs; a cost above the hold charges nothing", async () => {
    const mascot = await client();
    const user = await server.user(8);

    const crash = new Error("the renderer crashed");
    const failed = await meterError(mascot.withHold({ userId: user.id, amount: 5, reason: "Generated a mascot", feature: "generate" }, async () => {
      throw crash;
    }));
    assert.deepEqual([failed.stage, failed.cause, failed.releaseError], ["work", crash, null]);
    assert.deepEqual(await user.balance(), { balance: 8, available: 8, held: 0 }, "released");

    let ran = 0;
    const refused = await meterError(mascot.withHold({ userId: user.id, amount: 9, reason: "Too big" }, async () => ran++));
    assert.equal(refused.stage, "hold");
    assert.ok(refused.cause instanceof MascotApiError && refused.cause.status === 402 && refused.cause.code === "insufficient_credits");
    assert.equal(ran, 0, "the work did not run");

    const over = await meterError(mascot.meter({ userId: user.id, amount: 3, reason: "Over" }, async () => ({ value: null, cost: 4 })));
    assert.deepEqual([over.stage, over.cost, over.releaseError], ["cost", 4, null]);
    assert.deepEqual(await user.balance(), { balance: 8, available: 8, held: 0 });
    assert.ok((await user.history()).every((e) => e.kind !== "spend"));
  });

  test("lost answers are retried with the same key: charged once", async () => {
    const mascot = await client({ viaProxy: true });
    const user = await server.user(30);
    const holds = proxy.count("/holds ");
    const captures = proxy.count("/capture ");
    proxy.fault(`/users/${user.id}/holds `, 1, { drop: true });
    proxy.fault("/capture ", 1, { drop: true });
    const done = await mascot.withHold({ userId: user.id, amount: 5, reason: "Generated a mascot", feature: "generate" }, async () => "ok");
    assert.deepEqual([done.charged, done.balance], [5, 25]);
    assert.equal(proxy.count("/holds ") - holds, 2, "the hold was sent again");
    assert.equal(proxy.count("/capture ") - captures, 2, "the capture was sent again");
    assert.deepEqual(await user.balance(), { balance: 25, available: 25, held: 0 });
    assert.equal((await user.history()).filter((e) => e.kind === "spend").length, 1);

    proxy.fault(`/users/${user.id}/spend `, 1, { drop: true });
    const spent = await mascot.spend(user.id, { amount: 3, reason: "after a lost answer" }, "spend-lost-answer");
    assert.equal(spent.balance, 22);
    assert.deepEqual(await user.balance(), { balance: 22, available: 22, held: 0 });
  });

  test("a 503 with Retry-After is waited for; a long one is not; retries are bounded", async () => {
    const mascot = await client({ viaProxy: true });
    const user = await server.user(10);
    const path = `/users/${user.id}/balance `;

    proxy.fault(path, 1, { unavailable: 1 });
    const started = Date.now();
    assert.equal((await mascot.balance(user.id)).balance, 10);
    assert.ok(Date.now() - started >= 1000, `retried after ${Date.now() - started} ms`);
    assert.equal(proxy.count(path), 2);

    proxy.fault(path, 1, { unavailable: 60 });
    const busy = await mascot.balance(user.id).catch((e) => e);
    assert.ok(busy instanceof MascotApiError && busy.status === 503 && busy.retryAfterMs === 60_000, `${busy}`);

    proxy.fault(path, 10, { drop: true });
    const sent = proxy.count(path);
    assert.ok((await mascot.balance(user.id).catch((e) => e)) instanceof MascotTransportError);
    assert.equal(proxy.count(path) - sent, 4, "four tries in all");
  });

  test("a capture that charged something else is an error", async () => {
    const mascot = await client({ viaProxy: true });
    const user = await server.user(30);

    // An answer that says 1 credit was captured when 5 were asked: not believed.
    proxy.fault("/capture ", 1, { rewrite: ['"captured":5', '"captured":1'] });
    const wrong = await meterError(mascot.withHold({ userId: user.id, amount: 5, reason: "Generated a mascot" }, async () => "ok"));
    assert.equal(wrong.stage, "charge");
    assert.ok(wrong.cause instanceof CaptureMismatchError);
    assert.deepEqual([wrong.cause.asked, wrong.cause.captured], [5, 1]);

    // The same job key after a different capture: the server refuses, the helper says so.
    const idempotencyKey = `job-${crypto.randomUUID()}`;
    await mascot.meter({ userId: user.id, amount: 5, reason: "Job", idempotencyKey }, async () => ({ value: null, cost: 5 }));
    const repeated = await meterError(mascot.meter({ userId: user.id, amount: 5, reason: "Job", idempotencyKey }, async () => ({ value: null, cost: 3 })));
    assert.equal(repeated.stage, "charge");
    assert.deepEqual([repeated.cause.status, repeated.cause.code], [409, "captured_differently"]);
    assert.deepEqual(await user.balance(), { balance: 20, available: 20, held: 0 });
  });
});
