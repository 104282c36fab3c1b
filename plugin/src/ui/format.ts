// Display helpers.
import type { CapPeriod, CapStatus, HistoryEntry, Pack, PurchaseAmounts } from "../generated";

export function money(cents: number, currency: string): string {
  return new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase() }).format(cents / 100);
}

export function credits(n: number): string {
  return `${n.toLocaleString("en-US")} ${Math.abs(n) === 1 ? "credit" : "credits"}`;
}

export function delta(entry: HistoryEntry): string {
  return `${entry.delta > 0 ? "+" : entry.delta < 0 ? "−" : ""}${Math.abs(entry.delta).toLocaleString("en-US")}`;
}

export function when(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString("en-US", { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
}

/** The pack's price for one credit, e.g. "$0.17 per credit". */
export function perCredit(pack: Pack): string {
  return `${money(pack.price_cents / pack.credits, pack.currency)} per credit`;
}

/** The id of the pack that is cheapest per credit, compared exactly (price × credits, no
 * rounding), or null when none is strictly cheaper than all the others (nothing to point at). */
export function bestValue(packs: Pack[]): string | null {
  let best: Pack | null = null;
  let tie = false;
  for (const p of packs) {
    if (p.credits <= 0) continue;
    if (!best || p.price_cents * best.credits < best.price_cents * p.credits) {
      best = p;
      tie = false;
    } else if (p.price_cents * best.credits === best.price_cents * p.credits) {
      tie = true;
    }
  }
  return best && !tie && packs.length > 1 ? best.id : null;
}

/** A handoff's user code as the browser page shows it: "ABCD-EFGH". */
export function userCode(code: string): string {
  return code.length === 8 ? `${code.slice(0, 4)}-${code.slice(4)}` : code;
}

/** What a purchase cost when it differs from the list price (a code, tax), e.g.
 * "Paid $12.36 · $2.60 off · $1.97 tax"; null when there is nothing to add. */
export function paidSummary(p: PurchaseAmounts | null): string | null {
  if (!p || (p.amount_discount_cents === 0 && p.amount_tax_cents === 0)) return null;
  if (p.amount_paid_cents === 0) return "Free with a promotion code";
  const parts = [`Paid ${money(p.amount_paid_cents, p.currency)}`];
  if (p.amount_discount_cents > 0) parts.push(`${money(p.amount_discount_cents, p.currency)} off`);
  if (p.amount_tax_cents > 0) {
    const tax = money(p.amount_tax_cents, p.currency);
    parts.push(p.tax_behavior === "inclusive" ? `incl. ${tax} tax` : `${tax} tax`);
  }
  return parts.join(" · ");
}

/** A date without the time, e.g. "Dec 11, 2026". */
export function day(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleDateString("en-US", { month: "short", day: "numeric", year: "numeric" });
}

/** " (valid until Dec 11, 2026)" for a code's credits; empty when the date is unreadable. */
export function expiresOn(iso: string | null | undefined): string {
  return iso && !Number.isNaN(new Date(iso).getTime()) ? ` (valid until ${day(iso)})` : "";
}

/** The lots that expire within `days` days of `now`, soonest first (as the server lists them). */
export function expiringSoon<T extends { expires_at: string }>(lots: T[] | undefined, now: number, days = 7): T[] {
  const end = now + days * 24 * 3600 * 1000;
  return (lots ?? []).filter((l) => {
    const t = new Date(l.expires_at).getTime();
    return !Number.isNaN(t) && t <= end;
  });
}

/** A cap in words: "10 credits a week". */
export function capText(n: number, period: CapPeriod): string {
  return `${credits(n)} a ${period}`;
}

/** The period a cap runs in, as said after "left": "today", "this week", "this month". */
export function periodNow(period: CapPeriod): string {
  return period === "day" ? "today" : `this ${period}`;
}

/** What is left of a member's cap: "3 of 10 credits left this week". */
export function capLeft(cap: CapStatus): string {
  const left = Math.max(0, cap.credits - cap.used);
  return `${left.toLocaleString("en-US")} of ${credits(cap.credits)} left ${periodNow(cap.period)}`;
}
