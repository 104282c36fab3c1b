// Self-service accounts in the Account tab, end to end (real server, the Figma-like host page,
// Chromium): forgot password, change password, sign out everywhere, the change a one-time
// password requires, and signing in through the browser. axe-core on every new screen in light
// and dark, screenshots in artifacts/screenshots/.
// Needs plugin/dist built with MASCOT_API_BASE=http://127.0.0.1:$E2E_PORT.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, test } from "node:test";
import { axeViolations, everyTheme as everyThemeOf, launchBrowser, pluginFrame, root, startDemo, tabOrder as tabOrderOf } from "./harness.mjs";

const port = Number(process.env.E2E_PORT ?? 8080);
let demo;
let chrome;
let page;
let ui;
/** When set, GET /api/v1/auth/options answers this instead of the server (see the forgot test). */
let optionsOverride = null;

before(async () => {
  const built = fs.readFileSync(path.join(root, "plugin/dist/manifest.json"), "utf8");
  assert.ok(built.includes(`http://127.0.0.1:${port}`), `plugin/dist is not built for port ${port}`);
  demo = await startDemo(port);
  chrome = await launchBrowser();
  const context = await chrome.browser.newContext({ viewport: { width: 1200, height: 760 } });
  // Installed up front, as in account.e2e.mjs (a route added later may miss the plugin frame).
  await context.route(
    (url) => url.pathname === "/api/v1/auth/options",
    (route) =>
      optionsOverride
        ? route.fulfill({ status: 200, contentType: "application/json", headers: { "access-control-allow-origin": "*" }, body: JSON.stringify(optionsOverride) })
        : route.continue(),
  );
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
  await demo?.stop();
});

const host = (fn, arg) => page.evaluate(fn, arg);
const everyTheme = (name, reach) => everyThemeOf(page, name, reach);
const tabOrder = (count) => tabOrderOf(page, count);
const waitText = (selector, hasText, timeout = 15_000) => ui.locator(selector, { hasText }).waitFor({ timeout });
const focused = async () => (await pluginFrame(page)).evaluate(() => document.activeElement.id);
/** axe-core on the screen as it is (a banner that a reopen would clear), in the current theme. */
const axeHere = async (what) => assert.deepEqual(await axeViolations(page), [], what);
/** Waits until the main thread has removed `key` from clientStorage (its writes are asynchronous). */
const gone = (key, what) =>
  page.waitForFunction((k) => localStorage.getItem(`mascot-demo-clientStorage:${k}`) === null, key, { timeout: 5_000 }).catch(() => assert.fail(`${key} is still stored: ${what ?? ""}`));
const present = (key) =>
  page.waitForFunction((k) => localStorage.getItem(`mascot-demo-clientStorage:${k}`) !== null, key, { timeout: 5_000 }).catch(() => assert.fail(`${key} is not stored`));
const stored = (key) => host((k) => localStorage.getItem(`mascot-demo-clientStorage:${k}`), key);

