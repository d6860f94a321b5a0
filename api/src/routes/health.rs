//! Liveness and readiness, for load balancers and orchestrators. No authentication.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::extract::{NoParams, QueryParams};
use crate::state::AppState;

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, description = "alive")))]
#[get("/health/live")]
pub async fn live(_: QueryParams<NoParams>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Postgres answers and NATS is connected.
#[utoipa::path(tag = "operations", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "a dependency is down", body = crate::error::Problem)))]
#[get("/health/ready")]
pub async fn ready(
    state: web::Data<AppState>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let postgres = async {
        let client = state.db.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    let postgres_ok = tokio::time::timeout(Duration::from_secs(2), postgres)
        .await
        .ok()
        .flatten()
        .is_some();
    let nats_ok = state
        .nats
        .as_ref()
        .is_some_and(|nats| nats.connection_state() == async_nats::connection::State::Connected);
    if postgres_ok && nats_ok {
        Ok(HttpResponse::Ok().json(json!({ "status": "ready", "postgres": "up", "nats": "up" })))
    } else {
        let down: Vec<&str> = [("postgres", postgres_ok), ("nats", nats_ok)]
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name)
            .collect();
        Err(ApiError::unavailable(format!(
            "not ready: {} unreachable",
            down.join(" and ")
        )))
    }
}
