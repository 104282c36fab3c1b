//! What changes the amounts of a Checkout Session: coupons and promotion codes (`discounts`,
//! `allow_promotion_codes`), Stripe Tax (`automatic_tax`, with the small rate table of
//! `fixtures/tax_rates.json`, not Stripe's real rates), business tax IDs (`tax_id_collection`,
//! reverse charge) and invoices (`invoice_creation`); and `GET /v1/tax/settings`.
//!
//! The arithmetic follows Stripe's definitions: `amount_total = amount_subtotal − amount_discount +
//! amount_tax` with exclusive tax; with inclusive tax the tax is inside the (discounted) price and
//! `amount_tax` only reports it. A session whose total comes to 0 completes with
//! `payment_status: "no_payment_required"` and no PaymentIntent.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::{
    core::State,
    endpoints::Call,
    error::StripeError,
    objects::{self, now},
    StripeSim,
};

/// The rate table fixture.
pub fn tax_table() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    CELL.get_or_init(|| {
        serde_json::from_str(include_str!("../fixtures/tax_rates.json")).expect("embedded tax table is valid JSON")
    })
}

/// The one tax code whose rates the table holds.
pub fn tax_code() -> &'static str {
    tax_table()["tax_code"].as_str().unwrap_or("txcd_10000000")
}

fn rate_bp(country: &str) -> i64 {
    tax_table()["rates"].get(country).and_then(Value::as_i64).unwrap_or(0)
}

fn reverse_charge_country(country: &str) -> bool {
    tax_table()["reverse_charge"].as_array().is_some_and(|a| a.iter().any(|c| c == country))
}

/// `POST /v1/coupons`.
pub fn create_coupon(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    let p = &call.params;
    let percent = p.get("percent_off").and_then(Value::as_f64);
    let amount = p.get("amount_off").and_then(Value::as_i64);
    let currency = p.get("currency").and_then(Value::as_str).map(str::to_ascii_lowercase);
    match (percent, amount) {
        (Some(_), Some(_)) => {
            return Err(StripeError::invalid(
                "percent_off",
                "You may only specify one of these parameters: amount_off, percent_off.",
            ))
        }
        (None, None) => {
            return Err(StripeError::invalid("", "You must pass either amount_off or percent_off to create a coupon."))
        }
        (Some(pct), None) if !(pct > 0.0 && pct <= 100.0) => {
            return Err(StripeError::invalid("percent_off", "Percent off must be greater than 0 and at most 100."))
        }
        (None, Some(a)) if a < 1 => {
            return Err(StripeError::coded("amount_off", "parameter_invalid_integer", "Invalid positive integer"))
        }
        (None, Some(_)) if currency.is_none() => {
            return Err(StripeError::missing_parameter("currency"));
        }
        _ => {}
    }
    if percent.is_some() && currency.is_some() {
        return Err(StripeError::invalid("currency", "You can only set currency along with amount_off."));
    }
    if let Some(max) = p.get("max_redemptions").and_then(Value::as_i64) {
        if max < 1 {
            return Err(StripeError::coded("max_redemptions", "parameter_invalid_integer", "Invalid positive integer"));
        }
    }
    let id = p.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| objects::id("", 8));
    let coupon = json!({
        "id": id, "object": "coupon", "amount_off": amount, "created": now(), "currency": currency,
        "duration": p.get("duration").cloned().unwrap_or(json!("once")), "duration_in_months": null,
        "livemode": false, "max_redemptions": p.get("max_redemptions").cloned().unwrap_or(Value::Null),
        "metadata": p.get("metadata").cloned().unwrap_or(json!({})), "name": p.get("name").cloned().unwrap_or(Value::Null),
        "percent_off": percent, "redeem_by": p.get("redeem_by").cloned().unwrap_or(Value::Null),
        "times_redeemed": 0, "valid": true
    });
    let mut state = sim.lock();
    if state.coupons.contains_key(&id) {
        return Err(StripeError::coded("id", "resource_already_exists", "Coupon already exists."));
    }
    state.coupons.insert(id, coupon.clone());
    Ok(coupon)
}

pub fn retrieve_coupon(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    sim.lock().coupons.get(&call.id).cloned().ok_or_else(|| StripeError::not_found("coupon", &call.id))
}

