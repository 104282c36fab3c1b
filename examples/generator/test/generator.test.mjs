// The example service end to end: the release Mascot server (see sdk/node/test/helpers), a key
// from `service-keys add`, the example in this process, a plugin user's mcu_ token.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startServer } from "../../../sdk/node/test/helpers/server.mjs";
import { createApp, FEATURE, PRICE } from "../app.js";
import { drawMascot } from "../mascot.js";

let mascot;
let generator;
let base;
before(async () => {
  mascot = await startServer("generator");
  generator = createApp({ apiBase: mascot.base, serviceKey: await mascot.serviceKey("generator"), retry: { firstDelayMs: 20, maxDelayMs: 100 } });
  await new Promise((resolve) => generator.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${generator.address().port}`;
});
after(async () => {
  if (generator) await new Promise((resolve) => generator.close(resolve));
  await mascot?.stop();
});

async function generate(token, body, headers = {}) {
  const response = await fetch(`${base}/generate`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: "null", ...(token ? { Authorization: `Bearer ${token}` } : {}), ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

test("a signed-in user gets a mascot for 5 credits, filed under generate in their history", async () => {
  const user = await mascot.user(12);
  const first = await generate(await user.serviceToken(), { name: "Ada" });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.equal(first.headers.get("access-control-allow-origin"), "*", "the plugin's iframe (origin null) may read it");
  assert.deepEqual([first.body.charged, first.body.balance], [PRICE, 12 - PRICE]);
  assert.match(first.body.svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^>]*role="img"><title>A mascot named Ada<\/title>/);
  assert.equal(first.body.svg, drawMascot("Ada"), "the drawing is the name's");

  const [entry] = await user.history();
  assert.deepEqual([entry.kind, entry.delta, entry.feature], ["spend", -PRICE, FEATURE]);
  assert.match(entry.description, /Ada/);
  assert.deepEqual(await user.balance(), { balance: 7, available: 7, held: 0 });

  // The same name draws the same mascot (and costs again: it is a new job).
  const again = await generate(await user.serviceToken(), { name: "  Ada " });
  assert.equal(again.body.svg, first.body.svg);
  assert.equal(again.body.balance, 2);
});

test("a repeated request with the same Idempotency-Key is charged once", async () => {
  const user = await mascot.user(10);
  const token = await user.serviceToken();
  const headers = { "Idempotency-Key": crypto.randomUUID() };
  const first = await generate(token, { name: "Bob" }, headers);
  const second = await generate(token, { name: "Bob" }, headers);
  assert.deepEqual([first.status, second.status], [200, 200]);
  assert.deepEqual(second.body, first.body);
  assert.deepEqual(await user.balance(), { balance: 5, available: 5, held: 0 });
});

test("too few credits: 402 with the server's message, nothing charged or held", async () => {
  const user = await mascot.user(3);
  const refused = await generate(await user.serviceToken(), { name: "Cy" });
  assert.equal(refused.status, 402);
  assert.equal(refused.body.error.code, "insufficient_credits");
  // The Mascot server's own words, passed through.
  const direct = await fetch(`${mascot.base}/api/v1/credits/spend`, {
    method: "POST",
    headers: { Authorization: `Bearer ${user.token}`, "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() },
    body: JSON.stringify({ amount: PRICE, reason: "compare the message" }),
  });
  const directBody = await direct.json();
  assert.equal(direct.status, 402);
  assert.equal(refused.body.error.message, directBody.error.message);
  assert.deepEqual(await user.balance(), { balance: 3, available: 3, held: 0 });
});

test("a team member's mascot is paid from the team, up to their cap: 402 member_cap_reached with resets_at", async () => {
  const [owner, member] = [await mascot.user(0), await mascot.user(0)];
  const call = async (user, method, path, body) => {
    const r = await fetch(`${mascot.base}${path}`, { method, headers: { Authorization: `Bearer ${user.token}`, "Content-Type": "application/json" }, body: body && JSON.stringify(body) });
    return { status: r.status, body: r.status === 204 ? null : await r.json() };
  };
  const team = (await call(owner, "POST", "/api/v1/teams", { name: "Generator team" })).body.team_id;
  const invited = await call(owner, "POST", `/api/v1/teams/${team}/invitations`, { email: member.email, role: "member", cap: { credits: PRICE, period: "day" } });
  assert.equal((await call(member, "POST", "/api/v1/teams/invitations/accept", { token: invited.body.token })).status, 200);
  await mascot.cli("credits", "grant", "--team", team, "--amount", "20", "--reason", "Team credits");

  const made = await generate(await member.serviceToken(), { name: "Dee", team_id: team });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  assert.deepEqual([made.body.charged, made.body.balance], [PRICE, null], "a team job does not tell the team's balance");
  const refused = await generate(await member.serviceToken(), { name: "Eve", team_id: team });
  assert.equal(refused.status, 402);
  assert.equal(refused.body.error.code, "member_cap_reached");
  assert.match(refused.body.error.message, /cap/);
  const tomorrow = new Date();
  tomorrow.setUTCHours(24, 0, 0, 0);
  assert.equal(Date.parse(refused.body.error.resets_at), tomorrow.getTime(), "when the daily cap resets");
  assert.deepEqual(await member.balance(), { balance: 0, available: 0, held: 0 }, "the member's own wallet is untouched");
  const wallet = (await call(owner, "GET", `/api/v1/credits/balance?team_id=${team}`)).body;
  assert.deepEqual([wallet.balance, wallet.held], [20 - PRICE, 0], "one mascot charged, nothing left on hold");
  const [entry] = (await call(owner, "GET", `/api/v1/credits/history?team_id=${team}`)).body.entries;
  assert.deepEqual([entry.delta, entry.feature, entry.user.email], [-PRICE, FEATURE, member.email]);
  assert.equal((await generate(await member.serviceToken(), { name: "Eve", team_id: 7 })).status, 400);
  assert.equal((await generate(await member.serviceToken(), { name: "Eve", team_id: "" })).status, 422);
});

test("no token, an unknown token or a signed-out one is 401; bad bodies are 400/422; all in the error envelope", async () => {
  const user = await mascot.user(20);
  assert.deepEqual((await generate(null, { name: "Dee" })).body.error.code, "unauthorized");
  const unknown = await generate("mcu_notAToken", { name: "Dee" });
  assert.deepEqual([unknown.status, unknown.body.error.code], [401, "unauthorized"]);
  const token = await user.serviceToken();
  const badJson = await generate(token, "{name:");
  assert.deepEqual([badJson.status, badJson.body.error.code], [400, "invalid_body"]);
  for (const name of ["", "   ", "x".repeat(41), "bell\u0007"]) {
    const bad = await generate(token, { name });
    assert.deepEqual([bad.status, bad.body.error.code], [422, "validation_failed"], JSON.stringify(name));
  }
  const tooBig = await generate(token, { name: "x".repeat(5000) });
  assert.deepEqual([tooBig.status, tooBig.body.error.code], [413, "payload_too_large"]);
  assert.deepEqual(await user.balance(), { balance: 20, available: 20, held: 0 }, "nothing charged");

  await user.logout();
  const signedOut = await generate(user.token, { name: "Dee" });
  assert.equal(signedOut.status, 401);
});

test("a name cannot inject markup into the SVG", async () => {
  const user = await mascot.user(5);
  const answer = await generate(await user.serviceToken(), { name: '<script>alert(1)</script>"&' });
  assert.equal(answer.status, 200);
  assert.ok(!answer.body.svg.includes("<script"), answer.body.svg);
  assert.match(answer.body.svg, /&#60;script&#62;alert\(1\)&#60;\/script&#62;&#34;&#38;/);
});

test("CORS preflight from the plugin's iframe (origin null), and the other routes", async () => {
  const preflight = await fetch(`${base}/generate`, {
    method: "OPTIONS",
    headers: { Origin: "null", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type, idempotency-key" },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
  assert.match(preflight.headers.get("access-control-allow-headers"), /Authorization.*Content-Type.*Idempotency-Key/);
  assert.match(preflight.headers.get("access-control-allow-methods"), /POST/);

  const health = await fetch(`${base}/healthz`);
  assert.deepEqual([health.status, await health.json()], [200, { status: "ok" }]);
  const missing = await fetch(`${base}/nope`);
  assert.deepEqual([missing.status, (await missing.json()).error.code], [404, "not_found"]);
  const wrongMethod = await fetch(`${base}/generate`);
  assert.deepEqual([wrongMethod.status, (await wrongMethod.json()).error.code], [405, "method_not_allowed"]);
});
