// Display helpers.
import type { HistoryEntry, Pack } from "../generated";

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

export function packLabel(pack: Pack): string {
  return `${credits(pack.credits)} · ${money(pack.price_cents, pack.currency)}`;
}