/// `POST /v1/promotion_codes` (API 2025-09-30.clover and later: `promotion[type]=coupon`,
/// `promotion[coupon]=…`).
pub fn create_promotion_code(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    let p = &call.params;
    let coupon_id = p.pointer("/promotion/coupon").and_then(Value::as_str).map(str::to_string);
    let Some(coupon_id) = coupon_id else { return Err(StripeError::missing_parameter("promotion[coupon]")) };
    let code = match p.get("code").and_then(Value::as_str) {
        Some(c) => {
            if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                return Err(StripeError::invalid(
                    "code",
                    "Valid characters are lower case letters (a-z), upper case letters (A-Z), and digits (0-9).",
                ));
            }
            c.to_string()
        }
        None => objects::id("", 8).to_uppercase(),
    };
    if let Some(max) = p.get("max_redemptions").and_then(Value::as_i64) {
        if max < 1 {
            return Err(StripeError::coded("max_redemptions", "parameter_invalid_integer", "Invalid positive integer"));
        }
    }
    if let Some(exp) = p.get("expires_at").and_then(Value::as_i64) {
        if exp <= now() {
            return Err(StripeError::invalid("expires_at", "The expiration date must be in the future."));
        }
    }
    let active = p.get("active").and_then(Value::as_bool).unwrap_or(true);
    let mut state = sim.lock();
    if !state.coupons.contains_key(&coupon_id) {
        return Err(StripeError {
            param: Some("promotion[coupon]".into()),
            ..StripeError::not_found("coupon", &coupon_id)
        });
    }
    if active && state.promotion_codes.values().any(|pc| pc["active"] == true && same_code(&pc["code"], &code)) {
        return Err(StripeError::invalid("code", "An active promotion code with `code` already exists."));
    }
    let promo = json!({
        "id": objects::id("promo_1", 22), "object": "promotion_code", "active": active, "code": code,
        "created": now(), "customer": null, "customer_account": null,
        "expires_at": p.get("expires_at").cloned().unwrap_or(Value::Null), "livemode": false,
        "max_redemptions": p.get("max_redemptions").cloned().unwrap_or(Value::Null),
        "metadata": p.get("metadata").cloned().unwrap_or(json!({})),
        "promotion": {"type": "coupon", "coupon": coupon_id},
        "restrictions": {"currency_options": {}, "first_time_transaction": false, "minimum_amount": null, "minimum_amount_currency": null},
        "times_redeemed": 0
    });
    let id = promo["id"].as_str().unwrap_or_default().to_string();
    state.promotion_codes.insert(id.clone(), promo.clone());
    state.promotion_order.push(id);
    Ok(promo)
}

/// `POST /v1/promotion_codes/{id}`: `active`, `metadata`.
pub fn update_promotion_code(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    let mut state = sim.lock();
    let mut promo = state
        .promotion_codes
        .get(&call.id)
        .cloned()
        .ok_or_else(|| StripeError::not_found("promotion_code", &call.id))?;
    if let Some(active) = call.params.get("active").and_then(Value::as_bool) {
        if active
            && promo["active"] == false
            && state
                .promotion_codes
                .values()
                .any(|pc| pc["active"] == true && same_code(&pc["code"], promo["code"].as_str().unwrap_or("")))
        {
            return Err(StripeError::invalid("active", "An active promotion code with `code` already exists."));
        }
        promo["active"] = json!(active);
    }
    if let Some(meta) = call.params.get("metadata") {
        promo["metadata"] = if meta == "" { json!({}) } else { meta.clone() };
    }
    state.promotion_codes.insert(call.id.clone(), promo.clone());
    Ok(promo)
}

pub fn retrieve_promotion_code(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    sim.lock().promotion_codes.get(&call.id).cloned().ok_or_else(|| StripeError::not_found("promotion_code", &call.id))
}

/// `GET /v1/promotion_codes` with `code` (case-insensitive), `active`, `coupon`, `created`.
pub fn list_promotion_codes(sim: &StripeSim, call: &Call) -> Result<Value, StripeError> {
    let q = &call.params;
    let items: Vec<Value> = {
        let state = sim.lock();
        state.promotion_order.iter().rev().map(|id| state.promotion_codes[id].clone()).collect()
    };
    let out = items
        .into_iter()
        .filter(|pc| {
            q.get("code").and_then(Value::as_str).is_none_or(|c| same_code(&pc["code"], c))
                && q.get("active").and_then(Value::as_bool).is_none_or(|a| pc["active"] == a)
                && q.get("coupon").and_then(Value::as_str).is_none_or(|c| pc["promotion"]["coupon"] == c)
                && crate::core::created_matches(q, pc["created"].as_i64().unwrap_or(0))
        })
        .collect();
    crate::core::list("/v1/promotion_codes", out, q)
}

