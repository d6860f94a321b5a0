//! The HTTP API (actix-web): routes, authentication, problem+json errors, OpenAPI and its UI.

pub mod app;
pub mod auth;
pub mod consistency;
pub mod error;
pub mod extract;
pub mod hardening;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod ports;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod state;

pub use app::Application;
pub use hardening::HttpSettings;
pub use state::AppState;
