// The Create tab's one call to the generation service (examples/generator in the demo): the
// plugin never hands it the session token, only a short-lived mcu_ token from the Mascot server.
// The service verifies it, holds the credits, draws, captures, and answers {svg, charged, balance}.
import type { MascotError } from "../../pkg/plugin_client";

/** What the generation service charges for one mascot (examples/generator's PRICE). */
export const CREATE_PRICE = 5;
export const MAX_NAME = 40;

export interface Created {
  svg: string;
  charged: number;
  /** The personal balance after the charge; null when a team paid (its balance is for its
   * owner and admins). */
  balance: number | null;
}

/** A failure of the service call, shaped as the client's errors; `fromService` tells it apart
 * from a Mascot server error (a 401 here is not the session expiring). */
export type ServiceError = MascotError & { fromService: true };

function serviceError(kind: MascotError["kind"], status: number, code: string, message: string, resetsAt?: string): ServiceError {
  return { kind, status, code, message, ...(resetsAt ? { resets_at: resetsAt } : {}), fromService: true };
}

export function isServiceError(e: unknown): e is ServiceError {
  return typeof e === "object" && e !== null && (e as { fromService?: unknown }).fromService === true;
}

/** A random Idempotency-Key (getRandomValues works in every context, randomUUID only in secure ones). */
export function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Draws a mascot named `name`; `teamId` pays from that team's wallet (the user's cap applies). */
export async function generate(serviceBase: string, token: string, name: string, idempotencyKey: string, teamId: string | null = null): Promise<Created> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(`${serviceBase}/generate`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
      body: JSON.stringify(teamId ? { name, team_id: teamId } : { name }),
    });
    text = await response.text();
  } catch {
    throw serviceError("network", 0, "network", "The mascot generator cannot be reached. Check your connection and try again.");
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (response.ok) {
    const created = body as Partial<Created> | null;
    if (created && typeof created.svg === "string" && typeof created.charged === "number" && (typeof created.balance === "number" || created.balance === null)) {
      return { svg: created.svg, charged: created.charged, balance: created.balance };
    }
    throw serviceError("decode", response.status, "decode", "The mascot generator sent an answer we cannot read.");
  }
  const error = (body as { error?: { code?: unknown; message?: unknown; resets_at?: unknown } } | null)?.error;
  if (error && typeof error.code === "string" && typeof error.message === "string") {
    throw serviceError("http", response.status, error.code, error.message, typeof error.resets_at === "string" ? error.resets_at : undefined);
  }
  throw serviceError("http", response.status, "unknown", "The mascot generator had a problem. Nothing was charged; please try again.");
}

/** An SVG as an image source: drawn by the browser as an image, so nothing in it can run. */
export function svgImage(svg: string): string {
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}
