//! The simulated account: sessions, payment intents, charges, refunds, disputes and events, and
//! the state changes a payment, an expiry, a refund or a dispute makes. Events are created under
//! the lock and delivered after it is released.

use std::{collections::HashMap, time::Duration};

use serde_json::{json, Value};

use crate::{
    error::StripeError,
    objects::{self, now},
    selling, webhooks, DeliveryMode, DeliveryRecord, PayDetails, PayMethod, StripeSim, WebhookEndpoint,
};

#[derive(Default)]
pub struct State {
    pub sessions: HashMap<String, Value>,
    /// Creation order, for lists (newest first).
    pub session_order: Vec<String>,
    pub line_items: HashMap<String, Value>,
    /// `payment_intent_data[metadata]` per session: charges, refunds and disputes carry it.
    pub intent_metadata: HashMap<String, Value>,
    pub payment_intents: HashMap<String, Value>,
    pub charges: HashMap<String, Value>,
    pub refunds: HashMap<String, Value>,
    /// Creation order, for lists (newest first).
    pub refund_order: Vec<String>,
    /// `payment_intent_data[description]` per session.
    pub intent_description: HashMap<String, Value>,
    pub disputes: HashMap<String, Value>,
    pub events: Vec<Value>,
    /// Idempotency-Key → what was saved for it.
    pub idempotency: HashMap<String, Saved>,
    /// Every `/v1` request, oldest first.
    pub requests: Vec<crate::RequestRecord>,
    pub endpoints: Vec<WebhookEndpoint>,
    pub delivery: DeliveryMode,
    pub deliveries: Vec<DeliveryRecord>,
    pub coupons: HashMap<String, Value>,
    /// Invoices of sessions created with `invoice_creation[enabled]`.
    pub invoices: HashMap<String, Value>,
    pub promotion_codes: HashMap<String, Value>,
    /// Creation order, for lists (newest first).
    pub promotion_order: Vec<String>,
    /// The discount a session was created with (`discounts`).
    pub session_discounts: HashMap<String, selling::Applied>,
    /// The `tax_behavior` of a session's line items when `automatic_tax[enabled]`.
    pub session_tax_behavior: HashMap<String, String>,
    /// `GET /v1/tax/settings` answers `active` (else `pending`, as for a new account).
    pub tax_active: bool,
    /// The next N `GET /v1/tax/settings` answer 500 (test switch).
    pub tax_settings_failures: u32,
}

/// What an `Idempotency-Key` holds: a request still executing, or the answer it gave.
#[derive(Clone)]
pub enum Saved {
    Executing,
    Done { fingerprint: String, status: u16, body: String },
}

/// The API request behind a change: its `req_…` id and `Idempotency-Key` (events carry both).
pub type RequestRef = Option<(String, Option<String>)>;

impl State {
    pub fn new(endpoints: Vec<WebhookEndpoint>) -> Self {
        State { endpoints, ..Default::default() }
    }

    fn event(
        &mut self,
        sim: &StripeSim,
        kind: &str,
        object: Value,
        previous: Option<Value>,
        request: &RequestRef,
    ) -> Value {
        let request = request.as_ref().map(|(id, key)| (id.as_str(), key.as_deref()));
        let e = objects::event(kind, object, previous, &sim.0.config.api_version, self.endpoints.len(), request);
        self.events.push(e.clone());
        e
    }
}

