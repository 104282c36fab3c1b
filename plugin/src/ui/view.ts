// The Account tab's view: pure functions from the model to elements. Each screen is one function;
// events call the actions and never change anything here. `render` is the only renderer.
import { h, mount } from "./dom";
import type { AuthOptions, CapPeriod, HistoryEntry, Invitation, TeamMember, TeamRole, TeamSummary } from "../generated";
import type { PendingHandoff } from "../protocol";
import { bestValue, capLeft, capText, credits, day, delta, expiringSoon, paidSummary, perCredit, userCode, when } from "./format";
import { CREATE_PRICE, MAX_NAME, svgImage } from "./service";
import { roleName } from "./state";
import type { Actions, AuthMode, Banner, Model, Tab, Waiting } from "./state";

/** The parts that stay across renders: the tab bar (banner landmark, its tabs redrawn by each
 * render), the main landmark with the tab panel that each render replaces, and a live region that
 * is never rebuilt (so that what it says is announced). */
export function skeleton(app: HTMLElement): { screen: HTMLElement; live: HTMLElement; tabs: HTMLElement } {
  const screen = h("div", { id: "panel", role: "tabpanel", "aria-labelledby": "tab-account" });
  const live = h("div", { id: "live", className: "sr-only", role: "status", "aria-live": "polite" });
  const tabs = h("div", { role: "tablist", "aria-label": "Mascot" });
  mount(app, h("header", { className: "tabs" }, tabs), h("main", {}, screen, live));
  return { screen, live, tabs };
}

export function render(root: HTMLElement, live: HTMLElement, model: Model, actions: Actions, tabs?: HTMLElement): void {
  // Keep the keyboard where it was: elements are rebuilt on each render, so focus follows the id.
  const active = document.activeElement;
  const inside = (el: Element | null): boolean => !!el && el !== document.body && (root.contains(el) || !!tabs?.contains(el));
  const keep = model.focus ?? (inside(active) ? active?.id || null : null);
  // And the caret or selection in the field being typed in: a new field would take the caret to
  // its start, and the next letters typed would land there.
  const caret = !model.focus && keep ? selectionOf(active) : null;
  const tab = shownTab(model);
  if (tabs) mount(tabs, ...tabButtons(model, actions, tab));
  root.setAttribute("aria-labelledby", `tab-${tab}`);
  mount(root, ...screen(model, actions));
  if (keep) {
    const el = document.getElementById(keep);
    el?.focus();
    if (caret && (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement) && el.value === caret.value) {
      el.setSelectionRange(caret.start, caret.end, caret.direction);
    }
  }
  if (model.announce) live.textContent = model.announce;
}

/** Where the caret or selection is in a text field (null for fields without one: email, number). */
function selectionOf(el: Element | null): { value: string; start: number; end: number; direction: "forward" | "backward" | "none" } | null {
  if (!(el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement)) return null;
  const { selectionStart: start, selectionEnd: end } = el;
  if (start === null || end === null) return null;
  return { value: el.value, start, end, direction: el.selectionDirection ?? "none" };
}

/** The Create tab is there only while signed in, in a build with a generation service. */
function shownTab(model: Model): Tab {
  return model.canCreate && model.screen.kind === "account" ? model.tab : "account";
}

/** WAI-ARIA tabs: one tab stop (the selected tab); arrows, Home and End move between tabs. */
function tabButtons(model: Model, actions: Actions, selected: Tab): HTMLElement[] {
  const list: [Tab, string][] = model.canCreate && model.screen.kind === "account" ? [["account", "Account"], ["create", "Create"]] : [["account", "Account"]];
  return list.map(([tab, label], i) =>
    h(
      "button",
      {
        className: `tab${tab === selected ? " active" : ""}`,
        role: "tab",
        id: `tab-${tab}`,
        type: "button",
        "aria-selected": tab === selected ? "true" : "false",
        "aria-controls": "panel",
        tabindex: tab === selected ? undefined : "-1",
        onclick: () => actions.showTab(tab),
        onkeydown: (ev: Event) => {
          const key = (ev as KeyboardEvent).key;
          const to = key === "ArrowRight" ? (i + 1) % list.length : key === "ArrowLeft" ? (i + list.length - 1) % list.length : key === "Home" ? 0 : key === "End" ? list.length - 1 : -1;
          if (to < 0) return;
          ev.preventDefault();
          actions.showTab(list[to][0]);
        },
      },
      label,
    ),
  );
}

function screen(model: Model, actions: Actions): (HTMLElement | null)[] {
  const banner = bannerView(model.banner);
  switch (model.screen.kind) {
    case "loading":
      return [
        h("h1", { className: "sr-only" }, "Your Mascot account"),
        banner,
        model.banner ? null : h("div", { className: "loading", role: "status" }, h("span", { className: "spinner", "aria-hidden": "true" }), "Loading your account…"),
      ];
    case "signed-out":
      return [banner, authView(model, actions, model.screen.mode)];
    case "account":
      if (shownTab(model) === "create") return [banner, createView(model, actions)];
      return accountView(model, actions, banner);
    case "handoff":
      return [banner, handoffView(model.screen.handoff, actions)];
    case "forgot":
      return [banner, forgotView(model, actions, model.screen.options, model.screen.sent)];
    case "change-password":
      return [banner, changePasswordView(model, actions, model.screen.required)];
    case "usage":
      return [banner, usageView(model, actions)];
    case "team":
      return [banner, ...teamView(model, actions)];
  }
}

const ROLE_LINE: Record<TeamRole, string> = {
  owner: "You are the owner of this team.",
  admin: "You are an admin of this team.",
  member: "You are a member of this team.",
};

/** The team the switcher shows, when it shows one. */
function shownTeam(model: Model): TeamSummary | null {
  return model.teams.find((t) => t.team_id === model.wallet) ?? null;
}

/** The Account tab: the wallet switcher, then the chosen wallet's balance, buying and history.
 * Members of a team see what is left of their cap and no buy button. */
function accountView(model: Model, actions: Actions, banner: HTMLElement | null): (HTMLElement | null)[] {
  const team = shownTeam(model);
  const buying = model.waiting ? waitingView(model.waiting, actions) : !team || team.sees_all ? packsView(model, actions, team) : null;
  return [banner, walletView(model, actions), team ? teamBalanceView(model, actions, team) : balanceView(model, actions), buying, team ? null : redeemView(model, actions), historyView(model, actions, team)];
}