fn same_code(stored: &Value, code: &str) -> bool {
    stored.as_str().is_some_and(|s| s.eq_ignore_ascii_case(code))
}

/// `GET /v1/tax/settings`.
pub fn tax_settings(sim: &StripeSim, _call: &Call) -> Result<Value, StripeError> {
    let mut state = sim.lock();
    if state.tax_settings_failures > 0 {
        state.tax_settings_failures -= 1;
        return Err(StripeError {
            status: 500,
            kind: "api_error",
            ..StripeError::invalid("", "An unknown error occurred (simulated by stripe-sim).")
        });
    }
    Ok(tax_settings_object(state.tax_active))
}

pub fn tax_settings_object(active: bool) -> Value {
    let (status, details, head_office) = if active {
        (
            "active",
            json!({"active": {}}),
            json!({"address": {"city": "San Francisco", "country": "US", "line1": "354 Oyster Point Blvd", "line2": null, "postal_code": "94080", "state": "CA"}}),
        )
    } else {
        ("pending", json!({"pending": {"missing_fields": ["head_office"]}}), Value::Null)
    };
    json!({"object": "tax.settings", "defaults": {"provider": "stripe", "tax_behavior": null, "tax_code": tax_code()},
           "head_office": head_office, "livemode": false, "status": status, "status_details": details})
}

/// A discount the session carries: the coupon, and the promotion code it came through.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub coupon: String,
    pub promotion_code: Option<String>,
}

/// Whether `coupon` may be redeemed now, and how much it takes off `subtotal`.
fn coupon_discount(coupon: &Value, subtotal: i64, currency: &str, param: &str) -> Result<i64, StripeError> {
    let exhausted =
        coupon["max_redemptions"].as_i64().is_some_and(|m| coupon["times_redeemed"].as_i64().unwrap_or(0) >= m);
    let expired = coupon["redeem_by"].as_i64().is_some_and(|t| t <= now());
    if exhausted || expired || coupon["valid"] == false {
        return Err(StripeError::coded(param, "coupon_expired", "This coupon is no longer valid."));
    }
    if let Some(pct) = coupon["percent_off"].as_f64() {
        return Ok(((subtotal as f64) * pct / 100.0).round() as i64);
    }
    let amount = coupon["amount_off"].as_i64().unwrap_or(0);
    if coupon["currency"].as_str() != Some(currency) {
        return Err(StripeError::invalid(
            param,
            format!("This coupon's currency does not match the session's ({currency})."),
        ));
    }
    Ok(amount.min(subtotal))
}

/// The active, redeemable promotion code whose code is `code` (case-insensitive).
fn promotion_by_code(state: &State, code: &str, param: &str) -> Result<Value, StripeError> {
    let promo = state
        .promotion_codes
        .values()
        .find(|pc| pc["active"] == true && same_code(&pc["code"], code))
        .cloned()
        .ok_or_else(|| StripeError::coded(param, "promotion_code_invalid", "This code is invalid."))?;
    promotion_usable(&promo, param)?;
    Ok(promo)
}

fn promotion_usable(promo: &Value, param: &str) -> Result<(), StripeError> {
    let exhausted =
        promo["max_redemptions"].as_i64().is_some_and(|m| promo["times_redeemed"].as_i64().unwrap_or(0) >= m);
    let expired = promo["expires_at"].as_i64().is_some_and(|t| t <= now());
    if promo["active"] != true || exhausted || expired {
        return Err(StripeError::coded(param, "promotion_code_invalid", "This code is no longer valid."));
    }
    Ok(())
}

