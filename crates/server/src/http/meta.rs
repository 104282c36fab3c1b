//! Health, readiness, the pack catalogue, the OpenAPI document and the fallbacks.

use api_types::{codes, PacksResponse};
use axum::{extract::State, http::StatusCode, Json};
use serde_json::json;

use crate::{error::ApiError, AppState};

/// The process is up (does not touch the database).
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers: safe to route traffic here.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.db.health().can_write() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "The database refuses writes for lack of space.",
        ));
    }
    if state.db.ping().await {
        Ok(Json(json!({"status": "ready", "database": state.db.kind().to_string()})))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "The database is not reachable."))
    }
}

/// The credit packs for sale (public).
#[utoipa::path(get, path = "/api/v1/billing/packs", tag = "billing",
    responses((status = 200, description = "The pack catalogue", body = PacksResponse)))]
pub async fn packs(State(state): State<AppState>) -> Json<PacksResponse> {
    // With exclusive Stripe Tax, tax is added at checkout: the plugin says "plus tax".
    let note = state.config.stripe.as_ref().and_then(|s| s.checkout.tax_note());
    Json(PacksResponse::catalogue_with_tax_note(note))
}

/// The OpenAPI document (built once: it comes from the router's declaration).
pub async fn openapi_json() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| serde_json::to_string(&crate::http::document()).unwrap_or_default());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.as_str()).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("There is nothing at this address.")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, codes::METHOD_NOT_ALLOWED, "This method is not allowed here.")
}