/** Personal or a team: a native select (keyboard and screen readers know it), and the Team screen. */
function walletView(model: Model, actions: Actions): HTMLElement {
  const open = h("button", { type: "button", className: "secondary team-open", id: "show-team", onclick: () => actions.showTeam() }, model.teams.length ? "Team" : "Team wallets");
  if (!model.teams.length) {
    return h("section", { className: "wallet row", "aria-label": "Wallet" }, h("span", { className: "muted small" }, "Personal wallet. Share credits with a team?"), open);
  }
  const select = h(
    "select",
    { id: "wallet", name: "wallet", onchange: (ev: Event) => actions.selectWallet((ev.target as HTMLSelectElement).value || null) },
    h("option", { value: "", selected: model.wallet === null }, "Personal"),
    ...model.teams.map((t) => h("option", { value: t.team_id, selected: model.wallet === t.team_id }, `${t.name} (${roleName(t.role).toLowerCase()})`)),
  );
  return h("section", { className: "wallet", "aria-label": "Wallet" }, h("label", { for: "wallet" }, "Wallet"), h("div", { className: "row" }, select, open));
}

/** A team's wallet: its balance for owners and admins; for a member what they may spend, and
 * what is left of their cap this period and when it resets. */
function teamBalanceView(model: Model, actions: Actions, team: TeamSummary): HTMLElement {
  const b = model.teamBalance;
  const cap = b?.cap;
  const amount = b ? (team.sees_all ? b.balance ?? b.available : b.available) : null;
  return h(
    "section",
    { className: "card balance", "aria-label": "Balance" },
    h(
      "div",
      { className: "row" },
      h(
        "div",
        {},
        h("h1", { className: "muted small label" }, team.sees_all ? "Team balance · " : "Yours to spend · ", h("span", { className: "team-name" }, team.name)),
        h("div", { className: "big", id: "balance" }, amount === null ? "—" : credits(amount)),
      ),
      h("button", { type: "button", className: "icon", id: "refresh", title: "Refresh", "aria-label": "Refresh balance and history", disabled: model.busy, onclick: () => actions.refresh() }, "↻"),
    ),
    h("div", { className: "muted small", id: "team-role" }, ROLE_LINE[team.role]),
    cap ? h("div", { className: "cap-left", id: "cap-left" }, capLeft(cap)) : null,
    cap
      ? cap.used >= cap.credits
        ? h("div", { className: "warn small", id: "cap-reset" }, `You have reached your cap. It resets on ${when(cap.resets_at)}.`)
        : h("div", { className: "muted small", id: "cap-reset" }, `Your cap resets on ${when(cap.resets_at)}.`)
      : null,
    b && !team.sees_all && !cap ? h("div", { className: "muted small", id: "no-cap" }, "No cap: you may spend what the team has available.") : null,
    b && team.sees_all && b.held > 0 ? h("div", { className: "muted small", id: "held" }, `${credits(b.held)} on hold for running jobs · ${credits(b.available)} available`) : null,
    b && team.sees_all && b.low && b.low_balance !== null && (b.balance ?? 0) >= 0 ? h("div", { className: "warn small", id: "low-balance" }, `Fewer than ${credits(b.low_balance)} available, the alert set for this team.`) : null,
    b && team.sees_all && (b.balance ?? 0) < 0 ? h("div", { className: "warn small", id: "negative" }, "The team's balance is negative after a refund or dispute. Buy credits for it to continue.") : null,
    ...accountRows(model, actions),
  );
}

/** Enter in any of `fields` calls `submit` (no native form submission: Figma's sandboxed iframe
 * may not allow it). */
function onEnter(submit: () => void, ...fields: HTMLElement[]): void {
  for (const f of fields) {
    f.addEventListener("keydown", (ev: Event) => {
      if ((ev as KeyboardEvent).key === "Enter") {
        ev.preventDefault();
        submit();
      }
    });
  }
}

function passwordField(id: string, autocomplete: string, minlength?: number, describedby?: string): HTMLInputElement {
  return h("input", { id, type: "password", name: id, autocomplete, required: true, minlength, "aria-describedby": describedby });
}

function bannerView(b: Banner | null): HTMLElement | null {
  if (!b) return null;
  return h(
    "div",
    { className: `banner ${b.tone}`, role: b.tone === "error" ? "alert" : "status" },
    h("span", {}, b.text),
    b.retry ? h("button", { type: "button", className: "link", id: "retry", onclick: () => b.retry?.() }, "Try again") : null,
  );
}

function authView(model: Model, actions: Actions, mode: AuthMode): HTMLElement {
  const email = h("input", { id: "email", type: "email", name: "email", autocomplete: "email", required: true, value: model.email, placeholder: "you@example.com" });
  const password = h("input", {
    id: "password",
    type: "password",
    name: "password",
    autocomplete: mode === "signin" ? "current-password" : "new-password",
    required: true,
    minlength: mode === "signup" ? 8 : undefined,
    placeholder: mode === "signup" ? "At least 8 characters" : model.signInCodeAsked ? "Kept from your last try" : "",
  });
  const asked = mode === "signin" && model.signInCodeAsked;
  const code = asked
    ? h("input", { id: "sign-in-code", type: "text", name: "sign-in-code", autocomplete: "one-time-code", spellcheck: "false", required: true, "aria-describedby": "sign-in-code-hint" })
    : null;
  const submit = (): void => actions.submitAuth(mode, email.value.trim(), password.value, code?.value ?? "");
  onEnter(submit, ...[email, password, code].filter((f): f is HTMLInputElement => f !== null));
  return h(
    "div",
    { className: "card auth", role: "form", "aria-label": mode === "signin" ? "Sign in" : "Create account" },
    h("h1", {}, mode === "signin" ? "Sign in to Mascot" : "Create your Mascot account"),
    h("p", { className: "muted" }, "Your credits follow your account across files and devices."),
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    asked ? h("label", { for: "sign-in-code" }, "Sign-in code from the email") : null,
    code,
    asked ? h("p", { className: "muted small", id: "sign-in-code-hint" }, "It starts with mcl_ and works once, for 30 minutes. Your password is kept from your last try.") : null,
    h("button", { type: "button", className: "primary", id: "auth-submit", disabled: model.busy, "aria-busy": model.busy ? "true" : undefined, onclick: submit }, model.busy ? "Please wait…" : mode === "signin" ? "Sign in" : "Create account"),
    mode === "signin" ? h("button", { type: "button", className: "link", id: "forgot", disabled: model.busy, onclick: () => actions.forgotPassword() }, "Forgot password?") : null,
    h("p", { className: "or muted small", "aria-hidden": "true" }, "or"),
    h(
      "button",
      { type: "button", className: "secondary", id: "browser-signin", disabled: model.busy, onclick: () => actions.signInWithBrowser() },
      mode === "signin" ? "Sign in with your browser" : "Create an account in your browser",
    ),
    h("p", { className: "muted small" }, "Your browser’s saved passwords work there."),
    h(
      "button",
      { type: "button", className: "link", id: "auth-switch", onclick: () => actions.switchMode(mode === "signin" ? "signup" : "signin") },
      mode === "signin" ? "New here? Create an account" : "Already have an account? Sign in",
    ),
  );
}

