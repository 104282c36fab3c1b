//! The `checkout_sessions` table: what we asked Stripe to sell, to whom, and where it stands.

use api_types::{CheckoutSettingsUsed, CheckoutStatus, CheckoutSummary, PurchaseAmounts, TaxBehavior};

use std::sync::Arc;

use crate::{
    config::CheckoutSettings,
    db::{now_ms, rfc3339_ms, Db, Uow},
};

#[derive(Debug, Clone)]
pub struct CheckoutRecord {
    pub id: String,
    pub user_id: String,
    pub pack_id: String,
    pub credits: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub status: CheckoutStatus,
    pub checkout_url: String,
    pub livemode: bool,
    pub payment_intent: Option<String>,
    pub refund_clawed: i64,
    pub dispute_clawed: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// The settings the session was created with; `None` for sessions recorded before they were
    /// (which had every setting off).
    pub settings: Option<CheckoutSettingsUsed>,
    /// What Stripe reported when the session was credited.
    pub amounts: Option<RecordedAmounts>,
    /// The charge's receipt and the invoice's hosted page, once fetched (see `billing::receipts`).
    pub receipt_url: Option<String>,
    pub invoice_url: Option<String>,
}

impl CheckoutRecord {
    /// A session just created at Stripe for `pack`, before anyone paid.
    #[allow(clippy::too_many_arguments)]
    pub fn new_pending(
        session_id: &str,
        user_id: &str,
        pack: &api_types::PackDef,
        checkout_url: String,
        livemode: bool,
        created_at: i64,
        expires_at: i64,
        settings: &CheckoutSettings,
    ) -> CheckoutRecord {
        CheckoutRecord {
            id: session_id.to_string(),
            user_id: user_id.to_string(),
            pack_id: pack.id.to_string(),
            credits: pack.credits,
            amount_cents: pack.price_cents,
            currency: pack.currency.to_string(),
            status: CheckoutStatus::Pending,
            checkout_url,
            livemode,
            payment_intent: None,
            refund_clawed: 0,
            dispute_clawed: 0,
            created_at,
            expires_at,
            settings: Some(settings_used(settings)),
            amounts: None,
            receipt_url: None,
            invoice_url: None,
        }
    }
}

/// The amounts a credited session was paid with (cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedAmounts {
    pub subtotal: i64,
    pub paid: i64,
    pub discount: i64,
    pub tax: i64,
}

impl CheckoutRecord {
    /// The settings this session was created with: what was recorded, or all off for a session
    /// recorded before settings were.
    pub fn settings_used(&self) -> CheckoutSettingsUsed {
        self.settings.clone().unwrap_or(CheckoutSettingsUsed {
            automatic_tax: false,
            tax_behavior: None,
            tax_id_collection: false,
            invoice_creation: false,
            allow_promotion_codes: false,
        })
    }

    pub fn purchase_amounts(&self) -> Option<PurchaseAmounts> {
        let a = self.amounts?;
        Some(PurchaseAmounts {
            session_id: self.id.clone(),
            currency: self.currency.clone(),
            amount_subtotal_cents: a.subtotal,
            amount_paid_cents: a.paid,
            amount_discount_cents: a.discount,
            amount_tax_cents: a.tax,
            tax_behavior: self.settings.as_ref().and_then(|s| s.tax_behavior),
            receipt_url: self.receipt_url.clone(),
            invoice_url: self.invoice_url.clone(),
        })
    }
}

/// What a session records of the server's settings when it is created.
pub fn settings_used(c: &CheckoutSettings) -> CheckoutSettingsUsed {
    CheckoutSettingsUsed {
        automatic_tax: c.automatic_tax,
        tax_behavior: c.automatic_tax.then_some(c.tax_behavior),
        tax_id_collection: c.tax_id_collection,
        invoice_creation: c.invoice_creation,
        allow_promotion_codes: c.allow_promotion_codes,
    }
}