fn sum_line_items(items: &Value) -> Result<(i64, String), StripeError> {
    let mut total = 0i64;
    let mut currency = None;
    for (i, item) in items.as_array().into_iter().flatten().enumerate() {
        let Some(price) = item.get("price_data") else {
            return Err(StripeError::missing_parameter(&format!("line_items[{i}][price_data]")));
        };
        let unit = price
            .get("unit_amount")
            .and_then(Value::as_i64)
            .ok_or_else(|| StripeError::missing_parameter(&format!("line_items[{i}][price_data][unit_amount]")))?;
        if unit < 0 {
            return Err(StripeError::coded(
                &format!("line_items[{i}][price_data][unit_amount]"),
                "parameter_invalid_integer",
                "This value must be greater than or equal to 0.",
            ));
        }
        let qty = item
            .get("quantity")
            .and_then(Value::as_i64)
            .ok_or_else(|| StripeError::missing_parameter(&format!("line_items[{i}][quantity]")))?;
        if qty < 1 {
            return Err(StripeError::coded(
                &format!("line_items[{i}][quantity]"),
                "parameter_invalid_integer",
                "This value must be greater than or equal to 1.",
            ));
        }
        total = total.saturating_add(unit.saturating_mul(qty));
        let c = price.get("currency").and_then(Value::as_str).unwrap_or("usd").to_ascii_lowercase();
        currency.get_or_insert(c);
    }
    Ok((total, currency.unwrap_or_else(|| "usd".into())))
}

/// The one `tax_behavior` of the line items, required with automatic tax (the simulator has no
/// Dashboard default to fall back on) and meaningless without it.
fn tax_behavior_of(items: &Value, automatic_tax: bool) -> Result<Option<String>, StripeError> {
    let mut found: Option<String> = None;
    for (i, item) in items.as_array().into_iter().flatten().enumerate() {
        let b = item.pointer("/price_data/tax_behavior").and_then(Value::as_str);
        match (automatic_tax, b) {
            (true, None) => {
                return Err(StripeError::invalid(
                    &format!("line_items[{i}][price_data][tax_behavior]"),
                    "With automatic_tax[enabled]=true, stripe-sim needs each price's tax_behavior (exclusive or inclusive): it has no Dashboard default.",
                ))
            }
            (false, Some(_)) => {
                return Err(StripeError::invalid(
                    &format!("line_items[{i}][price_data][tax_behavior]"),
                    "stripe-sim simulates tax_behavior only with automatic_tax[enabled]=true (without it the setting has no effect).",
                ))
            }
            (true, Some(b)) => {
                if found.as_deref().is_some_and(|f| f != b) {
                    return Err(StripeError::invalid(
                        &format!("line_items[{i}][price_data][tax_behavior]"),
                        "stripe-sim computes tax for one tax_behavior per session.",
                    ));
                }
                found = Some(b.to_string());
            }
            (false, None) => {}
        }
    }
    Ok(found)
}

