// The Usage view of the Account tab: 30 days by feature, the runway, and the CSV export opened in
// the browser through figma.openExternal with a single-use address (never the bearer token).
// axe-core in light and dark. Needs plugin/dist built for E2E_PORT.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { axeViolations, everyTheme as everyThemeOf, launchBrowser, pluginFrame, startDemo } from "./harness.mjs";

const port = Number(process.env.E2E_PORT ?? 8080);
let demo;
let chrome;
let page;
let ui;

before(async () => {
  demo = await startDemo(port);
  chrome = await launchBrowser();
  const context = await chrome.browser.newContext({ viewport: { width: 1200, height: 900 } });
  page = await context.newPage();
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

const waitText = (selector, hasText, timeout = 15_000) => ui.locator(selector, { hasText }).waitFor({ timeout });

async function api(path, token, body) {
  return fetch(`${demo.api}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), "idempotency-key": `k-${Math.random()}` },
    body: JSON.stringify(body),
  });
}

test("Usage: spends by feature, the runway, and the history exported as CSV once", async () => {
  const email = `usage-${Date.now()}@example.com`;
  await ui.locator("#auth-switch").click();
  await ui.locator("#email").fill(email);
  await ui.locator("#password").fill("correct horse");
  await ui.locator("#auth-submit").click();
  await waitText("#balance", "0 credits");
  await demo.operator("credits", "grant", "--email", email, "--amount", "100", "--reason", "Welcome");
  const { token } = await (await api("/api/v1/auth/login", null, { email, password: "correct horse" })).json();
  for (const [amount, feature] of [[5, "render"], [3, "render"], [2, "upscale"], [1, null]]) {
    const res = await api("/api/v1/credits/spend", token, feature ? { amount, reason: "work", feature } : { amount, reason: "work" });
    assert.equal(res.status, 200);
  }

  // The open tab's long-poll brings the spends (a render each): click once it has settled, as a
  // click that lands on a panel being redrawn is lost.
  await waitText("#balance", "89 credits");
  await ui.locator("#show-usage").click();
  await ui.locator("#usage-chart").waitFor();
  assert.match(await ui.locator("#usage-chart").getAttribute("aria-label"), /11 credits in all/);
  const rows = await ui.locator("#usage-features li").allTextContents();
  assert.deepEqual(rows, ["render8 credits", "upscale2 credits", "other1 credit"]);
  // 89 available at 11 a week: 56 days.
  await waitText("#usage-runway", "about 56 days");
  const reach = async () => {
    if ((await ui.locator("#usage-chart").count()) === 0) await ui.locator("#show-usage").click();
    await ui.locator("#usage-chart").waitFor();
  };
  await everyThemeOf(page, "usage", reach);

  const before = await page.evaluate(() => window.__figmaHost.opened.length);
  await ui.locator("#export-csv").click();
  await page.waitForFunction((n) => window.__figmaHost.opened.length > n, before);
  const url = await page.evaluate((n) => window.__figmaHost.opened[n], before);
  assert.match(url, /\/exports\/csv\?token=mce_[A-Za-z0-9_-]{43}$/);
  assert.ok(!url.includes(token), "the bearer token is not in the address");
  await waitText(".banner", "Your history is downloading");
  const csv = await fetch(url);
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get("content-disposition"), /^attachment; filename="mascot-credits-/);
  const lines = (await csv.text()).trim().split("\r\n");
  assert.equal(lines.length, 1 + 5, "the header, the grant and four spends");
  assert.ok(lines.some((l) => l.includes(",spend,-5,") && l.includes(",render,")));
  assert.equal((await fetch(url)).status, 404, "the address works once");

  await ui.locator("#close-usage").click();
  await waitText("#balance", "89 credits");
});

test("a low-balance alert set in the Usage view arrives as a banner while the tab is open", async () => {
  await ui.locator("#show-usage").click();
  await ui.locator("#alert-threshold").fill("0");
  await ui.locator("#alert-save").click();
  await waitText("#alert-error", "from 1 to 1,000,000");
  await ui.locator("#alert-threshold").fill("85");
  await ui.locator("#alert-save").click();
  await waitText(".banner.success", "fewer than 85 credits");
  await ui.locator("#close-usage").click();
  await waitText("#balance", "89 credits");
  assert.equal(await ui.locator("#low-balance").count(), 0);

  // Another device spends 10: the open tab hears it through its balance long-poll, no refresh.
  const email = (await ui.locator("#signed-in-as").textContent()).trim();
  const { token } = await (await api("/api/v1/auth/login", null, { email, password: "correct horse" })).json();
  assert.equal((await api("/api/v1/credits/spend", token, { amount: 10, reason: "work", feature: "render" })).status, 200);
  await waitText(".banner", "fell below 85 credits", 10_000);
  await waitText("#balance", "79 credits");
  await waitText("#low-balance", "Fewer than 85 credits");
  assert.deepEqual(await axeViolations(page), [], "axe with the banner (dark)");
  // Reopened in the light theme the banner is gone (it was news); the low-balance line stays.
  await page.evaluate(() => window.__figmaHost.setTheme("light"));
  await waitText("#low-balance", "Fewer than 85 credits");
  assert.deepEqual(await axeViolations(page), [], "axe with the low-balance line (light)");
  await page.evaluate(() => window.__figmaHost.setTheme("dark"));
  await waitText("#low-balance", "Fewer than 85 credits");
  const alerts = await (await fetch(`${demo.api}/api/v1/me/alerts`, { headers: { authorization: `Bearer ${token}` } })).json();
  assert.deepEqual(alerts, { low_balance: 85 });
});

test("the plugin API answers a PUT preflight from the null origin", async () => {
  const res = await fetch(`${demo.api}/api/v1/me/alerts`, {
    method: "OPTIONS",
    headers: { origin: "null", "access-control-request-method": "PUT", "access-control-request-headers": "authorization, content-type" },
  });
  assert.ok(res.status === 200 || res.status === 204, String(res.status));
  assert.match(res.headers.get("access-control-allow-methods") ?? "", /PUT/);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  // And the same preflight from inside the plugin's sandboxed frame, whose origin is "null".
  const frame = await pluginFrame(page);
  const status = await frame.evaluate(async (api) => {
    const r = await fetch(`${api}/api/v1/me/alerts`, { method: "PUT", headers: { "content-type": "application/json" }, body: "{}" });
    return r.status;
  }, demo.api);
  assert.equal(status, 401, "the PUT itself went through CORS and was refused for want of a token");
});