async function api(method, p, { token, body, headers = {} } = {}) {
  const r = await fetch(`${demo.api}${p}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

/** A second device signed in to the account (its token). */
async function otherDevice(email, password) {
  const r = await api("POST", "/api/v1/auth/login", { body: { email, password } });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.token;
}

/** A login from another loopback address (the demo counts sources by the TCP peer). */
function loginFrom(localAddress, email, password) {
  const body = JSON.stringify({ email, password });
  const u = new URL(`${demo.api}/api/v1/auth/login`);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname, method: "POST", localAddress, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function signIn(email, password) {
  await ui.locator("#email").fill(email);
  await ui.locator("#password").fill(password);
  await ui.locator("#auth-submit").click();
}

const EMAIL = "self-service@example.com";

test("forgot password: the screen the server's options call for, and the other one, light and dark", async () => {
  const { json: options } = await api("GET", "/api/v1/auth/options");
  const openForgot = async () => {
    await ui.locator("#forgot").click();
    await waitText("#forgot-title", "Forgot your password?");
  };
  const ask = async (email) => {
    await ui.locator("#reset-email").fill(email);
    await ui.locator("#reset-submit").click();
    await waitText("#forgot-title", "Check your mail");
  };
  const emailFlow = async () => {
    await everyTheme("forgot-password", openForgot);
    assert.equal(await focused(), "reset-email");
    assert.deepEqual(await tabOrder(3), ["reset-email", "reset-submit", "back-to-sign-in"]);
    // The request reaches the server (202 for any address: an unknown one gets the same answer).
    const asked = page.waitForResponse((r) => r.url().endsWith("/api/v1/auth/password-reset"));
    await ask("nobody-here@example.com");
    assert.equal((await asked).status(), 202);
    await waitText("#reset-sent", "nobody-here@example.com");
    await everyTheme("forgot-password-sent", async () => {
      await openForgot();
      await ask("nobody-here@example.com");
    });
  };
  const contactFlow = async (support) => {
    await everyTheme("forgot-password-contact", openForgot);
    await waitText("#contact", support ?? "Contact the person who runs your Mascot server");
  };
  if (options.password_reset === "email") await emailFlow();
  else await contactFlow(options.support_email);
  // The server's other configuration, for its screen (the answer is the documented AuthOptions).
  optionsOverride =
    options.password_reset === "email" ? { password_reset: "contact", support_email: "help@mascot.example" } : { password_reset: "email", support_email: null };
  try {
    if (optionsOverride.password_reset === "contact") await contactFlow("help@mascot.example");
    else await emailFlow();
  } finally {
    optionsOverride = null;
  }
  await ui.locator("#back-to-sign-in").click();
  await waitText("h1", "Sign in to Mascot");
  assert.equal(await focused(), "email");
});

test("change password: a wrong current password is a form error, not a sign-out; the new one works and other devices are signed out", async () => {
  await ui.locator("#auth-switch").click();
  await ui.locator("#email").fill(EMAIL);
  await ui.locator("#password").fill("first password");
  await ui.locator("#auth-submit").click();
  await waitText("#balance", "0 credits");
  const other = await otherDevice(EMAIL, "first password");
  const open = async () => {
    await ui.locator("#balance").waitFor({ timeout: 15_000 });
    await ui.locator("#change-password").click();
    await waitText("#change-title", "Change your password");
  };
  await everyTheme("change-password", open);
  assert.equal(await focused(), "current-password");
  assert.deepEqual(await tabOrder(5), ["current-password", "new-password", "repeat-password", "change-submit", "change-cancel"]);

  // Wrong current password: the server's message on the form, still signed in, focus on the field.
  await ui.locator("#current-password").fill("not my password");
  await ui.locator("#new-password").fill("second password");
  await ui.locator("#repeat-password").fill("second password");
  await ui.locator("#change-submit").click();
  await waitText(".banner.error", "The current password is wrong.");
  assert.equal(await focused(), "current-password");
  assert.equal(await ui.locator("#change-title").count(), 1, "still on the form, not signed out");
  assert.ok(await stored("mascot.session-token"), "the session is kept");
  await everyTheme("change-password-error", async () => {
    await open();
    await ui.locator("#current-password").fill("not my password");
    await ui.locator("#new-password").fill("second password");
    await ui.locator("#repeat-password").fill("second password");
    await ui.locator("#change-submit").click();
    await waitText(".banner.error", "The current password is wrong.");
  });

  // Two different new passwords are caught before anything is sent.
  await ui.locator("#current-password").fill("first password");
  await ui.locator("#new-password").fill("second password");
  await ui.locator("#repeat-password").fill("second passwort");
  await ui.locator("#change-submit").click();
  await waitText(".banner.error", "not the same");
  assert.equal(await focused(), "repeat-password");

  // The form is drawn afresh after an error: password fields are never kept.
  assert.equal(await ui.locator("#current-password").inputValue(), "");
  // The success banner is checked in the light theme (the tests otherwise end each screen in dark).
  await host(() => window.__figmaHost.setTheme("light"));
  await open();
  await ui.locator("#current-password").fill("first password");
  await ui.locator("#new-password").fill("second password");
  await ui.locator("#repeat-password").fill("second password");
  await ui.locator("#change-submit").click();
  await waitText(".banner.success", "Your password is changed").catch(async (e) => {
    throw new Error(`${e.message}\nbanner: ${await ui.locator(".banner").allTextContents()}`);
  });
  await ui.locator("#balance").waitFor();
  assert.equal(await focused(), "change-password");
  await waitText("#live", "Your password is changed");
  await axeHere("account with the password-changed banner, light");
  await host(() => window.__figmaHost.setTheme("dark"));
  assert.equal((await api("GET", "/api/v1/me", { token: other })).status, 401, "the other device is signed out");
  assert.equal((await api("POST", "/api/v1/auth/login", { body: { email: EMAIL, password: "first password" } })).status, 401);
  assert.equal((await api("POST", "/api/v1/auth/login", { body: { email: EMAIL, password: "second password" } })).status, 200);
  // This session still works.
  await host(() => window.__figmaHost.reopen());
  await waitText("#signed-in-as", EMAIL);
});

test("sign out everywhere revokes every session, this one included", async () => {
  const other = await otherDevice(EMAIL, "second password");
  await ui.locator("#sign-out-all").click();
  await waitText(".banner", "You are signed out on every device");
  await axeHere("signed out everywhere, dark");
  await waitText("h1", "Sign in to Mascot");
  await gone("mascot.session-token");
  assert.equal((await api("GET", "/api/v1/me", { token: other })).status, 401);
  await host(() => window.__figmaHost.reopen());
  await waitText("h1", "Sign in to Mascot");
});

test("logins send this device's token for that account", async () => {
  const devices = JSON.parse(await stored("mascot.device-tokens"));
  assert.match(devices[EMAIL] ?? "", /\S/, JSON.stringify(devices));
  const seen = [];
  const listener = (request) => {
    if (request.url().endsWith("/api/v1/auth/login")) seen.push(JSON.parse(request.postData() ?? "{}"));
  };
  page.context().on("request", listener);
  try {
    await signIn(EMAIL.toUpperCase(), "second password");
    await waitText("#signed-in-as", EMAIL);
  } finally {
    page.context().off("request", listener);
  }
  assert.equal(seen.length, 1);
  assert.equal(seen[0].device_token, devices[EMAIL]);
  await ui.locator("#sign-out").click();
  await waitText("h1", "Sign in to Mascot");
});

test("an email under attack: the mailed sign-in code signs its owner in at once, with the password kept", async () => {
  const email = `attacked-${Date.now()}@example.com`;
  const password = "owner correct horse";
  assert.equal((await api("POST", "/api/v1/auth/signup", { body: { email, password } })).status, 201);
  // Strangers fail from five addresses (127.0.0.2–6: more sources than the slowdown lets off,
  // LOGIN_SLOWDOWN_FREE_SOURCES = 4): the email's sign-ins are now slowed down for everyone new.
  for (let i = 2; i <= 6; i++) {
    const status = await loginFrom(`127.0.0.${i}`, email, `stranger guess ${i}`);
    assert.ok(status === 401 || status === 429, `a stranger's guess: ${status}`);
  }
  await signIn(email, password);
  await waitText(".banner", "We emailed you a sign-in code");
  assert.equal(await focused(), "sign-in-code");
  assert.equal(await ui.locator("#password").inputValue(), "", "the password is kept in memory, not in the page");
  await waitText("label[for=sign-in-code]", "Sign-in code from the email");
  await axeHere("the sign-in code asked");
  let code = null;
  for (let i = 0; i < 100 && !code; i++) {
    const mails = demo.output().split(`----- mail to ${email} -----`).slice(1);
    code = mails.map((m) => m.match(/mcl_[A-Za-z0-9_-]+/)?.[0]).find(Boolean) ?? null;
    if (!code) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(code, "the sign-in code was mailed (the demo prints its mails)");
  // Only the code is typed: the password of the slowed-down try goes with it.
  await ui.locator("#sign-in-code").fill(code);
  await ui.locator("#sign-in-code").press("Enter");
  await waitText("#signed-in-as", email);
  await ui.locator("#sign-out").click();
  await waitText("h1", "Sign in to Mascot");
  assert.equal(await ui.locator("#sign-in-code").count(), 0, "the code field is gone once signed in");
});