function handoffView(handoff: PendingHandoff, actions: Actions): HTMLElement {
  let host = handoff.url;
  try {
    host = new URL(handoff.url).host;
  } catch {
    // Shown as it is.
  }
  const until = new Date(handoff.expires_at);
  return h(
    "section",
    { className: "card handoff", "aria-labelledby": "handoff-title" },
    h("h1", { id: "handoff-title" }, "Sign in with your browser"),
    h("p", {}, "A Mascot page opened in your browser. Type this code there:"),
    // Read out one character at a time; shown in two groups of four, as the page shows it.
    h("p", { className: "user-code", id: "user-code" }, h("span", { "aria-hidden": "true" }, userCode(handoff.user_code)), h("span", { className: "sr-only" }, handoff.user_code.split("").join(" "))),
    h("p", { className: "muted small" }, `Check that the page is on ${host}. Never type this code on a page someone sent you.`),
    Number.isNaN(until.getTime()) ? null : h("p", { className: "muted small" }, `The code works until ${until.toLocaleTimeString("en-US", { hour: "numeric", minute: "2-digit" })}.`),
    h(
      "div",
      { className: "row start", role: "status" },
      h("span", { className: "spinner", "aria-hidden": "true" }),
      h("span", { id: "handoff-status" }, "Waiting for you to sign in in the browser…"),
    ),
    h(
      "div",
      { className: "row" },
      h("button", { type: "button", id: "handoff-reopen", onclick: () => actions.reopenHandoff() }, "Open the browser again"),
      h("button", { type: "button", className: "link", id: "handoff-cancel", onclick: () => actions.cancelHandoff() }, "Cancel"),
    ),
  );
}

function forgotView(model: Model, actions: Actions, options: AuthOptions, sent: boolean): HTMLElement {
  const back = h("button", { type: "button", className: "link", id: "back-to-sign-in", onclick: () => actions.backToSignIn() }, "Back to sign in");
  const title = (text: string): HTMLElement => h("h1", { id: "forgot-title", tabindex: -1 }, text);
  if (options.password_reset === "contact") {
    return h(
      "section",
      { className: "card auth", "aria-labelledby": "forgot-title" },
      title("Forgot your password?"),
      options.support_email
        ? h("p", { id: "contact" }, "Write to ", h("strong", {}, options.support_email), " from the address of your Mascot account. You will get a one-time password to sign in with, and then choose a new one.")
        : h("p", { id: "contact" }, "Contact the person who runs your Mascot server. They can give you a one-time password to sign in with, and then you choose a new one."),
      back,
    );
  }
  if (sent) {
    return h(
      "section",
      { className: "card auth", "aria-labelledby": "forgot-title" },
      title("Check your mail"),
      h("p", { id: "reset-sent" }, "If there is a Mascot account for ", h("strong", {}, model.email), ", we sent it a link to choose a new password. The link works for 30 minutes."),
      h("p", { className: "muted small" }, "No mail? Check your spam folder, or ask again in a few minutes."),
      back,
    );
  }
  const email = h("input", { id: "reset-email", type: "email", name: "email", autocomplete: "email", required: true, value: model.email, placeholder: "you@example.com" });
  const submit = (): void => actions.requestReset(email.value.trim());
  onEnter(submit, email);
  return h(
    "section",
    { className: "card auth", "aria-labelledby": "forgot-title" },
    title("Forgot your password?"),
    h("p", { className: "muted" }, "We will mail you a link to choose a new one."),
    h("label", { for: "reset-email" }, "Email"),
    email,
    h("button", { type: "button", className: "primary", id: "reset-submit", disabled: model.busy, "aria-busy": model.busy ? "true" : undefined, onclick: submit }, model.busy ? "Please wait…" : "Send reset link"),
    back,
  );
}

function changePasswordView(model: Model, actions: Actions, required: boolean): HTMLElement {
  const current = model.knowsCurrentPassword ? null : passwordField("current-password", "current-password");
  const next = passwordField("new-password", "new-password", 8, "new-password-hint");
  const repeat = passwordField("repeat-password", "new-password", 8);
  const submit = (): void => actions.changePassword(current?.value ?? "", next.value, repeat.value);
  onEnter(submit, ...[current, next, repeat].filter((f): f is HTMLInputElement => f !== null));
  return h(
    "section",
    { className: "card auth", "aria-labelledby": "change-title" },
    h("h1", { id: "change-title" }, required ? "Choose a new password" : "Change your password"),
    h(
      "p",
      { className: "muted" },
      required
        ? `You signed in${model.me ? ` as ${model.me.email}` : ""} with a one-time password. Choose your own password to continue.`
        : "Every other device signed in to your account will be signed out.",
    ),
    current ? h("label", { for: "current-password" }, required ? "One-time password" : "Current password") : null,
    current,
    h("label", { for: "new-password" }, "New password"),
    next,
    h("p", { className: "muted small", id: "new-password-hint" }, "At least 8 characters."),
    h("label", { for: "repeat-password" }, "Repeat the new password"),
    repeat,
    h("button", { type: "button", className: "primary", id: "change-submit", disabled: model.busy, "aria-busy": model.busy ? "true" : undefined, onclick: submit }, model.busy ? "Please wait…" : "Change password"),
    required
      ? h("button", { type: "button", className: "link", id: "sign-out", onclick: () => actions.signOut() }, "Sign out")
      : h("button", { type: "button", className: "link", id: "change-cancel", onclick: () => actions.closeChangePassword() }, "Cancel"),
  );
}

