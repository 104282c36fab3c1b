//! The whole HTTP surface: every path, its handler, and the layers around them.

pub mod account;
pub mod admin_api;
pub mod admin_webhooks;
pub mod auth;
pub mod billing;
pub mod connections;
pub mod console;
pub mod credits;
pub mod extract;
pub mod handoff;
pub mod holds;
pub mod html;
pub mod meta;
pub mod openapi;
pub mod pages;
pub mod service;
pub mod teams;

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

use utoipa_axum::{router::OpenApiRouter, routes};

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

/// Every route, declared once. The JSON API goes through `utoipa_axum`'s `routes!`, so the router
/// and the OpenAPI document come from the same declaration; pages, assets and probes (which are not
/// JSON API) go through [`Plain`], which records them (tests check that none of them is under
/// `/api/`).
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi, Vec<PlainRoute>) {
    // The operator console's JSON API: admin API tokens or the console cookie (`http::admin_api`).
    let admin_api = OpenApiRouter::new()
        .routes(routes!(admin_api::api_me))
        .routes(routes!(admin_api::api_audit))
        .routes(routes!(admin_api::api_logout))
        .routes(routes!(admin_api::api_overview))
        .routes(routes!(admin_api::api_users))
        .routes(routes!(admin_api::api_user))
        .routes(routes!(admin_api::api_grant))
        .routes(routes!(admin_api::api_logout_all))
        .routes(routes!(admin_api::api_one_time_password))
        .routes(routes!(admin_api::api_purchases))
        .routes(routes!(admin_api::api_events))
        .routes(routes!(admin_api::api_event))
        .routes(routes!(admin_api::api_replay))
        .routes(routes!(admin_api::api_reconcile))
        .routes(routes!(admin_api::api_audit_run))
        .routes(routes!(admin_api::api_runs))
        .routes(routes!(admin_api::api_run))
        .routes(routes!(admin_api::api_service_keys, admin_api::api_create_service_key))
        .routes(routes!(admin_api::api_revoke_service_key))
        .routes(routes!(admin_api::api_codes, admin_api::api_create_code))
        .routes(routes!(admin_api::api_disable_code))
        .routes(routes!(admin_webhooks::api_webhooks, admin_webhooks::api_add_webhook))
        .routes(routes!(admin_webhooks::api_remove_webhook))
        .routes(routes!(admin_webhooks::api_webhook_deliveries))
        .routes(routes!(admin_webhooks::api_replay_webhook))
        // Personal data and one-time passwords: never cached.
        .layer(axum::middleware::map_response(admin_api::no_store));

    let api = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::options))
        .routes(routes!(auth::request_password_reset))
        .routes(routes!(handoff::start))
        .routes(routes!(handoff::poll))
        .routes(routes!(auth::service_token))
        .routes(routes!(auth::verify_email))
        .routes(routes!(auth::me))
        .routes(routes!(credits::balance))
        .routes(routes!(credits::get_alerts, credits::put_alerts))
        .routes(routes!(credits::history))
        .routes(routes!(credits::usage))
        .routes(routes!(credits::export))
        .routes(routes!(credits::spend))
        .routes(routes!(credits::redeem))
        .routes(routes!(holds::create))
        .routes(routes!(holds::capture))
        .routes(routes!(holds::release))
        .routes(routes!(meta::packs))
        .routes(routes!(billing::start_checkout))
        .routes(routes!(billing::checkout_status))
        .routes(routes!(billing::cancel_checkout))
        .routes(routes!(billing::list_checkouts))
        // Stripe events can be larger than API bodies.
        .merge(OpenApiRouter::new().routes(routes!(billing::webhook)).layer(DefaultBodyLimit::max(1024 * 1024)))
        .routes(routes!(teams::create, teams::list))
        .routes(routes!(teams::delete))
        .routes(routes!(teams::members))
        .routes(routes!(teams::activity))
        .routes(routes!(teams::update_member, teams::remove_member))
        .routes(routes!(teams::invite, teams::invitations))
        .routes(routes!(teams::revoke_invitation))
        .routes(routes!(teams::accept))
        .routes(routes!(credits::get_team_alerts, credits::put_team_alerts))
        .routes(routes!(service::verify))
        .routes(routes!(service::balance))
        .routes(routes!(service::spend))
        .routes(routes!(service::hold))
        .routes(routes!(service::capture))
        .routes(routes!(service::release))
        .merge(admin_api);
    let (api, document) = api.split_for_parts();

    let mut plain = Plain::default();
    // The OpenAPI document itself, and the probes.
    plain.route("/api/v1/openapi.json", "GET", get(meta::openapi_json));
    plain.route("/healthz", "GET", get(meta::healthz));
    plain.route("/readyz", "GET", get(meta::readyz));
    // The pages Stripe and mails send people to, with the security headers of every HTML page.
    let mut pages = Plain::default();
    pages.route("/billing/success", "GET", get(pages::success));
    pages.route("/billing/cancel", "GET POST", get(pages::cancel).post(pages::cancel_submit));
    pages.route("/account/reset", "GET POST", get(account::reset_form).post(account::reset_submit));
    pages.route("/account/sign-in", "GET POST", get(handoff::page).post(handoff::submit));
    pages.route("/account/verify", "GET POST", get(account::verify_form).post(account::verify_submit));
    pages.route("/exports/csv", "GET", get(credits::download));
    pages.route("/assets/pages.css", "GET", get(html::stylesheet));
    // The operator console's pages.
    pages.route("/admin", "GET", get(console::overview::overview_page));
    pages.route("/admin/login", "GET POST", get(console::sign_in::login_page).post(console::sign_in::login));
    pages.route("/admin/logout", "POST", post(console::sign_in::logout));
    pages.route("/admin/audit", "GET", get(console::audit::audit_page));
    pages.route("/admin/users", "GET", get(console::users::users_page));
    pages.route("/admin/users/{id}", "GET", get(console::users::user_page));
    pages.route("/admin/users/{id}/grant", "POST", post(console::users::grant_form));
    pages.route("/admin/users/{id}/logout-all", "POST", post(console::users::logout_all_form));
    pages.route("/admin/users/{id}/one-time-password", "POST", post(console::users::one_time_password_form));
    pages.route("/admin/teams", "GET", get(console::teams::teams_page));
    pages.route("/admin/teams/{id}", "GET", get(console::teams::team_page));
    pages.route("/admin/teams/{id}/grant", "POST", post(console::teams::grant_form));
    pages.route("/admin/purchases", "GET", get(console::purchases::purchases_page));
    pages.route("/admin/events", "GET", get(console::events::events_page));
    pages.route("/admin/events/{id}", "GET", get(console::events::event_page));
    pages.route("/admin/events/{id}/replay", "POST", post(console::events::replay_form));
    pages.route("/admin/reconcile", "GET POST", get(console::runs::reconcile_page).post(console::runs::reconcile_form));
    pages.route("/admin/audit-runs", "POST", post(console::runs::audit_run_form));
    pages.route(
        "/admin/service-keys",
        "GET POST",
        get(console::service_keys::keys_page).post(console::service_keys::create_form),
    );
    pages.route("/admin/service-keys/{name}/revoke", "POST", post(console::service_keys::revoke_form));
    pages.route("/admin/codes", "GET POST", get(console::codes::codes_page).post(console::codes::create_form));
    pages.route("/admin/codes/{code}/disable", "POST", post(console::codes::disable_form));
    pages.route(
        "/admin/webhooks",
        "GET POST",
        get(console::webhooks::endpoints_page).post(console::webhooks::add_form),
    );
    pages.route("/admin/webhooks/deliveries", "GET", get(console::webhooks::deliveries_page));
    pages.route("/admin/webhooks/deliveries/replay", "POST", post(console::webhooks::replay_form));
    pages.route("/admin/webhooks/{id}/remove", "POST", post(console::webhooks::remove_form));
    pages.route("/admin/webhooks/{id}/rotate", "POST", post(console::webhooks::rotate_form));
    pages.route("/assets/admin.css", "GET", get(console::stylesheet));

    let router = Router::new()
        .merge(api)
        .merge(plain.router)
        .merge(pages.router.layer(axum::middleware::map_response(html::html_headers)));
    let mut table = plain.table;
    table.extend(pages.table);
    (router, document, table)
}

