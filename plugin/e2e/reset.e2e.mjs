// Password reset by email, as a person does it: ask for a link, read the mail a real SMTP server
// (aiosmtpd on 127.0.0.1) received, open the link in Chromium, set a new password on the page, then
// sign in with it. axe-core checks the page in light and dark.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { launchBrowser, root, startDemo, startSmtp } from "./harness.mjs";

const shots = path.join(root, "artifacts/screenshots");
const axeSource = fs.readFileSync(path.join(root, "plugin/node_modules/axe-core/axe.min.js"), "utf8");
let smtp;
let demo;
let chrome;

async function axe(page) {
  await page.evaluate((src) => {
    if (!window.axe) (0, eval)(src);
  }, axeSource);
  const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations);
  return violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(" | ")}`);
}

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  smtp = await startSmtp();
  demo = await startDemo(0, smtp.env);
  chrome = await launchBrowser();
});

after(async () => {
  await chrome?.close();
  await demo?.stop();
  smtp?.stop();
});

async function api(pathname, body) {
  return fetch(`${demo.api}${pathname}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

test("a forgotten password is reset from the mailed link in the browser", async () => {
  const email = `reset-${Date.now()}@example.com`;
  const signup = await api("/api/v1/auth/signup", { email, password: "correct horse" });
  assert.equal(signup.status, 201);
  const options = await (await fetch(`${demo.api}/api/v1/auth/options`)).json();
  assert.equal(options.password_reset, "email");

  const res = await api("/api/v1/auth/password-reset", { email });
  assert.equal(res.status, 202);
  // Mail 1 is the sign-up's "confirm your email"; the reset link is the second.
  assert.match(await smtp.waitForMail(1), /^Subject: Confirm your email for Mascot/m);
  const mail = await smtp.waitForMail(2);
  assert.match(mail, /^Subject: Reset your Mascot password/m);
  assert.match(mail, new RegExp(`^To: ${email.replace(".", "\\.")}`, "m"));
  const link = smtp.link(mail, "/account/reset");
  assert.ok(link, `a reset link in:\n${mail}`);

  const context = await chrome.browser.newContext({ viewport: { width: 800, height: 760 } });
  const page = await context.newPage();
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    const response = await page.goto(link);
    assert.equal(response.status(), 200);
    const headers = response.headers();
    assert.match(headers["content-security-policy"], /default-src 'self'/);
    assert.equal(headers["cache-control"], "no-store");
    assert.equal(headers["referrer-policy"], "no-referrer");
    await page.getByText(email).waitFor();
    assert.deepEqual(await axe(page), [], `axe on the reset page (${scheme})`);
    await page.screenshot({ path: path.join(shots, `reset-form-${scheme}.png`) });
  }
  await page.emulateMedia({ colorScheme: "light" });

  // Two different passwords: the page says so and keeps the link usable.
  await page.getByLabel("New password", { exact: true }).fill("a brand new one");
  await page.getByLabel("New password again").fill("a different one");
  await page.getByRole("button", { name: "Set new password" }).click();
  await page.getByRole("alert").filter({ hasText: "The two passwords differ" }).waitFor();
  assert.deepEqual(await axe(page), [], "axe on the error state");
  await page.screenshot({ path: path.join(shots, "reset-form-error-light.png") });

  await page.getByLabel("New password", { exact: true }).fill("a brand new one");
  await page.getByLabel("New password again").fill("a brand new one");
  await page.getByRole("button", { name: "Set new password" }).click();
  await page.getByRole("heading", { name: "Password changed" }).waitFor();
  await page.screenshot({ path: path.join(shots, "reset-done-light.png") });

  assert.equal((await api("/api/v1/auth/login", { email, password: "a brand new one" })).status, 200);
  assert.equal((await api("/api/v1/auth/login", { email, password: "correct horse" })).status, 401);
  const me = await fetch(`${demo.api}/api/v1/me`, { headers: { authorization: `Bearer ${(await signup.json()).token}` } });
  assert.equal(me.status, 401, "the reset signed out every device");

  // The link worked once.
  const again = await page.goto(link);
  assert.equal(again.status(), 404);
  await page.getByRole("heading", { name: "This link no longer works" }).waitFor();
  await context.close();
});

test("the browser sign-in page: code, sign-in, confirmation, all accessible", async () => {
  const email = `handoff-${Date.now()}@example.com`;
  assert.equal((await api("/api/v1/auth/signup", { email, password: "correct horse" })).status, 201);
  const start = await api("/api/v1/auth/handoff", {});
  assert.equal(start.status, 201);
  const handoff = await start.json();
  const context = await chrome.browser.newContext({ viewport: { width: 800, height: 900 } });
  const page = await context.newPage();
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.goto(handoff.url);
    await page.getByRole("heading", { name: "Sign in to the Mascot plugin" }).waitFor();
    assert.deepEqual(await axe(page), [], `axe on the sign-in page (${scheme})`);
    await page.screenshot({ path: path.join(shots, `browser-sign-in-${scheme}.png`) });
  }
  await page.getByLabel("Code shown in your plugin").fill(handoff.user_code.toLowerCase());
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("heading", { name: `Sign in the Mascot plugin in Figma as ${email}?` }).waitFor();
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    assert.deepEqual(await axe(page), [], `axe on the confirmation (${scheme})`);
    await page.screenshot({ path: path.join(shots, `browser-sign-in-confirm-${scheme}.png`) });
  }
  await page.getByRole("button", { name: "Sign in the plugin" }).click();
  await page.getByRole("heading", { name: "You can go back to Figma" }).waitFor();
  const poll = await fetch(`${demo.api}/api/v1/auth/handoff/${handoff.handoff_id}`, { headers: { "x-handoff-key": handoff.read_key } });
  const body = await poll.json();
  assert.equal(body.status, "complete");
  assert.equal(body.user.email, email);
  await context.close();
});