/// `POST /v1/checkout/sessions` with typed parameters.
pub fn create_session(sim: &StripeSim, p: &Value) -> Result<Value, StripeError> {
    let mode = p.get("mode").and_then(Value::as_str).ok_or_else(|| StripeError::missing_parameter("mode"))?;
    let items = p.get("line_items").filter(|v| v.as_array().is_some_and(|a| !a.is_empty()));
    if mode == "payment" && items.is_none() {
        return Err(StripeError::missing_parameter("line_items"));
    }
    if mode != "payment" {
        return Err(StripeError::invalid("mode", "The simulator supports mode=payment only."));
    }
    let ui_mode = p.get("ui_mode").and_then(Value::as_str).unwrap_or("hosted_page");
    if ui_mode == "hosted_page" && p.get("success_url").is_none() {
        return Err(StripeError::missing_parameter("success_url"));
    }
    for url_param in ["success_url", "cancel_url"] {
        if let Some(u) = p.get(url_param).and_then(Value::as_str) {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(StripeError::coded(url_param, "url_invalid", "Not a valid URL"));
            }
        }
    }
    let now = now();
    if let Some(exp) = p.get("expires_at").and_then(Value::as_i64) {
        if exp < now + 30 * 60 {
            return Err(StripeError::invalid(
                "expires_at",
                "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
            ));
        }
        if exp > now + 24 * 3600 {
            return Err(StripeError::invalid(
                "expires_at",
                "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            ));
        }
    }
    for meta_param in ["metadata", "payment_intent_data[metadata]"] {
        let meta =
            if meta_param == "metadata" { p.get("metadata") } else { p.pointer("/payment_intent_data/metadata") };
        if let Some(map) = meta.and_then(Value::as_object) {
            if map.len() > 50 {
                return Err(StripeError::invalid(meta_param, "You can specify up to 50 keys."));
            }
            for (k, v) in map {
                if k.chars().count() > 40 {
                    return Err(StripeError::invalid(
                        &format!("{meta_param}[{k}]"),
                        "Metadata keys can have up to 40 characters.",
                    ));
                }
                if v.as_str().is_some_and(|s| s.chars().count() > 500) {
                    return Err(StripeError::invalid(
                        &format!("{meta_param}[{k}]"),
                        "Metadata values can have up to 500 characters.",
                    ));
                }
            }
        }
    }
    let (subtotal, currency) = sum_line_items(items.unwrap_or(&Value::Null))?;
    let automatic_tax = p.pointer("/automatic_tax/enabled").and_then(Value::as_bool) == Some(true);
    let mut state = sim.lock();
    if automatic_tax && !state.tax_active {
        return Err(StripeError::invalid(
            "automatic_tax[enabled]",
            "Stripe Tax has not been activated on your account. Please visit https://dashboard.stripe.com/settings/tax/activate to get started.",
        ));
    }
    let tax_behavior = tax_behavior_of(items.unwrap_or(&Value::Null), automatic_tax)?;
    let discount = selling::creation_discount(&state, p, subtotal, &currency)?;
    let mut session = objects::new_session(p, &sim.0.public_url, now, subtotal, &currency);
    let id = session["id"].as_str().unwrap_or_default().to_string();
    if let Some((applied, amount)) = discount {
        session["amount_total"] = json!(subtotal - amount);
        session["total_details"]["amount_discount"] = json!(amount);
        session["discounts"] = selling::discounts_field(&Some(applied.clone()));
        state.session_discounts.insert(id.clone(), applied);
    }
    if let Some(b) = tax_behavior {
        state.session_tax_behavior.insert(id.clone(), b);
    }
    state.line_items.insert(id.clone(), items.cloned().unwrap_or(json!([])));
    state.intent_metadata.insert(id.clone(), p.pointer("/payment_intent_data/metadata").cloned().unwrap_or(json!({})));
    state
        .intent_description
        .insert(id.clone(), p.pointer("/payment_intent_data/description").cloned().unwrap_or(Value::Null));
    state.sessions.insert(id.clone(), session.clone());
    state.session_order.push(id);
    Ok(session)
}

fn open_session(state: &State, id: &str) -> Result<Value, StripeError> {
    let s = state.sessions.get(id).ok_or_else(|| StripeError::not_found("checkout.session", id))?;
    if s["status"] != "open" {
        return Err(StripeError::invalid(
            "",
            format!("This Checkout Session is no longer open (status: {}).", s["status"].as_str().unwrap_or("?")),
        ));
    }
    Ok(s.clone())
}

/// Settles a session as the customer's payment would.
pub fn pay(sim: &StripeSim, id: &str, details: &PayDetails) -> Result<(), StripeError> {
    let events = complete(sim, id, details)?;
    let paid_later = events.first().is_some_and(|e| e["data"]["object"]["payment_status"] == "unpaid");
    webhooks::dispatch(sim, events);
    if paid_later {
        let method = details.method;
        let sim = sim.clone();
        let id = id.to_string();
        sim.0.pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(sim.0.config.async_payment_delay).await;
            settle_delayed(&sim, &id, method == PayMethod::DelayedSuccess);
            sim.0.pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
    Ok(())
}

/// Completes an open session under the lock; returns the events to deliver.
fn complete(sim: &StripeSim, id: &str, details: &PayDetails) -> Result<Vec<Value>, StripeError> {
    let method = details.method;
    {
        let mut state = sim.lock();
        let mut session = open_session(&state, id)?;
        let now = now();
        let entered = selling::Entered {
            country: details.country.clone(),
            tax_id: details.tax_id.clone(),
            promotion_code: details.promotion_code.clone(),
        };
        let totals = selling::settle(&state, &session, &entered)?;
        let metadata = state.intent_metadata.get(id).cloned().unwrap_or(json!({}));
        let description = state.intent_description.get(id).cloned().unwrap_or(Value::Null);
        session["status"] = json!("complete");
        selling::apply_totals(&mut session, &totals);
        if let Some(applied) = &totals.applied {
            selling::redeem(&mut state, applied);
        }
        let mut events = Vec::new();
        if let Some(invoice) = session["invoice"].as_str() {
            let invoice = objects::invoice(invoice, &session, &sim.base_url(), now);
            state.invoices.insert(invoice["id"].as_str().unwrap_or_default().into(), invoice);
        }
        if totals.total == 0 {
            // Nothing to pay: no PaymentIntent, no charge, whatever method was picked.
            session["payment_status"] = json!("no_payment_required");
            state.sessions.insert(id.into(), session.clone());
            events.push(state.event(sim, "checkout.session.completed", session, None, &None));
            return Ok(events);
        }
        match method {
            PayMethod::Card => {
                let mut pi = objects::payment_intent(&session, &metadata, "succeeded", now);
                pi["description"] = description;
                let charge = objects::charge(&pi, &sim.base_url(), now);
                pi["latest_charge"] = charge["id"].clone();
                session["payment_status"] = json!("paid");
                session["payment_intent"] = pi["id"].clone();
                state.charges.insert(charge["id"].as_str().unwrap_or_default().into(), charge);
                state.payment_intents.insert(pi["id"].as_str().unwrap_or_default().into(), pi);
                state.sessions.insert(id.into(), session.clone());
                events.push(state.event(sim, "checkout.session.completed", session, None, &None));
            }
            PayMethod::DelayedSuccess | PayMethod::DelayedFailure => {
                let mut pi = objects::payment_intent(&session, &metadata, "processing", now);
                pi["description"] = description;
                session["payment_status"] = json!("unpaid");
                session["payment_intent"] = pi["id"].clone();
                state.payment_intents.insert(pi["id"].as_str().unwrap_or_default().into(), pi);
                state.sessions.insert(id.into(), session.clone());
                events.push(state.event(sim, "checkout.session.completed", session, None, &None));
            }
        }
        Ok(events)
    }
}

fn settle_delayed(sim: &StripeSim, id: &str, success: bool) {
    let events = {
        let mut state = sim.lock();
        let Some(mut session) = state.sessions.get(id).cloned() else { return };
        let pi_id = session["payment_intent"].as_str().unwrap_or_default().to_string();
        let Some(mut pi) = state.payment_intents.get(&pi_id).cloned() else { return };
        let now = now();
        let kind = if success {
            pi["status"] = json!("succeeded");
            pi["amount_received"] = pi["amount"].clone();
            let charge = objects::charge(&pi, &sim.base_url(), now);
            pi["latest_charge"] = charge["id"].clone();
            state.charges.insert(charge["id"].as_str().unwrap_or_default().into(), charge);
            session["payment_status"] = json!("paid");
            "checkout.session.async_payment_succeeded"
        } else {
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] = json!({"code": "payment_method_not_available", "message": "The bank declined the debit.", "type": "card_error"});
            "checkout.session.async_payment_failed"
        };
        state.payment_intents.insert(pi_id, pi);
        state.sessions.insert(id.into(), session.clone());
        vec![state.event(sim, kind, session, None, &None)]
    };
    webhooks::dispatch(sim, events);
}

/// Expires an open session (`/expire`, the pay page's button, or its expiry time passing).
pub fn expire(sim: &StripeSim, id: &str, request: RequestRef) -> Result<Value, StripeError> {
    let (session, events) = {
        let mut state = sim.lock();
        let mut session =
            state.sessions.get(id).cloned().ok_or_else(|| StripeError::not_found("checkout.session", id))?;
        if session["status"] != "open" {
            return Err(StripeError::invalid("", format!("Only Checkout Sessions with a status of `open` can be expired. This Checkout Session has a status of `{}`.", session["status"].as_str().unwrap_or("?"))));
        }
        session["status"] = json!("expired");
        state.sessions.insert(id.into(), session.clone());
        let e = state.event(sim, "checkout.session.expired", session.clone(), None, &request);
        (session, vec![e])
    };
    webhooks::dispatch(sim, events);
    Ok(session)
}

/// `POST /v1/refunds`.
/// `POST /v1/refunds` with validated parameters.
pub fn refund(sim: &StripeSim, p: &Value, request: RequestRef) -> Result<Value, StripeError> {
    let (refund, events) = {
        let mut state = sim.lock();
        let charge_id = match (p.get("charge").and_then(Value::as_str), p.get("payment_intent").and_then(Value::as_str))
        {
            (Some(c), _) => c.to_string(),
            (None, Some(pi)) => {
                let pi_obj =
                    state.payment_intents.get(pi).ok_or_else(|| StripeError::not_found("payment_intent", pi))?;
                pi_obj["latest_charge"].as_str().map(str::to_string).ok_or_else(|| {
                    StripeError::invalid(
                        "payment_intent",
                        "This PaymentIntent does not have a successful charge to refund.",
                    )
                })?
            }
            (None, None) => {
                return Err(StripeError::invalid(
                    "",
                    "One of the following params should be provided for this request: payment_intent or charge.",
                ))
            }
        };
        let mut charge =
            state.charges.get(&charge_id).cloned().ok_or_else(|| StripeError::not_found("charge", &charge_id))?;
        let total = charge["amount"].as_i64().unwrap_or(0);
        let already = charge["amount_refunded"].as_i64().unwrap_or(0);
        let remaining = total - already;
        let amount = p.get("amount").and_then(Value::as_i64).unwrap_or(remaining);
        if remaining <= 0 {
            return Err(StripeError::coded(
                "charge",
                "charge_already_refunded",
                format!("Charge {charge_id} has already been refunded."),
            ));
        }
        if amount <= 0 || amount > remaining {
            return Err(StripeError::coded(
                "amount",
                "amount_too_large",
                format!(
                    "Refund amount (${}.{:02}) is greater than unrefunded amount on charge (${}.{:02})",
                    amount / 100,
                    amount % 100,
                    remaining / 100,
                    remaining % 100
                ),
            ));
        }
        let now = now();
        let refund = objects::refund(
            &charge,
            amount,
            p.get("reason").unwrap_or(&Value::Null),
            p.get("metadata").unwrap_or(&json!({})),
            now,
        );
        let previous = json!({"amount_refunded": already, "refunded": charge["refunded"]});
        charge["amount_refunded"] = json!(already + amount);
        charge["refunded"] = json!(already + amount == total);
        state.charges.insert(charge_id, charge.clone());
        let refund_id = refund["id"].as_str().unwrap_or_default().to_string();
        state.refunds.insert(refund_id.clone(), refund.clone());
        state.refund_order.push(refund_id);
        let e1 = state.event(sim, "charge.refunded", charge, Some(previous), &request);
        let e2 = state.event(sim, "refund.created", refund.clone(), None, &request);
        (refund, vec![e1, e2])
    };
    webhooks::dispatch(sim, events);
    Ok(refund)
}

pub fn open_dispute(sim: &StripeSim, charge_id: &str) -> Result<String, StripeError> {
    let (id, events) = {
        let mut state = sim.lock();
        let mut charge =
            state.charges.get(charge_id).cloned().ok_or_else(|| StripeError::not_found("charge", charge_id))?;
        let dispute = objects::dispute(&charge, now());
        charge["disputed"] = json!(true);
        state.charges.insert(charge_id.into(), charge);
        let id = dispute["id"].as_str().unwrap_or_default().to_string();
        state.disputes.insert(id.clone(), dispute.clone());
        let e = state.event(sim, "charge.dispute.created", dispute, None, &None);
        (id, vec![e])
    };
    webhooks::dispatch(sim, events);
    Ok(id)
}

pub fn close_dispute(sim: &StripeSim, dispute_id: &str, won: bool) -> Result<(), StripeError> {
    let events = {
        let mut state = sim.lock();
        let mut dispute =
            state.disputes.get(dispute_id).cloned().ok_or_else(|| StripeError::not_found("dispute", dispute_id))?;
        if matches!(dispute["status"].as_str(), Some("won" | "lost")) {
            return Err(StripeError::invalid("", "This dispute is already closed."));
        }
        let previous = json!({"status": dispute["status"]});
        dispute["status"] = json!(if won { "won" } else { "lost" });
        state.disputes.insert(dispute_id.into(), dispute.clone());
        vec![state.event(sim, "charge.dispute.closed", dispute, Some(previous), &None)]
    };
    webhooks::dispatch(sim, events);
    Ok(())
}

/// Sessions expire by themselves at `expires_at`, as at Stripe.
pub fn spawn_expiry_sweep(sim: StripeSim) {
    let mut stop = sim.0.stop.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let due: Vec<String> = {
                let state = sim.lock();
                let now = now();
                state
                    .sessions
                    .values()
                    .filter(|s| s["status"] == "open" && s["expires_at"].as_i64().is_some_and(|t| t <= now))
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect()
            };
            for id in due {
                let _ = expire(&sim, &id, None);
            }
        }
    });
}

