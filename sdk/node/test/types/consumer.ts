// A TypeScript service using the SDK as a package (its emitted .d.ts, Node's own ESM resolution):
// `scripts/test-sdk` type-checks this after `npm run build:types`. It is never run.
import { MascotApiError, MeterError, ServiceClient, type Metered } from "@mascot/service-client";

const mascot = new ServiceClient({ apiBase: "https://mascot.example.com", serviceKey: "mck_…" });

export async function generate(token: string, name: string): Promise<{ svg: string; charged: number } | string> {
  const who = await mascot.verify(token);
  if (!who.active || !who.user) return "sign in again";
  const balance: number = (await mascot.balance(who.user.id)).available;
  try {
    const done: Metered<string> = await mascot.withHold(
      { userId: who.user.id, amount: 5, reason: `Generated ${name}`, feature: "generate" },
      async (hold) => `<svg data-hold="${hold.hold_id}" data-balance="${balance}"/>`,
    );
    return { svg: done.value, charged: done.charged };
  } catch (e) {
    if (e instanceof MeterError && e.stage === "hold" && e.cause instanceof MascotApiError) return e.cause.message;
    throw e;
  }
}

// @ts-expect-error: a hold needs an amount
void mascot.hold("user", { reason: "no amount" }, "key");
// @ts-expect-error: the answer's fields are typed
void mascot.balance("user").then((b) => b.credits);
