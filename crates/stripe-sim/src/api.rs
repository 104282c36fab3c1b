//! The `/v1` API: authentication by secret key, parameters validated against the endpoint table
//! (src/endpoints.rs) before anything runs, idempotent POSTs, Stripe's JSON and errors, and a
//! `Request-Id` on every answer.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    core::{self, Saved},
    endpoints::{self, Call, Endpoint},
    error::StripeError,
    form, is_live_key, objects, schema, RequestRecord, StripeSim,
};

/// Everything the hosted pages do not serve comes here: `/v1` through the endpoint table, any
/// other path or method as Stripe's unrecognized URL.
pub fn router(sim: StripeSim) -> Router {
    Router::new().fallback(dispatch).with_state(sim)
}

async fn dispatch(State(sim): State<StripeSim>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = objects::id("req_", 14);
    let path = uri.path().to_string();
    let mut res = handle(&sim, &method, &uri, &headers, &body, &request_id);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("request-id", v);
    }
    if path.starts_with("/v1/") {
        sim.lock().requests.push(RequestRecord {
            method: method.to_string(),
            path,
            idempotency_key: header(&headers, "idempotency-key"),
            request_id,
            status: res.status().as_u16(),
        });
    }
    res
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn unrecognized(method: &Method, path: &str) -> Response {
    StripeError {
        status: 404,
        ..StripeError::invalid(
            "",
            format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            ),
        )
    }
    .into_response()
}

fn handle(sim: &StripeSim, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8], request_id: &str) -> Response {
    let path = uri.path();
    if !path.starts_with("/v1/") {
        return unrecognized(method, path);
    }
    if let Err(e) = authenticate(sim, headers) {
        return e.into_response();
    }
    if let Some(version) = header(headers, "stripe-version") {
        if version != sim.0.config.api_version {
            return StripeError::invalid(
                "",
                format!(
                    "stripe-sim speaks Stripe API version {} only; this request asked for {version}.",
                    sim.0.config.api_version
                ),
            )
            .into_response();
        }
    }
    let Some((endpoint, id)) = endpoints::find(method.as_str(), path) else {
        return unrecognized(method, path);
    };
    let raw = match parameters(method, uri, body) {
        Ok(raw) => raw,
        Err(e) => return e.into_response(),
    };
    // Stripe documents idempotency keys for POST; on GET they have no effect.
    let key = (method == Method::POST).then(|| header(headers, "idempotency-key")).flatten();
    let fingerprint = hex::encode(
        Sha256::new().chain_update(method.as_str()).chain_update(path).chain_update(raw.to_string()).finalize(),
    );
    // The saved answer is looked up, the request validated and the key marked as executing in one
    // step, so two concurrent requests with one key cannot both run.
    let params = {
        let mut state = sim.lock();
        if let Some(key) = &key {
            match state.idempotency.get(key) {
                Some(Saved::Done { fingerprint: fp, status, body }) => {
                    if *fp != fingerprint {
                        return StripeError::idempotency().into_response();
                    }
                    let mut res = respond(*status, serde_json::from_str(body).unwrap_or(Value::Null));
                    res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
                    return res;
                }
                Some(Saved::Executing) => return StripeError::idempotency_in_progress(key).into_response(),
                None => {}
            }
        }
        // A request that fails validation never began executing: nothing is saved for its key.
        let params = match validate(endpoint, &raw) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        if let Some(key) = &key {
            state.idempotency.insert(key.clone(), Saved::Executing);
        }
        params
    };
    let call = Call { id, params, request: (method == Method::POST).then(|| (request_id.to_string(), key.clone())) };
    let result = (endpoint.run)(sim, &call).and_then(|value| match call.params.get("expand") {
        Some(paths) => core::expand(sim, value, paths),
        None => Ok(value),
    });
    let (status, value) = match result {
        Ok(v) => (200, v),
        Err(e) => (e.status, e.body()),
    };
    // Once the endpoint began executing, its answer is saved whatever its status, 500s included
    // (https://docs.stripe.com/idempotency).
    if let Some(key) = key {
        sim.lock().idempotency.insert(key, Saved::Done { fingerprint, status, body: value.to_string() });
    }
    respond(status, value)
}

/// The query string's parameters, and for a POST the form body's (which win).
fn parameters(method: &Method, uri: &Uri, body: &[u8]) -> Result<Value, StripeError> {
    let parse = |bytes: &[u8]| form::parse(bytes).map_err(|m| StripeError::invalid("", m));
    let mut raw = parse(uri.query().unwrap_or("").as_bytes())?;
    if method == Method::POST {
        if let (Value::Object(q), Value::Object(b)) = (&mut raw, parse(body)?) {
            q.extend(b);
        }
    }
    Ok(raw)
}

/// Stripe's checks of the parameter tree, then the simulator's own: nothing whose effect it does
/// not implement, and `expand[]` only along what it can expand.
fn validate(endpoint: &Endpoint, raw: &Value) -> Result<Value, StripeError> {
    let params = schema::check(raw, (endpoint.params)(), "")?;
    schema::check_implemented(&params, endpoint.implemented)?;
    for (i, path) in params.get("expand").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let path = path.as_str().unwrap_or_default();
        let depth = if path.starts_with("data.") { 2 } else { 1 };
        let head: Vec<&str> = path.splitn(depth + 1, '.').take(depth).collect();
        if !endpoint.expandable.contains(&head.join(".").as_str()) {
            return Err(StripeError::invalid(
                &format!("expand[{i}]"),
                format!("This property cannot be expanded ({path})."),
            ));
        }
    }
    Ok(params)
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

fn respond(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
}