/// `discounts` and `allow_promotion_codes` at session creation: at most one discount, by coupon or
/// by promotion code id, never together with `allow_promotion_codes`. Returns the discount and its
/// amount on `subtotal`.
pub fn creation_discount(
    state: &State,
    p: &Value,
    subtotal: i64,
    currency: &str,
) -> Result<Option<(Applied, i64)>, StripeError> {
    let Some(list) = p.get("discounts").and_then(Value::as_array) else { return Ok(None) };
    if p.get("allow_promotion_codes").and_then(Value::as_bool) == Some(true) {
        return Err(StripeError::invalid(
            "allow_promotion_codes",
            "You may only specify one of these parameters: allow_promotion_codes, discounts.",
        ));
    }
    match list.as_slice() {
        [] => Ok(None),
        [one] => {
            let coupon_id = one.get("coupon").and_then(Value::as_str);
            let promo_id = one.get("promotion_code").and_then(Value::as_str);
            let applied = match (coupon_id, promo_id) {
                (Some(_), Some(_)) => {
                    return Err(StripeError::invalid(
                        "discounts[0]",
                        "You may only specify one of these parameters: coupon, promotion_code.",
                    ))
                }
                (None, None) => return Err(StripeError::missing_parameter("discounts[0][coupon]")),
                (Some(c), None) => Applied { coupon: c.to_string(), promotion_code: None },
                (None, Some(pid)) => {
                    let promo = state.promotion_codes.get(pid).ok_or_else(|| StripeError {
                        param: Some("discounts[0][promotion_code]".into()),
                        ..StripeError::not_found("promotion_code", pid)
                    })?;
                    promotion_usable(promo, "discounts[0][promotion_code]")?;
                    Applied {
                        coupon: promo["promotion"]["coupon"].as_str().unwrap_or_default().to_string(),
                        promotion_code: Some(pid.to_string()),
                    }
                }
            };
            let coupon = state.coupons.get(&applied.coupon).ok_or_else(|| StripeError {
                param: Some("discounts[0][coupon]".into()),
                ..StripeError::not_found("coupon", &applied.coupon)
            })?;
            let amount = coupon_discount(coupon, subtotal, currency, "discounts[0]")?;
            Ok(Some((applied, amount)))
        }
        _ => Err(StripeError::invalid("discounts", "You may only specify one discount (coupon or promotion code).")),
    }
}

/// What the buyer enters on the hosted page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entered {
    pub country: Option<String>,
    pub tax_id: Option<String>,
    pub promotion_code: Option<String>,
}

/// The amounts of a session at completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub total: i64,
    pub applied: Option<Applied>,
    pub country: Option<String>,
    pub tax_id: Option<(String, String)>,
    pub reverse_charge: bool,
}

fn tax_id_type(country: &str) -> &'static str {
    match country {
        "GB" => "gb_vat",
        "CH" => "ch_vat",
        "AU" => "au_abn",
        "US" => "us_ein",
        c if reverse_charge_country(c) => "eu_vat",
        _ => "unknown",
    }
}