function balanceView(model: Model, actions: Actions): HTMLElement {
  const b = model.balance;
  return h(
    "section",
    { className: "card balance", "aria-label": "Balance" },
    h(
      "div",
      { className: "row" },
      h("div", {}, h("h1", { className: "muted small label" }, "Your balance"), h("div", { className: "big", id: "balance" }, b ? credits(b.balance ?? b.available) : "—")),
      h("button", { type: "button", className: "icon", id: "refresh", title: "Refresh", "aria-label": "Refresh balance and history", disabled: model.busy, onclick: () => actions.refresh() }, "↻"),
    ),
    b && b.held > 0 ? h("div", { className: "muted small", id: "held" }, `${credits(b.held)} on hold for running jobs · ${credits(b.available)} available`) : null,
    b && b.low && b.low_balance !== null && (b.balance ?? 0) >= 0 ? h("div", { className: "warn small", id: "low-balance" }, `Fewer than ${credits(b.low_balance)} available, the alert you set.`) : null,
    b && (b.balance ?? 0) < 0 ? h("div", { className: "warn small", id: "negative" }, "Your balance is negative after a refund or dispute. Buy credits to continue.") : null,
    ...expiringSoon(b?.expiring, Date.now()).map((lot, i) =>
      h("div", { className: "warn small expiring", id: i === 0 ? "expiring" : undefined }, `${credits(lot.credits)} expire on ${day(lot.expires_at)}.`),
    ),
    ...accountRows(model, actions),
  );
}

/** The account's own rows under either wallet's balance. */
function accountRows(model: Model, actions: Actions): (HTMLElement | null)[] {
  return [
    verifyNotice(model, actions),
    h(
      "div",
      { className: "row small muted" },
      h("span", { id: "signed-in-as" }, model.me ? model.me.email : ""),
      h("button", { type: "button", className: "link", id: "sign-out", onclick: () => actions.signOut() }, "Sign out"),
    ),
    h(
      "div",
      { className: "row small" },
      h("button", { type: "button", className: "link", id: "change-password", onclick: () => actions.showChangePassword() }, "Change password"),
      h("button", { type: "button", className: "link", id: "sign-out-all", disabled: model.busy, onclick: () => actions.signOutEverywhere() }, "Sign out everywhere"),
    ),
    h("button", { type: "button", className: "secondary usage-open", id: "show-usage", onclick: () => actions.showUsage() }, model.wallet ? "Usage" : "Usage and export"),
  ];
}

/** Until the email is confirmed, on a server that gives sign-up credits: what it is worth, and a
 * way to get the link again (the first one was mailed at sign-up). */
function verifyNotice(model: Model, actions: Actions): HTMLElement | null {
  const me = model.me;
  if (!me || me.email_verified || me.signup_credits <= 0) return null;
  return h(
    "div",
    { className: "notice small", id: "verify-note", tabindex: "-1" },
    h("p", {}, h("strong", {}, `Verify your email to get ${me.signup_credits.toLocaleString("en-US")} free ${me.signup_credits === 1 ? "credit" : "credits"}.`), model.verifySent ? ` A new link is on its way to ${me.email}.` : ` Open the link we mailed to ${me.email}.`),
    h(
      "button",
      { type: "button", className: "link", id: "verify-send", disabled: model.busy, onclick: () => actions.sendVerification() },
      "Send the link again",
    ),
  );
}

/** "Have a code?": a disclosure button, then one field; its error is the field's description. */
function redeemView(model: Model, actions: Actions): HTMLElement {
  const r = model.redeem;
  const toggle = h(
    "button",
    { type: "button", className: "link", id: "redeem-toggle", "aria-expanded": r.open ? "true" : "false", "aria-controls": "redeem-form", onclick: () => actions.toggleRedeem() },
    "Have a code?",
  );
  if (!r.open) return h("section", { className: "card redeem", "aria-label": "Promotion code" }, toggle);
  const code = h("input", {
    id: "redeem-code",
    type: "text",
    name: "code",
    autocomplete: "off",
    autocapitalize: "characters",
    value: r.code,
    spellcheck: false,
    maxlength: 32,
    required: true,
    "aria-invalid": r.error ? "true" : undefined,
    "aria-describedby": r.error ? "redeem-error" : "redeem-hint",
  });
  const submit = (): void => actions.redeem(code.value);
  onEnter(submit, code);
  return h(
    "section",
    { className: "card redeem", "aria-label": "Promotion code" },
    toggle,
    h(
      "div",
      { id: "redeem-form", role: "group", "aria-label": "Redeem a code" },
      h("label", { for: "redeem-code" }, "Code"),
      h("div", { className: "row" }, code, h("button", { type: "button", className: "primary", id: "redeem-submit", disabled: r.busy, "aria-busy": r.busy ? "true" : undefined, onclick: submit }, r.busy ? "Redeeming…" : "Redeem")),
      r.error
        ? h("p", { className: "error small", id: "redeem-error", role: "alert" }, r.error)
        : h("p", { className: "muted small", id: "redeem-hint" }, "Codes are not case-sensitive. Their credits are free and may expire."),
    ),
  );
}

/** The low-balance alert: a threshold, saved to the server (a banner here, a mail, a webhook). */
function alertView(model: Model, actions: Actions): HTMLElement {
  const current = (model.wallet ? model.teamBalance : model.balance)?.low_balance ?? null;
  const field = h("input", {
    id: "alert-threshold",
    type: "number",
    name: "low-balance",
    inputmode: "numeric",
    min: 1,
    max: 1000000,
    step: 1,
    value: current === null ? "" : String(current),
    "aria-invalid": model.alertError ? "true" : undefined,
    "aria-describedby": model.alertError ? "alert-error" : "alert-hint",
  });
  const save = (): void => actions.saveAlert(field.value);
  onEnter(save, field);
  return h(
    "div",
    { className: "alert-form", role: "group", "aria-labelledby": "alert-title" },
    h("h2", { id: "alert-title" }, "Low-balance alert"),
    h("label", { for: "alert-threshold" }, model.wallet ? "Tell the owner and admins when the team has fewer than (credits)" : "Tell me when I have fewer than (credits)"),
    h("div", { className: "row" }, field, h("button", { type: "button", className: "primary", id: "alert-save", disabled: model.busy, onclick: save }, "Save")),
    model.alertError
      ? h("p", { className: "error small", id: "alert-error", role: "alert" }, model.alertError)
      : h("p", { className: "muted small", id: "alert-hint" }, current === null ? "Off. You see it here, and by mail where your server sends mail." : `On: below ${credits(current)}.`),
    current === null ? null : h("button", { type: "button", className: "link", id: "alert-off", disabled: model.busy, onclick: () => actions.clearAlert() }, "Turn the alert off"),
  );
}