test("after `users reset-password`, the one-time password signs in to the change-password screen only", async () => {
  const out = await demo.operator("users", "reset-password", "--email", EMAIL);
  const otp = out.match(/one-time password for \S+: (\S+)/)?.[1];
  assert.ok(otp, out);
  await signIn(EMAIL, otp);
  await waitText("#change-title", "Choose a new password");
  // The one-time password was just typed: not asked again.
  assert.equal(await ui.locator("#current-password").count(), 0);
  assert.equal(await focused(), "new-password");
  await waitText(".card", `You signed in as ${EMAIL} with a one-time password`);
  await present("mascot.session-token");
  const token = JSON.parse(await stored("mascot.session-token"));
  const refused = await api("GET", "/api/v1/credits/balance", { token });
  assert.deepEqual([refused.status, refused.json.error.code], [403, "password_change_required"]);

  // Reopened: the stored session is refused with 403, so the tab shows only this screen again,
  // now asking for the one-time password.
  await everyTheme("password-change-required", () => waitText("#change-title", "Choose a new password"));
  await ui.locator("label[for=current-password]", { hasText: "One-time password" }).waitFor();
  assert.equal(await ui.locator("#balance").count(), 0);
  assert.deepEqual(await tabOrder(5), ["current-password", "new-password", "repeat-password", "change-submit", "sign-out"]);
  await ui.locator("#current-password").fill(otp);
  await ui.locator("#new-password").fill("third password");
  await ui.locator("#repeat-password").fill("third password");
  await ui.locator("#change-submit").click();
  await waitText("#balance", "0 credits");
  await waitText(".banner.success", "Your password is changed");
  assert.equal((await api("GET", "/api/v1/credits/balance", { token })).status, 200, "the session is a full one now");
  await ui.locator("#sign-out").click();
  await waitText("h1", "Sign in to Mascot");
});

