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
    let (_, mut document) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    add_limit_responses(&mut document);
    document
}

/// The answers of the HTTP limits (issue 14), which any operation can give before its handler runs: 429
/// with `Retry-After` (rate limits; the health checks are exempt), 431 (request head over the cap), and for
/// operations with a body 413 (over 64 KiB) and 408 (body read timeout). Added once here, after the routes,
/// rather than on each route's annotation.
pub fn add_limit_responses(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{Ref, RefOr, ResponseBuilder};

    let problem = |description: &str, retry_after: bool| {
        let mut response = ResponseBuilder::new().description(description).content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
        if retry_after {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )
                    .description(Some("seconds until a request may succeed"))
                    .build(),
            );
        }
        RefOr::T(response.build())
    };
    let components = document.components.get_or_insert_with(Default::default);
    for (name, response) in [
        ("TooManyRequests", problem("RATE_LIMITED: a rate limit of the account, the client's address, failed authentication or platform calls", true)),
        ("HeadersTooLarge", problem("HEADERS_TOO_LARGE: the request line and headers are over the cap; the connection is closed", false)),
        ("PayloadTooLarge", problem("PAYLOAD_TOO_LARGE: the body is over 64 KiB; the connection is closed", false)),
        ("RequestTimeout", problem("REQUEST_TIMEOUT: the body did not arrive within the body read timeout; the connection is closed", false)),
    ] {
        components.responses.insert(name.to_owned(), response);
    }
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let mut add = |status: &str, name: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            };
            if !path.starts_with("/health/") {
                add("429", "TooManyRequests");
            }
            add("431", "HeadersTooLarge");
            if operation.request_body.is_some() {
                add("413", "PayloadTooLarge");
                add("408", "RequestTimeout");
            }
        }
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