/** Colours of the chart's features, most used first; the rest share the last one. */
const FEATURE_SLOTS = 4;

/** Where the credits went: a 30-day bar chart stacked by feature (its figures also in words and
 * in the list under it, for screen readers and for exact numbers), the runway and the export. */
function usageView(model: Model, actions: Actions): HTMLElement {
  const u = model.usage;
  const team = shownTeam(model);
  const back = h("button", { type: "button", className: "link", id: "close-usage", onclick: () => actions.closeUsage() }, "Back to account");
  const title = h("h1", { id: "usage-title", tabindex: "-1" }, "Usage", team ? h("span", { className: "muted" }, " · ", h("span", { className: "team-name" }, team.name)) : null);
  if (!u) {
    return h("section", { className: "card", "aria-labelledby": "usage-title" }, title, h("div", { className: "loading", role: "status" }, h("span", { className: "spinner", "aria-hidden": "true" }), "Loading your usage…"), back);
  }
  const features = Object.entries(u.total_by_feature).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const slot = (f: string): number => Math.min(features.findIndex(([name]) => name === f), FEATURE_SLOTS);
  const total = features.reduce((n, [, c]) => n + c, 0);
  const top = Math.max(1, ...u.days.map((d) => d.spent));
  const busiest = u.days.reduce((a, d) => (d.spent > a.spent ? d : a), u.days[0]);
  const summary = total
    ? `Credits spent per day over the last ${u.days.length} days: ${credits(total)} in all, the most on ${day(busiest.date)} (${credits(busiest.spent)}).`
    : `No credits spent in the last ${u.days.length} days.`;
  const bars = u.days.map((d) =>
    h(
      "div",
      { className: "bar", title: `${day(d.date)}: ${credits(d.spent)}` },
      ...Object.entries(d.by_feature)
        .sort((a, b) => slot(a[0]) - slot(b[0]))
        .map(([f, c]) => h("span", { className: `seg f${slot(f)}`, style: `height:${((c / top) * 100).toFixed(2)}%` })),
    ),
  );
  const expired = u.days.reduce((n, d) => n + d.expired, 0);
  const clawed = u.days.reduce((n, d) => n + d.clawed_back, 0);
  return h(
    "section",
    { className: "card usage", "aria-labelledby": "usage-title" },
    title,
    h("p", { className: "muted small" }, `Last ${u.days.length} days, in UTC.`),
    h(
      "figure",
      { className: "chart" },
      h("div", { className: "bars", role: "img", "aria-label": summary, id: "usage-chart" }, ...bars),
      h("figcaption", { className: "axis muted small", "aria-hidden": "true" }, h("span", {}, day(u.days[0].date)), h("span", {}, "Today")),
    ),
    features.length
      ? h(
          "ul",
          { className: "features", id: "usage-features", "aria-label": "Credits spent by feature" },
          ...features.map(([f, c], i) =>
            h("li", {}, h("span", { className: `swatch f${Math.min(i, FEATURE_SLOTS)}`, "aria-hidden": "true" }), h("span", { className: "feature-name" }, f), h("strong", {}, credits(c))),
          ),
        )
      : h("p", { className: "muted small", id: "usage-empty" }, "Nothing spent yet. What you create will show here, by feature."),
    expired || clawed
      ? h("p", { className: "muted small", id: "usage-other" }, [expired ? `${credits(expired)} expired` : "", clawed ? `${credits(clawed)} taken back by refunds` : ""].filter(Boolean).join(" · ") + ".")
      : null,
    h(
      "p",
      { id: "usage-runway" },
      u.runway_days === null
        ? "Nothing spent in the last 7 days."
        : `At the last 7 days’ pace your available credits last about ${u.runway_days.toLocaleString("en-US")} ${u.runway_days === 1 ? "day" : "days"}.`,
    ),
    !team || team.sees_all ? alertView(model, actions) : null,
    team ? null : h("button", { type: "button", className: "secondary", id: "export-csv", disabled: model.busy, "aria-busy": model.busy ? "true" : undefined, onclick: () => actions.exportCsv() }, "Export history (CSV)"),
    team ? null : h("p", { className: "muted small" }, "Every entry, with features, amounts paid and Stripe ids. Opens in your browser."),
    back,
  );
}

function packsView(model: Model, actions: Actions, team: TeamSummary | null): HTMLElement {
  // What each pack is and costs comes from the server's catalogue (its label); the view only
  // divides price by credits and points at the cheapest per credit.
  const best = bestValue(model.packs);
  const options = model.packs.map((p) =>
    h(
      "label",
      { className: `pack${p.id === model.selected ? " selected" : ""}`, "data-pack": p.id },
      h("input", { type: "radio", name: "pack", id: `pack-${p.id}`, value: p.id, checked: p.id === model.selected, onchange: () => actions.select(p.id) }),
      h("span", { className: "pack-label" }, h("span", { className: "pack-name" }, p.label), h("span", { className: "pack-unit muted small" }, p.tax_note ? `${perCredit(p)} · ${p.tax_note}` : perCredit(p))),
      p.id === best ? h("span", { className: "best-value" }, "Best value") : null,
    ),
  );
  const chosen = model.packs.find((p) => p.id === model.selected);
  return h(
    "section",
    { className: "card", "aria-label": "Buy credits" },
    team ? h("h2", {}, "Buy credits for ", h("span", { className: "team-name" }, team.name)) : h("h2", {}, "Buy credits"),
    model.packs.length ? h("fieldset", { className: "packs" }, h("legend", { className: "sr-only" }, "Credit pack"), ...options) : h("p", { className: "muted" }, "No packs are available right now."),
    h(
      "button",
      { type: "button", className: "primary", id: "buy", disabled: model.busy || !chosen, "aria-busy": model.busy ? "true" : undefined, onclick: () => actions.buy() },
      model.busy ? "Opening checkout…" : "Buy more credits",
    ),
    h("p", { className: "muted small" }, chosen ? `${chosen.label}${chosen.tax_note ? ` ${chosen.tax_note}` : ""}. You pay securely with Stripe in your browser.` : ""),
    team ? h("p", { className: "muted small", id: "buy-for-team" }, "The credits go to the team’s wallet; its members spend them within their caps.") : null,
  );
}

