// Team wallets in the Account tab (issue 23, item 7), two people in two browser sessions against
// the real server, the Stripe simulator and a real SMTP server (aiosmtpd): the owner creates a
// team and invites the second account, whose invitation code arrives by mail; the second
// account confirms its email and joins; the owner sets a cap; the member creates mascots from the
// team's wallet (the Create tab, the example service examples/generator) up to the cap, and the
// tab says the cap is reached and when it resets; the owner buys a pack for the team on the
// simulator and the team's balance rises. axe-core on the new screens in light and dark, the
// switcher by keyboard, and the CORS preflight of PATCH and DELETE from the null origin.
// Needs plugin/dist built for E2E_PORT and E2E_SERVICE_PORT.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createApp } from "../../examples/generator/app.js";
import { everyTheme, launchBrowser, pluginFrame, startDemo, startSmtp, tabOrder } from "./harness.mjs";

const port = Number(process.env.E2E_PORT ?? 8080);
const servicePort = Number(process.env.E2E_SERVICE_PORT ?? 8081);
// A team name with markup and quotes: it must show as the text it is, never as HTML.
const TEAM = `Studio <b>"Ünï"</b> & co`;
const OWNER = `owner-${Date.now()}@example.com`;
const MEMBER = `member-${Date.now()}@example.com`;
const PASSWORD = "correct horse";
let smtp;
let demo;
let generator;
let chrome;
let owner;
let member;
let teamId;

before(async () => {
  smtp = await startSmtp();
  demo = await startDemo(port, smtp.env);
  const serviceKey = (await demo.operator("service-keys", "add", "--name", "e2e-team-generator")).trim();
  generator = createApp({ apiBase: demo.api, serviceKey });
  await new Promise((resolve, reject) => generator.once("error", reject).listen(servicePort, "127.0.0.1", resolve));
  chrome = await launchBrowser();
  const session = async () => {
    const context = await chrome.browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    await page.addInitScript(() => {
      window.__e2e = true;
    });
    await page.goto(`${demo.api}/`);
    return { page, ui: page.frameLocator("#plugin-slot iframe") };
  };
  // Two browser sessions: two Figma users, each with their own clientStorage.
  owner = await session();
  member = await session();
});

after(async () => {
  await chrome?.close();
  await new Promise((resolve) => (generator ? generator.close(resolve) : resolve()));
  await demo?.stop();
  smtp?.stop();
});

// 30 s: two sessions, the example service and the simulator on a shared, sometimes loaded machine.
// A timeout says what the tab showed instead (its banner and screen), to tell a slow run from a wrong one.
async function waitText(who, selector, hasText, timeout = 30_000) {
  try {
    await who.ui.locator(selector, { hasText }).waitFor({ timeout });
  } catch (e) {
    const shown = await (await pluginFrame(who.page)).evaluate(() => `banner: ${document.querySelector(".banner")?.textContent ?? "none"}; panel: ${document.getElementById("panel")?.textContent.slice(0, 400)}`).catch(() => "?");
    e.message += `\n${shown}`;
    throw e;
  }
}

async function signUp(who, email) {
  await who.ui.locator("#auth-switch").click();
  await who.ui.locator("#email").fill(email);
  await who.ui.locator("#password").fill(PASSWORD);
  await who.ui.locator("#auth-submit").click();
  await waitText(who, "#balance", "0 credits");
}

