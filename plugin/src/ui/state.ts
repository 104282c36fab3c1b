// The Account tab's state and side effects: what the tab shows (a plain `Model`) and the actions
// that change it (calls to MascotClient, messages to the main thread). Nothing here touches the
// DOM: every change goes through `set`, which hands the new model to the one renderer.
import type { MascotClient } from "../../pkg/plugin_client";
import type { AuthOptions, AuthResponse, BalanceResponse, CapPeriod, CheckoutSummary, HistoryEntry, HistoryResponse, Invitation, Me, Pack, TeamMember, TeamRole, TeamSummary, UsageResponse } from "../generated";
import type { PendingHandoff, ToMain } from "../protocol";
import { asMascotError, explain, isPasswordChangeRequired, isSessionExpired } from "./errors";
import { capText, credits, expiresOn } from "./format";
import { generate, isServiceError, MAX_NAME, newKey } from "./service";

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
  /** The team the pack is bought for (null: the personal wallet; undefined: not known, a
   * checkout resumed after a restart). */
  teamId?: string | null;
}
export type AuthMode = "signin" | "signup";
export type Screen =
  | { kind: "loading" }
  | { kind: "signed-out"; mode: AuthMode }
  | { kind: "account" }
  /** Waiting for the browser sign-in (the code to type there, the page to reopen). */
  | { kind: "handoff"; handoff: PendingHandoff }
  /** Forgot password: the email form, then "check your mail"; or whom to write to. */
  | { kind: "forgot"; options: AuthOptions; sent: boolean }
  /** Change password; `required` after a sign-in with an operator's one-time password: only
   * this screen until it is changed. */
  | { kind: "change-password"; required: boolean }
  /** Where the credits went: 30 days by feature, the runway, the CSV export. */
  | { kind: "usage" }
  /** Team wallets: create or join a team; the chosen team's members, caps and invitations. */
  | { kind: "team" };

export type Tab = "account" | "create";

/** The Create tab: a name, and the last mascot the generation service drew. */
export interface CreateModel {
  name: string;
  busy: boolean;
  result: { name: string; svg: string; charged: number; balance: number | null } | null;
}

export interface Model {
  screen: Screen;
  /** The tab shown while signed in (the Create tab exists only when a service is configured). */
  tab: Tab;
  /** Whether this build has a generation service (MASCOT_SERVICE_BASE) for the Create tab. */
  canCreate: boolean;
  create: CreateModel;
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
  /** The change-password screen need not ask for the current password: the one-time password
   * this sign-in used is still in memory (in AccountState, never in the model or the DOM). */
  knowsCurrentPassword: boolean;
  /** "Have a code?": whether its form is open, a redemption is running, and the form's error. */
  redeem: RedeemModel;
  /** A verification link was mailed from this tab (the notice says so instead of offering it). */
  verifySent: boolean;
  /** The Usage view's figures (null while they load). */
  usage: UsageResponse | null;
  /** The low-balance alert form's error (in the Usage view). */
  alertError: string | null;
  /** The caller's teams (the wallet switcher's choices besides Personal). */
  teams: TeamSummary[];
  /** The wallet the Account tab shows: null for the personal one, else a team id. */
  wallet: string | null;
  /** That team's balance (null while the personal wallet is shown, or while it loads). */
  teamBalance: BalanceResponse | null;
  /** The Team screen. */
  team: TeamModel;
  /** The sign-in form asks for the one-time code the server mailed (429 `sign_in_code_sent`:
   * strangers' failures slow this email down). The password typed with it is kept in
   * AccountState, never in the model or the DOM. */
  signInCodeAsked: boolean;
  /** What was typed in the fields of the Team screen and the Create tab, by field (kept without
   * a render, so that a render, which rebuilds every field, does not drop it). */
  drafts: Record<string, string>;
}

/** Which form of the Team screen an error belongs to (shown under that form). */
export type TeamForm = "create" | "join" | "invite" | "members";

export interface TeamModel {
  /** The chosen team's members and pending invitations (null: not loaded, or not visible). */
  members: TeamMember[] | null;
  invitations: Invitation[] | null;
  /** The last invitation made here: its code, to pass on when no mail arrives. */
  invited: { email: string; token: string } | null;
  /** Each form's error, under that form. */
  errors: Partial<Record<TeamForm, string>>;
  /** The owner asked to delete the team: the screen asks again. */
  confirmDelete: boolean;
}

export interface RedeemModel {
  open: boolean;
  /** What was typed (kept across renders, so an error leaves it there to correct). */
  code: string;
  busy: boolean;
  error: string | null;
}

/** What the view can ask for. */
export interface Actions {
  submitAuth(mode: AuthMode, email: string, password: string, signInCode?: string): void;
  switchMode(mode: AuthMode): void;
  refresh(): void;
  loadMore(): void;
  signOut(): void;
  select(packId: string): void;
  buy(): void;
  reopenCheckout(): void;
  cancelWait(): void;
  signInWithBrowser(): void;
  reopenHandoff(): void;
  cancelHandoff(): void;
  forgotPassword(): void;
  requestReset(email: string): void;
  backToSignIn(): void;
  showChangePassword(): void;
  changePassword(current: string, next: string, repeat: string): void;
  closeChangePassword(): void;
  signOutEverywhere(): void;
  showTab(tab: Tab): void;
  create(name: string): void;
  toggleRedeem(): void;
  redeem(code: string): void;
  sendVerification(): void;
  showUsage(): void;
  closeUsage(): void;
  exportCsv(): void;
  saveAlert(threshold: string): void;
  clearAlert(): void;
  openReceipt(url: string): void;
  selectWallet(teamId: string | null): void;
  showTeam(): void;
  closeTeam(): void;
  createTeam(name: string): void;
  acceptInvitation(token: string): void;
  invite(email: string, role: TeamRole, capCredits: string, capPeriod: CapPeriod): void;
  revokeInvitation(invitationId: string): void;
  setRole(userId: string, role: TeamRole): void;
  setCap(userId: string, credits: string, period: CapPeriod): void;
  removeCap(userId: string): void;
  removeMember(userId: string): void;
  leaveTeam(): void;
  deleteTeam(confirmed: boolean): void;
  draft(key: string, value: string): void;
}