test("a browser sign-in that expired, is unknown or is cancelled leaves the plugin signed out", async () => {
  // Expired while the plugin was closed: dropped from clientStorage, nothing polled.
  const old = { handoff_id: "ho_unknown", read_key: "mhr_unknown", user_code: "ABCDEFGH", url: `${demo.api}/signin`, expires_at: new Date(Date.now() - 1000).toISOString() };
  await host((h) => localStorage.setItem("mascot-demo-clientStorage:mascot.handoff", JSON.stringify(h)), old);
  await host(() => window.__figmaHost.reopen());
  await waitText("h1", "Sign in to Mascot");
  await gone("mascot.handoff");
  // Not expired but unknown to the server: the poll's 404 ends the wait.
  await host((h) => localStorage.setItem("mascot-demo-clientStorage:mascot.handoff", JSON.stringify(h)), { ...old, expires_at: new Date(Date.now() + 600_000).toISOString() });
  await host(() => window.__figmaHost.reopen());
  await waitText(".banner", "expired or was already used");
  await gone("mascot.handoff");
  // Cancel.
  await ui.locator("#browser-signin").click();
  await waitText("#handoff-title", "Sign in with your browser");
  await present("mascot.handoff");
  await ui.locator("#handoff-cancel").click();
  await waitText("h1", "Sign in to Mascot");
  await gone("mascot.handoff");
  assert.equal(await focused(), "browser-signin");
});

test("sign in with the browser: the code typed on the page, the plugin signed in without typing anything", async () => {
  const openedBefore = await host(() => window.__figmaHost.opened.length);
  await ui.locator("#browser-signin").click();
  await waitText("#handoff-title", "Sign in with your browser");
  await page.waitForFunction((n) => window.__figmaHost.opened.length > n, openedBefore);
  const url = await host(() => window.__figmaHost.opened.at(-1));
  assert.ok(url.startsWith(demo.api), url);
  const handoff = JSON.parse(await stored("mascot.handoff"));
  assert.equal(handoff.url, url);
  assert.ok(!url.includes(handoff.read_key), "the read key is not in the page's URL");
  const shown = await ui.locator("#user-code [aria-hidden]").textContent();
  assert.equal(shown.replace("-", ""), handoff.user_code);
  assert.equal(await focused(), "handoff-reopen");
  // Closing and reopening the plugin resumes the wait (nothing is opened again).
  await everyTheme("waiting-for-browser-sign-in", () => waitText("#handoff-title", "Sign in with your browser"));
  assert.equal(JSON.parse(await stored("mascot.handoff")).handoff_id, handoff.handoff_id);
  assert.deepEqual(await tabOrder(2), ["handoff-reopen", "handoff-cancel"]);
  await ui.locator("#handoff-reopen").click();
  await page.waitForFunction((n) => window.__figmaHost.opened.length > n + 1, openedBefore);
  assert.equal(await host(() => window.__figmaHost.opened.at(-1)), url);

  // The browser side: the page asks for the code with the account, then for confirmation.
  const browser = await page.context().newPage();
  await browser.goto(url);
  await browser.getByRole("heading", { name: "Sign in to the Mascot plugin" }).waitFor();
  const fillPage = async (code) => {
    await browser.getByLabel("Code shown in your plugin").fill(code);
    await browser.getByLabel("Email").fill(EMAIL);
    await browser.getByLabel("Password").fill("third password");
    await browser.getByRole("button", { name: "Sign in", exact: true }).click();
  };
  const wrongCode = handoff.user_code.startsWith("A") ? `B${handoff.user_code.slice(1)}` : `A${handoff.user_code.slice(1)}`;
  await fillPage(wrongCode);
  await browser.getByRole("alert").filter({ hasText: "not the code your plugin shows" }).waitFor();
  assert.equal(await ui.locator("#handoff-title").count(), 1, "a wrong code signs nobody in");
  // Typed as the plugin shows it (two groups of four).
  await fillPage(shown);
  await browser.getByRole("heading", { name: `Sign in the Mascot plugin in Figma as ${EMAIL}?` }).waitFor();
  assert.equal(await ui.locator("#handoff-title").count(), 1, "nothing before the confirmation");
  await browser.getByRole("button", { name: "Sign in the plugin" }).click();
  await browser.getByRole("heading", { name: "You can go back to Figma" }).waitFor();
  await browser.close();

  // The plugin: signed in by itself.
  await waitText("#signed-in-as", EMAIL, 30_000);
  await waitText("#live", `Signed in as ${EMAIL}`);
  await gone("mascot.handoff", "the finished handoff is forgotten");
  await present("mascot.session-token");
  // Replayed: the handoff was consumed by the poll that got the token.
  const again = await api("GET", `/api/v1/auth/handoff/${encodeURIComponent(handoff.handoff_id)}?wait=0`, { headers: { "x-handoff-key": handoff.read_key } });
  assert.deepEqual([again.status, again.json?.error?.code], [404, "handoff_not_found"]);
  await ui.locator("#sign-out").click();
  await waitText("h1", "Sign in to Mascot");
});

