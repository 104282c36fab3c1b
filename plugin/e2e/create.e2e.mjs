// The Create tab end to end: the plugin (Figma-like host page, Chromium) asks the Mascot server for
// a short-lived mcu_ token and sends it to the example paid service (examples/generator, with a
// key from `mascot-server service-keys add` on the demo database), which verifies it, holds 5
// credits, draws the mascot and captures them; the Account tab then shows the spend under its
// feature. axe-core on the new screens, light and dark.
// Needs plugin/dist built with MASCOT_API_BASE=http://127.0.0.1:$E2E_PORT and
// MASCOT_SERVICE_BASE=http://127.0.0.1:$E2E_SERVICE_PORT.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { createApp, FEATURE, PRICE } from "../../examples/generator/app.js";
import { drawMascot } from "../../examples/generator/mascot.js";
import { axeViolations, everyTheme as everyThemeOf, launchBrowser, pluginFrame, root, startDemo } from "./harness.mjs";

const port = Number(process.env.E2E_PORT ?? 8080);
const servicePort = Number(process.env.E2E_SERVICE_PORT ?? 8081);
const EMAIL = "creator@example.com";
let demo;
let generator;
let chrome;
let page;
let ui;
const served = [];

before(async () => {
  const built = JSON.parse(fs.readFileSync(path.join(root, "plugin/dist/manifest.json"), "utf8"));
  assert.ok(built.networkAccess.allowedDomains.includes(`http://127.0.0.1:${servicePort}`), `plugin/dist is not built for the service on port ${servicePort}`);
  demo = await startDemo(port);
  const serviceKey = (await demo.operator("service-keys", "add", "--name", "e2e-generator")).trim();
  assert.match(serviceKey, /^mck_\S+$/, "service-keys add prints only the key");
  generator = createApp({ apiBase: demo.api, serviceKey, log: (line) => served.push(line) });
  await new Promise((resolve, reject) => generator.once("error", reject).listen(servicePort, "127.0.0.1", resolve));
  chrome = await launchBrowser();
  const context = await chrome.browser.newContext({ viewport: { width: 1200, height: 760 } });
  page = await context.newPage();
  await page.addInitScript(() => {
    window.__e2e = true;
  });
  await page.goto(`${demo.api}/`);
  ui = page.frameLocator("#plugin-slot iframe");
  await ui.locator("#auth-submit").waitFor({ timeout: 15_000 });
});

after(async () => {
  await chrome?.close();
  await new Promise((resolve) => (generator ? generator.close(resolve) : resolve()));
  await demo?.stop();
});

const waitText = (selector, hasText, timeout = 15_000) => ui.locator(selector, { hasText }).waitFor({ timeout });
const everyTheme = (name, reach) => everyThemeOf(page, name, reach);
const focused = async () => (await pluginFrame(page)).evaluate(() => document.activeElement.id);

async function openCreate() {
  await ui.locator("#tab-create").click();
  await waitText("h1", "Create a mascot");
}

async function create(name) {
  await ui.locator("#mascot-name").fill(name);
  await ui.locator("#create-submit").click();
  await waitText("#mascot-result figcaption", `${name} · ${PRICE} credits charged`);
}

test("signed out there is no Create tab", async () => {
  assert.equal(await ui.locator("#tab-create").count(), 0);
  assert.equal(await ui.locator('[role="tab"]').count(), 1);
});

test("create a mascot for 5 credits, then see the spend under its feature in the Account tab", async () => {
  await ui.locator("#auth-switch").click();
  await ui.locator("#email").fill(EMAIL);
  await ui.locator("#password").fill("correct horse battery");
  await ui.locator("#auth-submit").click();
  await waitText("#balance", "0 credits");
  await demo.operator("credits", "grant", "--email", EMAIL, "--amount", "15", "--reason", "Credits to try the generator");
  // The server caches a balance for up to a second after an operator command on SQLite (another
  // process): refresh until the grant shows.
  for (let i = 0; ; i++) {
    await ui.locator("#refresh").click();
    if (await ui.locator("#balance", { hasText: "15 credits" }).waitFor({ timeout: 1_500 }).then(() => true, () => false)) break;
    assert.ok(i < 5, "the granted credits never showed");
  }

  await openCreate();
  assert.equal(await ui.locator("#tab-create").getAttribute("aria-selected"), "true");
  assert.equal(await ui.locator("#panel").getAttribute("aria-labelledby"), "tab-create");
  await waitText("#create-balance", "15 credits available");
  await create("Ada");
  await waitText(".banner.success", "Created for 5 credits. Your balance is now 10 credits.");
  await waitText("#live", "Created for 5 credits.");
  assert.equal(await focused(), "mascot-result", "focus moves to the new mascot");
  const img = ui.locator("#mascot-result img");
  assert.equal(await img.getAttribute("alt"), "A mascot named Ada");
  const src = await img.getAttribute("src");
  assert.equal(decodeURIComponent(src.replace(/^data:image\/svg\+xml;charset=utf-8,/, "")), drawMascot("Ada"), "the service's drawing, shown as an image");
  assert.ok(await img.evaluate((el) => el.complete && el.naturalWidth > 0), "the SVG renders");
  // The service saw one request, with a token it verified (never the plugin's session token).
  assert.deepEqual(served.filter((l) => l.startsWith("POST /generate")).map((l) => l.split(" ")[2]), ["200"]);

  await ui.locator("#tab-account").click();
  await waitText("#balance", "10 credits");
  const entry = ui.locator("#history .entry").first();
  assert.equal(await entry.locator(".entry-feature").textContent(), FEATURE);
  assert.match(await entry.textContent(), /Ada/);
  assert.match(await entry.locator(".entry-delta").textContent(), /−5/);
});