const HISTORY_PAGE = 10;
/** Keep waiting as long as a Checkout Session can be paid (the server expires them after an hour). */
const WAIT_TIMEOUT_MS = 65 * 60 * 1000;
const EXPIRED: Banner = { text: "Your session has expired. Please sign in again.", tone: "info" };
const HANDOFF_GONE: Banner = { text: "That browser sign-in has expired or was already used. Please start again.", tone: "info" };

export function initialModel(): Model {
  return {
    screen: { kind: "loading" },
    tab: "account",
    canCreate: false,
    create: { name: "", busy: false, result: null },
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
    knowsCurrentPassword: false,
    redeem: { open: false, code: "", busy: false, error: null },
    verifySent: false,
    usage: null,
    alertError: null,
    teams: [],
    wallet: null,
    teamBalance: null,
    signInCodeAsked: false,
    team: emptyTeam(),
    drafts: {},
  };
}

function emptyTeam(): TeamModel {
  return { members: null, invitations: null, invited: null, errors: {}, confirmDelete: false };
}

/** "Owner", "Admin", "Member". */
export function roleName(role: TeamRole): string {
  return role === "owner" ? "Owner" : role === "admin" ? "Admin" : "Member";
}

export class AccountState implements Actions {
  private model: Model = initialModel();
  /** The one-time password of a sign-in that must change it (never in the model or the DOM). */
  private oneTimePassword: string | null = null;
  /** The password of a sign-in that was slowed down and asked for the mailed code (so that the
   * person types only the code). */
  private slowedSignIn: { email: string; password: string } | null = null;
  private options: AuthOptions | null = null;
  /** The balance long-poll's generation: a loop whose number is no longer this one stops. */
  private watching = 0;

  constructor(
    private readonly client: MascotClient,
    private readonly toMain: (m: ToMain) => void,
    private readonly onChange: (model: Model, actions: Actions) => void,
    /** Device tokens by lower-case email (from figma.clientStorage). */
    private readonly deviceTokens: Record<string, string> = {},
    private readonly handoff: PendingHandoff | null = null,
    /** The generation service the Create tab calls (null: no Create tab). */
    private readonly serviceBase: string | null = null,
  ) {
    this.model = { ...this.model, canCreate: serviceBase !== null };
  }

  get current(): Readonly<Model> {
    return this.model;
  }

