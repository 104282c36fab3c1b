// UI entry point: instantiate the Wasm client from the inlined bytes, ask the main thread for the
// stored session, then run the Account tab.
import init, { MascotClient } from "../../pkg/plugin_client.js";
import wasmBytes from "../../pkg/plugin_client_bg.wasm";
import type { ToMain, ToUi } from "../protocol";
import { AccountState } from "./state";
import { render, skeleton } from "./view";

function toMain(message: ToMain): void {
  parent.postMessage({ pluginMessage: message }, "*");
}

async function start(): Promise<void> {
  await init({ module_or_path: wasmBytes });
  const app = document.getElementById("app");
  if (!app) return;
  const { screen, live, tabs } = skeleton(app);
  window.addEventListener("message", (event: MessageEvent) => {
    const message = (event.data as { pluginMessage?: ToUi } | null)?.pluginMessage;
    if (message?.type === "init") {
      const client = new MascotClient(message.apiBase, message.token);
      new AccountState(client, toMain, (model, actions) => render(screen, live, model, actions, tabs), message.deviceTokens ?? {}, message.handoff ?? null, message.serviceBase ?? null).start();
    }
  });
  toMain({ type: "ready" });
}

void start();
