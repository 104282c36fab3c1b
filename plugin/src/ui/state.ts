// The Account tab's state and side effects: what the tab shows (a plain `Model`) and the actions
// that change it (calls to MascotClient, messages to the main thread). Nothing here touches the
// DOM: every change goes through `set`, which hands the new model to the one renderer.
import type { MascotClient } from "../../pkg/plugin_client";
import type { BalanceResponse, CheckoutSummary, HistoryEntry, Me, Pack } from "../generated";
import type { ToMain } from "../protocol";
import { asMascotError, explain, isSessionExpired } from "./errors";
import { credits } from "./format";

export type Tone = "error" | "success" | "info";
export interface Banner {
  text: string;
  tone: Tone;
  retry?: () => void;
}
export interface Waiting {
  sessionId: string;
  url: string;
  credits: number;
}
export type AuthMode = "signin" | "signup";
export type Screen = { kind: "loading" } | { kind: "signed-out"; mode: AuthMode } | { kind: "account" };

export interface Model {
  screen: Screen;
  banner: Banner | null;
  busy: boolean;
  email: string;
  me: Me | null;
  balance: BalanceResponse | null;
  packs: Pack[];
  selected: string;
  history: HistoryEntry[];
  cursor: string | null;
  loadingMore: boolean;
  waiting: Waiting | null;
  /** The id of the element to focus after the next render (e.g. the field an error is about). */
  focus: string | null;
  /** Said through the live region by the next render (e.g. the credited balance). */
  announce: string;
}

/** What the view can ask for. */
export interface Actions {
  submitAuth(mode: AuthMode, email: string, password: string): void;
  switchMode(mode: AuthMode): void;
  refresh(): void;
  loadMore(): void;
  signOut(): void;
  select(packId: string): void;
  buy(): void;
  reopenCheckout(): void;
  cancelWait(): void;
}

const HISTORY_PAGE = 10;
/** Keep waiting as long as a Checkout Session can be paid (the server expires them after an hour). */
const WAIT_TIMEOUT_MS = 65 * 60 * 1000;
const EXPIRED: Banner = { text: "Your session has expired. Please sign in again.", tone: "info" };

export function initialModel(): Model {
  return {
    screen: { kind: "loading" },
    banner: null,
    busy: false,
    email: "",
    me: null,
    balance: null,
    packs: [],
    selected: "pack_75",
    history: [],
    cursor: null,
    loadingMore: false,
    waiting: null,
    focus: null,
    announce: "",
  };
}

export class AccountState implements Actions {
  private model: Model = initialModel();

  constructor(
    private readonly client: MascotClient,
    private readonly toMain: (m: ToMain) => void,
    private readonly onChange: (model: Model, actions: Actions) => void,
  ) {}

  get current(): Readonly<Model> {
    return this.model;
  }

  start(): void {
    if (this.client.token()) {
      void this.loadAccount();
    } else {
      this.set({ screen: { kind: "signed-out", mode: "signin" } });
    }
  }

  /** The only way the model changes; each call renders once (`focus` and `announce` apply to
   * that render only). */
  private set(patch: Partial<Model>): void {
    this.model = { ...this.model, focus: null, announce: "", ...patch };
    this.onChange(this.model, this);
  }

  /** Every failure goes through here; an expired session signs out, anything else is a banner. */
  private fail(e: unknown, retry?: () => void, patch: Partial<Model> = {}): void {
    const err = asMascotError(e);
    if (isSessionExpired(err)) {
      this.signedOut(EXPIRED);
      return;
    }
    this.set({ busy: false, ...patch, banner: { text: explain(err), tone: "error", retry } });
  }

  private signedOut(banner: Banner | null): void {
    this.client.cancelWait();
    this.client.setToken(null);
    this.toMain({ type: "save-token", token: null });
    this.set({ ...initialModel(), email: this.model.email, screen: { kind: "signed-out", mode: "signin" }, banner });
  }

  private async loadAccount(): Promise<void> {
    this.set({ screen: { kind: "loading" }, banner: null });
    try {
      const [me, balance, packs, page, pending] = await Promise.all([
        this.client.me(),
        this.client.balance(),
        this.client.packs(),
        this.client.history(HISTORY_PAGE, null),
        this.client.pendingCheckouts(),
      ]);
      this.set({ me, balance, packs: packs.packs, history: page.entries, cursor: page.next_cursor, screen: { kind: "account" }, banner: null });
      const open = pending.checkouts[0];
      if (open && !this.model.waiting) this.resume(open);
    } catch (e) {
      this.fail(e, () => void this.loadAccount(), { screen: { kind: "loading" } });
    }
  }

  refresh(): void {
    void this.doRefresh();
  }