  start(): void {
    if (this.client.token()) {
      void this.loadAccount();
    } else if (this.handoff) {
      // The plugin was closed during a browser sign-in: wait for it again.
      this.waitForBrowser(this.handoff);
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
    if (isPasswordChangeRequired(err)) {
      this.set({ busy: false, banner: null, screen: { kind: "change-password", required: true }, focus: "current-password" });
      return;
    }
    this.set({ busy: false, ...patch, banner: { text: explain(err), tone: "error", retry } });
  }

  private signedOut(banner: Banner | null): void {
    this.watching++;
    this.client.cancelWait();
    this.client.setToken(null);
    this.oneTimePassword = null;
    this.toMain({ type: "save-token", token: null });
    this.set({ ...initialModel(), canCreate: this.model.canCreate, email: this.model.email, screen: { kind: "signed-out", mode: "signin" }, banner });
  }

  /** A sign-in succeeded (form or browser): keep the session and this device's token. */
  private signedIn(token: string, email: string, deviceToken: string | undefined): void {
    this.toMain({ type: "save-token", token });
    if (deviceToken) {
      this.deviceTokens[email.toLowerCase()] = deviceToken;
      this.toMain({ type: "save-device-token", email, deviceToken });
    }
  }

  private async loadAccount(): Promise<void> {
    this.set({ screen: { kind: "loading" }, banner: null });
    try {
      const [me, balance, packs, pending, teams] = await Promise.all([
        this.client.me(),
        this.client.balance(),
        this.client.packs(),
        this.client.pendingCheckouts(),
        this.client.team("list"),
      ]);
      // The wallet shown before (a reload after a password change) if the account is still in it.
      const wallet = teams.teams.some((t) => t.team_id === this.model.wallet) ? this.model.wallet : null;
      const [teamBalance, page] = await Promise.all([wallet ? this.client.team("balance", wallet) : null, this.history(wallet, null)]);
      this.set({ me, balance, packs: packs.packs, teams: teams.teams, wallet, teamBalance, history: page.entries, cursor: page.next_cursor, screen: { kind: "account" }, banner: null });
      void this.watchBalance();
      const open = pending.checkouts[0];
      if (open && !this.model.waiting) this.resume(open);
    } catch (e) {
      this.fail(e, () => void this.loadAccount(), { screen: { kind: "loading" } });
    }
  }

  /** A page of the history of `wallet` (a team id, or null for the personal one). */
  private history(wallet: string | null, before: string | null): Promise<HistoryResponse> {
    return wallet ? this.client.team("history", wallet, before, null, HISTORY_PAGE) : this.client.history(HISTORY_PAGE, before);
  }

    refresh(): void {
    void this.doRefresh();
  }

  private async doRefresh(): Promise<void> {
    if (this.model.busy) return;
    this.set({ busy: true });
    const shown = this.model.wallet;
    try {
      // `me` too: an email verified in the browser since ends the "verify your email" notice;
      // the teams too: a role, a cap or the membership itself may have changed.
      const [me, balance, teams] = await Promise.all([this.client.me(), this.client.balance(), this.client.team("list")]);
      const gone = shown !== null && !teams.teams.some((t) => t.team_id === shown);
      const wallet = gone ? null : shown;
      const [teamBalance, page] = await Promise.all([wallet ? this.client.team("balance", wallet) : null, this.history(wallet, null)]);
      // Another wallet was chosen meanwhile: its own load shows it; keep only what is not per wallet.
      if (this.model.wallet !== shown) return this.set({ me, balance, teams: teams.teams });
      // A refresh settles a failure; a success message stays until the next action.
      let banner = this.model.banner?.tone === "error" ? null : this.model.banner;
      if (gone) banner = { text: `You are no longer in ${this.teamName(this.model.wallet)}. Showing your personal wallet.`, tone: "info" };
      this.set({ me, balance, teams: teams.teams, wallet, teamBalance, history: page.entries, cursor: page.next_cursor, busy: false, banner, announce: gone ? banner?.text ?? "" : "" });
      if (gone) void this.watchBalance();
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
    const wallet = this.model.wallet;
    try {
      const page = await this.history(wallet, this.model.cursor);
      if (this.model.wallet !== wallet) return this.set({ loadingMore: false });
      this.set({ history: [...this.model.history, ...page.entries], cursor: page.next_cursor, loadingMore: false });
    } catch (e) {
      this.fail(e, undefined, { loadingMore: false });
    }
  }

  switchMode(mode: AuthMode): void {
    this.slowedSignIn = null;
    this.set({ screen: { kind: "signed-out", mode }, banner: null, focus: "email", signInCodeAsked: false });
  }

  backToSignIn(): void {
    this.slowedSignIn = null;
    this.set({ screen: { kind: "signed-out", mode: "signin" }, banner: null, busy: false, focus: "email", signInCodeAsked: false });
  }

  submitAuth(mode: AuthMode, email: string, password: string, signInCode = ""): void {
    if (!this.model.busy) void this.doSubmitAuth(mode, email, password, signInCode.trim());
  }

  private async doSubmitAuth(mode: AuthMode, email: string, password: string, signInCode: string): Promise<void> {
    // The password of the slowed-down attempt, when only the code was typed now.
    const slowed = this.slowedSignIn;
    if (!password && slowed && slowed.email.toLowerCase() === email.toLowerCase()) password = slowed.password;
    this.set({ email, busy: true, banner: null });
    try {
      const device = this.deviceTokens[email.toLowerCase()] ?? null;
      const auth: AuthResponse =
        mode === "signup"
          ? await this.client.signup(email, password)
          : await this.client.login(email, password, device, signInCode || null);
      this.slowedSignIn = null;
      this.set({ signInCodeAsked: false });
      this.signedIn(auth.token, auth.user.email, auth.device_token);
      if (auth.password_change_required) {
        // An operator's one-time password: nothing else works until it is changed.
        this.oneTimePassword = password;
        this.set({ busy: false, me: { id: auth.user.id, email: auth.user.email, balance: 0, email_verified: false, signup_credits: 0 }, knowsCurrentPassword: true, screen: { kind: "change-password", required: true }, focus: "new-password" });
        return;
      }
      this.set({ busy: false });
      await this.loadAccount();
    } catch (e) {
      const err = asMascotError(e);
      if (mode === "signin" && err.code === "sign_in_code_sent") {
        // Someone else keeps failing to sign in as this email: its owner got a code by mail.
        this.slowedSignIn = { email, password };
        this.set({
          busy: false,
          screen: { kind: "signed-out", mode },
          signInCodeAsked: true,
          banner: {
            text: "Sign-in to this email is slowed down because of failed attempts from elsewhere. We emailed you a sign-in code: enter it below to sign in now.",
            tone: "info",
          },
          focus: "sign-in-code",
        });
        return;
      }
      this.set({
        busy: false,
        screen: { kind: "signed-out", mode },
        banner: { text: explain(err), tone: "error" },
        focus: err.code === "invalid_credentials" ? "password" : signInCode ? "sign-in-code" : "email",
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
    const teamId = this.model.wallet;
    this.set({ busy: true, banner: null });
    try {
      const checkout = teamId ? await this.client.team("checkout", teamId, pack.id) : await this.client.startCheckout(pack.id);
      this.toMain({ type: "open-url", url: checkout.checkout_url });
      this.set({ busy: false });
      this.wait({ sessionId: checkout.session_id, url: checkout.checkout_url, credits: pack.credits, teamId });
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
        // `done.balance` is the balance of the wallet the pack was bought for.
        const team = waiting.teamId ? this.model.teams.find((t) => t.team_id === waiting.teamId) : undefined;
        const text = team ? `${credits(done.credits)} added to ${team.name}. Thank you!` : `${credits(done.credits)} added. Thank you!`;
        this.toMain({ type: "notify", text: `Mascot: ${text}` });
        const b = this.model.balance;
        const tb = this.model.teamBalance;
        const patch: Partial<Model> = waiting.teamId === null ? { balance: b ? { ...b, balance: done.balance, available: done.balance - b.held } : b } : {};
        if (waiting.teamId && waiting.teamId === this.model.wallet && tb) patch.teamBalance = { ...tb, balance: done.balance, available: done.balance - tb.held };
        this.set({
          ...patch,
          waiting: null,
          banner: { text, tone: "success" },
          announce: `${text} ${team ? "The team's balance" : "Your balance"} is now ${credits(done.balance)}.`,
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

  // Sign in with the browser: the server's page does the signing in; the plugin shows the code
  // to type there and long-polls until the page is done.

  signInWithBrowser(): void {
    if (!this.model.busy) void this.doSignInWithBrowser();
  }

  private async doSignInWithBrowser(): Promise<void> {
    this.set({ busy: true, banner: null });
    try {
      const start = await this.client.startHandoff();
      const handoff: PendingHandoff = { handoff_id: start.handoff_id, read_key: start.read_key, user_code: start.user_code, url: start.url, expires_at: start.expires_at };
      this.toMain({ type: "save-handoff", handoff });
      this.toMain({ type: "open-url", url: handoff.url });
      this.set({ busy: false });
      this.waitForBrowser(handoff);
    } catch (e) {
      const err = asMascotError(e);
      this.set({ busy: false, screen: { kind: "signed-out", mode: "signin" }, banner: { text: explain(err), tone: "error" }, focus: "browser-signin" });
    }
  }

  private waitForBrowser(handoff: PendingHandoff): void {
    this.set({ screen: { kind: "handoff", handoff }, banner: null, focus: "handoff-reopen" });
    const left = Date.parse(handoff.expires_at) - Date.now();
    this.client
      .pollHandoff(handoff.handoff_id, handoff.read_key, Number.isFinite(left) ? Math.max(left + 5_000, 1_000) : null)
      .then(async (done) => {
        this.toMain({ type: "save-handoff", handoff: null });
        if (!done.token || !done.user) throw new Error("The sign-in answer is incomplete.");
        this.signedIn(done.token, done.user.email, done.device_token);
        this.set({ email: done.user.email, announce: `Signed in as ${done.user.email}.` });
        await this.loadAccount();
      })
      .catch((e: unknown) => {
        const err = asMascotError(e);
        if (this.model.screen.kind !== "handoff" || this.model.screen.handoff.handoff_id !== handoff.handoff_id) return;
        this.toMain({ type: "save-handoff", handoff: null });
        const after: Partial<Model> = { screen: { kind: "signed-out", mode: "signin" }, focus: "browser-signin" };
        if (err.kind === "cancelled") {
          this.set({ ...after, banner: null });
        } else if (err.kind === "timeout" || (err.status === 404 && err.code === "handoff_not_found")) {
          this.set({ ...after, banner: HANDOFF_GONE });
        } else {
          this.set({ ...after, banner: { text: explain(err), tone: "error" } });
        }
      });
  }

  reopenHandoff(): void {
    if (this.model.screen.kind === "handoff") this.toMain({ type: "open-url", url: this.model.screen.handoff.url });
  }

  cancelHandoff(): void {
    this.client.cancelWait();
  }

  // Forgot password: a reset link by email when the server sends mail, else whom to write to.

  forgotPassword(): void {
    if (!this.model.busy) void this.doForgotPassword();
  }

  private async doForgotPassword(): Promise<void> {
    this.set({ busy: true, banner: null });
    try {
      this.options ??= await this.client.authOptions();
      this.set({ busy: false, screen: { kind: "forgot", options: this.options, sent: false }, focus: this.options.password_reset === "email" ? "reset-email" : "forgot-title" });
    } catch (e) {
      this.set({ busy: false, banner: { text: explain(asMascotError(e)), tone: "error" }, focus: "forgot" });
    }
  }

  requestReset(email: string): void {
    if (!this.model.busy) void this.doRequestReset(email);
  }

  private async doRequestReset(email: string): Promise<void> {
    const screen = this.model.screen;
    if (screen.kind !== "forgot") return;
    this.set({ email, busy: true, banner: null });
    try {
      await this.client.requestPasswordReset(email);
      this.set({ busy: false, screen: { ...screen, sent: true }, focus: "forgot-title" });
    } catch (e) {
      this.set({ busy: false, banner: { text: explain(asMascotError(e)), tone: "error" }, focus: "reset-email" });
    }
  }

  // Change password (from the account screen, or required after a one-time password).

  showChangePassword(): void {
    this.set({ screen: { kind: "change-password", required: false }, banner: null, knowsCurrentPassword: false, focus: "current-password" });
  }

  closeChangePassword(): void {
    this.set({ screen: { kind: "account" }, banner: null, focus: "change-password" });
  }

  changePassword(current: string, next: string, repeat: string): void {
    if (!this.model.busy) void this.doChangePassword(current, next, repeat);
  }

  private async doChangePassword(current: string, next: string, repeat: string): Promise<void> {
    const required = this.model.screen.kind === "change-password" && this.model.screen.required;
    const currentPassword = this.model.knowsCurrentPassword && this.oneTimePassword !== null ? this.oneTimePassword : current;
    const formError = (text: string, focus: string): void => this.set({ busy: false, banner: { text, tone: "error" }, focus });
    if (!currentPassword) return formError(required ? "Type the one-time password you signed in with." : "Type your current password.", "current-password");
    if (next.length < 8) return formError("The new password needs at least 8 characters.", "new-password");
    if (next !== repeat) return formError("The two new passwords are not the same.", "repeat-password");
    this.set({ busy: true, banner: null });
    try {
      await this.client.changePassword(currentPassword, next);
      this.oneTimePassword = null;
      const done: Banner = { text: "Your password is changed. Every other device was signed out.", tone: "success" };
      this.set({ busy: false, knowsCurrentPassword: false, announce: done.text });
      if (required) {
        await this.loadAccount();
        if (this.model.screen.kind === "account") this.set({ banner: done });
      } else {
        this.set({ screen: { kind: "account" }, banner: done, focus: "change-password" });
      }
    } catch (e) {
      const err = asMascotError(e);
      if (err.status === 401 && err.code === "invalid_credentials") {
        // A wrong current password is the form's error, not an expired session.
        this.oneTimePassword = null;
        this.set({ knowsCurrentPassword: false });
        formError(err.message, "current-password");
      } else if (err.kind === "http" && err.status === 422) {
        formError(err.message, "new-password");
      } else {
        this.fail(err);
      }
    }
  }

  signOutEverywhere(): void {
    if (!this.model.busy) void this.doSignOutEverywhere();
  }

  private async doSignOutEverywhere(): Promise<void> {
    this.set({ busy: true, banner: null });
    try {
      await this.client.logoutAll();
      this.signedOut({ text: "You are signed out on every device.", tone: "info" });
    } catch (e) {
      this.fail(e, () => this.signOutEverywhere());
    }
  }

  // The Create tab: a paid feature of another service. The plugin asks the Mascot server for a
  // short-lived mcu_ token and sends only that to the service, which verifies it, holds the
  // credits, draws the mascot and captures them; then balance and history are refreshed.

  showTab(tab: Tab): void {
    if (tab === "create" && !this.model.canCreate) return;
    this.set({ tab, banner: null, focus: `tab-${tab}` });
  }

  create(name: string): void {
    if (!this.model.create.busy) void this.doCreate(name.trim());
  }

  private async doCreate(name: string): Promise<void> {
    if (!this.serviceBase) return;
    const create = { ...this.model.create, name };
    if (!name || [...name].length > MAX_NAME) {
      this.set({ create, banner: { text: `Give your mascot a name of 1 to ${MAX_NAME} characters.`, tone: "error" }, focus: "mascot-name" });
      return;
    }
    // The last mascot goes: what shows next is this name's, or why there is none.
    this.set({ create: { ...create, busy: true, result: null }, banner: null });
    try {
      // The wallet the switcher shows pays: the personal one, or a team's within the member's cap.
      const team = this.chosenTeam();
      const { token } = await this.client.serviceToken();
      const made = await generate(this.serviceBase, token, name, newKey(), team?.team_id ?? null);
      const b = this.model.balance;
      const personal = !team && made.balance !== null ? made.balance : null;
      const text = team ? `Created for ${credits(made.charged)} from ${team.name}.` : `Created for ${credits(made.charged)}.${personal === null ? "" : ` Your balance is now ${credits(personal)}.`}`;
      this.set({
        create: { name, busy: false, result: { name, ...made } },
        balance: b && personal !== null ? { ...b, balance: personal, available: personal - b.held } : b,
        banner: { text, tone: "success" },
        announce: text,
        focus: "mascot-result",
      });
      // The Account tab shows the new balance and the spend under its feature.
      await this.doRefresh();
    } catch (e) {
      const after = { create: { ...create, busy: false, result: null }, focus: "mascot-name" };
      if (isServiceError(e)) {
        // The service's messages are written for people (402 carries the Mascot server's own);
        // past a member's cap on the team, when it resets too.
        this.set({ ...after, banner: { text: e.code === "member_cap_reached" ? explain(e) : e.message, tone: "error" } });
      } else {
        this.fail(e, undefined, after);
      }
    }
  }
  // Promotion codes: "Have a code?" opens a one-field form; the credits show in the balance and
  // the history at once, and what they are worth and until when is said in words.

  toggleRedeem(): void {
    const open = !this.model.redeem.open;
    this.set({ redeem: { open, code: "", busy: false, error: null }, focus: open ? "redeem-code" : "redeem-toggle" });
  }

  redeem(code: string): void {
    if (!this.model.redeem.busy) void this.doRedeem(code.trim());
  }

  private async doRedeem(code: string): Promise<void> {
    if (!code) {
      this.set({ redeem: { open: true, code, busy: false, error: "Type the code you were given." }, focus: "redeem-code" });
      return;
    }
    this.set({ redeem: { open: true, code, busy: true, error: null }, banner: null });
    try {
      const r = await this.client.redeem(code);
      const text = `${credits(r.credits)} added${expiresOn(r.expires_at)}. Your balance is now ${credits(r.balance)}.`;
      this.set({ redeem: { open: false, code: "", busy: false, error: null }, banner: { text, tone: "success" }, announce: text, focus: "redeem-toggle" });
      await this.doRefresh();
    } catch (e) {
      const err = asMascotError(e);
      if (err.kind === "http" && err.status >= 400 && err.status < 500 && !isSessionExpired(err) && !isPasswordChangeRequired(err)) {
        // The server's words (unknown code, already redeemed, too many tries) belong to the field.
        this.set({ redeem: { open: true, code, busy: false, error: err.message }, focus: "redeem-code" });
      } else {
        this.fail(err, undefined, { redeem: { open: true, code, busy: false, error: null } });
      }
    }
  }

  sendVerification(): void {
    if (!this.model.busy) void this.doSendVerification();
  }

  private async doSendVerification(): Promise<void> {
    this.set({ busy: true, banner: null });
    try {
      await this.client.sendVerification();
      const text = `We sent a link to ${this.model.me?.email ?? "your email"}. Open it within 24 hours.`;
      this.set({ busy: false, verifySent: true, banner: { text, tone: "info" }, announce: text, focus: "verify-note" });
    } catch (e) {
      this.fail(e, undefined, { busy: false });
    }
  }
  // Usage: the last 30 days by feature and the runway, read when the view opens; the export is a
  // single-use address that the browser downloads (the bearer token never goes into a URL).

  showUsage(): void {
    void this.doShowUsage();
  }

  private async doShowUsage(): Promise<void> {
    this.set({ screen: { kind: "usage" }, usage: null, banner: null, focus: "usage-title" });
    try {
      const wallet = this.model.wallet;
      const usage = wallet ? await this.client.team("usage", wallet, null, null, 30) : await this.client.usage(30);
      if (this.model.screen.kind === "usage") this.set({ usage });
    } catch (e) {
      this.fail(e, () => this.showUsage());
    }
  }

  closeUsage(): void {
    this.set({ screen: { kind: "account" }, banner: null, focus: "show-usage" });
    void this.doRefresh();
  }

  exportCsv(): void {
    if (!this.model.busy) void this.doExportCsv();
  }

  private async doExportCsv(): Promise<void> {
    this.set({ busy: true, banner: null });
    try {
      const { url } = await this.client.exportCsv();
      this.toMain({ type: "open-url", url });
      const text = "Your history is downloading in your browser (the link works once, for 5 minutes).";
      this.set({ busy: false, banner: { text, tone: "info" }, announce: text });
    } catch (e) {
      this.fail(e, () => this.exportCsv());
    }
  }
  // While the Account tab is open, one long-poll keeps the wallet shown current (another device's
  // or a teammate's spend, a purchase, a refund, an expiry, an operator's grant) and says so when
  // the low-balance alert turns on. Choosing another wallet starts a new one, and the client
  // aborts the old one's request (left to run out, each would hold one of the browser's six
  // connections to the server for up to 25 s).

  private async watchBalance(): Promise<void> {
    const generation = ++this.watching;
    const wallet = this.model.wallet;
    let failures = 0;
    while (generation === this.watching && this.client.token()) {
      const shown = wallet ? this.model.teamBalance : this.model.balance;
      const version = shown?.version ?? "";
      try {
        const balance = wallet ? await this.client.team("wait", wallet, version, null, 25) : await this.client.balanceAfter(version, 25);
        if (generation !== this.watching || this.model.wallet !== wallet) return;
        failures = 0;
        // Unchanged after the wait: no render. Each render rebuilds the panel, and one every 25 s
        // would drop what is being typed in a field the model does not hold (the Team screen's
        // forms) and a click that lands mid-render.
        if (balance.version === version) continue;
        const wasLow = shown?.low ?? false;
        const patch: Partial<Model> = wallet ? { teamBalance: balance } : { balance };
        if (balance.low && !wasLow && balance.low_balance !== null) {
          const whose = wallet ? `${this.teamName(wallet)}’s available credits` : "Your available credits";
          const text = `${whose} fell below ${credits(balance.low_balance)}. Buy more to keep creating.`;
          patch.banner = { text, tone: "info" };
          patch.announce = text;
        }
        this.set(patch);
      } catch (e) {
        const err = asMascotError(e);
        if (generation !== this.watching || isSessionExpired(err) || isPasswordChangeRequired(err)) return;
        // Out of the team (404): the next refresh says so and shows the personal wallet.
        if (wallet && err.kind === "http" && err.status === 404) return;
        // Cancelled with a checkout wait, offline, or a server restart: try again, slower each time.
        if (err.kind !== "cancelled") failures++;
        await new Promise((r) => setTimeout(r, Math.min(30_000, 1000 * 2 ** Math.min(failures, 5))));
      }
    }
  }

  saveAlert(threshold: string): void {
    const n = Number(threshold.trim());
    if (!threshold.trim() || !Number.isInteger(n) || n < 1 || n > 1_000_000) {
      this.set({ alertError: "Type a whole number of credits from 1 to 1,000,000.", focus: "alert-threshold" });
      return;
    }
    void this.doSetAlert(n);
  }

  clearAlert(): void {
    void this.doSetAlert(null);
  }

  private async doSetAlert(lowBalance: number | null): Promise<void> {
    if (this.model.busy) return;
    this.set({ busy: true, alertError: null, banner: null });
    try {
      const wallet = this.model.wallet;
      if (wallet) await this.client.team("set-alerts", wallet, null, null, lowBalance);
      else await this.client.setAlerts(lowBalance);
      const balance = wallet ? await this.client.team("balance", wallet) : await this.client.balance();
      const who = wallet ? `${this.teamName(wallet)} has` : "you have";
      const text = lowBalance === null ? "Low-balance alert turned off." : `We will tell you when ${who} fewer than ${credits(lowBalance)} available.`;
      const patch: Partial<Model> = wallet ? { teamBalance: balance } : { balance };
      this.set({ busy: false, ...patch, banner: { text, tone: "success" }, announce: text, focus: lowBalance === null ? "alert-threshold" : "alert-save" });
    } catch (e) {
      const err = asMascotError(e);
      if (err.kind === "http" && err.status === 422) this.set({ busy: false, alertError: err.message, focus: "alert-threshold" });
      else this.fail(err, undefined, { busy: false });
    }
  }
  /** A purchase's Stripe receipt or invoice, in the browser (figma.openExternal). */
  openReceipt(url: string): void {
    if (/^https?:\/\//.test(url)) this.toMain({ type: "open-url", url });
  }

  // Team wallets. The switcher chooses the wallet the Account tab shows (balance or what is left
  // of the member's cap, history, buying); the Team screen manages the chosen team: members,
  // caps, roles and invitations, and creates or joins teams. Team names are the users' own text:
  // the view only ever puts them in text nodes.

  draft(key: string, value: string): void {
    // No render: the field already shows it; the next render puts it back.
    this.model = { ...this.model, drafts: { ...this.model.drafts, [key]: value } };
  }

  /** The drafts left once the fields `done` says were sent have done their job. */
  private withoutDrafts(done: (key: string) => boolean): Record<string, string> {
    return Object.fromEntries(Object.entries(this.model.drafts).filter(([k]) => !done(k)));
  }

  /** The chosen team, when the wallet is one. */
  private chosenTeam(): TeamSummary | null {
    return this.model.teams.find((t) => t.team_id === this.model.wallet) ?? null;
  }

  private teamName(teamId: string | null): string {
    return this.model.teams.find((t) => t.team_id === teamId)?.name ?? "the team";
  }

  selectWallet(teamId: string | null): void {
    void this.doSelectWallet(teamId, "wallet");
  }

  /** Shows `teamId`'s wallet (or the personal one): its balance and history. */
  private async doSelectWallet(teamId: string | null, focus: string | null): Promise<void> {
    const wallet = teamId && this.model.teams.some((t) => t.team_id === teamId) ? teamId : null;
    const name = wallet ? this.teamName(wallet) : "your personal wallet";
    this.set({ wallet, teamBalance: null, history: [], cursor: null, banner: null, busy: true, usage: null, team: emptyTeam(), drafts: this.withoutDrafts((k) => k !== "mascot-name"), focus });
    try {
      const [teamBalance, page] = await Promise.all([wallet ? this.client.team("balance", wallet) : null, this.history(wallet, null)]);
      if (this.model.wallet !== wallet) return;
      this.set({ teamBalance, history: page.entries, cursor: page.next_cursor, busy: false, announce: `Showing ${name}.`, focus });
      void this.watchBalance();
    } catch (e) {
      this.fail(e, () => this.selectWallet(wallet));
    }
  }

  showTeam(): void {
    void this.doShowTeam("team-title");
  }

  /** The Team screen; the chosen team's members and, for owners and admins, its invitations. */
  private async doShowTeam(focus: string | null, keep: Partial<TeamModel> = {}): Promise<void> {
    const team = this.chosenTeam();
    this.set({ screen: { kind: "team" }, banner: null, team: { ...emptyTeam(), ...keep }, focus });
    if (!team) return;
    try {
      const [members, invitations] = await Promise.all([this.client.team("members", team.team_id), team.sees_all ? this.client.team("invitations", team.team_id) : null]);
      if (this.model.screen.kind !== "team" || this.model.wallet !== team.team_id) return;
      this.set({ team: { ...this.model.team, members: members.members, invitations: invitations?.invitations ?? null }, focus: null });
    } catch (e) {
      this.fail(e, () => this.showTeam());
    }
  }

  closeTeam(): void {
    this.set({ screen: { kind: "account" }, banner: null, team: emptyTeam(), focus: "show-team" });
    void this.doRefresh();
  }

  /** A form of the Team screen failed: the server's words for a refusal go under that form
   * (focus on its field); an expired session or an outage go the usual way. */
  private teamFail(e: unknown, form: TeamForm, focus: string): void {
    const err = asMascotError(e);
    if (err.kind === "http" && err.status >= 400 && err.status < 500 && !isSessionExpired(err) && !isPasswordChangeRequired(err)) {
      this.set({ busy: false, team: { ...this.model.team, errors: { [form]: explain(err) } }, focus });
    } else {
      this.fail(err);
    }
  }

  createTeam(name: string): void {
    if (!this.model.busy) void this.doCreateTeam(name.trim());
  }

  private async doCreateTeam(name: string): Promise<void> {
    if (!name) {
      this.set({ team: { ...this.model.team, errors: { create: "Give the team a name." } }, focus: "team-name" });
      return;
    }
    this.set({ busy: true, banner: null, team: { ...this.model.team, errors: {} } });
    try {
      const made = await this.client.team("create", name);
      const teams = await this.client.team("list");
      this.set({ busy: false, teams: teams.teams, drafts: this.withoutDrafts((k) => k === "team-name") });
      await this.doSelectWallet(made.team_id, null);
      const text = `${made.name} is created, and you are its owner. Invite your team below.`;
      await this.doShowTeam("team-title");
      this.set({ banner: { text, tone: "success" }, announce: text, focus: "team-title" });
    } catch (e) {
      this.teamFail(e, "create", "team-name");
    }
  }

  acceptInvitation(token: string): void {
    if (!this.model.busy) void this.doAcceptInvitation(token.trim());
  }

  private async doAcceptInvitation(token: string): Promise<void> {
    if (!token) {
      this.set({ team: { ...this.model.team, errors: { join: "Paste the invitation code from the mail (it starts with mci_)." } }, focus: "join-code" });
      return;
    }
    this.set({ busy: true, banner: null, team: { ...this.model.team, errors: {} } });
    try {
      const joined = await this.client.team("accept", token);
      const teams = await this.client.team("list");
      this.set({ busy: false, teams: teams.teams, drafts: this.withoutDrafts((k) => k === "join-code") });
      await this.doSelectWallet(joined.team_id, null);
      const text = `You joined ${joined.name} as ${roleName(joined.role).toLowerCase()}.`;
      this.set({ screen: { kind: "account" }, banner: { text, tone: "success" }, announce: text, focus: "wallet" });
    } catch (e) {
      this.teamFail(e, "join", "join-code");
    }
  }

  invite(email: string, role: TeamRole, capCredits: string, capPeriod: CapPeriod): void {
    if (!this.model.busy) void this.doInvite(email.trim(), role, capCredits.trim(), capPeriod);
  }

  private async doInvite(email: string, role: TeamRole, capCredits: string, capPeriod: CapPeriod): Promise<void> {
    const team = this.chosenTeam();
    if (!team) return;
    const formError = (text: string, focus: string): void => this.set({ team: { ...this.model.team, errors: { invite: text } }, focus });
    if (!email) return formError("Type the email address to invite.", "invite-email");
    const cap = capCredits === "" ? null : Number(capCredits);
    if (cap !== null && (!Number.isInteger(cap) || cap < 1)) return formError("A cap is a whole number of credits, at least 1 (or leave it empty for none).", "invite-cap");
    this.set({ busy: true, banner: null, team: { ...this.model.team, errors: {} } });
    try {
      const made = await this.client.team("invite", team.team_id, email, role, cap, cap === null ? null : capPeriod);
      this.set({ drafts: this.withoutDrafts((k) => k.startsWith("invite-")) });
      const text = `Invitation sent to ${email}. It works for 7 days.`;
      await this.doShowTeam(null, { invited: { email, token: made.token } });
      this.set({ busy: false, banner: { text, tone: "success" }, announce: text, focus: "invite-code" });
    } catch (e) {
      this.teamFail(e, "invite", "invite-email");
    }
  }

  revokeInvitation(invitationId: string): void {
    void this.teamChange(async (teamId) => {
      await this.client.team("revoke", teamId, invitationId);
      return "Invitation revoked.";
    }, "invite-email");
  }

  setRole(userId: string, role: TeamRole): void {
    void this.teamChange(async (teamId) => {
      const m = await this.client.team("role", teamId, userId, role);
      return role === "owner" ? `${m.user.email} is now the owner; you are an admin.` : `${m.user.email} is now ${role === "admin" ? "an admin" : "a member"}.`;
    }, "members-title");
  }

  setCap(userId: string, creditsText: string, period: CapPeriod): void {
    const n = Number(creditsText.trim());
    if (!creditsText.trim() || !Number.isInteger(n) || n < 1) {
      this.set({ team: { ...this.model.team, errors: { members: "A cap is a whole number of credits, at least 1." } }, focus: "members-title" });
      return;
    }
    void this.teamChange(async (teamId) => {
      const m = await this.client.team("cap", teamId, userId, period, n);
      return `${m.user.email} may now spend ${capText(n, period)}.`;
    }, "members-title");
  }

  removeCap(userId: string): void {
    void this.teamChange(async (teamId) => {
      const m = await this.client.team("cap", teamId, userId, null, null);
      return `${m.user.email} has no cap now.`;
    }, "members-title");
  }

  removeMember(userId: string): void {
    const email = this.model.team.members?.find((m) => m.user.id === userId)?.user.email ?? "The member";
    void this.teamChange(async (teamId) => {
      await this.client.team("remove", teamId, userId);
      return `${email} was removed from the team.`;
    }, "members-title");
  }

  /** One change on the Team screen: run it, reload the teams (a hand-over changes the caller's
   * own role) and the screen, then say what happened. Refusals go under the members' list. */
  private async teamChange(change: (teamId: string) => Promise<string>, focus: string): Promise<void> {
    const team = this.chosenTeam();
    if (!team || this.model.busy) return;
    this.set({ busy: true, banner: null, team: { ...this.model.team, errors: {} } });
    try {
      const text = await change(team.team_id);
      const teams = await this.client.team("list");
      // The members' list is reloaded: their caps show as the server has them now.
      this.set({ busy: false, teams: teams.teams, drafts: this.withoutDrafts((k) => k.startsWith("cap:") || k.startsWith("period:")) });
      await this.doShowTeam(null);
      this.set({ banner: { text, tone: "success" }, announce: text, focus });
    } catch (e) {
      this.teamFail(e, "members", focus);
    }
  }

  leaveTeam(): void {
    void this.doLeaveOrDelete(false);
  }

  deleteTeam(confirmed: boolean): void {
    if (!confirmed) {
      this.set({ team: { ...this.model.team, confirmDelete: true, errors: {} }, focus: "delete-team-confirm" });
      return;
    }
    void this.doLeaveOrDelete(true);
  }

  /** Leaving (a member or admin) or deleting (the owner) ends with the personal wallet shown. */
  private async doLeaveOrDelete(remove: boolean): Promise<void> {
    const team = this.chosenTeam();
    const me = this.model.me;
    if (!team || !me || this.model.busy) return;
    this.set({ busy: true, banner: null, team: { ...this.model.team, errors: {}, confirmDelete: false } });
    try {
      if (remove) await this.client.team("delete", team.team_id);
      else await this.client.team("remove", team.team_id, me.id);
      const teams = await this.client.team("list");
      this.set({ busy: false, teams: teams.teams });
      await this.doSelectWallet(null, null);
      const text = remove ? `${team.name} is deleted.` : `You left ${team.name}.`;
      this.set({ screen: { kind: "account" }, team: emptyTeam(), banner: { text, tone: "success" }, announce: text, focus: "wallet" });
    } catch (e) {
      this.teamFail(e, "members", remove ? "delete-team" : "leave-team");
    }
  }
}