/// Stripe's list envelope over `items` (newest first), with `limit`, `starting_after` and
/// `ending_before` (validated integers and strings).
pub fn list(url: &str, items: Vec<Value>, q: &Value) -> Result<Value, StripeError> {
    let limit = match q.get("limit").and_then(Value::as_i64) {
        None => 10,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => {
            return Err(StripeError::coded(
                "limit",
                "parameter_invalid_integer",
                "This value must be greater than or equal to 1 and less than or equal to 100.",
            ))
        }
    };
    let position = |key: &str| -> Result<Option<usize>, StripeError> {
        match q.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(cursor) => items
                .iter()
                .position(|i| i["id"] == cursor)
                .map(Some)
                .ok_or_else(|| StripeError { param: Some(key.into()), ..StripeError::not_found("object", cursor) }),
        }
    };
    let (start, end) = match (position("starting_after")?, position("ending_before")?) {
        (Some(after), _) => (after + 1, items.len()),
        (None, Some(before)) => (before.saturating_sub(limit), before),
        (None, None) => (0, items.len()),
    };
    let page: Vec<Value> = items[start.min(end)..end].iter().take(limit).cloned().collect();
    let has_more = if q.get("ending_before").is_some() && q.get("starting_after").is_none() {
        start > 0
    } else {
        end > start + page.len()
    };
    Ok(json!({"object": "list", "data": page, "has_more": has_more, "url": url}))
}

