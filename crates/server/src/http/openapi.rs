//! The OpenAPI document, generated from the handlers' annotations and the api-types schemas.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

/// The document's frame: its info and security schemes. Its paths come from the router's
/// declaration (`http::routes`), never from a list here.
#[derive(OpenApi)]
#[openapi(
    info(title = "Mascot credits API", description = "Accounts, credit balance and history, spending and credit packs for the Mascot Figma plugin, and the service API that meters paid work. Errors are always {\"error\":{\"code\",\"message\"}}."),
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
        // The service API: `Authorization: Bearer mck_…` from `mascot-server service-keys add`.
        components.add_security_scheme(
            "service",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A service key (mck_…) from `mascot-server service-keys add --name N`"))
                    .build(),
            ),
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

/// The frame the router's declaration fills in.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
