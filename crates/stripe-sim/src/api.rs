//! The `/v1` API: authentication by secret key, form bodies, idempotent POSTs, Stripe's JSON.

use axum::{
    body::Bytes,
    extract::Request,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{core, error::StripeError, form, is_live_key, objects, schema, StripeSim};

pub fn router(sim: StripeSim) -> Router {
    Router::new()
        .route("/v1/checkout/sessions", post(create_session).get(list_sessions))
        .route("/v1/checkout/sessions/{id}", get(get_session))
        .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
        .route("/v1/checkout/sessions/{id}/line_items", get(line_items))
        .route("/v1/refunds", post(create_refund))
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/payment_intents/{id}", get(get_payment_intent))
        .route("/v1/charges/{id}", get(get_charge))
        .route("/v1/webhook_endpoints", post(create_webhook_endpoint))
        // Every /v1 call needs the secret key, as at Stripe; checked once, here.
        .route_layer(middleware::from_fn_with_state(sim.clone(), require_key))
        .fallback(|uri: Uri| async move {
            StripeError {
                status: 404,
                ..StripeError::invalid("", format!("Unrecognized request URL (GET: {}).", uri.path()))
            }
        })
        .with_state(sim)
}

async fn require_key(State(sim): State<StripeSim>, request: Request, next: Next) -> Response {
    match authenticate(&sim, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The secret key from `Authorization: Bearer sk_…` (or Basic with the key as user name).
fn authenticate(sim: &StripeSim, headers: &HeaderMap) -> Result<(), StripeError> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = if let Some(k) = value.strip_prefix("Bearer ") {
        k.trim().to_string()
    } else if let Some(b) = value.strip_prefix("Basic ") {
        let decoded = base64_decode(b.trim()).unwrap_or_default();
        decoded.split(':').next().unwrap_or("").to_string()
    } else {
        return Err(StripeError::unauthorized("You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."));
    };
    if is_live_key(&key) {
        return Err(StripeError::unauthorized(
            "The Stripe simulator refuses live keys: it is for tests and demos only.",
        ));
    }
    if key != sim.0.config.secret_key {
        let shown: String = key.chars().take(8).collect();
        return Err(StripeError::unauthorized(format!("Invalid API Key provided: {shown}****")));
    }
    Ok(())
}

fn base64_decode(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|a| *a == c)? as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).ok()
}

fn respond(status: StatusCode, body: Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(
        "request-id",
        HeaderValue::from_str(&objects::id("req_", 14)).unwrap_or(HeaderValue::from_static("req_sim")),
    );
    res
}

/// Runs a POST once per `Idempotency-Key`: a retry with the same parameters gets the stored
/// answer (`Idempotent-Replayed: true`); the same key with other parameters is an error.
fn idempotent(
    sim: &StripeSim,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    run: impl FnOnce() -> Result<Value, StripeError>,
) -> Response {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let fingerprint =
        hex::encode(Sha256::new().chain_update(method.as_str()).chain_update(uri.path()).chain_update(body).finalize());
    if let Some(key) = &key {
        if let Some((fp, status, stored)) = sim.lock().idempotency.get(key).cloned() {
            if fp != fingerprint {
                return StripeError::idempotency().into_response();
            }
            let mut res = respond(
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                serde_json::from_str(&stored).unwrap_or(Value::Null),
            );
            res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return res;
        }
    }
    let (status, value) = match run() {
        Ok(v) => (StatusCode::OK, v),
        // Stripe does not store 5xx answers; it does store 4xx ones.
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            serde_json::to_value(error_body(&e)).unwrap_or(Value::Null),
        ),
    };
    if let Some(key) = key {
        sim.lock().idempotency.insert(key, (fingerprint, status.as_u16(), value.to_string()));
    }
    respond(status, value)
}

fn error_body(e: &StripeError) -> Value {
    let mut error = json!({"type": e.kind, "message": e.message});
    if let Some(c) = &e.code {
        error["code"] = json!(c);
    }
    if let Some(p) = &e.param {
        error["param"] = json!(p);
    }
    json!({ "error": error })
}

async fn create_session(
    State(sim): State<StripeSim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&sim, &method, &uri, &headers, &body, || {
        let parsed = form::parse(&body).map_err(|m| StripeError::invalid("", m))?;
        let typed = schema::checkout_session_create(&parsed)?;
        core::create_session(&sim, &typed)
    })
}

fn query(raw: &Option<String>) -> Result<Value, StripeError> {
    form::parse(raw.as_deref().unwrap_or("").as_bytes()).map_err(|m| StripeError::invalid("", m))
}