/// Applies `created=N` or `created[gte]`, `created[gt]`, `created[lte]`, `created[lt]` (integers,
/// already validated).
pub fn created_matches(q: &Value, created: i64) -> bool {
    match q.get("created") {
        None => true,
        Some(Value::Number(n)) => n.as_i64() == Some(created),
        Some(bounds) => {
            let bound = |op: &str| bounds.get(op).and_then(Value::as_i64);
            bound("gte").is_none_or(|b| created >= b)
                && bound("gt").is_none_or(|b| created > b)
                && bound("lte").is_none_or(|b| created <= b)
                && bound("lt").is_none_or(|b| created < b)
        }
    }
}

/// `GET /v1/checkout/sessions/{id}/line_items`.
pub fn line_items(sim: &StripeSim, call: &crate::endpoints::Call) -> Result<Value, StripeError> {
    let id = &call.id;
    let (items, session) = {
        let state = sim.lock();
        let items = state.line_items.get(id).cloned().ok_or_else(|| StripeError::not_found("checkout.session", id))?;
        (items, state.sessions.get(id).cloned().unwrap_or(Value::Null))
    };
    // One line item carries the session's discount and tax (the only case Mascot sends).
    let single = items.as_array().is_some_and(|a| a.len() == 1);
    let detail = |k: &str| if single { session["total_details"][k].as_i64().unwrap_or(0) } else { 0 };
    let tail = id.rsplit('_').next().unwrap_or_default();
    let data: Vec<Value> = items
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(n, i)| {
            let unit = i.pointer("/price_data/unit_amount").and_then(Value::as_i64).unwrap_or(0);
            let qty = i.get("quantity").and_then(Value::as_i64).unwrap_or(1);
            let total = if single { session["amount_total"].as_i64().unwrap_or(unit * qty) } else { unit * qty };
            json!({"id": format!("li_{n}{tail}"), "object": "item", "amount_discount": detail("amount_discount"), "amount_subtotal": unit * qty,
                   "amount_tax": detail("amount_tax"), "amount_total": total, "currency": i.pointer("/price_data/currency"),
                   "description": i.pointer("/price_data/product_data/name"), "quantity": qty})
        })
        .collect();
    list(&format!("/v1/checkout/sessions/{id}/line_items"), data, &call.params)
}

