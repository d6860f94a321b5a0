//! The OpenAPI document, generated from the route annotations of the routes `routes::configure` registers,
//! and its UI (assets compiled into the binary). `docs/openapi.json` is its reviewed snapshot: a test fails
//! when the document differs, so a change to the API shows as a diff of that file.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "ListBackup API", description = "Back up your SaaS platforms' data. Errors are application/problem+json."),
    components(schemas(crate::error::Problem, crate::error::FieldError, crate::error::ErrorCode)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`]'s info and components with every route `routes::configure` registers.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, document) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    document
}

#[cfg(test)]
mod tests {
    /// The document is the reviewed one. After an intended change, run with `UPDATE_OPENAPI_SNAPSHOT=1` and
    /// review the diff of `docs/openapi.json`.
    #[test]
    fn the_openapi_document_is_the_reviewed_snapshot() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let current = super::document().to_pretty_json().unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI_SNAPSHOT").is_some() {
            std::fs::write(path, &current).unwrap();
        }
        let reviewed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            current == reviewed,
            "/openapi.json differs from docs/openapi.json: review the change and run \
             `UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p listbackup-api openapi` to accept it"
        );
    }
}

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