async fn list_sessions(State(sim): State<StripeSim>, RawQuery(raw): RawQuery) -> Result<Response, StripeError> {
    let q = query(&raw)?;
    let state = sim.lock();
    let mut items = Vec::new();
    for id in state.session_order.iter().rev() {
        let s = &state.sessions[id];
        if let Some(pi) = q.get("payment_intent").and_then(Value::as_str) {
            if s["payment_intent"] != pi {
                continue;
            }
        }
        if let Some(status) = q.get("status").and_then(Value::as_str) {
            if s["status"] != status {
                continue;
            }
        }
        if !core::created_matches(&q, s["created"].as_i64().unwrap_or(0))? {
            continue;
        }
        items.push(s.clone());
    }
    Ok(respond(StatusCode::OK, core::list("/v1/checkout/sessions", items, &q)?))
}

async fn get_session(State(sim): State<StripeSim>, Path(id): Path<String>) -> Result<Response, StripeError> {
    let s = sim.session(&id).ok_or_else(|| StripeError::not_found("checkout.session", &id))?;
    Ok(respond(StatusCode::OK, s))
}

async fn line_items(State(sim): State<StripeSim>, Path(id): Path<String>) -> Result<Response, StripeError> {
    let items =
        sim.lock().line_items.get(&id).cloned().ok_or_else(|| StripeError::not_found("checkout.session", &id))?;
    let data: Vec<Value> = items
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let unit = i.pointer("/price_data/unit_amount").cloned().unwrap_or(json!(0));
            let qty = i.get("quantity").cloned().unwrap_or(json!(1));
            let total = unit.as_i64().unwrap_or(0) * qty.as_i64().unwrap_or(1);
            json!({"id": objects::id("li_1", 22), "object": "item", "amount_subtotal": total, "amount_total": total,
                   "currency": i.pointer("/price_data/currency"), "description": i.pointer("/price_data/product_data/name"), "quantity": qty})
        })
        .collect();
    Ok(respond(
        StatusCode::OK,
        json!({"object": "list", "data": data, "has_more": false, "url": format!("/v1/checkout/sessions/{id}/line_items")}),
    ))
}

async fn expire_session(
    State(sim): State<StripeSim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    idempotent(&sim, &method, &uri, &headers, &body, || core::expire(&sim, &id, None))
}

async fn create_refund(
    State(sim): State<StripeSim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(&sim, &method, &uri, &headers, &body, || {
        let parsed = form::parse(&body).map_err(|m| StripeError::invalid("", m))?;
        core::refund(&sim, &parsed)
    })
}

async fn list_events(State(sim): State<StripeSim>, RawQuery(raw): RawQuery) -> Result<Response, StripeError> {
    let q = query(&raw)?;
    let events = sim.events();
    let mut items = Vec::new();
    for e in events.into_iter().rev() {
        if let Some(t) = q.get("type").and_then(Value::as_str) {
            if e["type"] != t {
                continue;
            }
        }
        if !core::created_matches(&q, e["created"].as_i64().unwrap_or(0))? {
            continue;
        }
        items.push(e);
    }
    Ok(respond(StatusCode::OK, core::list("/v1/events", items, &q)?))
}

async fn get_event(State(sim): State<StripeSim>, Path(id): Path<String>) -> Result<Response, StripeError> {
    let e = sim
        .events()
        .into_iter()
        .find(|e| e["id"] == id.as_str())
        .ok_or_else(|| StripeError::not_found("event", &id))?;
    Ok(respond(StatusCode::OK, e))
}

async fn get_payment_intent(State(sim): State<StripeSim>, Path(id): Path<String>) -> Result<Response, StripeError> {
    let pi =
        sim.lock().payment_intents.get(&id).cloned().ok_or_else(|| StripeError::not_found("payment_intent", &id))?;
    Ok(respond(StatusCode::OK, pi))
}

async fn get_charge(State(sim): State<StripeSim>, Path(id): Path<String>) -> Result<Response, StripeError> {
    let c = sim.lock().charges.get(&id).cloned().ok_or_else(|| StripeError::not_found("charge", &id))?;
    Ok(respond(StatusCode::OK, c))
}

async fn create_webhook_endpoint(State(sim): State<StripeSim>, body: Bytes) -> Result<Response, StripeError> {
    let p = form::parse(&body).map_err(|m| StripeError::invalid("", m))?;
    let url = p.get("url").and_then(Value::as_str).ok_or_else(|| StripeError::missing_parameter("url"))?.to_string();
    let secret = objects::id("whsec_", 32);
    sim.add_webhook_endpoint(crate::WebhookEndpoint { url: url.clone(), secret: secret.clone() });
    Ok(respond(
        StatusCode::OK,
        json!({"id": objects::id("we_1", 22), "object": "webhook_endpoint", "url": url, "secret": secret,
        "enabled_events": p.get("enabled_events").cloned().unwrap_or(json!(["*"])), "status": "enabled", "livemode": false,
        "api_version": sim.0.config.api_version, "created": objects::now()}),
    ))
}