function waitingView(w: Waiting, actions: Actions): HTMLElement {
  return h(
    "section",
    { className: "card waiting", "aria-label": "Waiting for payment", role: "status" },
    h("div", { className: "row start" }, h("span", { className: "spinner", "aria-hidden": "true" }), h("h2", { id: "waiting-title" }, "Waiting for payment…")),
    h("p", { className: "muted small" }, `Complete the payment in your browser. Your ${credits(w.credits)} will appear here by themselves.`),
    h(
      "div",
      { className: "row" },
      h("button", { type: "button", id: "reopen-checkout", onclick: () => actions.reopenCheckout() }, "Reopen checkout page"),
      h("button", { type: "button", className: "link", id: "cancel-wait", onclick: () => actions.cancelWait() }, "Stop waiting"),
    ),
  );
}

function historyView(model: Model, actions: Actions, team: TeamSummary | null): HTMLElement {
  const rows = model.history.map((e) =>
    h(
      "li",
      { className: "entry" },
      h(
        "div",
        {},
        h("div", { className: "entry-desc" }, e.description),
        ...(paidSummary(e.purchase) ? [h("div", { className: "muted small entry-paid" }, paidSummary(e.purchase))] : []),
        ...receiptLinks(e, actions),
        h(
          "div",
          { className: "muted small" },
          e.feature ? h("span", { className: "entry-feature" }, e.feature) : null,
          e.feature ? " · " : null,
          e.user ? h("span", { className: "entry-user" }, e.user.email) : null,
          e.user ? " · " : null,
          when(e.created_at),
        ),
      ),
      h("div", { className: `entry-delta ${e.delta >= 0 ? "plus" : "minus"}` }, delta(e)),
    ),
  );
  return h(
    "section",
    { className: "card", "aria-label": "History" },
    h("h2", {}, "History"),
    rows.length
      ? h("ul", { className: "history", id: "history" }, ...rows)
      : h(
          "p",
          { className: "muted small", id: "history-empty" },
          !team ? "No activity yet. Purchases and spending will show up here." : team.sees_all ? "Nothing on this team yet. Purchases and members’ spending will show up here." : "You have not spent from this team yet.",
        ),
    model.cursor ? h("button", { type: "button", className: "link", id: "load-more", disabled: model.loadingMore, onclick: () => actions.loadMore() }, model.loadingMore ? "Loading…" : "Load more") : null,
  );
}

/** A purchase's receipt and invoice, each opened in the browser. */
function receiptLinks(e: HistoryEntry, actions: Actions): HTMLElement[] {
  const p = e.purchase;
  if (!p || (!p.receipt_url && !p.invoice_url)) return [];
  const link = (url: string, label: string, what: string): HTMLElement =>
    h("button", { type: "button", className: "link small", "aria-label": `${label} for ${what}`, onclick: () => actions.openReceipt(url) }, label);
  const what = `${e.description} on ${when(e.created_at)}`;
  return [
    h(
      "div",
      { className: "entry-links" },
      p.receipt_url ? link(p.receipt_url, "Receipt", what) : null,
      p.invoice_url ? link(p.invoice_url, "Invoice", what) : null,
    ),
  ];
}

/** The Create tab: a name in, a mascot out, for a few credits (charged by the generation service). */
function createView(model: Model, actions: Actions): HTMLElement {
  const c = model.create;
  const name = h("input", { id: "mascot-name", type: "text", name: "mascot-name", autocomplete: "off", maxlength: MAX_NAME, required: true, ...drafted(model, actions, "mascot-name", c.name), placeholder: "e.g. Ada", "aria-describedby": "create-hint" });
  const submit = (): void => actions.create(name.value);
  onEnter(submit, name);
  const b = model.balance;
  const team = shownTeam(model);
  return h(
    "section",
    { className: "card", "aria-labelledby": "create-title" },
    h("h1", { id: "create-title" }, "Create a mascot"),
    h("p", { className: "muted", id: "create-hint" }, `Type a name and the Mascot generator draws a mascot for it. Each one costs ${credits(CREATE_PRICE)}.`),
    h("label", { for: "mascot-name" }, "Name"),
    name,
    h(
      "button",
      { type: "button", className: "primary", id: "create-submit", disabled: c.busy, "aria-busy": c.busy ? "true" : undefined, onclick: submit },
      c.busy ? "Creating…" : `Create mascot · ${credits(CREATE_PRICE)}`,
    ),
    team
      ? h("p", { className: "muted small", id: "create-balance" }, `Paid from `, h("span", { className: "team-name" }, team.name), model.teamBalance ? `: ${credits(model.teamBalance.available)} available to you` : "")
      : h("p", { className: "muted small", id: "create-balance" }, b ? `${credits(b.available)} available` : ""),
    c.result
      ? h(
          "figure",
          { className: "mascot", id: "mascot-result", tabindex: "-1" },
          h("img", { src: svgImage(c.result.svg), alt: `A mascot named ${c.result.name}`, width: 160, height: 160 }),
          h("figcaption", { className: "muted small" }, `${c.result.name} · ${credits(c.result.charged)} charged`),
        )
      : null,
  );
}

/** What the person typed or chose in a field, kept in the model under `key` (without a render)
 * so that a render, which rebuilds the fields, puts it back; `fallback` until they do. */
function drafted(model: Model, actions: Actions, key: string, fallback = ""): { value: string; oninput: (ev: Event) => void; onchange: (ev: Event) => void } {
  const keep = (ev: Event): void => actions.draft(key, (ev.target as HTMLInputElement | HTMLSelectElement).value);
  return { value: model.drafts[key] ?? fallback, oninput: keep, onchange: keep };
}

