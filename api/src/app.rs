//! Builds the actix-web application. Tests start it exactly as production does, on port 0.

use std::net::TcpListener;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ResourceDef, Server, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{middleware, web, App, HttpResponse, HttpServer};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::hardening::HttpSettings;
use crate::openapi::ApiDoc;
use crate::rate_limit::RateLimiters;
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds the listener's address and prepares the server; nothing is served until [`Self::run`].
    /// `settings` are the HTTP limits, CORS origins and rate limits (issue 14); the rate limiters' state is
    /// shared by all the server's workers.
    pub fn build(
        listener: TcpListener,
        state: AppState,
        authenticator: Authenticator,
        settings: HttpSettings,
    ) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        let state = web::Data::new(state);
        let authenticator = web::Data::new(authenticator);
        let limiters = web::Data::new(RateLimiters::new(&settings.rate_limits));
        let shutdown_timeout = settings.shutdown_timeout.as_secs();
        let settings = web::Data::new(settings);
        let server = HttpServer::new(move || {
            // The routes are registered once (`routes::configure`): actix serves them and the OpenAPI
            // document is collected from the same calls.
            let (app, mut openapi) = App::new()
                .into_utoipa_app()
                .openapi(ApiDoc::openapi())
                .configure(crate::routes::configure)
                .split_for_parts();
            crate::openapi::add_limit_responses(&mut openapi);
            app.app_data(state.clone())
                .app_data(authenticator.clone())
                .app_data(web::PathConfig::default().error_handler(|_, _| {
                    ApiError::new(crate::error::ErrorCode::NotFound, "resource not found").into()
                }))
                .app_data(settings.clone())
                .app_data(limiters.clone())
                // Innermost first: the caps and the body deadline, the per-address rate limit, CORS (and
                // its refusals as problems), the request id, the security headers on everything, and the
                // HTTP metrics around it all.
                .wrap(middleware::from_fn(crate::hardening::request_limits))
                .wrap(middleware::from_fn(crate::rate_limit::per_client_address))
                .wrap(crate::hardening::cors(&settings))
                .wrap(middleware::from_fn(crate::hardening::cors_answers))
                .wrap(middleware::from_fn(crate::request_id::middleware))
                .wrap(middleware::from_fn(crate::hardening::security_headers))
                // Outside the request id's (which reads problem bodies) and inside the metrics (which
                // count a HEAD as a HEAD).
                .wrap(middleware::from_fn(head_as_get))
                .wrap(middleware::from_fn(
                    crate::hardening::close_after_cut_off_body,
                ))
                // Outermost: every answer, the other middlewares' refusals included, is measured.
                .wrap(middleware::from_fn(crate::metrics::record))
                .service(SwaggerUi::new(DOCS_ASSETS).url(OPENAPI_JSON, openapi))
                .route(
                    DOCS,
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect()
                            .insert_header(("Location", "/docs/"))
                            .finish()
                    }),
                )
                .default_service(web::to(not_found))
        })
        // Graceful shutdown: in-flight requests may finish within the shutdown grace when the process is told to
        // stop (the live event streams are ended first: see `AppState::closing_streams`).
        .shutdown_timeout(shutdown_timeout)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The OpenAPI document (JSON) and the Swagger UI: the routes the service serves besides the API's own,
/// which the OpenAPI document lists. Each answers GET (and so HEAD) only.
const OPENAPI_JSON: &str = "/openapi.json";
const DOCS: &str = "/docs";
const DOCS_ASSETS: &str = "/docs/{_:.*}";
const SERVICE_ROUTES: [&str; 3] = [OPENAPI_JSON, DOCS, DOCS_ASSETS];

/// HEAD wherever GET is served (RFC 9110 §9.3.2): the request is routed as a GET, so that it gets the GET's
/// status and headers, and the body is dropped unsent (its size kept, so `Content-Length` is the GET's). A
/// streamed body (an export, a download, a job's event stream) is never produced. actix-http itself sends
/// no body after a HEAD's head either, on HTTP/1 and HTTP/2: it knows the method from the wire.
async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() != Method::HEAD {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    req.head_mut().method = Method::GET;
    let res = next.call(req).await?;
    Ok(res.map_body(|_, body| BoxBody::new(HeadBody(body.size()))))
}

/// The body of a HEAD's answer: the GET's size, no bytes.
struct HeadBody(BodySize);

impl MessageBody for HeadBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        self.0
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<web::Bytes, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    // A known path with the wrong method is a 405 with `Allow` (RFC 9110 §15.5.6), not a 404; actix's
    // router only tells us "no match", so the routes are looked up in the OpenAPI document, which lists
    // every route of the API with its methods, and in the service's own routes (the document and its UI).
    let allowed = allowed_methods(req.path());
    // A method the path allows that still reached here: the route refused the path itself (never, with the
    // routes as registered), so the path is not one the API has.
    if !allowed.is_empty() && !allowed.contains(&req.method().as_str()) {
        return Err(ApiError::method_not_allowed(
            req.method().as_str(),
            req.path(),
            &allowed,
        ));
    }
    Err(ApiError::new(
        crate::error::ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// The methods the service answers on `path`: those of the OpenAPI document's path templates and of
/// [`SERVICE_ROUTES`], matched as actix matches them, with HEAD wherever GET is; empty for a path it does
/// not have.
fn allowed_methods(path: &str) -> Vec<&'static str> {
    use std::sync::OnceLock;
    static ROUTES: OnceLock<Vec<(ResourceDef, Vec<&'static str>)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let documented =
            crate::openapi::document()
                .paths
                .paths
                .into_iter()
                .map(|(template, item)| {
                    let methods = [
                        ("GET", item.get.is_some()),
                        ("POST", item.post.is_some()),
                        ("PUT", item.put.is_some()),
                        ("PATCH", item.patch.is_some()),
                        ("DELETE", item.delete.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(method, present)| present.then_some(method))
                    .collect();
                    (ResourceDef::new(template), methods)
                });
        let service = SERVICE_ROUTES
            .into_iter()
            .map(|template| (ResourceDef::new(template), vec!["GET"]));
        documented.chain(service).collect()
    });
    let mut allowed: Vec<&'static str> = Vec::new();
    for (route, methods) in routes {
        if route.is_match(path) {
            for method in methods {
                if !allowed.contains(method) {
                    allowed.push(method);
                }
            }
        }
    }
    if let Some(get) = allowed.iter().position(|m| *m == "GET") {
        allowed.insert(get + 1, "HEAD");
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_methods_follow_the_routes_with_head_beside_get() {
        assert_eq!(allowed_methods("/platforms"), ["GET", "HEAD"]);
        assert_eq!(
            allowed_methods("/connections/0190f5c2-7d3e-7a11-8b2c-0123456789ab"),
            ["GET", "HEAD", "PUT", "DELETE"]
        );
        assert_eq!(allowed_methods("/connections/x/test"), ["POST"]);
        assert_eq!(allowed_methods("/openapi.json"), ["GET", "HEAD"]);
        assert_eq!(allowed_methods("/docs"), ["GET", "HEAD"]);
        assert_eq!(allowed_methods("/docs/index.html"), ["GET", "HEAD"]);
        assert!(allowed_methods("/platforms/").is_empty());
        assert!(allowed_methods("/nowhere").is_empty());
    }
}