test("the tabs follow the keyboard: arrows move between Account and Create", async () => {
  await ui.locator("#tab-account").focus();
  await page.keyboard.press("ArrowRight");
  await waitText("h1", "Create a mascot");
  assert.equal(await focused(), "tab-create");
  assert.equal(await ui.locator("#tab-account").getAttribute("tabindex"), "-1", "one tab stop for the tab list");
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "mascot-name");
  await ui.locator("#tab-create").focus();
  await page.keyboard.press("ArrowLeft");
  await waitText("#balance", "10 credits");
  assert.equal(await focused(), "tab-account");
});

test("the Create screen and its result: no accessibility violation, light and dark", async () => {
  await everyTheme("create", openCreate);
  // Each theme draws one more mascot (5 credits each): 10 → 0.
  await everyTheme("create-result", async () => {
    await openCreate();
    await create(`Fay ${Date.now() % 1000}`);
  });
  await ui.locator("#tab-account").click();
  await waitText("#balance", "0 credits");
  assert.equal(await ui.locator("#history .entry-feature", { hasText: FEATURE }).count(), 3);
  // The history with its feature labels, as the Account tab shows it after a reopen.
  await everyTheme("account-features", () => ui.locator("#history .entry-feature", { hasText: FEATURE }).first().waitFor({ timeout: 15_000 }));
});

test("without enough credits the server's message is shown and nothing is charged", async () => {
  await openCreate();
  await ui.locator("#mascot-name").fill("Gus");
  await ui.locator("#create-submit").click();
  await waitText(".banner.error", "credits");
  assert.equal(await ui.locator("#mascot-result").count(), 0);
  assert.equal(await focused(), "mascot-name");
  assert.deepEqual(await axeViolations(page), [], "the error on the Create screen");
  assert.equal(served.filter((l) => l.startsWith("POST /generate")).at(-1).split(" ")[2], "402");
  await ui.locator("#tab-account").click();
  await waitText("#balance", "0 credits");
});

test("an empty name is the form's error, and nothing is sent", async () => {
  const before = served.length;
  await openCreate();
  await ui.locator("#mascot-name").fill("   ");
  await ui.locator("#create-submit").click();
  await waitText(".banner.error", "Give your mascot a name");
  assert.equal(await focused(), "mascot-name");
  assert.equal(served.length, before);
});

// Each render rebuilds the fields; a balance that changes while a name is typed must not move the
// caret or drop the selection (the first letters typed after it would land in the wrong place).
test("a render while a name is typed keeps the caret and the selection", async () => {
  await openCreate();
  const name = ui.locator("#mascot-name");
  await name.fill("");
  await name.focus();
  await page.keyboard.type("Ad");
  // A render the person did not ask for: credits granted meanwhile reach the tab by its long-poll.
  await demo.operator("credits", "grant", "--email", EMAIL, "--amount", "5", "--reason", "A render while typing");
  await waitText("#create-balance", "5 credits available");
  await page.keyboard.type("a");
  assert.equal(await name.inputValue(), "Ada", "typed on at the caret");
  assert.equal(await focused(), "mascot-name");
  // All of it selected, a render, then typed over: the selection is what was replaced.
  await name.selectText();
  await demo.operator("credits", "grant", "--email", EMAIL, "--amount", "5", "--reason", "Another render while typing");
  await waitText("#create-balance", "10 credits available");
  await page.keyboard.type("Bob");
  assert.equal(await name.inputValue(), "Bob", "the selection was typed over");
});