function periodSelect(id: string, value: string, draft: ReturnType<typeof drafted>, describedby?: string): HTMLSelectElement {
  const periods: [CapPeriod, string][] = [["day", "day"], ["week", "week"], ["month", "month"]];
  return h("select", { id, name: id, "aria-describedby": describedby, onchange: draft.onchange }, ...periods.map(([p, label]) => h("option", { value: p, selected: p === value }, label)));
}

/** A form's error under it (announced), or nothing. */
function formError(id: string, text: string | undefined): HTMLElement | null {
  return text ? h("p", { className: "error small", id, role: "alert" }, text) : null;
}

/** The Team screen: the chosen team (members, caps, roles, invitations, leave or delete), then
 * creating a team and joining one with an invitation code. */
function teamView(model: Model, actions: Actions): HTMLElement[] {
  const team = shownTeam(model);
  const t = model.team;
  const back = h("button", { type: "button", className: "link", id: "close-team", onclick: () => actions.closeTeam() }, "Back to account");
  const sections: HTMLElement[] = [];
  if (team) {
    sections.push(
      h(
        "section",
        { className: "card team", "aria-labelledby": "team-title" },
        h("h1", { id: "team-title", tabindex: "-1" }, h("span", { className: "team-name" }, team.name)),
        h("p", { className: "muted small" }, `${ROLE_LINE[team.role]} ${team.sees_all ? "You see its balance and every member’s spending." : "You see what is left of your cap and your own spending."}`),
        membersView(model, actions, team),
        team.sees_all ? inviteView(model, actions, team) : null,
        team.sees_all ? invitationsView(model, actions) : null,
        team.role === "owner"
          ? t.confirmDelete
            ? h(
                "div",
                { className: "danger", role: "group", "aria-labelledby": "delete-question" },
                h("p", { id: "delete-question" }, "Delete ", h("span", { className: "team-name" }, team.name), "? Its wallet must be empty. This cannot be undone."),
                h(
                  "div",
                  { className: "row" },
                  h("button", { type: "button", id: "delete-team-confirm", disabled: model.busy, onclick: () => actions.deleteTeam(true) }, "Delete the team"),
                  h("button", { type: "button", className: "link", id: "delete-team-cancel", onclick: () => actions.showTeam() }, "Keep it"),
                ),
              )
            : h("button", { type: "button", className: "link danger-link", id: "delete-team", disabled: model.busy, onclick: () => actions.deleteTeam(false) }, "Delete this team")
          : h("button", { type: "button", className: "link danger-link", id: "leave-team", disabled: model.busy, onclick: () => actions.leaveTeam() }, "Leave this team"),
        back,
      ),
    );
  }
  const name = h("input", { id: "team-name", type: "text", name: "team-name", autocomplete: "off", maxlength: 64, required: true, ...drafted(model, actions, "team-name"), "aria-invalid": t.errors.create ? "true" : undefined, "aria-describedby": t.errors.create ? "create-error" : undefined });
  const createTeam = (): void => actions.createTeam(name.value);
  onEnter(createTeam, name);
  const code = h("input", { id: "join-code", type: "text", name: "join-code", autocomplete: "off", spellcheck: false, required: true, placeholder: "mci_…", ...drafted(model, actions, "join-code"), "aria-invalid": t.errors.join ? "true" : undefined, "aria-describedby": t.errors.join ? "join-error" : "join-hint" });
  const join = (): void => actions.acceptInvitation(code.value);
  onEnter(join, code);
  sections.push(
    h(
      "section",
      { className: "card", "aria-labelledby": team ? "new-team-title" : "team-title" },
      team ? null : h("h1", { id: "team-title", tabindex: "-1" }, "Team wallets"),
      team ? null : h("p", { className: "muted small" }, "A team buys credits once; its members spend them, each within a cap the owner or an admin sets. Choose a team in the Wallet menu to manage it."),
      h("h2", { id: "new-team-title" }, "Create a team"),
      h("label", { for: "team-name" }, "Team name"),
      h("div", { className: "row" }, name, h("button", { type: "button", className: "primary", id: "create-team", disabled: model.busy, onclick: createTeam }, "Create")),
      formError("create-error", t.errors.create),
      h("h2", { id: "join-title" }, "Join a team"),
      h("label", { for: "join-code" }, "Invitation code"),
      h("div", { className: "row" }, code, h("button", { type: "button", className: "primary", id: "join-team", disabled: model.busy, onclick: join }, "Join")),
      t.errors.join ? formError("join-error", t.errors.join) : h("p", { className: "muted small", id: "join-hint" }, "Paste the code from the invitation mail. It works once, for 7 days, for the address it was sent to."),
      team ? null : back,
    ),
  );
  return sections;
}

function membersView(model: Model, actions: Actions, team: TeamSummary): HTMLElement {
  const t = model.team;
  const list = t.members;
  return h(
    "div",
    { className: "members" },
    h("h2", { id: "members-title", tabindex: "-1" }, "Members"),
    list === null
      ? h("div", { className: "loading", role: "status" }, h("span", { className: "spinner", "aria-hidden": "true" }), "Loading the members…")
      : h("ul", { className: "member-list", id: "members", "aria-labelledby": "members-title" }, ...list.map((m, i) => memberRow(model, actions, team, m, i))),
    formError("members-error", t.errors.members),
  );
}

/** One member; the controls the caller's role allows on them. Only the owner changes roles
 * (and hands the team over); owners and admins set caps and remove members. */