/// `POST /v1/webhook_endpoints`: every event goes to the new endpoint (`enabled_events[]=*`).
pub fn create_webhook_endpoint(sim: &StripeSim, call: &crate::endpoints::Call) -> Result<Value, StripeError> {
    let url = call.params["url"].as_str().unwrap_or_default().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(StripeError::coded("url", "url_invalid", "Invalid URL: must be a URL"));
    }
    let secret = objects::id("whsec_", 32);
    sim.add_webhook_endpoint(WebhookEndpoint { url: url.clone(), secret: secret.clone() });
    Ok(json!({"id": objects::id("we_1", 22), "object": "webhook_endpoint", "url": url, "secret": secret,
        "enabled_events": ["*"], "status": "enabled", "livemode": false, "application": null, "description": null,
        "metadata": {}, "api_version": sim.0.config.api_version, "created": now()}))
}

/// Replaces ids by their objects along each `expand[]` path (`payment_intent`,
/// `data.payment_intent`, `payment_intent.latest_charge`), as Stripe does; a path that does not
/// lead to an expandable id is an error. https://docs.stripe.com/api/expanding_objects
pub fn expand(sim: &StripeSim, mut value: Value, paths: &Value) -> Result<Value, StripeError> {
    for (i, path) in paths.as_array().into_iter().flatten().enumerate() {
        let path = path.as_str().unwrap_or_default();
        let parts: Vec<&str> = path.split('.').collect();
        let state = sim.lock();
        expand_at(&state, &mut value, &parts).map_err(|()| {
            StripeError::invalid(&format!("expand[{i}]"), format!("This property cannot be expanded ({path})."))
        })?;
    }
    Ok(value)
}

fn expand_at(state: &State, node: &mut Value, parts: &[&str]) -> Result<(), ()> {
    let Some((first, rest)) = parts.split_first() else { return Ok(()) };
    if *first == "data" && node["object"] == "list" {
        for item in node["data"].as_array_mut().into_iter().flatten() {
            expand_at(state, item, rest)?;
        }
        return Ok(());
    }
    let field = node.as_object_mut().and_then(|o| o.get_mut(*first)).ok_or(())?;
    if let Value::String(id) = field {
        let found = [&state.payment_intents, &state.charges, &state.refunds, &state.disputes, &state.sessions]
            .iter()
            .find_map(|store| store.get(id.as_str()).cloned())
            .ok_or(())?;
        *field = found;
    }
    match field {
        Value::Null if rest.is_empty() => Ok(()),
        Value::Object(_) => expand_at(state, field, rest),
        _ => Err(()),
    }
}
