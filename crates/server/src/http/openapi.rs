//! The OpenAPI document, generated from the handlers' annotations and the api-types schemas.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::http::{admin, admin_pages, auth, billing, credits, handoff, holds, meta};

#[derive(OpenApi)]
#[openapi(
    info(title = "Mascot credits API", description = "Accounts, credit balance and history, spending and credit packs for the Mascot Figma plugin. Errors are always {\"error\":{\"code\",\"message\"}}."),
    paths(auth::signup, auth::login, auth::logout, auth::logout_all, auth::change_password, auth::options, auth::request_password_reset, handoff::start, handoff::poll, auth::me, credits::balance, credits::history, credits::spend, holds::create, holds::capture, holds::release, meta::packs,
        billing::start_checkout, billing::checkout_status, billing::list_checkouts, billing::webhook,
        admin::api_me, admin::api_audit, admin::api_logout, admin_pages::api_overview, admin_pages::api_users,
        admin_pages::api_user, admin_pages::api_grant, admin_pages::api_logout_all, admin_pages::api_one_time_password,
        admin_pages::api_purchases, admin_pages::api_events, admin_pages::api_event, admin_pages::api_replay,
        admin_pages::api_reconcile, admin_pages::api_audit_run, admin_pages::api_runs, admin_pages::api_run),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The admin API: `Authorization: Bearer mca_…` from `mascot-server admins token`.
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin API token (mca_…) from `mascot-server admins token --email E`"))
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