test("creating an account in the browser signs the plugin in to it", async () => {
  const email = "made-in-the-browser@example.com";
  await ui.locator("#auth-switch").click();
  await waitText("h1", "Create your Mascot account");
  const openedBefore = await host(() => window.__figmaHost.opened.length);
  await ui.locator("#browser-signin", { hasText: "Create an account in your browser" }).click();
  await waitText("#handoff-title", "Sign in with your browser");
  await page.waitForFunction((n) => window.__figmaHost.opened.length > n, openedBefore);
  const handoff = JSON.parse(await stored("mascot.handoff"));
  const browser = await page.context().newPage();
  await browser.goto(handoff.url);
  await browser.getByLabel("Code shown in your plugin").fill(handoff.user_code.toLowerCase());
  await browser.getByLabel("Email").fill(email);
  await browser.getByLabel("Password").fill("made in a browser");
  await browser.getByRole("button", { name: "Create a new account with this email" }).click();
  await browser.getByRole("heading", { name: `Sign in the Mascot plugin in Figma as ${email}?` }).waitFor();
  await browser.getByRole("button", { name: "Sign in the plugin" }).click();
  await browser.getByRole("heading", { name: "You can go back to Figma" }).waitFor();
  await browser.close();
  await waitText("#signed-in-as", email, 30_000);
  await waitText("#balance", "0 credits");
  await page.waitForFunction((e) => JSON.parse(localStorage.getItem("mascot-demo-clientStorage:mascot.device-tokens") ?? "{}")[e], email, { timeout: 5_000 });
  await ui.locator("#sign-out").click();
  await waitText("h1", "Sign in to Mascot");
});

test("a handoff's status needs its read key, in the header", async () => {
  const { json: start } = await api("POST", "/api/v1/auth/handoff", { body: {} });
  assert.match(start.user_code, /^[A-Z0-9]{8}$/);
  const status = (key, query = "") =>
    api("GET", `/api/v1/auth/handoff/${encodeURIComponent(start.handoff_id)}?wait=0${query}`, key ? { headers: { "x-handoff-key": key } } : {});
  const wrong = await status(`${start.read_key}x`);
  assert.deepEqual([wrong.status, wrong.json?.error?.code], [404, "handoff_not_found"]);
  const inQuery = await status(null, `&read_key=${encodeURIComponent(start.read_key)}`);
  assert.equal(inQuery.status, 404, "a key in the query string is not read");
  const right = await status(start.read_key);
  assert.deepEqual([right.status, right.json], [200, { status: "pending" }]);
  // The browser (the plugin's opaque origin) may send the header: CORS lists it.
  const preflight = await fetch(`${demo.api}/api/v1/auth/handoff/${start.handoff_id}`, {
    method: "OPTIONS",
    headers: { origin: "null", "access-control-request-method": "GET", "access-control-request-headers": "x-handoff-key" },
  });
  assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /x-handoff-key/i);
});
