//! Stripe's error shape: `{"error":{"type","code","doc_url","message","param"}}` with an HTTP status.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
}

impl StripeError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        StripeError {
            status: 400,
            kind: "invalid_request_error",
            code: None,
            message: message.into(),
            param: (!param.is_empty()).then(|| param.to_string()),
        }
    }

    pub fn coded(param: &str, code: &str, message: impl Into<String>) -> Self {
        StripeError { code: Some(code.into()), ..Self::invalid(param, message) }
    }

    pub fn unknown_parameter(param: &str) -> Self {
        Self::coded(param, "parameter_unknown", format!("Received unknown parameter: {param}"))
    }

    pub fn missing_parameter(param: &str) -> Self {
        Self::coded(param, "parameter_missing", format!("Missing required param: {param}."))
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        StripeError { status: 404, ..Self::coded("id", "resource_missing", format!("No such {kind}: '{id}'")) }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        StripeError { status: 401, kind: "invalid_request_error", code: None, message: message.into(), param: None }
    }

    /// Another request with this key is still executing (https://docs.stripe.com/idempotency).
    pub fn idempotency_in_progress(key: &str) -> Self {
        StripeError {
            status: 409,
            kind: "idempotency_error",
            code: None,
            message: format!("There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): {key}. Please try again later."),
            param: None,
        }
    }

    pub fn idempotency() -> Self {
        StripeError {
            status: 400,
            kind: "idempotency_error",
            code: None,
            message: "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than the one used for the original request.".into(),
            param: None,
        }
    }
}

impl StripeError {
    /// `{"error": {type, code, doc_url, message, param}}`, as Stripe answers
    /// (https://docs.stripe.com/api/errors); `doc_url` comes with a `code`.
    pub fn body(&self) -> Value {
        let mut error = json!({"type": self.kind, "message": self.message});
        if let Some(code) = &self.code {
            error["code"] = json!(code);
            error["doc_url"] = json!(format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")));
        }
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(self.body())).into_response()
    }
}
