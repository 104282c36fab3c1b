// The whole Account tab as a person uses it, inside the Figma-like host page (the plugin UI in a
// sandboxed srcdoc iframe, origin "null"), against the real server and the Stripe simulator.
// Needs plugin/dist built with MASCOT_API_BASE=http://127.0.0.1:$E2E_PORT.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { everyTheme as everyThemeOf, launchBrowser, pluginFrame, root, startDemo, tabOrder as tabOrderOf } from "./harness.mjs";

const port = Number(process.env.E2E_PORT ?? 8080);
const shots = path.join(root, "artifacts/screenshots");
let demo;
let chrome;
let page;
let ui;
let apiOffline = false;

before(async () => {
  const built = fs.readFileSync(path.join(root, "plugin/dist/manifest.json"), "utf8");
  assert.ok(built.includes(`http://127.0.0.1:${port}`), `plugin/dist is not built for port ${port}`);
  fs.mkdirSync(shots, { recursive: true });
  demo = await startDemo(port);
  chrome = await launchBrowser();
  const context = await chrome.browser.newContext({ viewport: { width: 1200, height: 760 } });
  // Lets a test cut the API off (installed up front: Chromium runs the sandboxed plugin frame in a
  // process of its own, and a route added later does not always reach it).
  await context.route(
    (url) => url.pathname.startsWith("/api/"),
    (route) => (apiOffline ? route.abort("internetdisconnected") : route.continue()),
  );
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

const host = (fn, arg) => page.evaluate(fn, arg);
const text = (selector) => ui.locator(selector).textContent();
const waitText = (selector, hasText, timeout = 15_000) => ui.locator(selector, { hasText }).waitFor({ timeout });

const everyTheme = (name, reach) => everyThemeOf(page, name, reach);
const tabOrder = (count) => tabOrderOf(page, count);

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

test("signing in and creating an account: no accessibility violation, light and dark", async () => {
  await everyTheme("sign-in", () => waitText("h1", "Sign in to Mascot"));
  await everyTheme("sign-up", async () => {
    await ui.locator("#auth-switch").click();
    await waitText("h1", "Create your Mascot account");
  });
  await ui.locator("#auth-switch").click();
  await waitText("h1", "Sign in to Mascot");
  assert.deepEqual(await tabOrder(6), ["email", "password", "auth-submit", "forgot", "browser-signin", "auth-switch"]);
});

test("create an account, buy 75 credits, and see them arrive without a reload", async () => {
  await signUp("figma-user@example.com", "correct horse");
  await waitText("#balance", "0 credits");
  await waitText("#history-empty", "No activity yet");
  await ui.locator('label[data-pack="pack_75"]').click();
  await ui.locator("#buy").click();
  await waitText("#waiting-title", "Waiting for payment");
  // Reopening resumes the wait, so the waiting screen can be checked in both themes.
  await everyTheme("waiting-for-payment", () => waitText("#waiting-title", "Waiting for payment"));
  const success = await payOpenedCheckout(0);
  assert.match(success, /75 credits were added/);
  // The tab was waiting: the balance changes by itself, and the live region says so.
  await waitText("#balance", "75 credits");
  await waitText("#history", "Bought 75 credits ($12.99)");
  await waitText(".banner.success", "75 credits added");
  await waitText("#live", "75 credits added. Thank you! Your balance is now 75 credits.");
  assert.equal(await ui.locator("#live").getAttribute("aria-live"), "polite");
  const toasts = await host(() => window.__figmaHost.notified);
  assert.ok(toasts.some((t) => t.includes("75 credits added")), JSON.stringify(toasts));
  await everyTheme("account", () => waitText("#history", "Bought 75 credits ($12.99)"));
});

test("a purchase's Stripe receipt opens in the browser", async () => {
  // The receipt address is fetched from Stripe just after the purchase is credited.
  const receipt = ui.getByRole("button", { name: /^Receipt for Bought 75 credits/ });
  for (let i = 0; i < 20 && (await receipt.count()) === 0; i++) {
    await ui.locator("#refresh").click();
    await new Promise((r) => setTimeout(r, 250));
  }
  const before = await host(() => window.__figmaHost.opened.length);
  await receipt.click();
  await page.waitForFunction((n) => window.__figmaHost.opened.length > n, before);
  const url = await host((n) => window.__figmaHost.opened[n], before);
  assert.ok(url.startsWith(demo.sim) && url.includes("/receipts/ch_"), url);
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /\$12\.99/);
});

test("the keyboard reaches every action in order, with the focus always visible", async () => {
  const frame = await pluginFrame(page);
  // The radio group is one stop (the checked pack); the arrows move within it.
  assert.deepEqual(await tabOrder(9), ["show-team", "refresh", "sign-out", "change-password", "sign-out-all", "show-usage", "pack-pack_75", "buy", "redeem-toggle"]);
  await ui.locator("#pack-pack_75").focus();
  await page.keyboard.press("ArrowDown");
  assert.equal(await frame.evaluate(() => document.activeElement.id), "pack-pack_200", "focus stays on the pack chosen with the keyboard");
  assert.ok(await ui.locator("#pack-pack_200").isChecked());
  await page.keyboard.press("ArrowUp");
  assert.ok(await ui.locator("#pack-pack_75").isChecked());
});

test("each pack shows its price per credit, and the cheapest per credit is marked Best value", async () => {
  // The catalogue as the server sends it; the UI must agree with it, whatever its prices.
  const { packs } = await page.evaluate(async (api) => (await fetch(`${api}/api/v1/billing/packs`)).json(), demo.api);
  assert.ok(packs.length > 1);
  const cheapest = packs.reduce((a, b) => (b.price_cents * a.credits < a.price_cents * b.credits ? b : a));
  for (const p of packs) {
    const row = ui.locator(`label[data-pack="${p.id}"]`);
    const text = await row.textContent();
    const unit = new Intl.NumberFormat("en-US", { style: "currency", currency: p.currency.toUpperCase() }).format(p.price_cents / p.credits / 100);
    assert.ok(text.includes(p.label), `${p.id} shows the server's label: ${text}`);
    assert.ok(text.includes(`${unit} per credit`), `${p.id} shows ${unit} per credit: ${text}`);
    assert.equal(await row.locator(".best-value").count(), p.id === cheapest.id ? 1 : 0, `${p.id}: ${text}`);
  }
  assert.equal(await ui.locator(".best-value").count(), 1);
});

test("reopening the plugin during a payment resumes waiting for it", async () => {
  // The receipt test opened a page too: this checkout is the next one opened.
  const opened = await host(() => window.__figmaHost.opened.length);
  await ui.locator('label[data-pack="pack_25"]').click();
  await ui.locator("#buy").click();
  await waitText("#waiting-title", "Waiting for payment");
  await host(() => window.__figmaHost.reopen());
  // Signed in from clientStorage, and waiting again for the open checkout.
  await waitText("#waiting-title", "Waiting for payment");
  await payOpenedCheckout(opened);
  await waitText("#balance", "100 credits");
});

test("sign out clears the session; signing in again restores the account", async () => {
  await ui.locator("#sign-out").click();
  await waitText(".banner", "You are signed out");
  // The main thread's clientStorage writes are asynchronous: wait for the removal.
  await page.waitForFunction(() => localStorage.getItem("mascot-demo-clientStorage:mascot.session-token") === null, null, { timeout: 5_000 });
  const stored = await host(() => Object.keys(localStorage).filter((k) => k.startsWith("mascot-demo-clientStorage:")));
  // The session token is gone; this device's token for the account stays (it is not a session).
  assert.deepEqual(stored, ["mascot-demo-clientStorage:mascot.device-tokens"], "token removed from clientStorage");
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

test("when the server cannot be reached, the tab says so and Try again recovers", async () => {
  // Every API request fails as if offline (the host page and the plugin's files still load).
  apiOffline = true;
  try {
    await everyTheme("account-error", () => waitText(".banner.error", "You seem to be offline"));
  } finally {
    apiOffline = false;
  }
  await ui.locator("#retry").click();
  await waitText("#balance", "100 credits");
});

test("a wrong password shows its message", async () => {
  await ui.locator("#sign-out").click();
  await ui.locator("#email").fill("figma-user@example.com");
  await ui.locator("#password").fill("not my password");
  await ui.locator("#auth-submit").click();
  await waitText(".banner.error", "Wrong email or password.");
  assert.equal(await (await pluginFrame(page)).evaluate(() => document.activeElement.id), "password", "focus goes to the field to fix");
  await everyTheme("sign-in-error", async () => {
    await ui.locator("#email").fill("figma-user@example.com");
    await ui.locator("#password").fill("not my password");
    await ui.locator("#auth-submit").click();
    await waitText(".banner.error", "Wrong email or password.");
  });
});
