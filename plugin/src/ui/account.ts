// The Account tab: sign in / create account, balance and history, credit packs, and buying one
// through Stripe Checkout with the balance updating by itself when the payment lands.
import type { MascotClient } from "../../pkg/plugin_client";
import type { BalanceResponse, CheckoutSummary, HistoryEntry, Me, Pack } from "../generated";
import type { ToMain } from "../protocol";
import { h, mount } from "./dom";
import { asMascotError, explain, isSessionExpired } from "./errors";
import { credits, delta, money, packLabel, when } from "./format";

type Tone = "error" | "success" | "info";
interface Banner {
  text: string;
  tone: Tone;
  retry?: () => void;
}
interface Waiting {
  sessionId: string;
  url: string;
  credits: number;
}

type Screen = { kind: "loading" } | { kind: "signed-out"; mode: "signin" | "signup" } | { kind: "account" };

const HISTORY_PAGE = 10;
/** Keep waiting as long as a Checkout Session can be paid (the server expires them after an hour). */
const WAIT_TIMEOUT_MS = 65 * 60 * 1000;

export class AccountTab {
  private screen: Screen = { kind: "loading" };
  private banner: Banner | null = null;
  private busy = false;
  private email = "";
  private me: Me | null = null;
  private balance: BalanceResponse | null = null;
  private packs: Pack[] = [];
  private selected = "pack_75";
  private history: HistoryEntry[] = [];
  private cursor: string | null = null;
  private loadingMore = false;
  private waiting: Waiting | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly client: MascotClient,
    private readonly toMain: (m: ToMain) => void,
  ) {}

  start(): void {
    if (this.client.token()) {
      void this.loadAccount();
    } else {
      this.show({ kind: "signed-out", mode: "signin" });
    }
  }

  // ---- state changes -------------------------------------------------------------------------

  private show(screen: Screen, banner: Banner | null = this.banner): void {
    this.screen = screen;
    this.banner = banner;
    this.render();
  }

  private fail(e: unknown, retry?: () => void): void {
    const err = asMascotError(e);
    if (isSessionExpired(err)) {
      this.signedOut({ text: "Your session has expired. Please sign in again.", tone: "info" });
      return;
    }
    this.busy = false;
    this.banner = { text: explain(err), tone: "error", retry };
    this.render();
  }

  private signedOut(banner: Banner | null): void {
    this.client.cancelWait();
    this.client.setToken(null);
    this.toMain({ type: "save-token", token: null });
    this.me = null;
    this.balance = null;
    this.history = [];
    this.waiting = null;
    this.busy = false;
    this.show({ kind: "signed-out", mode: "signin" }, banner);
  }

  private async loadAccount(): Promise<void> {
    this.show({ kind: "loading" }, null);
    try {
      const [me, balance, packs, page, pending] = await Promise.all([
        this.client.me(),
        this.client.balance(),
        this.client.packs(),
        this.client.history(HISTORY_PAGE, null),
        this.client.pendingCheckouts(),
      ]);
      this.me = me;
      this.balance = balance;
      this.packs = packs.packs;
      this.history = page.entries;
      this.cursor = page.next_cursor;
      this.show({ kind: "account" }, null);
      const open = pending.checkouts[0];
      if (open && !this.waiting) {
        this.resume(open);
      }
    } catch (e) {
      const err = asMascotError(e);
      if (isSessionExpired(err)) {
        this.signedOut({ text: "Your session has expired. Please sign in again.", tone: "info" });
      } else {
        this.show({ kind: "loading" }, { text: explain(err), tone: "error", retry: () => void this.loadAccount() });
      }
    }
  }

  private async refresh(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.render();
    try {
      const [balance, page] = await Promise.all([this.client.balance(), this.client.history(HISTORY_PAGE, null)]);
      this.balance = balance;
      this.history = page.entries;
      this.cursor = page.next_cursor;
      this.busy = false;
      // A refresh settles a failure; a success message stays until the next action.
      if (this.banner?.tone === "error") this.banner = null;
      this.render();
    } catch (e) {
      this.fail(e, () => void this.refresh());
    }
  }

  private async loadMore(): Promise<void> {
    if (!this.cursor || this.loadingMore) return;
    this.loadingMore = true;
    this.render();
    try {
      const page = await this.client.history(HISTORY_PAGE, this.cursor);
      this.history = [...this.history, ...page.entries];
      this.cursor = page.next_cursor;
    } catch (e) {
      this.fail(e);
    }
    this.loadingMore = false;
    this.render();
  }

  private async submitAuth(mode: "signin" | "signup", email: string, password: string): Promise<void> {
    this.email = email;
    this.busy = true;
    this.banner = null;
    this.render();
    try {
      const auth = mode === "signin" ? await this.client.login(email, password) : await this.client.signup(email, password);
      this.toMain({ type: "save-token", token: auth.token });
      this.busy = false;
      await this.loadAccount();
    } catch (e) {
      this.busy = false;
      const err = asMascotError(e);
      this.show({ kind: "signed-out", mode }, { text: explain(err), tone: "error" });
      this.root.querySelector<HTMLInputElement>(err.code === "invalid_credentials" ? "#password" : "#email")?.focus();
    }
  }

  private async signOut(): Promise<void> {
    try {
      await this.client.logout();
    } catch {
      // Offline: the token is forgotten here either way.
    }
    this.signedOut({ text: "You are signed out.", tone: "info" });
  }

  private async buy(): Promise<void> {
    const pack = this.packs.find((p) => p.id === this.selected);
    if (!pack || this.busy || this.waiting) return;
    this.busy = true;
    this.banner = null;
    this.render();
    try {
      const checkout = await this.client.startCheckout(pack.id);
      this.toMain({ type: "open-url", url: checkout.checkout_url });
      this.busy = false;
      this.wait({ sessionId: checkout.session_id, url: checkout.checkout_url, credits: pack.credits });
    } catch (e) {
      this.fail(e, () => void this.buy());
    }
  }

  private resume(open: CheckoutSummary): void {
    this.wait({ sessionId: open.session_id, url: open.checkout_url, credits: open.credits });
  }

  private wait(waiting: Waiting): void {
    this.waiting = waiting;
    this.banner = null;
    this.render();
    this.client
      .waitForCheckout(waiting.sessionId, WAIT_TIMEOUT_MS)
      .then(async (done) => {
        this.waiting = null;
        const text = `${credits(done.credits)} added. Thank you!`;
        this.banner = { text, tone: "success" };
        this.toMain({ type: "notify", text: `Mascot: ${text}` });
        if (this.balance) this.balance = { ...this.balance, balance: done.balance, available: done.balance - this.balance.held };
        this.render();
        await this.refresh();
      })
      .catch((e: unknown) => {
        const err = asMascotError(e);
        if (this.waiting?.sessionId !== waiting.sessionId) return;
        this.waiting = null;
        if (err.kind === "cancelled") {
          this.banner = { text: "Stopped waiting. If you complete the payment, your credits will still arrive: press Refresh.", tone: "info" };
          this.render();
        } else if (err.kind === "checkout_expired") {
          this.banner = { text: "Checkout was cancelled or expired. Nothing was charged.", tone: "info" };
          this.render();
        } else if (err.kind === "payment_failed") {
          this.toMain({ type: "notify", text: "Mascot: the payment failed.", error: true });
          this.banner = { text: err.message, tone: "error" };
          this.render();
        } else {
          this.fail(err, () => void this.refresh());
        }
      });
  }

  // ---- rendering -----------------------------------------------------------------------------

  private render(): void {
    const header = h("header", { className: "tabs", role: "tablist" }, h("button", { className: "tab active", role: "tab", "aria-selected": "true", type: "button" }, "Account"));
    const banner = this.renderBanner();
    switch (this.screen.kind) {
      case "loading":
        mount(this.root, header, banner, this.banner ? null : h("div", { className: "loading", role: "status" }, h("span", { className: "spinner", "aria-hidden": "true" }), "Loading your account…"));
        break;
      case "signed-out":
        mount(this.root, header, banner, this.renderAuth(this.screen.mode));
        break;
      case "account":
        mount(this.root, header, banner, this.renderBalance(), this.waiting ? this.renderWaiting(this.waiting) : this.renderPacks(), this.renderHistory());
        break;
    }
  }

  private renderBanner(): HTMLElement | null {
    const b = this.banner;
    if (!b) return null;
    return h(
      "div",
      { className: `banner ${b.tone}`, role: b.tone === "error" ? "alert" : "status" },
      h("span", {}, b.text),
      b.retry ? h("button", { type: "button", className: "link", onclick: () => b.retry?.() }, "Try again") : null,
    );
  }

  private renderAuth(mode: "signin" | "signup"): HTMLElement {
    const email = h("input", { id: "email", type: "email", name: "email", autocomplete: "email", required: true, value: this.email, placeholder: "you@example.com" });
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
    const submit = (): void => {
      if (!this.busy) void this.submitAuth(mode, email.value.trim(), password.value);
    };
    const onEnter = (ev: Event): void => {
      if ((ev as KeyboardEvent).key === "Enter") {
        ev.preventDefault();
        submit();
      }
    };
    email.addEventListener("keydown", onEnter);
    password.addEventListener("keydown", onEnter);
    const form = h(
      "div",
      { className: "card auth", role: "form", "aria-label": mode === "signin" ? "Sign in" : "Create account" },
      h("h1", {}, mode === "signin" ? "Sign in to Mascot" : "Create your Mascot account"),
      h("p", { className: "muted" }, "Your credits follow your account across files and devices."),
      h("label", { for: "email" }, "Email"),
      email,
      h("label", { for: "password" }, "Password"),
      password,
      h("button", { type: "button", className: "primary", id: "auth-submit", disabled: this.busy, "aria-busy": this.busy ? "true" : undefined, onclick: submit }, this.busy ? "Please wait…" : mode === "signin" ? "Sign in" : "Create account"),
      h(
        "button",
        { type: "button", className: "link", id: "auth-switch", onclick: () => this.show({ kind: "signed-out", mode: mode === "signin" ? "signup" : "signin" }, null) },
        mode === "signin" ? "New here? Create an account" : "Already have an account? Sign in",
      ),
    );
    return form;
  }

  private renderBalance(): HTMLElement {
    const b = this.balance;
    return h(
      "section",
      { className: "card balance", "aria-label": "Balance" },
      h(
        "div",
        { className: "row" },
        h("div", {}, h("div", { className: "muted small" }, "Your balance"), h("div", { className: "big", id: "balance" }, b ? credits(b.balance) : "—")),
        h("button", { type: "button", className: "icon", id: "refresh", title: "Refresh", "aria-label": "Refresh balance and history", disabled: this.busy, onclick: () => void this.refresh() }, "↻"),
      ),
      b && b.held > 0 ? h("div", { className: "muted small", id: "held" }, `${credits(b.held)} on hold for running jobs · ${credits(b.available)} available`) : null,
      b && b.balance < 0 ? h("div", { className: "warn small" }, "Your balance is negative after a refund or dispute. Buy credits to continue.") : null,
      h(
        "div",
        { className: "row small muted" },
        h("span", { id: "signed-in-as" }, this.me ? this.me.email : ""),
        h("button", { type: "button", className: "link", id: "sign-out", onclick: () => void this.signOut() }, "Sign out"),
      ),
    );
  }

  private renderPacks(): HTMLElement {
    const options = this.packs.map((p) =>
      h(
        "label",
        { className: `pack${p.id === this.selected ? " selected" : ""}`, "data-pack": p.id },
        h("input", {
          type: "radio",
          name: "pack",
          value: p.id,
          checked: p.id === this.selected,
          onchange: () => {
            this.selected = p.id;
            this.render();
            this.root.querySelector<HTMLInputElement>(`input[value="${p.id}"]`)?.focus();
          },
        }),
        h("span", { className: "pack-credits" }, credits(p.credits)),
        h("span", { className: "pack-price" }, money(p.price_cents, p.currency)),
      ),
    );
    const chosen = this.packs.find((p) => p.id === this.selected);
    return h(
      "section",
      { className: "card", "aria-label": "Buy credits" },
      h("h2", {}, "Buy credits"),
      this.packs.length ? h("fieldset", { className: "packs" }, h("legend", { className: "sr-only" }, "Credit pack"), ...options) : h("p", { className: "muted" }, "No packs are available right now."),
      h(
        "button",
        { type: "button", className: "primary", id: "buy", disabled: this.busy || !chosen, "aria-busy": this.busy ? "true" : undefined, onclick: () => void this.buy() },
        this.busy ? "Opening checkout…" : "Buy more credits",
      ),
      h("p", { className: "muted small" }, chosen ? `${packLabel(chosen)}. You pay securely with Stripe in your browser.` : ""),
    );
  }

  private renderWaiting(w: Waiting): HTMLElement {
    return h(
      "section",
      { className: "card waiting", "aria-label": "Waiting for payment", role: "status" },
      h("div", { className: "row start" }, h("span", { className: "spinner", "aria-hidden": "true" }), h("h2", { id: "waiting-title" }, "Waiting for payment…")),
      h("p", { className: "muted small" }, `Complete the payment in your browser. Your ${credits(w.credits)} will appear here by themselves.`),
      h(
        "div",
        { className: "row" },
        h("button", { type: "button", id: "reopen-checkout", onclick: () => this.toMain({ type: "open-url", url: w.url }) }, "Reopen checkout page"),
        h("button", { type: "button", className: "link", id: "cancel-wait", onclick: () => this.client.cancelWait() }, "Stop waiting"),
      ),
    );
  }

  private renderHistory(): HTMLElement {
    const rows = this.history.map((e) =>
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
      this.cursor ? h("button", { type: "button", className: "link", id: "load-more", disabled: this.loadingMore, onclick: () => void this.loadMore() }, this.loadingMore ? "Loading…" : "Load more") : null,
    );
  }
}
