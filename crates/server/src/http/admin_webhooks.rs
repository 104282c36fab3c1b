//! The admin JSON API's webhooks-out door (`/api/v1/admin/webhooks…`): parses, calls
//! `ops::webhooks`, renders. The rules (URL checks, audit rows, what may be replayed) are the
//! operations layer's; its `OpError` sets the status and the error envelope.

use api_types::{
    AdminNewWebhookEndpoint, AdminWebhookDelivery, AdminWebhookDeliveryList, AdminWebhookEndpoint,
    AdminWebhookEndpointCreated, AdminWebhookEndpointList, AdminWebhookReplay, ErrorEnvelope,
};
use axum::{extract::State, http::StatusCode, Json};
use secrecy::ExposeSecret;

use super::{
    admin_api::AdminApi,
    console::webhooks::DeliveriesQuery,
    extract::{ApiJson, ApiQuery, PathId},
};
use crate::{
    db::rfc3339_ms,
    error::{ApiError, ApiResult},
    ops,
    webhooks::{deliveries::Delivery, endpoints::Endpoint},
    AppState,
};

fn endpoint_view(e: Endpoint) -> AdminWebhookEndpoint {
    AdminWebhookEndpoint {
        id: e.id,
        url: e.url,
        events: e.events,
        created_at: rfc3339_ms(e.created_at),
        created_by: e.created_by,
        previous_secret_until: e.previous_secret_until.map(rfc3339_ms),
        pending: e.pending,
        delivered: e.delivered,
        failed: e.failed,
    }
}

fn delivery_view(d: Delivery) -> AdminWebhookDelivery {
    AdminWebhookDelivery {
        // Only a pending delivery has a next try; for the others the column is a leftover.
        next_attempt_at: (d.status == "pending").then(|| rfc3339_ms(d.next_attempt_at)),
        event_id: d.event_id,
        endpoint_id: d.endpoint_id,
        event_type: d.event_type,
        status: d.status,
        attempts: d.attempts,
        last_attempt_at: d.last_attempt_at.map(rfc3339_ms),
        last_status: d.last_status,
        last_error: d.last_error,
        delivered_at: d.delivered_at.map(rfc3339_ms),
        created_at: rfc3339_ms(d.created_at),
    }
}

/// The live webhook endpoints (never their secrets), with their deliveries by status.
#[utoipa::path(get, path = "/api/v1/admin/webhooks", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "Live endpoints, oldest first", body = AdminWebhookEndpointList),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
    ))]
pub async fn api_webhooks(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
) -> ApiResult<Json<AdminWebhookEndpointList>> {
    let endpoints = ops::webhooks::list_endpoints(&state).await?;
    Ok(Json(AdminWebhookEndpointList { endpoints: endpoints.into_iter().map(endpoint_view).collect() }))
}

/// Register a webhook endpoint; its signing secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/admin/webhooks", tag = "admin", security(("admin" = [])), request_body = AdminNewWebhookEndpoint,
    responses(
        (status = 201, description = "The endpoint and its secret, shown once", body = AdminWebhookEndpointCreated),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 422, description = "A URL that cannot be an endpoint (form, scheme, private address) or an unknown event type", body = ErrorEnvelope),
    ))]
pub async fn api_add_webhook(
    State(state): State<AppState>,
    admin: AdminApi,
    ApiJson(body): ApiJson<AdminNewWebhookEndpoint>,
) -> ApiResult<(StatusCode, Json<AdminWebhookEndpointCreated>)> {
    let events = body.events.unwrap_or_default();
    let created = ops::webhooks::add_endpoint(&state, &admin.op(), &body.url, &events).await?;
    Ok((
        StatusCode::CREATED,
        Json(AdminWebhookEndpointCreated {
            id: created.id,
            url: created.url,
            events: created.events.iter().map(|t| t.as_str().to_string()).collect(),
            secret: created.secret.expose_secret().to_string(),
        }),
    ))
}

/// Remove a webhook endpoint; its pending deliveries are cancelled.
#[utoipa::path(delete, path = "/api/v1/admin/webhooks/{endpoint_id}", tag = "admin", security(("admin" = [])),
    params(("endpoint_id" = String, Path, description = "`ep_…`")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 404, description = "No live endpoint has this id", body = ErrorEnvelope),
    ))]
pub async fn api_remove_webhook(
    State(state): State<AppState>,
    admin: AdminApi,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    ops::webhooks::remove_endpoint(&state, &admin.op(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deliveries, newest events first, by status and endpoint.
#[utoipa::path(get, path = "/api/v1/admin/webhooks/deliveries", tag = "admin", security(("admin" = [])),
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "Deliveries", body = AdminWebhookDeliveryList),
        (status = 400, description = "Query parameters that cannot be read", body = ErrorEnvelope),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`)", body = ErrorEnvelope),
        (status = 422, description = "An unknown status", body = ErrorEnvelope),
    ))]
pub async fn api_webhook_deliveries(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<AdminWebhookDeliveryList>> {
    let list = ops::webhooks::list_deliveries(&state, &q.filter()).await?;
    Ok(Json(AdminWebhookDeliveryList { deliveries: list.into_iter().map(delivery_view).collect() }))
}

/// Send a failed (or delivered) delivery again now, with the same `webhook-id` and body.
#[utoipa::path(post, path = "/api/v1/admin/webhooks/deliveries/replay", tag = "admin", security(("admin" = [])), request_body = AdminWebhookReplay,
    responses(
        (status = 200, description = "The delivery, pending again", body = AdminWebhookDelivery),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 404, description = "No such delivery, or its endpoint was removed", body = ErrorEnvelope),
        (status = 422, description = "The delivery is pending or cancelled", body = ErrorEnvelope),
    ))]
pub async fn api_replay_webhook(
    State(state): State<AppState>,
    admin: AdminApi,
    ApiJson(body): ApiJson<AdminWebhookReplay>,
) -> ApiResult<Json<AdminWebhookDelivery>> {
    ops::webhooks::replay_delivery(&state, &admin.op(), &body.event_id, &body.endpoint_id).await?;
    let filter = crate::webhooks::deliveries::Filter {
        status: None,
        endpoint_id: Some(body.endpoint_id.trim().to_string()),
        event_id: Some(body.event_id.trim().to_string()),
        limit: 1,
    };
    let mut found = ops::webhooks::list_deliveries(&state, &filter).await?;
    found.pop().map(|d| Json(delivery_view(d))).ok_or_else(|| ApiError::not_found("There is no such delivery."))
}
