-- Receipts (issue 24): the Stripe receipt of a credited purchase (the charge's `receipt_url`) and,
-- when invoices are on, the invoice's hosted page. Stored after the purchase is credited, or by
-- `reconcile` for older ones; null until then (and for $0 purchases, which have no charge).
ALTER TABLE checkout_sessions ADD COLUMN receipt_url TEXT;
ALTER TABLE checkout_sessions ADD COLUMN invoice_url TEXT;
