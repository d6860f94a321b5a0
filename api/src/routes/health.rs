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
    (status = 503, description = "a dependency is down, or every database connection is busy", body = crate::error::Problem)))]
#[get("/health/ready")]
pub async fn ready(
    state: web::Data<AppState>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let postgres = postgres(&state.db).await;
    let nats_ok = state
        .nats
        .as_ref()
        .is_some_and(|nats| nats.connection_state() == async_nats::connection::State::Connected);
    if postgres == Postgres::Up && nats_ok {
        return Ok(
            HttpResponse::Ok().json(json!({ "status": "ready", "postgres": "up", "nats": "up" }))
        );
    }
    let mut reasons = Vec::new();
    match postgres {
        Postgres::Up => {}
        Postgres::Unreachable => reasons.push("postgres unreachable".to_owned()),
        Postgres::Slow => reasons.push(format!(
            "postgres did not answer within {} s",
            READY_DEADLINE.as_secs()
        )),
        Postgres::PoolExhausted => reasons.push(
            "the database connection pool is exhausted (every connection is busy)".to_owned(),
        ),
    }
    if !nats_ok {
        reasons.push("nats unreachable".to_owned());
    }
    Err(ApiError::unavailable(format!(
        "not ready: {}",
        reasons.join("; ")
    )))
}

/// How long readiness waits for Postgres, a free connection included.
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// What readiness found of Postgres, through the read pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Postgres {
    Up,
    /// No connection could be opened, or the query failed.
    Unreachable,
    /// A connection was had, but `SELECT 1` did not answer in time.
    Slow,
    /// Every connection of the pool is in use and none came free in time: Postgres may well be up.
    PoolExhausted,
}

async fn postgres(pool: &deadpool_postgres::Pool) -> Postgres {
    use deadpool_postgres::{PoolError, TimeoutType};
    let had_connection = std::cell::Cell::new(false);
    let check = async {
        let client = match pool.get().await {
            Ok(client) => client,
            // deadpool's wait for a free connection ran out (`LISTBACKUP_DB_POOL_TIMEOUT_SECS`).
            Err(PoolError::Timeout(TimeoutType::Wait)) => return Postgres::PoolExhausted,
            Err(_) => return Postgres::Unreachable,
        };
        had_connection.set(true);
        match client.simple_query("SELECT 1").await {
            Ok(_) => Postgres::Up,
            Err(_) => Postgres::Unreachable,
        }
    };
    match tokio::time::timeout(READY_DEADLINE, check).await {
        Ok(found) => found,
        Err(_) if had_connection.get() => Postgres::Slow,
        // Still waiting for a connection: for a free one when the pool is at its size with none available,
        // otherwise for a new one to open.
        Err(_) => {
            let status = pool.status();
            if status.size >= status.max_size && status.available == 0 {
                Postgres::PoolExhausted
            } else {
                Postgres::Unreachable
            }
        }
    }
}
