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
        crate::routes::sources::create, crate::routes::sources::list, crate::routes::sources::get,
        crate::routes::sources::update, crate::routes::sources::remove, crate::routes::sources::test,
        crate::routes::source_groups::create, crate::routes::source_groups::list,
        crate::routes::source_groups::get, crate::routes::source_groups::update,
        crate::routes::source_groups::remove, crate::routes::source_groups::add_source,
        crate::routes::source_groups::remove_source, crate::routes::source_groups::list_sources,
        crate::routes::jobs::sync_source, crate::routes::jobs::create, crate::routes::jobs::sync_group,
        crate::routes::jobs::list, crate::routes::jobs::get, crate::routes::jobs::list_files,
        crate::routes::jobs::download, crate::routes::jobs::retry,
        crate::routes::jobs::cancel, crate::routes::job_events::stream,
        crate::routes::oauth::start, crate::routes::oauth::callback, crate::routes::oauth::reconnect,
        crate::routes::audit::list, crate::routes::audit::export, crate::routes::audit::verify,
        crate::routes::audit::public_key, crate::routes::audit::connection_history,
        crate::routes::audit::source_history, crate::routes::audit::source_group_history,
        crate::routes::audit::job_history,
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
