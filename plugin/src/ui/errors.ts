// Turns a MascotClient rejection into words for the person.
import type { MascotError } from "../../pkg/plugin_client";
import { when } from "./format";

export function asMascotError(e: unknown): MascotError {
  if (typeof e === "object" && e !== null && "kind" in e && "message" in e) {
    return e as MascotError;
  }
  return { kind: "network", status: 0, code: "unknown", message: e instanceof Error ? e.message : String(e) };
}

/** The message to show; the server's messages are written for people already. */
export function explain(e: MascotError): string {
  switch (e.kind) {
    case "network":
      return "You seem to be offline, or the Mascot server cannot be reached. Check your connection and try again.";
    case "http":
      if (e.status >= 500) return "The Mascot server had a problem. Please try again in a moment.";
      // A member's cap on a team: the server says how it stands; the plugin adds when it resets.
      if (e.code === "member_cap_reached" && e.resets_at) return `${e.message} Your cap resets on ${when(e.resets_at)}.`;
      return e.message;
    default:
      return e.message;
  }
}

export function isSessionExpired(e: MascotError): boolean {
  return e.kind === "http" && e.status === 401 && e.code === "unauthorized";
}

/** A session signed in with an operator's one-time password, not yet changed. */
export function isPasswordChangeRequired(e: MascotError): boolean {
  return e.kind === "http" && e.status === 403 && e.code === "password_change_required";
}
