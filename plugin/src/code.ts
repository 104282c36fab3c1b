// Main thread: opens the Account UI, keeps the session token in figma.clientStorage (the UI
// iframe has no localStorage), opens Stripe Checkout in the system browser, shows toasts.
import type { ToMain, ToUi } from "./protocol";

declare const __API_BASE__: string;

const TOKEN_KEY = "mascot.session-token";

figma.showUI(__html__, { width: 360, height: 600, themeColors: true, title: "Mascot" });

function post(message: ToUi): void {
  figma.ui.postMessage(message);
}

/** Only https pages (Stripe Checkout), or a local server while developing, are opened. */
function safeUrl(url: string): boolean {
  return /^https:\/\/[^\s]+$/.test(url) || /^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?\/[^\s]*$/.test(url);
}

figma.ui.onmessage = async (message: ToMain) => {
  switch (message.type) {
    case "ready": {
      const stored: unknown = await figma.clientStorage.getAsync(TOKEN_KEY);
      post({ type: "init", token: typeof stored === "string" ? stored : null, apiBase: __API_BASE__ });
      break;
    }
    case "save-token":
      if (message.token) {
        await figma.clientStorage.setAsync(TOKEN_KEY, message.token);
      } else {
        await figma.clientStorage.deleteAsync(TOKEN_KEY);
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