const COLUMNS: &str = "id, user_id, pack_id, credits, amount_cents, currency, status, checkout_url, livemode, payment_intent, refund_clawed, dispute_clawed, created_at, expires_at, amount_subtotal_cents, amount_paid_cents, amount_discount_cents, amount_tax_cents, tax_behavior, automatic_tax, tax_id_collection, invoice_creation, allow_promotion_codes, receipt_url, invoice_url";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    user_id: String,
    pack_id: String,
    credits: i64,
    amount_cents: i64,
    currency: String,
    status: String,
    checkout_url: String,
    livemode: i64,
    payment_intent: Option<String>,
    refund_clawed: i64,
    dispute_clawed: i64,
    created_at: i64,
    expires_at: i64,
    amount_subtotal_cents: Option<i64>,
    amount_paid_cents: Option<i64>,
    amount_discount_cents: Option<i64>,
    amount_tax_cents: Option<i64>,
    tax_behavior: Option<String>,
    automatic_tax: Option<i64>,
    tax_id_collection: Option<i64>,
    invoice_creation: Option<i64>,
    allow_promotion_codes: Option<i64>,
    receipt_url: Option<String>,
    invoice_url: Option<String>,
}

impl TryFrom<Row> for CheckoutRecord {
    type Error = sqlx::Error;

    /// An unknown status is an error, never a guess.
    fn try_from(r: Row) -> sqlx::Result<CheckoutRecord> {
        let status = CheckoutStatus::parse(&r.status).ok_or_else(|| {
            sqlx::Error::Decode(format!("checkout session {} has an unknown status {:?}", r.id, r.status).into())
        })?;
        let tax_behavior = match r.tax_behavior.as_deref() {
            None => None,
            Some(t) => Some(TaxBehavior::parse(t).ok_or_else(|| {
                sqlx::Error::Decode(format!("checkout session {} has an unknown tax_behavior {t:?}", r.id).into())
            })?),
        };
        let settings = r.automatic_tax.map(|automatic_tax| CheckoutSettingsUsed {
            automatic_tax: automatic_tax != 0,
            tax_behavior,
            tax_id_collection: r.tax_id_collection.unwrap_or(0) != 0,
            invoice_creation: r.invoice_creation.unwrap_or(0) != 0,
            allow_promotion_codes: r.allow_promotion_codes.unwrap_or(0) != 0,
        });
        let amounts = match (r.amount_subtotal_cents, r.amount_paid_cents, r.amount_discount_cents, r.amount_tax_cents)
        {
            (Some(subtotal), Some(paid), Some(discount), Some(tax)) => {
                Some(RecordedAmounts { subtotal, paid, discount, tax })
            }
            _ => None,
        };
        Ok(CheckoutRecord {
            settings,
            amounts,
            id: r.id,
            user_id: r.user_id,
            pack_id: r.pack_id,
            credits: r.credits,
            amount_cents: r.amount_cents,
            currency: r.currency,
            status,
            checkout_url: r.checkout_url,
            livemode: r.livemode != 0,
            payment_intent: r.payment_intent,
            refund_clawed: r.refund_clawed,
            dispute_clawed: r.dispute_clawed,
            created_at: r.created_at,
            expires_at: r.expires_at,
            receipt_url: r.receipt_url,
            invoice_url: r.invoice_url,
        })
    }
}

fn records(rows: Vec<Row>) -> sqlx::Result<Vec<CheckoutRecord>> {
    rows.into_iter().map(CheckoutRecord::try_from).collect()
}

impl CheckoutRecord {
    pub fn summary(&self) -> CheckoutSummary {
        CheckoutSummary {
            session_id: self.id.clone(),
            pack_id: self.pack_id.clone(),
            credits: self.credits,
            amount_cents: self.amount_cents,
            currency: self.currency.clone(),
            status: self.status,
            checkout_url: self.checkout_url.clone(),
            created_at: rfc3339_ms(self.created_at),
            expires_at: rfc3339_ms(self.expires_at),
            amounts: self.purchase_amounts(),
            settings: self.settings.clone(),
        }
    }
}

pub async fn insert(db: &Db, r: &CheckoutRecord) -> sqlx::Result<()> {
    let r = Arc::new(r.clone());
    db.write(None, move |uow| {
        let r = r.clone();
        Box::pin(async move { insert_in(uow, &r).await })
    })
    .await
}

