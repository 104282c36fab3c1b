// Messages between the plugin's main thread (code.ts, with the `figma` API) and its UI iframe.

/** UI → main thread. */
export type ToMain =
  | { type: "ready" }
  | { type: "save-token"; token: string | null }
  | { type: "open-url"; url: string }
  | { type: "notify"; text: string; error?: boolean };

/** Main thread → UI. */
export type ToUi = { type: "init"; token: string | null; apiBase: string };
