//! Reading one account's event log: pages for `GET /events` and the history routes, and batches for
//! NDJSON streams and exports.
//!
//! Everything is in log order, the gap-safe order every reader of the log uses (DESIGN §2):
//! `(transaction_id, global_position)`, below the commit horizon `events_commit_horizon()` (migration 0130),
//! so an event never appears behind a position a reader has already passed. Paging is a keyset on that
//! order over the index `events_account_log ((metadata ->> 'accountId'), transaction_id, global_position)`:
//! a page deep in the log costs what the first does (no OFFSET).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::event::{LoggedEvent, LOGGED_COLUMNS};
use crate::{LogPosition, ReadError};

/// What `GET /events` may filter on; every filter is optional but the account. Times are a half-open
/// range on `recordedAt`: `from` ≤ recordedAt < `to`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only events whose metadata names this account.
    pub account_id: String,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
    /// metadata `correlationId`.
    pub correlation_id: Option<String>,
    /// metadata `actor` (`user:<sub>`, `worker:<id>`, `scheduler`, `system`).
    pub actor: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The upper bound of a read: transactions below `horizon` (`events_commit_horizon()`) have all finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// The horizon at the moment of each query (pages: the log as it is now).
    Current,
    /// One horizon for every batch (streams and exports: one consistent range, however long it takes).
    Fixed(u64),
}

/// The current commit horizon, to pin a long read to.
pub async fn current_horizon(client: &impl GenericClient) -> Result<u64, ReadError> {
    let row = client
        .query_one("SELECT events_commit_horizon()::text", &[])
        .await?;
    let text: String = row.get(0);
    Ok(text.parse().unwrap_or_default())
}

/// Where the event at `position` is in log order (`None`: no event has that position).
pub async fn locate(
    client: &impl GenericClient,
    position: i64,
) -> Result<Option<LogPosition>, ReadError> {
    let row = client
        .query_opt(
            "SELECT transaction_id::text FROM events WHERE global_position = $1",
            &[&position],
        )
        .await?;
    Ok(row.map(|row| {
        let txid: String = row.get(0);
        LogPosition {
            transaction_id: txid.parse().unwrap_or_default(),
            global_position: position,
        }
    }))
}

/// Up to `limit` events after `after` that pass `filter`, in log order.
pub async fn read(
    client: &impl GenericClient,
    filter: &LogFilter,
    after: LogPosition,
    horizon: Horizon,
    limit: i64,
) -> Result<Vec<LoggedEvent>, ReadError> {
    let horizon_sql = match horizon {
        Horizon::Current => "(SELECT events_commit_horizon())",
        Horizon::Fixed(_) => "$12::text::xid8",
    };
    // Not a cached statement: with the optional filters as parameters a generic plan could not pick the
    // index that suits the filters given, so each query is planned for its own values.
    let sql = format!(
        "SELECT {LOGGED_COLUMNS} FROM events e \
         WHERE e.metadata ->> 'accountId' = $1 \
           AND ($2::text IS NULL OR e.aggregate_type = $2) \
           AND ($3::text IS NULL OR e.aggregate_id = $3) \
           AND ($4::text IS NULL OR e.event_type = $4) \
           AND ($5::text IS NULL OR e.metadata ->> 'correlationId' = $5) \
           AND ($6::text IS NULL OR e.metadata ->> 'actor' = $6) \
           AND ($7::timestamptz IS NULL OR e.recorded_at >= $7) \
           AND ($8::timestamptz IS NULL OR e.recorded_at < $8) \
           AND (e.transaction_id, e.global_position) > ($9::text::xid8, $10) \
           AND e.transaction_id < {horizon_sql} \
         ORDER BY e.transaction_id, e.global_position \
         LIMIT $11"
    );
    let after_txid = after.transaction_id.to_string();
    let horizon_txid = match horizon {
        Horizon::Fixed(txid) => Some(txid.to_string()),
        Horizon::Current => None,
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &filter.account_id,
        &filter.aggregate_type,
        &filter.aggregate_id,
        &filter.event_type,
        &filter.correlation_id,
        &filter.actor,
        &filter.from,
        &filter.to,
        &after_txid,
        &after.global_position,
        &limit,
    ];
    if let Some(txid) = &horizon_txid {
        params.push(txid);
    }
    let rows = client.query(&sql, &params).await?;
    Ok(rows.iter().map(LoggedEvent::from_row).collect())
}

/// One page: the events and, when more may follow, the cursor to the next page (the last event's
/// position, which is also what `?after=` takes).
#[derive(Debug, Clone)]
pub struct LogPage {
    pub events: Vec<LoggedEvent>,
    pub next_cursor: Option<String>,
}

/// A page of `limit` events after `after`.
pub async fn page(
    client: &impl GenericClient,
    filter: &LogFilter,
    after: LogPosition,
    limit: i64,
) -> Result<LogPage, ReadError> {
    let mut events = read(client, filter, after, Horizon::Current, limit + 1).await?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next_cursor = more
        .then(|| events.last().map(|e| e.position.to_string()))
        .flatten();
    Ok(LogPage {
        events,
        next_cursor,
    })
}

/// Reads a whole range in batches, each with a connection of its own from the pool, so a slow consumer
/// holds no connection and no transaction, and memory holds one batch however long the range is.
pub struct LogReader {
    pool: deadpool_postgres::Pool,
    filter: LogFilter,
    after: LogPosition,
    horizon: u64,
    batch: i64,
    done: bool,
}

impl LogReader {
    /// Starts after `after`, pinned to the commit horizon of this moment: events committed later are not
    /// part of the range (a stream ends; it does not follow the log).
    pub async fn start(
        pool: deadpool_postgres::Pool,
        filter: LogFilter,
        after: LogPosition,
    ) -> Result<Self, ReadError> {
        let horizon = current_horizon(&pool.get().await?).await?;
        Ok(Self {
            pool,
            filter,
            after,
            horizon,
            batch: 1000,
            done: false,
        })
    }

    /// The commit horizon the range is pinned to.
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// The next batch in log order; empty when the range is exhausted.
    pub async fn next_batch(&mut self) -> Result<Vec<LoggedEvent>, ReadError> {
        if self.done {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await?;
        let events = read(
            &client,
            &self.filter,
            self.after,
            Horizon::Fixed(self.horizon),
            self.batch,
        )
        .await?;
        match events.last() {
            Some(last) => {
                self.after = LogPosition {
                    transaction_id: last.transaction(),
                    global_position: last.position,
                }
            }
            None => self.done = true,
        }
        if (events.len() as i64) < self.batch {
            self.done = true;
        }
        Ok(events)
    }
}
