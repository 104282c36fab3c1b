//! The whole HTTP surface: every path, its handler, and the layers around them.

pub mod account;
pub mod admin;
pub mod admin_pages;
pub mod auth;
pub mod billing;
pub mod credits;
pub mod extract;
pub mod handoff;
pub mod holds;
pub mod html;
pub mod meta;
pub mod openapi;
pub mod pages;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{header, HeaderName, HeaderValue, Method},
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{Any, CorsLayer},
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{error::ApiError, AppState};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a random per-process prefix and a counter (`3f9a…c2-000000000017`). Unique across
/// replicas like a UUID, without a `getrandom` system call on every request.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> RequestIds {
        let prefix = uuid::Uuid::new_v4().simple().to_string();
        RequestIds { prefix: prefix[..16].into(), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:012}", self.prefix)).ok().map(RequestId::new)
    }
}

pub fn router(state: AppState) -> Router {
    // The operator console's JSON API: admin API tokens or the console cookie (`http::admin`).
    let admin_api = Router::new()
        .route("/me", get(admin::api_me))
        .route("/audit", get(admin::api_audit))
        .route("/logout", post(admin::api_logout))
        .route("/overview", get(admin_pages::api_overview))
        .route("/users", get(admin_pages::api_users))
        .route("/users/{user_id}", get(admin_pages::api_user))
        .route("/users/{user_id}/grant", post(admin_pages::api_grant))
        .route("/users/{user_id}/logout-all", post(admin_pages::api_logout_all))
        .route("/users/{user_id}/one-time-password", post(admin_pages::api_one_time_password))
        .route("/purchases", get(admin_pages::api_purchases))
        .route("/events", get(admin_pages::api_events))
        .route("/events/{event_id}", get(admin_pages::api_event))
        .route("/events/{event_id}/replay", post(admin_pages::api_replay))
        .route("/reconcile", post(admin_pages::api_reconcile))
        .route("/audit-runs", post(admin_pages::api_audit_run))
        .route("/runs", get(admin_pages::api_runs))
        .route("/runs/{run_id}", get(admin_pages::api_run))
        // Personal data and one-time passwords: never cached.
        .layer(axum::middleware::map_response(admin::no_store))
        .method_not_allowed_fallback(meta::method_not_allowed);
    // The operator console's pages, with the security headers of every HTML page.
    let console = Router::new()
        .route("/admin", get(admin_pages::overview_page))
        .route("/admin/login", get(admin::login_page).post(admin::login))
        .route("/admin/logout", post(admin::logout))
        .route("/admin/audit", get(admin::audit_page))
        .route("/admin/users", get(admin_pages::users_page))
        .route("/admin/users/{id}", get(admin_pages::user_page))
        .route("/admin/users/{id}/grant", post(admin_pages::grant_form))
        .route("/admin/users/{id}/logout-all", post(admin_pages::logout_all_form))
        .route("/admin/users/{id}/one-time-password", post(admin_pages::one_time_password_form))
        .route("/admin/purchases", get(admin_pages::purchases_page))
        .route("/admin/events", get(admin_pages::events_page))
        .route("/admin/events/{id}", get(admin_pages::event_page))
        .route("/admin/events/{id}/replay", post(admin_pages::replay_form))
        .route("/admin/reconcile", get(admin_pages::reconcile_page).post(admin_pages::reconcile_form))
        .route("/admin/audit-runs", post(admin_pages::audit_run_form))
        .route("/assets/admin.css", get(admin::stylesheet))
        .layer(axum::middleware::map_response(html::html_headers));

    let api = Router::new()
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/logout-all", post(auth::logout_all))
        .route("/auth/password", post(auth::change_password))
        .route("/auth/options", get(auth::options))
        .route("/auth/password-reset", post(auth::request_password_reset))
        .route("/auth/handoff", post(handoff::start))
        .route("/auth/handoff/{handoff_id}", get(handoff::poll))
        .route("/me", get(auth::me))
        .route("/credits/balance", get(credits::balance))
        .route("/credits/history", get(credits::history))
        .route("/credits/spend", post(credits::spend))
        .route("/credits/holds", post(holds::create))
        .route("/credits/holds/{hold_id}/capture", post(holds::capture))
        .route("/credits/holds/{hold_id}/release", post(holds::release))
        .route("/billing/packs", get(meta::packs))
        .route("/billing/checkout", post(billing::start_checkout))
        .route("/billing/checkout/{session_id}", get(billing::checkout_status))
        .route("/billing/checkouts", get(billing::list_checkouts))
        // Stripe events can be larger than API bodies.
        .route("/billing/webhook", post(billing::webhook).layer(DefaultBodyLimit::max(1024 * 1024)))
        .route("/openapi.json", get(meta::openapi_json))
        .nest("/admin", admin_api)
        .method_not_allowed_fallback(meta::method_not_allowed);

    // The Figma UI iframe has origin `null` and authenticates with a bearer token, never cookies:
    // any origin may call, credentials are not allowed.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(api_types::HANDOFF_KEY_HEADER),
        ])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600));

    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request| {
        let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
        // The path only: query strings may carry cursors or session ids, never secrets, but stay lean.
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
    });

    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .merge(
            axum::Router::new()
                .route("/billing/success", get(pages::success))
                .route("/billing/cancel", get(pages::cancel))
                .route("/account/reset", get(account::reset_form).post(account::reset_submit))
                .route("/account/sign-in", get(handoff::page).post(handoff::submit))
                .route("/assets/pages.css", get(html::stylesheet))
                .layer(axum::middleware::map_response(html::html_headers)),
        )
        .merge(console)
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("a handler panicked").into_response()))
        .layer(cors)
        .layer(axum::middleware::from_fn(outside_cors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
        .with_state(state)
}

/// The console and its API (`/admin…`, `/api/v1/admin…`) authenticate with a cookie: they are
/// taken out of the any-origin CORS layer. A preflight is refused, and no CORS header is sent,
/// so a page on another origin can neither read an answer nor send a non-simple request.
pub fn is_console_path(path: &str) -> bool {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'));
    under("/admin") || under("/api/v1/admin")
}

async fn outside_cors(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    if !is_console_path(req.uri().path()) {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS {
        return ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            api_types::codes::METHOD_NOT_ALLOWED,
            "The admin API and console accept no cross-origin requests.",
        )
        .into_response();
    }
    let mut response = next.run(req).await;
    let cors: Vec<HeaderName> =
        response.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).cloned().collect();
    for name in cors {
        response.headers_mut().remove(name);
    }
    response
}
