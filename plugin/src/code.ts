// Main thread: opens the Account UI, keeps the session token, the device tokens and a browser
// sign-in in progress in figma.clientStorage (the UI iframe has no localStorage), opens Stripe
// Checkout and the sign-in page in the system browser, shows toasts.
import type { PendingHandoff, ToMain, ToUi } from "./protocol";

declare const __API_BASE__: string;
declare const __SERVICE_BASE__: string;

const TOKEN_KEY = "mascot.session-token";
const DEVICE_KEY = "mascot.device-tokens";
const HANDOFF_KEY = "mascot.handoff";
/** Device tokens kept (one per account signed in on this device), oldest dropped first. */
const MAX_DEVICE_TOKENS = 10;

figma.showUI(__html__, { width: 360, height: 600, themeColors: true, title: "Mascot" });

function post(message: ToUi): void {
  figma.ui.postMessage(message);
}

/** Only https pages (Stripe Checkout, the sign-in page), or a local server while developing, are opened. */
function safeUrl(url: string): boolean {
  return /^https:\/\/[^\s]+$/.test(url) || /^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?\/[^\s]*$/.test(url);
}

async function deviceTokens(): Promise<Record<string, string>> {
  const stored: unknown = await figma.clientStorage.getAsync(DEVICE_KEY);
  const tokens: Record<string, string> = {};
  if (stored && typeof stored === "object") {
    for (const [email, token] of Object.entries(stored as Record<string, unknown>)) {
      if (typeof token === "string") tokens[email] = token;
    }
  }
  return tokens;
}

/** The stored browser sign-in, unless it is malformed or expired (then it is removed). */
async function pendingHandoff(): Promise<PendingHandoff | null> {
  const stored: unknown = await figma.clientStorage.getAsync(HANDOFF_KEY);
  const h = stored as Partial<PendingHandoff> | undefined;
  const fields = ["handoff_id", "read_key", "user_code", "url", "expires_at"] as const;
  if (h && typeof h === "object" && fields.every((f) => typeof h[f] === "string") && Date.parse(h.expires_at as string) > Date.now()) {
    return h as PendingHandoff;
  }
  if (stored !== undefined) await figma.clientStorage.deleteAsync(HANDOFF_KEY);
  return null;
}

figma.ui.onmessage = async (message: ToMain) => {
  switch (message.type) {
    case "ready": {
      const stored: unknown = await figma.clientStorage.getAsync(TOKEN_KEY);
      const token = typeof stored === "string" ? stored : null;
      // Signed in already: a browser sign-in left behind is of no use any more.
      if (token) await figma.clientStorage.deleteAsync(HANDOFF_KEY);
      post({ type: "init", token, apiBase: __API_BASE__, serviceBase: __SERVICE_BASE__ || null, deviceTokens: await deviceTokens(), handoff: token ? null : await pendingHandoff() });
      break;
    }
    case "save-token":
      if (message.token) {
        await figma.clientStorage.setAsync(TOKEN_KEY, message.token);
      } else {
        await figma.clientStorage.deleteAsync(TOKEN_KEY);
      }
      break;
    case "save-device-token": {
      const email = message.email.toLowerCase();
      const tokens = await deviceTokens();
      delete tokens[email];
      tokens[email] = message.deviceToken;
      const emails = Object.keys(tokens);
      for (const old of emails.slice(0, Math.max(0, emails.length - MAX_DEVICE_TOKENS))) delete tokens[old];
      await figma.clientStorage.setAsync(DEVICE_KEY, tokens);
      break;
    }
    case "save-handoff":
      if (message.handoff) {
        await figma.clientStorage.setAsync(HANDOFF_KEY, message.handoff);
      } else {
        await figma.clientStorage.deleteAsync(HANDOFF_KEY);
      }
      break;
    case "open-url":
      if (safeUrl(message.url)) {
        figma.openExternal(message.url);
      }
      break;
    case "notify":
      figma.notify(message.text, { error: message.error ?? false, timeout: 4000 });
      break;
  }
};
