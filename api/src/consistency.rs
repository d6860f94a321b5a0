//! Read-your-writes: after a command commits version N, the route waits (bounded) until the read model has
//! projected version N, so the response and the client's next GET show the write. One helper,
//! [`wait_for_aggregate`], for every route, and one read-back of the written resource, [`read_back`].

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use listbackup_domain::{
    ConnectionId, JobId, ResourceId, SourceGroupId, SourceId, StreamId, WebhookId,
};
use listbackup_projections::read_models::connections::{self as read_connections, ConnectionView};
use listbackup_projections::read_models::jobs::{self as read_jobs, JobView};
use listbackup_projections::read_models::source_groups::{self as read_groups, SourceGroupView};
use listbackup_projections::read_models::sources::{self as read_sources, SourceView};
use listbackup_projections::read_models::webhooks::{self as read_webhooks, WebhookView};
use listbackup_projections::{ProjectedWatch, ReadError};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a write waits for its projection before answering 503 (the write itself is safe in the log).
pub const READ_YOUR_WRITES_DEADLINE: Duration = Duration::from_secs(10);

/// How often a waiter also asks the read model itself, in case the version it waits for was applied by a
/// projector in another process or has already left the in-memory record.
const READ_MODEL_RECHECK: Duration = Duration::from_millis(250);

/// Waits until the projector has applied `aggregate_id` at `version` or later.
///
/// Checks the in-process projector's record of what it applied after each of its commits (no query), and the
/// read model (`projected_version`) now and then.
pub async fn wait_for_aggregate<F, Fut>(
    watch: &ProjectedWatch,
    aggregate_id: &str,
    version: u64,
    mut projected_version: F,
) -> Result<(), ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<i64>, ApiError>>,
{
    let mut watch = watch.clone();
    let started = Instant::now();
    let deadline = started + READ_YOUR_WRITES_DEADLINE;
    let mut next_recheck = started + READ_MODEL_RECHECK;
    loop {
        watch.mark_seen();
        if watch
            .applied_version(aggregate_id)
            .is_some_and(|v| v >= version as i64)
        {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next_recheck {
            if projected_version()
                .await?
                .is_some_and(|v| v >= version as i64)
            {
                return Ok(());
            }
            next_recheck = now + READ_MODEL_RECHECK;
        }
        if now >= deadline {
            tracing::warn!(aggregate_id, version, "projection did not catch up in time");
            return Err(ApiError::unavailable(
                "the change was recorded, but the read model has not caught up yet; read it again shortly",
            ));
        }
        watch
            .next_commit(Duration::from_millis(25).min(deadline - now))
            .await;
    }
}

/// A read model view that a route reads back after its own write: how far the read model has projected an
/// aggregate, and the aggregate's view for an account.
pub trait ReadBack: Sized {
    /// The id of the aggregate the view shows.
    type Id: ResourceId;

    /// The aggregate's version in the read model (`None` before its first event is projected).
    fn projected_version(
        client: &deadpool_postgres::Object,
        id: Self::Id,
    ) -> impl Future<Output = Result<Option<i64>, ReadError>>;

    /// What [`ReadBack::get`] would answer once `version` is projected, from what this process's projector
    /// has just written, without a query (`Some(None)`: not live for `account_id`); `None` when it has not
    /// kept it: read the table.
    fn recently_projected(
        _watch: &ProjectedWatch,
        _account_id: &str,
        _id: Self::Id,
        _version: u64,
    ) -> Option<Option<Self>> {
        None
    }

    /// The view of aggregate `id` if it is a live one of `account_id`.
    fn get(
        client: &deadpool_postgres::Object,
        account_id: &str,
        id: Self::Id,
    ) -> impl Future<Output = Result<Option<Self>, ReadError>>;
}

impl ReadBack for SourceView {
    type Id = SourceId;

    async fn projected_version(
        client: &deadpool_postgres::Object,
        id: Self::Id,
    ) -> Result<Option<i64>, ReadError> {
        read_sources::projected_version(client, id).await
    }

    async fn get(
        client: &deadpool_postgres::Object,
        account_id: &str,
        id: Self::Id,
    ) -> Result<Option<Self>, ReadError> {
        read_sources::get(client, account_id, id, Utc::now()).await
    }
}

impl ReadBack for ConnectionView {
    type Id = ConnectionId;

    async fn projected_version(
        client: &deadpool_postgres::Object,
        id: Self::Id,
    ) -> Result<Option<i64>, ReadError> {
        read_connections::projected_version(client, id).await
    }

    fn recently_projected(
        watch: &ProjectedWatch,
        account_id: &str,
        id: Self::Id,
        version: u64,
    ) -> Option<Option<Self>> {
        read_connections::recently_projected(watch, account_id, id, version)
    }

    async fn get(
        client: &deadpool_postgres::Object,
        account_id: &str,
        id: Self::Id,
    ) -> Result<Option<Self>, ReadError> {
        read_connections::get(client, account_id, id).await
    }
}

impl ReadBack for SourceGroupView {
    type Id = SourceGroupId;

    async fn projected_version(
        client: &deadpool_postgres::Object,
        id: Self::Id,
    ) -> Result<Option<i64>, ReadError> {
        read_groups::projected_version(client, id).await
    }

    async fn get(
        client: &deadpool_postgres::Object,
        account_id: &str,
        id: Self::Id,
    ) -> Result<Option<Self>, ReadError> {
        read_groups::get(client, account_id, id).await
    }
}

impl ReadBack for JobView {
    type Id = JobId;

    async fn projected_version(
        client: &deadpool_postgres::Object,
        id: Self::Id,
    ) -> Result<Option<i64>, ReadError> {
        read_jobs::projected_version(client, id).await
    }

    async fn get(
        client: &deadpool_postgres::Object,
        account_id: &str,
        id: Self::Id,
    ) -> Result<Option<Self>, ReadError> {
        read_jobs::get(client, account_id, id).await
    }
}

impl ReadBack for WebhookView {
    type Id = WebhookId;

    async fn projected_version(
        client: &deadpool_postgres::Object,
        id: Self::Id,
    ) -> Result<Option<i64>, ReadError> {
        read_webhooks::projected_version(client, id).await
    }

    async fn get(
        client: &deadpool_postgres::Object,
        account_id: &str,
        id: Self::Id,
    ) -> Result<Option<Self>, ReadError> {
        read_webhooks::get(client, account_id, id).await
    }
}

/// Waits until `V`'s read model has projected aggregate `id` at `version` ([`wait_for_aggregate`]).
pub async fn wait_for<V: ReadBack>(
    state: &AppState,
    id: V::Id,
    version: u64,
) -> Result<(), ApiError> {
    wait_for_aggregate(&state.projected, &id.stream_id(), version, || async {
        let client = state.db.get().await?;
        Ok(V::projected_version(&client, id).await?)
    })
    .await
}

/// The one read-back of a write: waits for aggregate `id` at `version` ([`wait_for`]), then takes its view
/// for `account_id` from what the projector has just written ([`ReadBack::recently_projected`]) or, when it
/// has not kept it, reads it (`None` when it is no longer live for the account, as after a delete).
pub async fn read_back<V: ReadBack>(
    state: &AppState,
    account_id: &str,
    id: V::Id,
    version: u64,
) -> Result<Option<V>, ApiError> {
    wait_for::<V>(state, id, version).await?;
    if let Some(view) = V::recently_projected(&state.projected, account_id, id, version) {
        return Ok(view);
    }
    let client = state.db.get().await?;
    Ok(V::get(&client, account_id, id).await?)
}
