//! The whole history of a wallet as CSV (RFC 4180): one row per ledger entry, oldest first, with
//! the feature, what a purchase cost and the Stripe ids support needs. The browser downloads it
//! with a single-use `mce_…` token (5 minutes, only its SHA-256 stored), never the bearer token.

use crate::{
    auth::secret,
    db::{now_ms, rfc3339_ms, Db},
};

pub const PREFIX: &str = "mce_";
pub const TTL_MS: i64 = 5 * 60 * 1000;

/// A new export token for `user_id` (the only time it exists in clear) and when it ends; expired
/// ones of everyone are dropped in the same write.
pub async fn issue(db: &Db, user_id: &str) -> sqlx::Result<(String, i64)> {
    let token = secret::new_secret(PREFIX);
    let (hash, user) = (secret::hash(&token), user_id.to_string());
    let now = now_ms();
    db.write(None, move |uow| {
        let (hash, user) = (hash.clone(), user.clone());
        Box::pin(async move {
            sqlx::query("DELETE FROM csv_exports WHERE expires_at <= $1").bind(now).execute(&mut **uow).await?;
            sqlx::query(
                "INSERT INTO csv_exports (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(&user)
            .bind(now)
            .bind(now + TTL_MS)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok((token, now + TTL_MS))
}

/// Uses the token up (a guarded DELETE: of two concurrent downloads one wins): whose export it
/// is, or `None` for a used, expired or unknown token.
pub async fn consume(db: &Db, token: &str) -> sqlx::Result<Option<String>> {
    if !secret::looks_like(token, PREFIX) {
        return Ok(None);
    }
    let hash = secret::hash(token);
    db.write(None, move |uow| {
        let hash = hash.clone();
        Box::pin(async move {
            let row: Option<(String,)> =
                sqlx::query_as("DELETE FROM csv_exports WHERE token_hash = $1 AND expires_at > $2 RETURNING user_id")
                    .bind(&hash)
                    .bind(now_ms())
                    .fetch_optional(&mut **uow)
                    .await?;
            Ok::<_, sqlx::Error>(row.map(|(u,)| u))
        })
    })
    .await
}

pub const HEADER: &str = "created_at,entry_id,kind,delta,balance_after,description,feature,currency,\
amount_subtotal_cents,amount_discount_cents,amount_tax_cents,amount_paid_cents,\
stripe_checkout_session,stripe_payment_intent,stripe_charge,stripe_dispute";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    created_at: i64,
    kind: String,
    delta: i64,
    balance_after: i64,
    description: String,
    feature: Option<String>,
    cause: String,
    session_id: Option<String>,
    payment_intent: Option<String>,
    currency: Option<String>,
    amount_subtotal_cents: Option<i64>,
    amount_discount_cents: Option<i64>,
    amount_tax_cents: Option<i64>,
    amount_paid_cents: Option<i64>,
}

/// Every entry of `user_id`, oldest first, as one CSV text (CRLF line ends, RFC 4180).
pub async fn csv(db: &Db, user_id: &str) -> sqlx::Result<String> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT e.id, e.created_at, e.kind, e.delta, e.balance_after, e.description, e.feature, e.cause,
                c.id AS session_id, c.payment_intent, c.currency, c.amount_subtotal_cents,
                c.amount_discount_cents, c.amount_tax_cents, c.amount_paid_cents
         FROM ledger_entries e
         LEFT JOIN checkout_sessions c ON e.kind = 'purchase' AND c.id = SUBSTR(e.cause, 10)
         WHERE e.user_id = $1 ORDER BY e.seq",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    let mut out = String::with_capacity(HEADER.len() + 2 + rows.len() * 160);
    out.push_str(HEADER);
    out.push_str("\r\n");
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    for r in rows {
        // Refund causes are `refund:<charge>:<total refunded>`; dispute causes name the dispute.
        let mut parts = r.cause.split(':');
        let (charge, dispute) = match (parts.next(), parts.next()) {
            (Some("refund"), Some(ch)) => (ch.to_string(), String::new()),
            (Some("dispute" | "dispute-won"), Some(dp)) => (String::new(), dp.to_string()),
            _ => (String::new(), String::new()),
        };
        let fields = [
            rfc3339_ms(r.created_at),
            r.id,
            r.kind,
            r.delta.to_string(),
            r.balance_after.to_string(),
            r.description,
            r.feature.unwrap_or_default(),
            r.currency.unwrap_or_default(),
            num(r.amount_subtotal_cents),
            num(r.amount_discount_cents),
            num(r.amount_tax_cents),
            num(r.amount_paid_cents),
            r.session_id.unwrap_or_default(),
            r.payment_intent.unwrap_or_default(),
            charge,
            dispute,
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, f);
        }
        out.push_str("\r\n");
    }
    Ok(out)
}

/// One RFC 4180 field: quoted when it holds a comma, a quote or a line break (quotes doubled).
/// A field that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading
/// `'`, except numbers: descriptions can come from outside (a code, a reason).
fn field(out: &mut String, text: &str) {
    let formula =
        text.starts_with(['=', '+', '@', '\t', '\r']) || (text.starts_with('-') && text.parse::<i64>().is_err());
    let text = if formula { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

#[cfg(test)]
mod tests {
    fn one(text: &str) -> String {
        let mut s = String::new();
        super::field(&mut s, text);
        s
    }

    #[test]
    fn fields_follow_rfc_4180_and_never_run_as_formulas() {
        assert_eq!(one("plain"), "plain");
        assert_eq!(one("a,b"), "\"a,b\"");
        assert_eq!(one("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(one("two\nlines"), "\"two\nlines\"");
        assert_eq!(one("-25"), "-25");
        assert_eq!(one("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(one("-1+1"), "'-1+1");
    }
}