  private async doRefresh(): Promise<void> {
    if (this.model.busy) return;
    this.set({ busy: true });
    try {
      const [balance, page] = await Promise.all([this.client.balance(), this.client.history(HISTORY_PAGE, null)]);
      // A refresh settles a failure; a success message stays until the next action.
      const banner = this.model.banner?.tone === "error" ? null : this.model.banner;
      this.set({ balance, history: page.entries, cursor: page.next_cursor, busy: false, banner });
    } catch (e) {
      this.fail(e, () => this.refresh());
    }
  }

  loadMore(): void {
    void this.doLoadMore();
  }

  private async doLoadMore(): Promise<void> {
    if (!this.model.cursor || this.model.loadingMore) return;
    this.set({ loadingMore: true });
    try {
      const page = await this.client.history(HISTORY_PAGE, this.model.cursor);
      this.set({ history: [...this.model.history, ...page.entries], cursor: page.next_cursor, loadingMore: false });
    } catch (e) {
      this.fail(e, undefined, { loadingMore: false });
    }
  }

  switchMode(mode: AuthMode): void {
    this.set({ screen: { kind: "signed-out", mode }, banner: null });
  }

  submitAuth(mode: AuthMode, email: string, password: string): void {
    if (!this.model.busy) void this.doSubmitAuth(mode, email, password);
  }

  private async doSubmitAuth(mode: AuthMode, email: string, password: string): Promise<void> {
    this.set({ email, busy: true, banner: null });
    try {
      const auth = mode === "signin" ? await this.client.login(email, password) : await this.client.signup(email, password);
      this.toMain({ type: "save-token", token: auth.token });
      this.set({ busy: false });
      await this.loadAccount();
    } catch (e) {
      const err = asMascotError(e);
      this.set({
        busy: false,
        screen: { kind: "signed-out", mode },
        banner: { text: explain(err), tone: "error" },
        focus: err.code === "invalid_credentials" ? "password" : "email",
      });
    }
  }

  signOut(): void {
    void this.doSignOut();
  }

  private async doSignOut(): Promise<void> {
    try {
      await this.client.logout();
    } catch {
      // Offline: the token is forgotten here either way.
    }
    this.signedOut({ text: "You are signed out.", tone: "info" });
  }

  select(packId: string): void {
    this.set({ selected: packId, focus: `pack-${packId}` });
  }

  buy(): void {
    void this.doBuy();
  }

  private async doBuy(): Promise<void> {
    const pack = this.model.packs.find((p) => p.id === this.model.selected);
    if (!pack || this.model.busy || this.model.waiting) return;
    this.set({ busy: true, banner: null });
    try {
      const checkout = await this.client.startCheckout(pack.id);
      this.toMain({ type: "open-url", url: checkout.checkout_url });
      this.set({ busy: false });
      this.wait({ sessionId: checkout.session_id, url: checkout.checkout_url, credits: pack.credits });
    } catch (e) {
      this.fail(e, () => this.buy());
    }
  }

  reopenCheckout(): void {
    const w = this.model.waiting;
    if (w) this.toMain({ type: "open-url", url: w.url });
  }

  cancelWait(): void {
    this.client.cancelWait();
  }

  private resume(open: CheckoutSummary): void {
    this.wait({ sessionId: open.session_id, url: open.checkout_url, credits: open.credits });
  }

  private wait(waiting: Waiting): void {
    this.set({ waiting, banner: null, focus: "reopen-checkout" });
    this.client
      .waitForCheckout(waiting.sessionId, WAIT_TIMEOUT_MS)
      .then(async (done) => {
        const text = `${credits(done.credits)} added. Thank you!`;
        this.toMain({ type: "notify", text: `Mascot: ${text}` });
        const b = this.model.balance;
        this.set({
          waiting: null,
          banner: { text, tone: "success" },
          balance: b ? { ...b, balance: done.balance, available: done.balance - b.held } : b,
          announce: `${text} Your balance is now ${credits(done.balance)}.`,
          focus: "buy",
        });
        await this.doRefresh();
      })
      .catch((e: unknown) => {
        const err = asMascotError(e);
        if (this.model.waiting?.sessionId !== waiting.sessionId) return;
        const after = { waiting: null, focus: "buy" };
        if (err.kind === "cancelled") {
          this.set({ ...after, banner: { text: "Stopped waiting. If you complete the payment, your credits will still arrive: press Refresh.", tone: "info" } });
        } else if (err.kind === "checkout_expired") {
          this.set({ ...after, banner: { text: "Checkout was cancelled or expired. Nothing was charged.", tone: "info" } });
        } else if (err.kind === "payment_failed") {
          this.toMain({ type: "notify", text: "Mascot: the payment failed.", error: true });
          this.set({ ...after, banner: { text: err.message, tone: "error" } });
        } else {
          this.fail(err, () => this.refresh(), after);
        }
      });
  }
}