/// A route that is not part of the JSON API (a page, an asset, a probe), as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRoute {
    pub path: &'static str,
    /// Space-separated methods.
    pub methods: &'static str,
}

/// Registers plain routes and remembers them.
#[derive(Default)]
struct Plain {
    router: Router<AppState>,
    table: Vec<PlainRoute>,
}

impl Plain {
    fn route(&mut self, path: &'static str, methods: &'static str, handler: axum::routing::MethodRouter<AppState>) {
        self.router = std::mem::take(&mut self.router).route(path, handler);
        self.table.push(PlainRoute { path, methods });
    }
}

/// The routes that are not JSON API (for tests: none of them may be under `/api/` but the
/// OpenAPI document itself).
pub fn plain_routes() -> Vec<PlainRoute> {
    routes().2
}

/// The OpenAPI document, built from the same declaration as the router.
pub fn document() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(state: AppState) -> Router {
    let (routes, _, _) = routes();
    // The Figma UI iframe has origin `null` and authenticates with a bearer token, never cookies:
    // any origin may call, credentials are not allowed.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        // PUT for settings (`/me/alerts`), PATCH and DELETE for teams' members and invitations.
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
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

    routes
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("a handler panicked").into_response()))
        .layer(cors)
        .layer(axum::middleware::from_fn(outside_cors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
        .layer(axum::middleware::map_request(drop_unsafe_request_id))
        .with_state(state)
}

/// A client's `X-Request-Id` is echoed and logged: it is kept only as 1 to 64 characters of
/// `A-Z a-z 0-9 - _` (nothing that could forge a log field or a header), else dropped so that
/// [`SetRequestIdLayer`] makes a fresh one.
async fn drop_unsafe_request_id(mut req: Request) -> Request {
    let safe = |v: &HeaderValue| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    };
    let mut values = req.headers().get_all(&REQUEST_ID).iter();
    let keep = matches!((values.next(), values.next()), (Some(v), None) if safe(v));
    if !keep {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// The console and its API (`/admin…`, `/api/v1/admin…`) authenticate with a cookie, and the
/// service API (`/api/v1/service…`) with a key no browser should hold: they are taken out of the
/// any-origin CORS layer. A preflight is refused, and no CORS header is sent, so a page on
/// another origin can neither read an answer nor send a non-simple request.
pub fn is_console_path(path: &str) -> bool {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'));
    under("/admin") || under("/api/v1/admin") || under("/api/v1/service")
}

async fn outside_cors(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    if !is_console_path(req.uri().path()) {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS {
        return ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            api_types::codes::METHOD_NOT_ALLOWED,
            "The admin API, the console and the service API accept no cross-origin requests.",
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