async fn insert_in(uow: &mut Uow, r: &CheckoutRecord) -> sqlx::Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO checkout_sessions (id, user_id, pack_id, credits, amount_cents, currency, status, checkout_url, livemode, created_at, expires_at, updated_at,
                tax_behavior, automatic_tax, tax_id_collection, invoice_creation, allow_promotion_codes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&r.id)
    .bind(&r.user_id)
    .bind(&r.pack_id)
    .bind(r.credits)
    .bind(r.amount_cents)
    .bind(&r.currency)
    .bind(r.status.as_str())
    .bind(&r.checkout_url)
    .bind(i64::from(r.livemode))
    .bind(r.created_at)
    .bind(r.expires_at)
    .bind(now)
    .bind(r.settings.as_ref().and_then(|s| s.tax_behavior).map(TaxBehavior::as_str))
    .bind(r.settings.as_ref().map(|s| i64::from(s.automatic_tax)))
    .bind(r.settings.as_ref().map(|s| i64::from(s.tax_id_collection)))
    .bind(r.settings.as_ref().map(|s| i64::from(s.invoice_creation)))
    .bind(r.settings.as_ref().map(|s| i64::from(s.allow_promotion_codes)))
    .execute(&mut **uow)
    .await?;
    Ok(())
}

pub async fn find(db: &Db, id: &str) -> sqlx::Result<Option<CheckoutRecord>> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM checkout_sessions WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.map(CheckoutRecord::try_from).transpose()
}

/// [`find`] inside a transaction.
pub async fn find_in(tx: &mut Uow, id: &str) -> sqlx::Result<Option<CheckoutRecord>> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM checkout_sessions WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(CheckoutRecord::try_from).transpose()
}

pub async fn find_by_payment_intent(db: &Db, payment_intent: &str) -> sqlx::Result<Option<CheckoutRecord>> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM checkout_sessions WHERE payment_intent = $1"))
            .bind(payment_intent)
            .fetch_optional(db.pool())
            .await?;
    row.map(CheckoutRecord::try_from).transpose()
}

/// Locks the record for the rest of `tx` (an UPDATE takes the row lock on PostgreSQL; SQLite's
/// write transaction already excludes other writers) and returns it as it is now.
pub async fn lock(tx: &mut Uow, id: &str) -> sqlx::Result<Option<CheckoutRecord>> {
    sqlx::query("UPDATE checkout_sessions SET updated_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM checkout_sessions WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(CheckoutRecord::try_from).transpose()
}

/// The caller's sessions, newest first; pending ones only while they can still be paid.
pub async fn list_for_user(
    db: &Db,
    user_id: &str,
    status: Option<CheckoutStatus>,
    limit: i64,
) -> sqlx::Result<Vec<CheckoutRecord>> {
    let rows: Vec<Row> = match status {
        Some(CheckoutStatus::Pending) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM checkout_sessions WHERE user_id = $1 AND status = 'pending' AND expires_at > $2 ORDER BY created_at DESC LIMIT $3"
            ))
            .bind(user_id)
            .bind(now_ms())
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
        Some(s) => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM checkout_sessions WHERE user_id = $1 AND status = $2 ORDER BY created_at DESC LIMIT $3"))
                .bind(user_id)
                .bind(s.as_str())
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
        None => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM checkout_sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2"))
                .bind(user_id)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
    };
    records(rows)
}

/// Credited sessions created since `since_ms` (for reconciliation).
/// Credited sessions created from `since_ms` (included) to `until_ms` (excluded; no end when `None`).
pub async fn credited_between(db: &Db, since_ms: i64, until_ms: Option<i64>) -> sqlx::Result<Vec<CheckoutRecord>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checkout_sessions WHERE status = 'credited' AND created_at >= $1 AND created_at < $2"
    ))
    .bind(since_ms)
    .bind(until_ms.unwrap_or(i64::MAX))
    .fetch_all(db.pool())
    .await?;
    records(rows)
}

/// Moves a pending session to `failed` or `expired`. A credited session never changes back.
pub async fn close_pending_in(tx: &mut Uow, id: &str, to: CheckoutStatus, reason: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE checkout_sessions SET status = $1, failure_reason = $2, updated_at = $3 WHERE id = $4 AND status = 'pending'",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(now_ms())
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
