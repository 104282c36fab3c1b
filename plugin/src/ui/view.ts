// The Account tab's view: pure functions from the model to elements. Each screen is one function;
// events call the actions and never change anything here. `render` is the only renderer.
import { h, mount } from "./dom";
import { bestValue, credits, delta, perCredit, when } from "./format";
import type { Actions, AuthMode, Banner, Model, Waiting } from "./state";

/** The parts that stay across renders: the tab bar (banner landmark), the main landmark with
 * the tab panel that each render replaces, and a live region that is never rebuilt (so that what
 * it says is announced). */
export function skeleton(app: HTMLElement): { screen: HTMLElement; live: HTMLElement } {
  const screen = h("div", { id: "panel", role: "tabpanel", "aria-labelledby": "tab-account" });
  const live = h("div", { id: "live", className: "sr-only", role: "status", "aria-live": "polite" });
  mount(
    app,
    h(
      "header",
      { className: "tabs" },
      h("div", { role: "tablist", "aria-label": "Mascot" }, h("button", { className: "tab active", role: "tab", id: "tab-account", "aria-selected": "true", "aria-controls": "panel", type: "button" }, "Account")),
    ),
    h("main", {}, screen, live),
  );
  return { screen, live };
}

export function render(root: HTMLElement, live: HTMLElement, model: Model, actions: Actions): void {
  // Keep the keyboard where it was: elements are rebuilt on each render, so focus follows the id.
  const active = document.activeElement;
  const keep = model.focus ?? (active && active !== document.body && root.contains(active) ? active.id || null : null);
  mount(root, ...screen(model, actions));
  if (keep) {
    const el = root.querySelector<HTMLElement>(`#${CSS.escape(keep)}`);
    el?.focus();
  }
  if (model.announce) live.textContent = model.announce;
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
      return [banner, balanceView(model, actions), model.waiting ? waitingView(model.waiting, actions) : packsView(model, actions), historyView(model, actions)];
  }
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
    placeholder: mode === "signup" ? "At least 8 characters" : "",
  });
  // No native form submission: Figma's sandboxed iframe may not allow it. Enter and the button
  // both submit.
  const submit = (): void => actions.submitAuth(mode, email.value.trim(), password.value);
  const onEnter = (ev: Event): void => {
    if ((ev as KeyboardEvent).key === "Enter") {
      ev.preventDefault();
      submit();
    }
  };
  email.addEventListener("keydown", onEnter);
  password.addEventListener("keydown", onEnter);
  return h(
    "div",
    { className: "card auth", role: "form", "aria-label": mode === "signin" ? "Sign in" : "Create account" },
    h("h1", {}, mode === "signin" ? "Sign in to Mascot" : "Create your Mascot account"),
    h("p", { className: "muted" }, "Your credits follow your account across files and devices."),
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    h("button", { type: "button", className: "primary", id: "auth-submit", disabled: model.busy, "aria-busy": model.busy ? "true" : undefined, onclick: submit }, model.busy ? "Please wait…" : mode === "signin" ? "Sign in" : "Create account"),
    h(
      "button",
      { type: "button", className: "link", id: "auth-switch", onclick: () => actions.switchMode(mode === "signin" ? "signup" : "signin") },
      mode === "signin" ? "New here? Create an account" : "Already have an account? Sign in",
    ),
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
      h("div", {}, h("h1", { className: "muted small label" }, "Your balance"), h("div", { className: "big", id: "balance" }, b ? credits(b.balance) : "—")),
      h("button", { type: "button", className: "icon", id: "refresh", title: "Refresh", "aria-label": "Refresh balance and history", disabled: model.busy, onclick: () => actions.refresh() }, "↻"),
    ),
    b && b.held > 0 ? h("div", { className: "muted small", id: "held" }, `${credits(b.held)} on hold for running jobs · ${credits(b.available)} available`) : null,
    b && b.balance < 0 ? h("div", { className: "warn small", id: "negative" }, "Your balance is negative after a refund or dispute. Buy credits to continue.") : null,
    h(
      "div",
      { className: "row small muted" },
      h("span", { id: "signed-in-as" }, model.me ? model.me.email : ""),
      h("button", { type: "button", className: "link", id: "sign-out", onclick: () => actions.signOut() }, "Sign out"),
    ),
  );
}

function packsView(model: Model, actions: Actions): HTMLElement {
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
    h("h2", {}, "Buy credits"),
    model.packs.length ? h("fieldset", { className: "packs" }, h("legend", { className: "sr-only" }, "Credit pack"), ...options) : h("p", { className: "muted" }, "No packs are available right now."),
    h(
      "button",
      { type: "button", className: "primary", id: "buy", disabled: model.busy || !chosen, "aria-busy": model.busy ? "true" : undefined, onclick: () => actions.buy() },
      model.busy ? "Opening checkout…" : "Buy more credits",
    ),
    h("p", { className: "muted small" }, chosen ? `${chosen.label}${chosen.tax_note ? ` ${chosen.tax_note}` : ""}. You pay securely with Stripe in your browser.` : ""),
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

function historyView(model: Model, actions: Actions): HTMLElement {
  const rows = model.history.map((e) =>
    h(
      "li",
      { className: "entry" },
      h("div", {}, h("div", { className: "entry-desc" }, e.description), h("div", { className: "muted small" }, when(e.created_at))),
      h("div", { className: `entry-delta ${e.delta >= 0 ? "plus" : "minus"}` }, delta(e)),
    ),
  );
  return h(
    "section",
    { className: "card", "aria-label": "History" },
    h("h2", {}, "History"),
    rows.length ? h("ul", { className: "history", id: "history" }, ...rows) : h("p", { className: "muted small", id: "history-empty" }, "No activity yet. Purchases and spending will show up here."),
    model.cursor ? h("button", { type: "button", className: "link", id: "load-more", disabled: model.loadingMore, onclick: () => actions.loadMore() }, model.loadingMore ? "Loading…" : "Load more") : null,
  );
}
