//! Cross-cutting HTTP behaviour: envelope on every failure, CORS for the Figma iframe, request ids,
//! health and readiness, packs, OpenAPI, operator grant.

mod common;

use common::{assert_error, spawn_app, Backend};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn health_readiness_and_packs(b: Backend) {
    let app = spawn_app(b).await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let packs: Value = app.get("/api/v1/billing/packs", None).await.json().await.unwrap();
    let ids: Vec<(&str, i64, i64)> = packs["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["credits"].as_i64().unwrap(), p["price_cents"].as_i64().unwrap()))
        .collect();
    assert_eq!(ids, vec![("pack_25", 25, 599), ("pack_75", 75, 1299), ("pack_200", 200, 2599)]);
    assert!(packs["packs"].as_array().unwrap().iter().all(|p| p["currency"] == "usd" && p["label"].is_string()));
}

async fn readiness_fails_when_database_is_gone(b: Backend) {
    let app = spawn_app(b).await;
    app.state.db.close().await;
    assert_error(app.get("/readyz", None).await, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK, "the process is still up");
}

async fn every_failure_uses_the_envelope(b: Backend) {
    let app = spawn_app(b).await;
    assert_error(app.get("/api/v1/nope", None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(app.get("/nope", None).await, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.client.delete(app.url("/api/v1/credits/balance")).send().await.unwrap();
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let res = app.client.get(app.url("/api/v1/auth/signup")).send().await.unwrap();
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let big = format!("{{\"email\":\"{}\",\"password\":\"x\"}}", "a".repeat(100_000));
    let res = app.post_raw("/api/v1/auth/signup", None, "application/json", &big).await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let res = app.post_raw("/api/v1/auth/signup", None, "text/plain", "not json at all").await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_body").await;
}

async fn cors_lets_the_figma_iframe_in(b: Backend) {
    let app = spawn_app(b).await;
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/credits/spend"))
        .header("origin", "null")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,idempotency-key")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    for name in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(h.get("access-control-allow-credentials").is_none(), "no cookies");
    // The team routes' verbs (issue 23).
    for verb in ["PATCH", "DELETE"] {
        let res = app
            .client
            .request(Method::OPTIONS, app.url("/api/v1/teams/t/members/u"))
            .header("origin", "null")
            .header("access-control-request-method", verb)
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        let methods = res.headers()["access-control-allow-methods"].to_str().unwrap().to_uppercase();
        assert!(methods.contains(verb), "{methods}");
    }
    let res = app.client.get(app.url("/api/v1/billing/packs")).header("origin", "null").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(res.headers().get("x-request-id").is_some(), "every answer carries a request id");
}

async fn openapi_document_lists_the_api(b: Backend) {
    let app = spawn_app(b).await;
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/credits/balance",
        "/api/v1/credits/history",
        "/api/v1/credits/spend",
        "/api/v1/billing/packs",
        "/api/v1/teams",
        "/api/v1/teams/{team_id}/members/{user_id}",
        "/api/v1/teams/invitations/accept",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from OpenAPI");
    }
    for schema in ["AuthResponse", "ErrorEnvelope", "HistoryResponse", "SpendRequest", "PacksResponse"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
}

/// The router and the OpenAPI document come from one declaration (`http::routes`). Every path and
/// method in the document reaches a handler (never the router's fallbacks); every other method on
/// a documented path is 405; and the routes registered outside the document (pages, assets,
/// probes) are not API routes and are all reachable.
async fn the_router_and_the_document_agree(b: Backend) {
    const FALLBACK: &str = "There is nothing at this address.";
    let app = spawn_app(b).await;
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 45, "{} paths", paths.len());
    let concrete = |p: &str| {
        let mut out = String::new();
        let mut inside = false;
        for c in p.chars() {
            match c {
                '{' => inside = true,
                '}' => {
                    inside = false;
                    out.push_str("some-id");
                }
                _ if !inside => out.push(c),
                _ => {}
            }
        }
        out
    };
    let all = ["get", "post", "put", "patch", "delete"];
    for (path, item) in paths {
        let url = app.url(&concrete(path));
        for method in all {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res =
                app.client.request(m, &url).header("content-type", "application/json").body("{}").send().await.unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            if item.get(method).is_some() {
                assert!(
                    !text.contains(FALLBACK) && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not routed: {status} {text}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented: {text}"
                );
            }
        }
    }
    for route in mascot_server::http::plain_routes() {
        assert!(
            !route.path.starts_with("/api/") || route.path == "/api/v1/openapi.json",
            "{} is an API route outside the OpenAPI document",
            route.path
        );
        for method in route.methods.split(' ') {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let res = app.client.request(m, app.url(&concrete(route.path))).send().await.unwrap();
            let text = res.text().await.unwrap();
            assert!(!text.contains(FALLBACK), "{method} {} is not routed", route.path);
        }
    }
}

on_both_databases!(
    the_router_and_the_document_agree,
    health_readiness_and_packs,
    readiness_fails_when_database_is_gone,
    every_failure_uses_the_envelope,
    cors_lets_the_figma_iframe_in,
    openapi_document_lists_the_api,
);
