-- Selling with Stripe Tax, tax IDs, invoices and promotion codes (issue 16). What the buyer paid,
-- the discount and the tax are recorded with the purchase when it is credited, and the Checkout
-- settings a session was created with are recorded when it is created, since whether its amounts
-- are consistent with the pack depends on them (exclusive tax is added on top of the price,
-- inclusive tax is inside it). All nullable: sessions created before this migration had every
-- setting off and keep NULL (read as off); the amounts stay NULL until a session is credited.
-- Booleans are BIGINT 0/1, as `livemode` is. Columns added; nothing is rebuilt.
ALTER TABLE checkout_sessions ADD COLUMN amount_subtotal_cents BIGINT;
ALTER TABLE checkout_sessions ADD COLUMN amount_paid_cents BIGINT;
ALTER TABLE checkout_sessions ADD COLUMN amount_discount_cents BIGINT;
ALTER TABLE checkout_sessions ADD COLUMN amount_tax_cents BIGINT;
ALTER TABLE checkout_sessions ADD COLUMN tax_behavior TEXT CHECK (tax_behavior IS NULL OR tax_behavior IN ('exclusive', 'inclusive'));
ALTER TABLE checkout_sessions ADD COLUMN automatic_tax BIGINT CHECK (automatic_tax IS NULL OR automatic_tax IN (0, 1));
ALTER TABLE checkout_sessions ADD COLUMN tax_id_collection BIGINT CHECK (tax_id_collection IS NULL OR tax_id_collection IN (0, 1));
ALTER TABLE checkout_sessions ADD COLUMN invoice_creation BIGINT CHECK (invoice_creation IS NULL OR invoice_creation IN (0, 1));
ALTER TABLE checkout_sessions ADD COLUMN allow_promotion_codes BIGINT CHECK (allow_promotion_codes IS NULL OR allow_promotion_codes IN (0, 1));
