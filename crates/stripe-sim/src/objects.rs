//! Stripe objects in their full shapes: sessions and charges start from Stripe's own example
//! objects (fixtures/), so the backend never sees a trimmed-down payload.

use std::sync::OnceLock;

use rand::{distributions::Alphanumeric, Rng};
use serde_json::{json, Value};

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `prefix` + random alphanumerics, like Stripe ids (`cs_test_a1…`, `pi_3…`).
pub fn id(prefix: &str, len: usize) -> String {
    let tail: String = rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect();
    format!("{prefix}{tail}")
}

fn fixture(cell: &'static OnceLock<Value>, text: &'static str) -> Value {
    cell.get_or_init(|| serde_json::from_str(text).expect("embedded fixture is valid JSON")).clone()
}

pub fn session_template() -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    fixture(&CELL, include_str!("../fixtures/checkout_session.json"))
}

pub fn charge_template() -> Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    fixture(&CELL, include_str!("../fixtures/charge.json"))
}

/// A new open, unpaid session from validated parameters.
pub fn new_session(p: &Value, public_url: &str, now: i64, amount_total: i64, currency: &str) -> Value {
    let mut s = session_template();
    let sid = id("cs_test_a1", 56);
    let get = |k: &str| p.get(k).cloned().unwrap_or(Value::Null);
    s["id"] = json!(sid);
    s["url"] = json!(format!("{public_url}/c/pay/{sid}"));
    s["created"] = json!(now);
    s["expires_at"] = p.get("expires_at").cloned().unwrap_or(json!(now + 24 * 3600));
    s["status"] = json!("open");
    s["payment_status"] = json!("unpaid");
    s["payment_intent"] = Value::Null;
    s["amount_subtotal"] = json!(amount_total);
    s["amount_total"] = json!(amount_total);
    s["currency"] = json!(currency);
    s["mode"] = get("mode");
    s["metadata"] = p.get("metadata").cloned().unwrap_or(json!({}));
    s["client_reference_id"] = get("client_reference_id");
    s["customer_email"] = get("customer_email");
    s["success_url"] = get("success_url");
    s["cancel_url"] = get("cancel_url");
    s["livemode"] = json!(false);
    s["ui_mode"] = p.get("ui_mode").cloned().unwrap_or(json!("hosted_page"));
    s["locale"] = get("locale");
    s["client_secret"] = Value::Null;
    s["customer"] = Value::Null;
    s["customer_details"] = Value::Null;
    s["invoice"] = Value::Null;
    s["subscription"] = Value::Null;
    s["setup_intent"] = Value::Null;
    s["payment_link"] = Value::Null;
    s["recovered_from"] = Value::Null;
    s["adaptive_pricing"] =
        json!({"enabled": p.pointer("/adaptive_pricing/enabled").and_then(Value::as_bool).unwrap_or(true)});
    s["payment_method_types"] = p.get("payment_method_types").cloned().unwrap_or(json!(["card"]));
    s["total_details"] = json!({"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0});
    s["discounts"] = json!([]);
    s["allow_promotion_codes"] = p.get("allow_promotion_codes").cloned().unwrap_or(Value::Null);
    let automatic_tax = p.pointer("/automatic_tax/enabled").and_then(Value::as_bool).unwrap_or(false);
    // Until the buyer's location is known, Stripe cannot compute the tax.
    s["automatic_tax"] = if automatic_tax {
        json!({"enabled": true, "liability": {"type": "self"}, "provider": "stripe", "status": "requires_location_input"})
    } else {
        json!({"enabled": false, "liability": null, "provider": null, "status": null})
    };
    s["tax_id_collection"] = json!({
        "enabled": p.pointer("/tax_id_collection/enabled").and_then(Value::as_bool).unwrap_or(false),
        "required": "never"
    });
    let invoice = p.pointer("/invoice_creation/enabled").and_then(Value::as_bool).unwrap_or(false);
    s["invoice_creation"] = json!({"enabled": invoice, "invoice_data": {
        "account_tax_ids": null, "custom_fields": null, "description": null, "footer": null,
        "issuer": null, "metadata": {}, "rendering_options": null
    }});
    s
}

pub fn payment_intent(session: &Value, metadata: &Value, status: &str, now: i64) -> Value {
    json!({
        "id": id("pi_3", 21), "object": "payment_intent",
        "amount": session["amount_total"], "amount_capturable": 0, "amount_details": {"tip": {}},
        "amount_received": if status == "succeeded" { session["amount_total"].clone() } else { json!(0) },
        "application": null, "application_fee_amount": null, "automatic_payment_methods": null,
        "canceled_at": null, "cancellation_reason": null, "capture_method": "automatic", "client_secret": null,
        "confirmation_method": "automatic", "created": now, "currency": session["currency"], "customer": null,
        "description": null, "last_payment_error": null, "latest_charge": null, "livemode": false,
        "metadata": metadata, "next_action": null, "on_behalf_of": null, "payment_method": id("pm_1", 22),
        "payment_method_options": {}, "payment_method_types": ["card"], "processing": null,
        "receipt_email": session["customer_email"], "review": null, "setup_future_usage": null, "shipping": null,
        "source": null, "statement_descriptor": null, "statement_descriptor_suffix": null, "status": status,
        "transfer_data": null, "transfer_group": null
    })
}

/// A charge; its `receipt_url` is the simulator's own receipt page (Stripe's is on pay.stripe.com).
pub fn charge(pi: &Value, base_url: &str, now: i64) -> Value {
    let mut c = charge_template();
    let cid = id("ch_3", 21);
    c["id"] = json!(cid);
    c["amount"] = pi["amount"].clone();
    c["amount_captured"] = pi["amount"].clone();
    c["amount_refunded"] = json!(0);
    c["balance_transaction"] = json!(id("txn_3", 21));
    c["captured"] = json!(true);
    c["paid"] = json!(true);
    c["refunded"] = json!(false);
    c["disputed"] = json!(false);
    c["status"] = json!("succeeded");
    c["created"] = json!(now);
    c["currency"] = pi["currency"].clone();
    c["livemode"] = json!(false);
    c["metadata"] = pi["metadata"].clone();
    c["payment_intent"] = pi["id"].clone();
    c["payment_method"] = pi["payment_method"].clone();
    c["receipt_email"] = pi["receipt_email"].clone();
    c["receipt_url"] = json!(format!("{base_url}/receipts/{cid}"));
    // Current API versions no longer embed the refunds list in a charge.
    if let Some(map) = c.as_object_mut() {
        map.remove("refunds");
    }
    c
}

pub fn refund(charge: &Value, amount: i64, reason: &Value, metadata: &Value, now: i64) -> Value {
    json!({
        "id": id("re_3", 21), "object": "refund", "amount": amount, "balance_transaction": id("txn_3", 21),
        "charge": charge["id"], "created": now, "currency": charge["currency"], "destination_details": null,
        "metadata": metadata, "payment_intent": charge["payment_intent"], "reason": reason,
        "receipt_number": null, "source_transfer_reversal": null, "status": "succeeded", "transfer_reversal": null
    })
}

pub fn dispute(charge: &Value, now: i64) -> Value {
    let amount = charge["amount"].as_i64().unwrap_or(0) - charge["amount_refunded"].as_i64().unwrap_or(0);
    json!({
        "id": id("dp_1", 22), "object": "dispute", "amount": amount, "balance_transactions": [],
        "charge": charge["id"], "created": now, "currency": charge["currency"], "enhanced_eligibility_types": [],
        "evidence": {}, "evidence_details": {"due_by": now + 7 * 86400, "has_evidence": false, "past_due": false, "submission_count": 0},
        "is_charge_refundable": false, "livemode": false, "metadata": {}, "payment_intent": charge["payment_intent"],
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "network_reason_code": "10.4"}},
        "reason": "fraudulent", "status": "needs_response"
    })
}

