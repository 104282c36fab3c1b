// Messages between the plugin's main thread (code.ts, with the `figma` API) and its UI iframe.
import type { HandoffStart } from "./generated";

/** A browser sign-in in progress, kept in figma.clientStorage so that closing and reopening
 * the plugin resumes the wait (the read key is what the poll needs; the rest redraws the screen). */
export type PendingHandoff = Pick<HandoffStart, "handoff_id" | "read_key" | "user_code" | "url" | "expires_at">;

/** UI → main thread. */
export type ToMain =
  | { type: "ready" }
  | { type: "save-token"; token: string | null }
  /** The device token a sign-in as `email` returned: sent with that email's next logins. */
  | { type: "save-device-token"; email: string; deviceToken: string }
  | { type: "save-handoff"; handoff: PendingHandoff | null }
  | { type: "open-url"; url: string }
  | { type: "notify"; text: string; error?: boolean };

/** Main thread → UI. */
export type ToUi = {
  type: "init";
  token: string | null;
  apiBase: string;
  /** The generation service the Create tab calls (its origin is in the manifest), or null. */
  serviceBase: string | null;
  /** Device tokens by (lower-case) email. */
  deviceTokens: Record<string, string>;
  /** A browser sign-in still in progress (not yet expired), or null. */
  handoff: PendingHandoff | null;
};