/** The mail to `to` whose subject matches, as its text with quoted-printable soft breaks undone. */
async function mailTo(to, subject) {
  for (let i = 0; i < 150; i++) {
    const found = smtp.mails().find((m) => new RegExp(`^To: ${to.replace(/[.+]/g, "\\$&")}`, "m").test(m) && subject.test(m));
    if (found) return found.replace(/=\r?\n/g, "").replace(/=3D/g, "=");
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail to ${to} matching ${subject}`);
}

async function api(method, path, token, body) {
  const res = await fetch(`${demo.api}${path}`, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "idempotency-key": `k-${Math.random()}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
}

async function login(email) {
  const res = await fetch(`${demo.api}/api/v1/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password: PASSWORD }) });
  assert.equal(res.status, 200);
  return (await res.json()).token;
}

/** The owner's Team screen for the team (after a reopen the tab starts on the personal wallet). */
async function ownerTeamScreen() {
  if ((await owner.ui.locator("#members .member").count()) > 0) return;
  if ((await owner.ui.locator("#close-usage").count()) > 0) await owner.ui.locator("#close-usage").click();
  await owner.ui.locator("#wallet").selectOption(teamId);
  await owner.ui.locator("#show-team").click();
  await owner.ui.locator("#members .member").first().waitFor();
}

test("the owner creates a team; its name is shown as text, never as markup", async () => {
  await signUp(owner, OWNER);
  // Without a team the tab offers them, and the keyboard reaches the offer first.
  await waitText(owner, "#show-team", "Team wallets");
  await owner.ui.locator("#show-team").click();
  await waitText(owner, "#team-title", "Team wallets");
  await everyTheme(owner.page, "team-none", async () => {
    if ((await owner.ui.locator("#team-name").count()) === 0) await owner.ui.locator("#show-team").click();
    await owner.ui.locator("#team-name").waitFor();
  });
  // An empty name is the field's error, said at once.
  await owner.ui.locator("#create-team").click();
  await waitText(owner, "#create-error", "Give the team a name.");
  assert.equal(await owner.ui.locator("#team-name").getAttribute("aria-invalid"), "true");
  await owner.ui.locator("#team-name").fill(TEAM);
  await owner.page.keyboard.press("Enter");
  await waitText(owner, ".banner.success", "is created, and you are its owner");
  assert.equal(await owner.ui.locator("#team-title").textContent(), TEAM);
  assert.equal(await owner.ui.locator("#team-title b").count(), 0, "no element made of the name");
  const frame = await pluginFrame(owner.page);
  assert.equal(await frame.evaluate(() => document.querySelectorAll("b").length), 0);
  const token = await login(OWNER);
  const { body } = await api("GET", "/api/v1/teams", token);
  assert.equal(body.teams.length, 1);
  assert.equal(body.teams[0].name, TEAM, "kept verbatim");
  teamId = body.teams[0].team_id;
  // The owner is listed, with no cap controls on themself.
  await waitText(owner, "#members .member", `${OWNER} (you)`);
  assert.equal(await owner.ui.locator("#cap-credits-0").count(), 0);
});

let invitationToken;

test("the owner invites the second account; the code arrives by mail, and a second invitation is revoked", async () => {
  await owner.ui.locator("#invite-email").fill(MEMBER);
  await owner.ui.locator("#invite-submit").click();
  await waitText(owner, ".banner.success", `Invitation sent to ${MEMBER}`);
  const mail = await mailTo(MEMBER, /^Subject: You are invited to a team on Mascot/m);
  invitationToken = mail.match(/mci_[A-Za-z0-9_-]+/)?.[0];
  assert.ok(invitationToken, "an invitation code in the mail");
  assert.equal(await owner.ui.locator("#invite-code").inputValue(), invitationToken, "the same code, for when no mail arrives");
  await waitText(owner, "#invitations li", MEMBER);
  // Another one, revoked: the pending list is back to the first.
  await owner.ui.locator("#invite-email").fill(`third-${Date.now()}@example.com`);
  await owner.ui.locator("#invite-role").selectOption("admin");
  await owner.ui.locator("#invite-cap").fill("5");
  await owner.ui.locator("#invite-period").selectOption("month");
  await owner.ui.locator("#invite-submit").click();
  await waitText(owner, "#invitations li", "Admin · 5 credits a month");
  assert.equal(await owner.ui.locator("#invitations li").count(), 2);
  await owner.ui.getByRole("button", { name: /^Revoke the invitation to third-/ }).click();
  await waitText(owner, ".banner.success", "Invitation revoked.");
  assert.equal(await owner.ui.locator("#invitations li").count(), 1);
  await everyTheme(owner.page, "team-owner", ownerTeamScreen);
});

test("the second account joins in its own session, once its email is confirmed", async () => {
  await signUp(member, MEMBER);
  await member.ui.locator("#show-team").click();
  // What is typed survives a render: a grant to the member's own wallet reaches the open tab
  // through its balance long-poll and the panel is rebuilt, the code still in its field.
  await member.ui.locator("#join-code").fill(invitationToken);
  const frame = await pluginFrame(member.page);
  await frame.evaluate(() => (document.getElementById("join-code").dataset.before = "render"));
  await demo.operator("credits", "grant", "--email", MEMBER, "--amount", "1", "--reason", "A render");
  await member.ui.locator("#join-code:not([data-before])").waitFor({ timeout: 30_000 });
  assert.equal(await member.ui.locator("#join-code").inputValue(), invitationToken);
  // Mail is configured: an unconfirmed email cannot join yet, and the form says why.
  await member.ui.locator("#join-team").click();
  await waitText(member, "#join-error", "Confirm your email first");
  assert.equal(await member.ui.locator("#join-code").getAttribute("aria-describedby"), "join-error");
  const link = smtp.link(await mailTo(MEMBER, /^Subject: .*(confirm|verify)/im), "/account/verify");
  assert.ok(link, "a confirmation link");
  const browser = await member.page.context().newPage();
  await browser.goto(link);
  await browser.getByRole("button", { name: "Confirm my email" }).click();
  await browser.getByRole("heading", { name: "Email confirmed" }).waitFor();
  await browser.close();
  await member.ui.locator("#join-code").fill(`  ${invitationToken}  `);
  await member.ui.locator("#join-team").click();
  await waitText(member, ".banner.success", "You joined");
  assert.equal(await member.ui.locator(".banner.success").textContent(), `You joined ${TEAM} as member.`);
  assert.equal(await member.ui.locator("#wallet").inputValue(), teamId, "the switcher shows the team joined");
  await waitText(member, "#no-cap", "No cap");
  assert.equal(await member.ui.locator("#buy").count(), 0, "a member does not buy for the team");
  // Used once: the same code again is refused.
  const again = await api("POST", "/api/v1/teams/invitations/accept", await login(MEMBER), { token: invitationToken });
  assert.equal(again.status, 404);
});

let resetsAt;

test("the owner sets a cap; the member creates mascots from the team up to it and sees when it resets", async () => {
  await owner.ui.locator("#close-team").click();
  await ownerTeamScreen();
  await waitText(owner, "#members .member", MEMBER);
  const row = owner.ui.locator("#members .member", { hasText: MEMBER });
  await row.locator("input[type=number]").fill("10");
  await row.locator("select").selectOption("day");
  await row.getByRole("button", { name: `Set cap for ${MEMBER}` }).click();
  await waitText(owner, ".banner.success", `${MEMBER} may now spend 10 credits a day.`);
  await waitText(owner, "#members .member", "Cap: 10 credits a day");
  // The owner's controls over a member (cap, role, hand-over, removal): axe in light and dark.
  await everyTheme(owner.page, "team-owner-members", async () => {
    await ownerTeamScreen();
    await waitText(owner, "#members .member", "Cap: 10 credits a day");
  });

  // Credits in the team's wallet (the operator's grant), then the member spends from it: the
  // Create tab pays from the wallet the switcher shows, 5 credits a mascot.
  // No refresh: the member's screen holds a long-poll on the team's balance as they see it, and
  // follows the cap the owner set, then the grant. (The CLI is another process on the demo's
  // SQLite file: the waiting server reads again every second, once the balance it cached has aged
  // out, cache_ttl 1 s; docs/operations.md.)
  await waitText(member, "#cap-left", "10 of 10 credits left today", 10_000);
  await waitText(member, "#balance", /^0 credits$/);
  await demo.operator("credits", "grant", "--team", teamId, "--amount", "40", "--reason", "Seed");
  await waitText(member, "#balance", /^10 credits$/, 10_000);
  await member.ui.locator("#tab-create").click();
  await waitText(member, "#create-balance", `Paid from ${TEAM}: 10 credits available to you`);
  for (const name of ["Ada", "Bob"]) {
    await member.ui.locator("#mascot-name").fill(name);
    await member.ui.locator("#create-submit").click();
    await waitText(member, "#mascot-result figcaption", `${name} · 5 credits charged`);
    await waitText(member, ".banner.success", `Created for 5 credits from ${TEAM}.`);
  }
  await member.ui.locator("#mascot-name").fill("Cy");
  await member.ui.locator("#create-submit").click();
  await waitText(member, ".banner.error", "Your cap on this team is 10 credits a day");
  const frame = await pluginFrame(member.page);
  const token = await login(MEMBER);
  const refused = await api("POST", "/api/v1/credits/spend", token, { amount: 1, reason: "render", team_id: teamId });
  assert.equal(refused.status, 402);
  assert.equal(refused.body.error.code, "member_cap_reached");
  resetsAt = refused.body.error.resets_at;
  const tomorrow = new Date();
  tomorrow.setUTCHours(24, 0, 0, 0);
  assert.equal(Date.parse(resetsAt), tomorrow.getTime(), "a daily cap resets at the next UTC midnight");
  const when = await frame.evaluate((iso) => new Date(iso).toLocaleString("en-US", { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" }), resetsAt);
  // The refusal in the Create tab says when the cap resets; nothing was drawn or charged.
  await waitText(member, ".banner.error", `Your cap resets on ${when}.`);
  assert.equal(await frame.evaluate(() => document.querySelector(".banner.error").getAttribute("role")), "alert");
  assert.equal(await member.ui.locator("#mascot-result").count(), 0);
  await everyTheme(member.page, "team-create-cap", async () => {
    await member.ui.locator("#wallet").selectOption(teamId);
    await member.ui.locator("#tab-create").click();
    await member.ui.locator("#mascot-name").fill("Cy");
    await member.ui.locator("#create-submit").click();
    await waitText(member, ".banner.error", `Your cap resets on ${when}.`);
  });

  await member.ui.locator("#tab-account").click();
  await waitText(member, "#cap-left", "0 of 10 credits left today");
  await waitText(member, "#cap-reset", `You have reached your cap. It resets on ${when}.`);
  await waitText(member, "#balance", "0 credits");
  // The member's history: their own spends only.
  assert.deepEqual(await member.ui.locator("#history .entry-desc").allTextContents(), ["Generated a mascot: Bob", "Generated a mascot: Ada"]);
  assert.equal(await member.ui.locator("#buy").count(), 0);
  const reach = async () => {
    await member.ui.locator("#wallet").selectOption(teamId);
    await waitText(member, "#cap-reset", "You have reached your cap");
  };
  await everyTheme(member.page, "team-member", reach);
  // And the member's Team screen: the members, no controls over anyone.
  await member.ui.locator("#show-team").click();
  await waitText(member, "#members .member", `${MEMBER} (you)`);
  await waitText(member, "#members .member", "Cap: 10 credits a day");
  assert.equal(await member.ui.locator("#invite-email").count(), 0);
  assert.equal(await member.ui.locator("#members button").count(), 0);
  await everyTheme(member.page, "team-member-screen", async () => {
    await member.ui.locator("#wallet").selectOption(teamId);
    await member.ui.locator("#show-team").click();
    await member.ui.locator("#members .member").first().waitFor();
  });
});

test("the owner sees every member's spending and buys a pack for the team on the simulator", async () => {
  await owner.ui.locator("#close-team").click();
  await owner.ui.locator("#wallet").selectOption(teamId);
  await waitText(owner, "#balance", "30 credits");
  await owner.ui.locator("#history .entry").nth(2).waitFor();
  assert.equal(await owner.ui.locator("#history .entry").count(), 3, "the grant and both spends");
  assert.deepEqual(await owner.ui.locator("#history .entry-user").allTextContents(), [MEMBER, MEMBER], "each spend names the member");
  await waitText(owner, "h2", "Buy credits for");
  const opened = await owner.page.evaluate(() => window.__figmaHost.opened.length);
  await owner.ui.locator('label[data-pack="pack_25"]').click();
  await owner.ui.locator("#buy").click();
  await waitText(owner, "#waiting-title", "Waiting for payment");
  await owner.page.waitForFunction((n) => window.__figmaHost.opened.length > n, opened);
  const url = await owner.page.evaluate((n) => window.__figmaHost.opened[n], opened);
  assert.ok(url.startsWith(demo.sim), url);
  const checkout = await owner.page.context().newPage();
  await checkout.goto(url);
  await checkout.click("#pay");
  await checkout.waitForURL(/\/billing\/success/);
  await checkout.close();
  await waitText(owner, ".banner.success", `25 credits added to ${TEAM}`);
  await waitText(owner, "#balance", "55 credits");
  await waitText(owner, "#history", "Bought 25 credits");
  await everyTheme(owner.page, "team-wallet", async () => {
    await owner.ui.locator("#wallet").selectOption(teamId);
    await waitText(owner, "#balance", "55 credits");
  });
  // The personal wallet did not change.
  await owner.ui.locator("#wallet").selectOption("");
  await waitText(owner, "#balance", "0 credits");
  await waitText(owner, "#history-empty", "No activity yet");
});

test("the wallet switcher is reached and used with the keyboard", async () => {
  // The balance long-polls the tab has in flight (each holds one of the browser's six connections
  // to the server for up to 25 s).
  const polls = new Set();
  const isPoll = (r) => /\/api\/v1\/credits\/balance\?wait=/.test(r.url());
  owner.page.on("request", (r) => isPoll(r) && polls.add(r));
  for (const done of ["requestfinished", "requestfailed"]) owner.page.on(done, (r) => polls.delete(r));
  const frame = await pluginFrame(owner.page);
  const order = await tabOrder(owner.page, 3);
  assert.deepEqual(order, ["wallet", "show-team", "refresh"]);
  await owner.ui.locator("#wallet").focus();
  for (let round = 0; round < 3; round++) {
    await owner.page.keyboard.press("ArrowDown");
    await waitText(owner, "#balance", "55 credits");
    assert.equal(await frame.evaluate(() => document.activeElement.id), "wallet", "focus stays on the switcher");
    await waitText(owner, "#live", "Showing");
    await owner.page.keyboard.press("ArrowUp");
    await waitText(owner, "#balance", "0 credits");
    assert.equal(await frame.evaluate(() => document.activeElement.id), "wallet");
  }
  // Six switches later, one long-poll runs: each switch ended the one before (it used to run
  // out its 25 s, and a few switches stalled every other request of the tab).
  for (let i = 0; polls.size !== 1 && i < 50; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual([...polls].map((r) => new URL(r.url()).searchParams.has("team_id")), [false], "one long-poll, on the wallet shown");
});

test("a cap on the owner and deleting a team with credits are refused in words", async () => {
  await owner.ui.locator("#wallet").selectOption(teamId);
  await owner.ui.locator("#show-team").click();
  await owner.ui.locator("#delete-team").click();
  await owner.ui.locator("#delete-team-confirm").click();
  await waitText(owner, "#members-error", "");
  const frame = await pluginFrame(owner.page);
  assert.equal(await frame.evaluate(() => document.activeElement.id), "delete-team");
  assert.equal(await owner.ui.locator("#members-error").getAttribute("role"), "alert");
  // The member is made an admin, then a member again (only the owner may).
  await owner.ui.getByRole("button", { name: `Make admin: ${MEMBER}` }).click();
  await waitText(owner, ".banner.success", `${MEMBER} is now an admin.`);
  await owner.ui.getByRole("button", { name: `Make member: ${MEMBER}` }).click();
  await waitText(owner, ".banner.success", `${MEMBER} is now a member.`);
  const { body } = await api("GET", `/api/v1/teams/${teamId}/members`, await login(OWNER));
  assert.deepEqual(body.members.map((m) => [m.user.email, m.role, m.cap ?? null]), [
    [OWNER, "owner", null],
    [MEMBER, "member", { credits: 10, period: "day" }],
  ]);
});

test("PATCH and DELETE on a team route pass the CORS preflight from the null origin", async () => {
  const path = `/api/v1/teams/${teamId}/members/u_nobody`;
  for (const method of ["PATCH", "DELETE"]) {
    const res = await fetch(`${demo.api}${path}`, {
      method: "OPTIONS",
      headers: { origin: "null", "access-control-request-method": method, "access-control-request-headers": "authorization, content-type" },
    });
    assert.ok(res.status === 200 || res.status === 204, `${method}: ${res.status}`);
    assert.match(res.headers.get("access-control-allow-methods") ?? "", new RegExp(`\\b${method}\\b`));
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    const headers = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    assert.ok(headers.includes("authorization") && headers.includes("content-type"), headers);
  }
  // And from inside the plugin's sandboxed frame (origin "null"): the requests get through CORS
  // and are refused for want of a token.
  const frame = await pluginFrame(owner.page);
  assert.equal(await frame.evaluate(() => window.origin), "null");
  const statuses = await frame.evaluate(
    async ({ api, path }) => {
      const patch = await fetch(`${api}${path}`, { method: "PATCH", headers: { "content-type": "application/json" }, body: "{}" });
      const del = await fetch(`${api}${path}`, { method: "DELETE" });
      return [patch.status, del.status];
    },
    { api: demo.api, path },
  );
  assert.deepEqual(statuses, [401, 401]);
});

test("the owner hands the team over and becomes an admin, then leaves it", async () => {
  await owner.ui.getByRole("button", { name: `Make owner: ${MEMBER} (you become an admin)` }).click();
  await waitText(owner, ".banner.success", `${MEMBER} is now the owner; you are an admin.`);
  await waitText(owner, "#members .member", `${OWNER} (you)Admin`);
  await waitText(owner, "#members .member", `${MEMBER}Owner`);
  // An admin neither changes roles nor deletes the team; they may leave it.
  assert.equal(await owner.ui.locator("#delete-team").count(), 0);
  assert.equal(await owner.ui.getByRole("button", { name: /^Make / }).count(), 0);
  await owner.ui.locator("#leave-team").click();
  await waitText(owner, ".banner.success", `You left ${TEAM}.`);
  assert.equal(await owner.ui.locator("#wallet").count(), 0, "no team left: the switcher gives way to the Team wallets button");
  await waitText(owner, "#show-team", "Team wallets");
  // The new owner sees it when they go back to the account (it refreshes).
  await member.ui.locator("#close-team").click();
  await waitText(member, "#team-role", "You are the owner of this team.");
  assert.match(await member.ui.locator("#wallet").evaluate((el) => el.selectedOptions[0].textContent), /\(owner\)$/);
  await waitText(member, "#balance", "55 credits");
  await waitText(member, "h2", "Buy credits for");
});
