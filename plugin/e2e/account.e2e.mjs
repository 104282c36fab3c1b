// The whole Account tab as a person uses it, inside the Figma-like host page (the plugin UI in a
// sandboxed srcdoc iframe, origin "null"), against the real server and the Stripe simulator.
// Needs plugin/dist built with MASCOT_API_BASE=http://127.0.0.1:$E2E_PORT.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { launchBrowser, root, startDemo } from "./harness.mjs";

const port = Number(process.env.E2E_PORT ?? 8080);
const shots = path.join(root, "artifacts/screenshots");
let demo;
let chrome;
let page;
let ui;

before(async () => {
  const built = fs.readFileSync(path.join(root, "plugin/dist/manifest.json"), "utf8");
  assert.ok(built.includes(`http://127.0.0.1:${port}`), `plugin/dist is not built for port ${port}`);
  fs.mkdirSync(shots, { recursive: true });
  demo = await startDemo(port);
  chrome = await launchBrowser();
  const context = await chrome.browser.newContext({ viewport: { width: 1200, height: 760 } });
  page = await context.newPage();
  // Record openExternal calls instead of opening real tabs (the test follows the URL itself).
  await page.addInitScript(() => {
    window.__e2e = true;
  });
  await page.goto(`${demo.api}/`);
  ui = page.frameLocator("#plugin-slot iframe");
});

after(async () => {
  await chrome?.close();
  await demo?.stop();
});

const host = (fn) => page.evaluate(fn);
const text = (selector) => ui.locator(selector).textContent();
const waitText = (selector, hasText, timeout = 15_000) => ui.locator(selector, { hasText }).waitFor({ timeout });

async function signUp(email, password) {
  await ui.locator("#auth-switch").click();
  await ui.locator("#email").fill(email);
  await ui.locator("#password").fill(password);
  await ui.locator("#auth-submit").click();
}

async function payOpenedCheckout(index) {
  await page.waitForFunction((n) => window.__figmaHost.opened.length > n, index);
  const url = await page.evaluate((n) => window.__figmaHost.opened[n], index);
  assert.ok(url.startsWith(demo.sim), url);
  const checkout = await page.context().newPage();
  await checkout.goto(url);
  await checkout.click("#pay");
  await checkout.waitForURL(/\/billing\/success/);
  const body = await checkout.textContent("body");
  await checkout.close();
  return body;
}

test("the origin of the plugin UI is null, as in Figma", async () => {
  await ui.locator("#auth-submit").waitFor({ timeout: 15_000 });
  const origin = await page.frames()[1].evaluate(() => window.origin);
  assert.equal(origin, "null");
});

test("create an account, buy 75 credits, and see them arrive without a reload", async () => {
  await signUp("figma-user@example.com", "correct horse");
  await waitText("#balance", "0 credits");
  await waitText("#history-empty", "No activity yet");
  await ui.locator('label[data-pack="pack_75"]').click();
  await ui.locator("#buy").click();
  await waitText("#waiting-title", "Waiting for payment");
  const success = await payOpenedCheckout(0);
  assert.match(success, /75 credits were added/);
  // The tab was waiting: the balance changes by itself.
  await waitText("#balance", "75 credits");
  await waitText("#history", "Bought 75 credits ($12.99)");
  await waitText(".banner.success", "75 credits added");
  const toasts = await host(() => window.__figmaHost.notified);
  assert.ok(toasts.some((t) => t.includes("75 credits added")), JSON.stringify(toasts));
  await page.locator(".panel").screenshot({ path: path.join(shots, "account-dark.png") });
  await host(() => window.__figmaHost.setTheme("light"));
  await waitText("#balance", "75 credits");
  await page.locator(".panel").screenshot({ path: path.join(shots, "account-light.png") });
});

test("reopening the plugin during a payment resumes waiting for it", async () => {
  await ui.locator('label[data-pack="pack_25"]').click();
  await ui.locator("#buy").click();
  await waitText("#waiting-title", "Waiting for payment");
  await host(() => window.__figmaHost.reopen());
  // Signed in from clientStorage, and waiting again for the open checkout.
  await waitText("#waiting-title", "Waiting for payment");
  await payOpenedCheckout(1);
  await waitText("#balance", "100 credits");
});

test("sign out clears the session; signing in again restores the account", async () => {
  await ui.locator("#sign-out").click();
  await waitText(".banner", "You are signed out");
  const stored = await host(() => Object.keys(localStorage).filter((k) => k.startsWith("mascot-demo-clientStorage:")));
  assert.deepEqual(stored, [], "token removed from clientStorage");
  await host(() => window.__figmaHost.reopen());
  await ui.locator("#auth-submit").waitFor();
  await ui.locator("#email").fill("figma-user@example.com");
  await ui.locator("#password").fill("correct horse");
  await ui.locator("#auth-submit").click();
  await waitText("#balance", "100 credits");
  await host(() => window.__figmaHost.reopen());
  await waitText("#balance", "100 credits");
  assert.equal(await text("#signed-in-as"), "figma-user@example.com");
});

test("a wrong password shows its message", async () => {
  await ui.locator("#sign-out").click();
  await ui.locator("#email").fill("figma-user@example.com");
  await ui.locator("#password").fill("not my password");
  await ui.locator("#auth-submit").click();
  await waitText(".banner.error", "Wrong email or password.");
  await page.locator(".panel").screenshot({ path: path.join(shots, "sign-in-error.png") });
});