/// Checks what the buyer entered against the session's settings and computes its amounts.
pub fn settle(state: &State, session: &Value, entered: &Entered) -> Result<Totals, StripeError> {
    let id = session["id"].as_str().unwrap_or_default();
    let subtotal = session["amount_subtotal"].as_i64().unwrap_or(0);
    let currency = session["currency"].as_str().unwrap_or("usd");
    let automatic_tax = session["automatic_tax"]["enabled"] == true;
    let country = entered.country.as_deref().map(|c| c.trim().to_ascii_uppercase()).filter(|c| !c.is_empty());
    if let Some(c) = &country {
        if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
            return Err(StripeError::invalid("country", "Enter a two-letter country code (ISO 3166-1), e.g. DE."));
        }
    }
    let country = match (automatic_tax, country) {
        (true, None) => {
            return Err(StripeError::invalid(
                "country",
                "Enter your country: automatic tax needs the buyer's location.",
            ))
        }
        (_, c) => c,
    };
    let tax_id = entered.tax_id.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let tax_id = match tax_id {
        None => None,
        Some(_) if session["tax_id_collection"]["enabled"] != true => {
            return Err(StripeError::invalid("tax_id", "This checkout does not collect tax IDs."))
        }
        Some(t) if t.len() < 4 || !t.chars().all(|ch| ch.is_ascii_alphanumeric()) => {
            return Err(StripeError::invalid("tax_id", "That tax ID is not valid (letters and digits, at least 4)."))
        }
        Some(t) => {
            let c = country.clone().unwrap_or_else(|| t[..2].to_ascii_uppercase());
            Some((tax_id_type(&c).to_string(), t.to_ascii_uppercase()))
        }
    };
    let code = entered.promotion_code.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let (applied, discount) = match code {
        Some(_) if session["allow_promotion_codes"] != true => {
            return Err(StripeError::invalid("promotion_code", "This checkout does not accept promotion codes."))
        }
        Some(code) => {
            let promo = promotion_by_code(state, code, "promotion_code")?;
            let coupon_id = promo["promotion"]["coupon"].as_str().unwrap_or_default().to_string();
            let coupon = state.coupons.get(&coupon_id).ok_or_else(|| StripeError::not_found("coupon", &coupon_id))?;
            let amount = coupon_discount(coupon, subtotal, currency, "promotion_code")?;
            (Some(Applied { coupon: coupon_id, promotion_code: promo["id"].as_str().map(str::to_string) }), amount)
        }
        None => match state.session_discounts.get(id) {
            Some(a) => {
                let coupon = state.coupons.get(&a.coupon).ok_or_else(|| StripeError::not_found("coupon", &a.coupon))?;
                if let Some(pid) = &a.promotion_code {
                    if let Some(promo) = state.promotion_codes.get(pid) {
                        promotion_usable(promo, "discounts[0][promotion_code]")?;
                    }
                }
                (Some(a.clone()), coupon_discount(coupon, subtotal, currency, "discounts[0]")?)
            }
            None => (None, 0),
        },
    };
    let taxable = subtotal - discount;
    let behavior = state.session_tax_behavior.get(id).cloned();
    let mut reverse_charge = false;
    let tax = match (automatic_tax, &country, behavior.as_deref()) {
        (true, Some(c), Some(behavior)) => {
            let bp = rate_bp(c);
            if tax_id.is_some() && reverse_charge_country(c) {
                reverse_charge = true;
                0
            } else if behavior == "inclusive" {
                let net = (taxable * 10_000 + (10_000 + bp) / 2) / (10_000 + bp);
                taxable - net
            } else {
                (taxable * bp + 5_000) / 10_000
            }
        }
        _ => 0,
    };
    let total = if behavior.as_deref() == Some("inclusive") { taxable } else { taxable + tax };
    Ok(Totals { subtotal, discount, tax, total, applied, country, tax_id, reverse_charge })
}

/// Counts one redemption of the coupon and promotion code a completed session used.
pub fn redeem(state: &mut State, applied: &Applied) {
    if let Some(c) = state.coupons.get_mut(&applied.coupon) {
        c["times_redeemed"] = json!(c["times_redeemed"].as_i64().unwrap_or(0) + 1);
    }
    if let Some(pid) = &applied.promotion_code {
        if let Some(pc) = state.promotion_codes.get_mut(pid) {
            pc["times_redeemed"] = json!(pc["times_redeemed"].as_i64().unwrap_or(0) + 1);
            if pc["max_redemptions"].as_i64().is_some_and(|m| pc["times_redeemed"].as_i64().unwrap_or(0) >= m) {
                pc["active"] = json!(false);
            }
        }
    }
}

/// The session's `discounts` array for `applied`.
pub fn discounts_field(applied: &Option<Applied>) -> Value {
    match applied {
        Some(a) => json!([{"coupon": a.coupon, "promotion_code": a.promotion_code}]),
        None => json!([]),
    }
}

/// Writes `totals` into a session being completed.
pub fn apply_totals(session: &mut Value, t: &Totals) {
    session["amount_subtotal"] = json!(t.subtotal);
    session["amount_total"] = json!(t.total);
    session["total_details"] = json!({"amount_discount": t.discount, "amount_shipping": 0, "amount_tax": t.tax});
    session["discounts"] = discounts_field(&t.applied);
    if session["automatic_tax"]["enabled"] == true {
        session["automatic_tax"]["status"] = json!("complete");
    }
    let tax_ids: Vec<Value> = t.tax_id.iter().map(|(kind, value)| json!({"type": kind, "value": value})).collect();
    session["customer_details"] = json!({
        "address": {"city": null, "country": t.country, "line1": null, "line2": null, "postal_code": null, "state": null},
        "business_name": null, "email": session["customer_email"], "individual_name": null, "name": "Test Customer",
        "phone": null, "tax_exempt": "none", "tax_ids": tax_ids
    });
    let invoice = session["invoice_creation"]["enabled"] == true;
    if invoice {
        session["invoice"] = json!(objects::id("in_1", 22));
    }
    // Stripe creates a Customer when it needs one: for the invoice, or for a session nothing is
    // paid for (a new one each time when the session names none).
    if invoice || t.total == 0 {
        session["customer"] = json!(objects::id("cus_", 14));
    }
}