pub fn event(
    kind: &str,
    object: Value,
    previous: Option<Value>,
    api_version: &str,
    endpoints: usize,
    request: Option<(&str, Option<&str>)>,
) -> Value {
    let mut data = json!({ "object": object });
    if let Some(prev) = previous {
        data["previous_attributes"] = prev;
    }
    json!({
        "id": id("evt_1", 22), "object": "event", "api_version": api_version, "created": now(), "data": data,
        "livemode": false, "pending_webhooks": endpoints,
        "request": match request { Some((rid, key)) => json!({"id": rid, "idempotency_key": key}), None => json!({"id": null, "idempotency_key": null}) },
        "type": kind
    })
}

/// The invoice Stripe makes for a session created with `invoice_creation[enabled]=true`, paid,
/// with its hosted page (the simulator serves it at `/invoices/{id}`).
pub fn invoice(id: &str, session: &Value, base_url: &str, now: i64) -> Value {
    json!({
        "id": id,
        "object": "invoice",
        "amount_due": session["amount_total"],
        "amount_paid": session["amount_total"],
        "amount_remaining": 0,
        "currency": session["currency"],
        "customer": session["customer"],
        "customer_email": session["customer_email"],
        "created": now,
        "hosted_invoice_url": format!("{base_url}/invoices/{id}"),
        "invoice_pdf": format!("{base_url}/invoices/{id}/pdf"),
        "livemode": false,
        "metadata": session["invoice_creation"]["invoice_data"]["metadata"],
        "number": format!("SIM-{}", &id[id.len().saturating_sub(6)..]),
        "status": "paid",
        "subtotal": session["amount_subtotal"],
        "total": session["amount_total"],
    })
}