function memberRow(model: Model, actions: Actions, team: TeamSummary, m: TeamMember, i: number): HTMLElement {
  const email = m.user.email;
  const me = model.me?.id === m.user.id;
  const manage = m.role !== "owner" && !me && (team.role === "owner" || (team.role === "admin" && m.role === "member"));
  const capLine = m.cap ? `Cap: ${capText(m.cap.credits, m.cap.period)}` : m.role === "owner" ? "No cap (the owner)" : team.sees_all || me ? "No cap" : "";
  const parts: (HTMLElement | null)[] = [
    h("div", { className: "row member-head" }, h("span", { className: "member-email" }, email, me ? " (you)" : ""), h("span", { className: "role-badge" }, roleName(m.role))),
    capLine ? h("div", { className: "muted small", id: `member-cap-${i}` }, capLine) : null,
  ];
  if (manage) {
    const amount = h("input", { id: `cap-credits-${i}`, type: "number", name: `cap-credits-${i}`, inputmode: "numeric", min: 1, step: 1, ...drafted(model, actions, `cap:${m.user.id}`, m.cap ? String(m.cap.credits) : ""), "aria-describedby": `member-cap-${i}` });
    const periodDraft = drafted(model, actions, `period:${m.user.id}`, m.cap?.period ?? "week");
    const period = periodSelect(`cap-period-${i}`, periodDraft.value, periodDraft);
    const setCap = (): void => actions.setCap(m.user.id, amount.value, period.value as CapPeriod);
    onEnter(setCap, amount);
    parts.push(
      h(
        "div",
        { className: "member-cap", role: "group", "aria-label": `Cap for ${email}` },
        h("div", {}, h("label", { for: amount.id }, "Credits"), amount),
        h("div", {}, h("label", { for: period.id }, "per"), period),
        h("button", { type: "button", id: `cap-save-${i}`, disabled: model.busy, "aria-label": `Set cap for ${email}`, onclick: setCap }, "Set cap"),
      ),
    );
    const actionsRow: (HTMLElement | null)[] = [];
    if (m.cap) actionsRow.push(h("button", { type: "button", className: "link", id: `cap-remove-${i}`, disabled: model.busy, "aria-label": `Remove cap for ${email}`, onclick: () => actions.removeCap(m.user.id) }, "Remove cap"));
    if (team.role === "owner") {
      const other: TeamRole = m.role === "admin" ? "member" : "admin";
      actionsRow.push(
        h("button", { type: "button", className: "link", id: `role-${i}`, disabled: model.busy, "aria-label": `${other === "admin" ? "Make admin" : "Make member"}: ${email}`, onclick: () => actions.setRole(m.user.id, other) }, other === "admin" ? "Make admin" : "Make member"),
        h("button", { type: "button", className: "link", id: `owner-${i}`, disabled: model.busy, "aria-label": `Make owner: ${email} (you become an admin)`, onclick: () => actions.setRole(m.user.id, "owner") }, "Make owner"),
      );
    }
    actionsRow.push(h("button", { type: "button", className: "link", id: `remove-${i}`, disabled: model.busy, "aria-label": `Remove ${email} from the team`, onclick: () => actions.removeMember(m.user.id) }, "Remove"));
    parts.push(h("div", { className: "member-actions" }, ...actionsRow));
  }
  return h("li", { className: "member" }, ...parts);
}

/** Invite by email, with a role (the owner may invite admins) and an optional cap. */
function inviteView(model: Model, actions: Actions, team: TeamSummary): HTMLElement {
  const t = model.team;
  const email = h("input", { id: "invite-email", type: "email", name: "invite-email", autocomplete: "off", required: true, placeholder: "name@example.com", ...drafted(model, actions, "invite-email"), "aria-invalid": t.errors.invite ? "true" : undefined, "aria-describedby": t.errors.invite ? "invite-error" : undefined });
  const roleDraft = drafted(model, actions, "invite-role", "member");
  const role = h(
    "select",
    { id: "invite-role", name: "invite-role", onchange: roleDraft.onchange },
    h("option", { value: "member", selected: roleDraft.value !== "admin" }, "Member"),
    team.role === "owner" ? h("option", { value: "admin", selected: roleDraft.value === "admin" }, "Admin") : null,
  );
  const cap = h("input", { id: "invite-cap", type: "number", name: "invite-cap", inputmode: "numeric", min: 1, step: 1, placeholder: "No cap", ...drafted(model, actions, "invite-cap"), "aria-describedby": "invite-cap-hint" });
  const periodDraft = drafted(model, actions, "invite-period", "week");
  const period = periodSelect("invite-period", periodDraft.value, periodDraft, "invite-cap-hint");
  const send = (): void => actions.invite(email.value, role.value as TeamRole, cap.value, period.value as CapPeriod);
  onEnter(send, email, cap);
  return h(
    "div",
    { className: "invite", role: "group", "aria-labelledby": "invite-title" },
    h("h2", { id: "invite-title" }, "Invite someone"),
    h("label", { for: "invite-email" }, "Email"),
    email,
    h(
      "div",
      { className: "invite-grid" },
      h("div", {}, h("label", { for: "invite-role" }, "Role"), role),
      h("div", {}, h("label", { for: "invite-cap" }, "Cap (credits)"), cap),
      h("div", {}, h("label", { for: "invite-period" }, "per"), period),
    ),
    h("p", { className: "muted small", id: "invite-cap-hint" }, "Leave the cap empty for none: the member may then spend all the team has."),
    h("button", { type: "button", className: "primary", id: "invite-submit", disabled: model.busy, "aria-busy": model.busy ? "true" : undefined, onclick: send }, "Send invitation"),
    formError("invite-error", t.errors.invite),
    t.invited
      ? h(
          "div",
          { className: "notice small", id: "invited" },
          h("label", { for: "invite-code" }, `If the mail does not reach ${t.invited.email}, give them this code:`),
          h("input", { id: "invite-code", type: "text", readonly: true, value: t.invited.token, spellcheck: false, onfocus: (ev: Event) => (ev.target as HTMLInputElement).select() }),
        )
      : null,
  );
}

function invitationsView(model: Model, actions: Actions): HTMLElement {
  const list = model.team.invitations ?? [];
  const row = (inv: Invitation, i: number): HTMLElement =>
    h(
      "li",
      { className: "row invitation" },
      h(
        "div",
        {},
        h("div", { className: "member-email" }, inv.email),
        h("div", { className: "muted small" }, `${roleName(inv.role)}${inv.cap ? ` · ${capText(inv.cap.credits, inv.cap.period)}` : ""} · until ${day(inv.expires_at)}`),
      ),
      h("button", { type: "button", className: "link", id: `revoke-${i}`, disabled: model.busy, "aria-label": `Revoke the invitation to ${inv.email}`, onclick: () => actions.revokeInvitation(inv.invitation_id) }, "Revoke"),
    );
  return h(
    "div",
    { className: "invitations" },
    h("h2", { id: "invitations-title" }, "Pending invitations"),
    list.length ? h("ul", { className: "member-list", id: "invitations", "aria-labelledby": "invitations-title" }, ...list.map(row)) : h("p", { className: "muted small", id: "invitations-empty" }, "None."),
  );
}
