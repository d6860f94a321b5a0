//! Builds the actix-web application. Tests start it exactly as production does, on port 0.

use std::net::TcpListener;

use actix_web::dev::Server;
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
                .wrap(middleware::from_fn(
                    crate::hardening::close_after_cut_off_body,
                ))
                // Outermost: every answer, the other middlewares' refusals included, is measured.
                .wrap(middleware::from_fn(crate::metrics::record))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi))
                .route(
                    "/docs",
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

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    // A known path with the wrong method is a 405 with `Allow` (RFC 9110 §15.5.6), not a 404; actix's
    // router only tells us "no match", so the routes are looked up in the OpenAPI document, which lists
    // every route with its methods.
    let allowed = allowed_methods(req.path());
    if !allowed.is_empty() {
        let detail = format!(
            "{} is not allowed on {}; allowed: {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        );
        let problem = ApiError {
            status: Some(actix_web::http::StatusCode::METHOD_NOT_ALLOWED),
            ..ApiError::new(crate::error::ErrorCode::ValidationError, detail)
        };
        let mut response = actix_web::ResponseError::error_response(&problem);
        response.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_str(&allowed.join(", "))
                .expect("method names are header-safe"),
        );
        return Ok(response);
    }
    Err(ApiError::new(
        crate::error::ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// The methods the API answers on `path`, from the OpenAPI document's path templates (`{id}` matches one
/// segment); empty for a path it does not have.
fn allowed_methods(path: &str) -> Vec<&'static str> {
    use std::sync::OnceLock;
    static ROUTES: OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
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
                let segments = template
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_owned)
                    .collect();
                (segments, methods)
            })
            .collect()
    });
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut allowed: Vec<&'static str> = Vec::new();
    for (template, methods) in routes {
        let matches = template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s);
        if matches {
            for method in methods {
                if !allowed.contains(method) {
                    allowed.push(method);
                }
            }
        }
    }
    allowed
}
