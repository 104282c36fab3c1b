// Promotional credits in the Account tab, as a new user meets them: "Verify your email to get N free
// credits" after sign-up, the link read from a real SMTP server (aiosmtpd) and confirmed in the
// browser, the welcome credits with their end date, then "Have a code?" with a wrong code and a
// right one. axe-core on each state, light and dark. Needs plugin/dist built for E2E_PORT.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { everyTheme as everyThemeOf, launchBrowser, startDemo, startSmtp } from "./harness.mjs";

const port = Number(process.env.E2E_PORT ?? 8080);
const GIFT = 5;
let smtp;
let demo;
let chrome;
let page;
let ui;

before(async () => {
  smtp = await startSmtp();
  // Welcome credits valid 3 days: inside the 7 days in which the tab says when they expire.
  demo = await startDemo(port, { ...smtp.env, SIGNUP_CREDITS: String(GIFT), SIGNUP_CREDITS_VALID_DAYS: "3" });
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
  smtp?.stop();
});

const waitText = (selector, hasText, timeout = 15_000) => ui.locator(selector, { hasText }).waitFor({ timeout });
const everyTheme = (name, reach) => everyThemeOf(page, name, reach);

test("a new account verifies its email and gets the welcome credits, with their end date", async () => {
  const email = `promo-${Date.now()}@example.com`;
  await ui.locator("#auth-switch").click();
  await ui.locator("#email").fill(email);
  await ui.locator("#password").fill("correct horse");
  await ui.locator("#auth-submit").click();
  await waitText("#verify-note", `Verify your email to get ${GIFT} free credits.`);
  assert.equal((await ui.locator("#balance").textContent()).trim(), "0 credits");
  await everyTheme("verify-email", () => waitText("#verify-note", "Verify your email"));

  // Sign-up mailed a link; "Send me the link" mails another, and the tab says where it went.
  const first = await smtp.waitForMail(1);
  assert.match(first, new RegExp(`^To: ${email.replace(/[.]/g, "\\.")}`, "m"));
  await ui.locator("#verify-send").click();
  await waitText(".banner", `We sent a link to ${email}`);
  await waitText("#verify-note", "A new link is on its way");
  const link = smtp.link(await smtp.waitForMail(2), "/account/verify");
  assert.ok(link, "a verification link in the second mail");

  // The page shows a button (a GET uses nothing up); the POST confirms and gives the credits.
  const browser = await page.context().newPage();
  assert.equal((await browser.goto(link)).status(), 200);
  await browser.getByRole("button", { name: "Confirm my email" }).click();
  await browser.getByRole("heading", { name: "Email confirmed" }).waitFor();
  assert.match(await browser.textContent("body"), new RegExp(`${GIFT} free credits were added`));
  await browser.close();

  await ui.locator("#refresh").click();
  await waitText("#balance", `${GIFT} credits`);
  assert.equal(await ui.locator("#verify-note").count(), 0, "the notice ends once the email is confirmed");
  await waitText("#expiring", `${GIFT} credits expire on`);
  await waitText("#history .entry-desc", "Welcome credits");
  await everyTheme("welcome-credits", () => waitText("#expiring", "expire on"));
});

test("Have a code?: a wrong code is the field's error, a right one adds its credits", async () => {
  await demo.operator("codes", "create", "--credits", "50", "--code", "LAUNCH50", "--valid-days", "30");
  await ui.locator("#redeem-toggle").click();
  assert.equal(await ui.locator("#redeem-toggle").getAttribute("aria-expanded"), "true");
  // Focus moves into the field, so a keyboard user types at once.
  await page.keyboard.type("NOPE-NOPE");
  await page.keyboard.press("Enter");
  await waitText("#redeem-error", "");
  assert.equal(await ui.locator("#redeem-code").getAttribute("aria-invalid"), "true");
  assert.equal(await ui.locator("#redeem-code").getAttribute("aria-describedby"), "redeem-error");
  assert.equal(await ui.locator("#redeem-code").inputValue(), "NOPE-NOPE", "the typed code stays, to be corrected");
  await everyTheme("redeem-error", async () => {
    if ((await ui.locator("#redeem-toggle").getAttribute("aria-expanded")) !== "true") await ui.locator("#redeem-toggle").click();
    await ui.locator("#redeem-code").fill("NOPE-NOPE");
    await ui.locator("#redeem-submit").click();
    await ui.locator("#redeem-error").waitFor();
  });

  // Codes are compared without case.
  await ui.locator("#redeem-code").fill("launch50");
  await ui.locator("#redeem-submit").click();
  await waitText(".banner.success", `50 credits added (valid until`);
  await waitText("#balance", `${GIFT + 50} credits`);
  await waitText("#history .entry-desc", "Code LAUNCH50");
  assert.equal(await ui.locator("#redeem-code").count(), 0, "the form closes after a redemption");
  await everyTheme("redeem-done", () => waitText("#balance", `${GIFT + 50} credits`));

  // A second redemption by the same account is refused in words.
  await ui.locator("#redeem-toggle").click();
  await ui.locator("#redeem-code").fill("LAUNCH50");
  await ui.locator("#redeem-submit").click();
  await waitText("#redeem-error", "already");
  await waitText("#balance", `${GIFT + 50} credits`);
});
