//! The OpenAPI document, generated from the route annotations, and its UI (assets compiled into the binary).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{connections, health, platforms};

#[derive(OpenApi)]
#[openapi(
    info(title = "ListBackup API", description = "Back up your SaaS platforms' data. Errors are application/problem+json."),
    paths(
        health::live, health::ready,
        platforms::list, platforms::get,
        connections::create, connections::list, connections::get, connections::update,
        connections::remove, connections::test,
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError, crate::error::ErrorCode)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
