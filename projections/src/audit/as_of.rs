//! A resource as it stood at a point of the log (`GET /sources/{id}?asOf=…`, and the same for
//! connections, source groups and jobs).
//!
//! The state is folded by the projector's own code, not a second projection: inside a transaction that is
//! always rolled back, temporary tables named like the read models (and so found first on the search path)
//! take the resource's events up to that point through [`read_models::apply_batch`], and the read model's own
//! `get` reads the result. `DISCARD PLANS` first makes the connection's prepared statements resolve the
//! table names again (to the temporary tables); when the transaction ends the temporary tables are dropped,
//! which invalidates those plans once more, so the pooled connection goes back to the real tables.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Object, Transaction};
use tokio_postgres::types::ToSql;

use crate::event_log::SELECT_COLUMNS;
use crate::read_models::connections::ConnectionView;
use crate::read_models::jobs::JobView;
use crate::read_models::source_groups::SourceGroupView;
use crate::read_models::sources::SourceView;
use crate::read_models::{self, TABLES};
use crate::{ReadError, StoredEvent};

/// A point of the log: a time (events recorded at or before it) or a position (events up to and including
/// the event at that position, in log order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Time(DateTime<Utc>),
    Position(i64),
}

impl AsOf {
    /// `asOf` as clients send it: a log position (a non-negative integer) or an RFC 3339 time.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(position) = text.parse::<i64>() {
            return (position >= 0).then_some(Self::Position(position));
        }
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Self::Time(t.with_timezone(&Utc)))
    }
}

/// Why a resource cannot be shown as of a point.
#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error("no event has position {0}")]
    UnknownPosition(i64),
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl From<tokio_postgres::Error> for AsOfError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Read(e.into())
    }
}

/// The resolved bound of a fold.
enum Bound {
    Time(DateTime<Utc>),
    /// (transaction id, position) of the last event included, and when it was recorded.
    Position(u64, i64, DateTime<Utc>),
}

impl Bound {
    /// The "now" a view is computed at (a source's next slot): the time asked for, or the event's.
    fn now(&self) -> DateTime<Utc> {
        match self {
            Self::Time(t) | Self::Position(_, _, t) => *t,
        }
    }
}

async fn resolve(client: &tokio_postgres::Client, as_of: AsOf) -> Result<Bound, AsOfError> {
    match as_of {
        AsOf::Time(t) => Ok(Bound::Time(t)),
        AsOf::Position(p) => {
            let row = client
                .query_opt(
                    "SELECT transaction_id::text, recorded_at FROM events WHERE global_position = $1",
                    &[&p],
                )
                .await?
                .ok_or(AsOfError::UnknownPosition(p))?;
            let txid: String = row.get(0);
            Ok(Bound::Position(
                txid.parse().unwrap_or_default(),
                p,
                row.get(1),
            ))
        }
    }
}

/// Opens the fold: temporary, empty copies of every read-model table, dropped with the transaction.
async fn begin(client: &mut Object) -> Result<Transaction<'_>, ReadError> {
    let tx = client.transaction().await?;
    for table in TABLES {
        tx.batch_execute(&format!(
            "CREATE TEMPORARY TABLE {table} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING INDEXES) ON COMMIT DROP"
        ))
        .await?;
    }
    tx.batch_execute("DISCARD PLANS").await?;
    Ok(tx)
}

/// Applies the events of the streams `ids` of `aggregate_type` up to `bound`, in log order.
async fn fold(
    tx: &Transaction<'_>,
    aggregate_type: &str,
    ids: &[String],
    bound: &Bound,
) -> Result<(), ReadError> {
    let (condition, txid, position, time) = match bound {
        Bound::Time(t) => ("e.recorded_at <= $3", None, None, Some(*t)),
        Bound::Position(txid, p, _) => (
            "(e.transaction_id, e.global_position) <= ($3::text::xid8, $4)",
            Some(txid.to_string()),
            Some(*p),
            None,
        ),
    };
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events e \
         WHERE e.aggregate_type = $1 AND e.aggregate_id = ANY($2) AND {condition} \
         ORDER BY e.transaction_id, e.global_position"
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&aggregate_type, &ids];
    match (&txid, &position, &time) {
        (Some(txid), Some(position), _) => {
            params.push(txid);
            params.push(position);
        }
        (_, _, Some(time)) => params.push(time),
        _ => {}
    }
    let events = tx
        .query(&sql, &params)
        .await?
        .iter()
        .map(StoredEvent::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    read_models::apply_batch(tx, &events).await?;
    Ok(())
}

/// A folded resource and the version it had then.
#[derive(Debug, Clone)]
pub struct Then<T> {
    pub view: T,
    pub version: i64,
}

/// The connection as of `as_of`; `None` if it did not exist then (or was deleted), or is another account's.
pub async fn connection(
    client: &mut Object,
    account_id: &str,
    id: listbackup_domain::ConnectionId,
    as_of: AsOf,
) -> Result<Option<Then<ConnectionView>>, AsOfError> {
    let bound = resolve(&**client as &tokio_postgres::Client, as_of).await?;
    let tx = begin(client).await?;
    fold(
        &tx,
        listbackup_domain::connection::AGGREGATE_TYPE,
        &[id.to_string()],
        &bound,
    )
    .await?;
    let view = read_models::connections::get(&tx, account_id, id).await?;
    tx.rollback().await?;
    Ok(view.map(|view| Then {
        version: view.version,
        view,
    }))
}

/// The source as of `as_of`, with its `lastJob` as that job stood then.
pub async fn source(
    client: &mut Object,
    account_id: &str,
    id: listbackup_domain::SourceId,
    as_of: AsOf,
) -> Result<Option<Then<SourceView>>, AsOfError> {
    let bound = resolve(&**client as &tokio_postgres::Client, as_of).await?;
    let tx = begin(client).await?;
    fold(
        &tx,
        listbackup_domain::source::AGGREGATE_TYPE,
        &[id.to_string()],
        &bound,
    )
    .await?;
    // The source's last job then (born `queued` by the fold above), and what its own stream says of it.
    let last_job: Option<String> = tx
        .query_opt(
            "SELECT last_job_id FROM read_sources WHERE source_id = $1",
            &[&id],
        )
        .await?
        .and_then(|row| row.get(0));
    if let Some(job_id) = last_job {
        fold(
            &tx,
            listbackup_domain::job::AGGREGATE_TYPE,
            &[job_id],
            &bound,
        )
        .await?;
    }
    let view = read_models::sources::get(&tx, account_id, id, bound.now()).await?;
    tx.rollback().await?;
    Ok(view.map(|view| Then {
        version: view.version,
        view,
    }))
}

/// The source group as of `as_of`, its `sourceIds` and `sourceCount` as its member sources stood then.
pub async fn source_group(
    client: &mut Object,
    account_id: &str,
    id: listbackup_domain::SourceGroupId,
    as_of: AsOf,
) -> Result<Option<Then<SourceGroupView>>, AsOfError> {
    let bound = resolve(&**client as &tokio_postgres::Client, as_of).await?;
    let tx = begin(client).await?;
    fold(
        &tx,
        listbackup_domain::source_group::AGGREGATE_TYPE,
        &[id.to_string()],
        &bound,
    )
    .await?;
    let members: Vec<String> = tx
        .query(
            "SELECT source_id FROM read_source_group_members WHERE group_id = $1",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    fold(
        &tx,
        listbackup_domain::source::AGGREGATE_TYPE,
        &members,
        &bound,
    )
    .await?;
    let view = read_models::source_groups::get(&tx, account_id, id).await?;
    tx.rollback().await?;
    Ok(view.map(|view| Then {
        version: view.version,
        view,
    }))
}

/// The job as of `as_of`: its source's stream (where the job is born, `queued`, from `SyncRequested`)
/// and its own.
pub async fn job(
    client: &mut Object,
    account_id: &str,
    id: listbackup_domain::JobId,
    as_of: AsOf,
) -> Result<Option<Then<JobView>>, AsOfError> {
    // Which source the job belongs to, from the real read model (before the temporary tables hide it).
    let Some(row) = client
        .query_opt(
            "SELECT source_id FROM read_jobs WHERE account_id = $1 AND job_id = $2",
            &[&account_id, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    let source_id: String = row.get(0);
    let bound = resolve(&**client as &tokio_postgres::Client, as_of).await?;
    let tx = begin(client).await?;
    fold(
        &tx,
        listbackup_domain::source::AGGREGATE_TYPE,
        &[source_id],
        &bound,
    )
    .await?;
    fold(
        &tx,
        listbackup_domain::job::AGGREGATE_TYPE,
        &[id.to_string()],
        &bound,
    )
    .await?;
    let view = read_models::jobs::get(&tx, account_id, id).await?;
    let version = read_models::jobs::projected_version(&tx, id).await?;
    tx.rollback().await?;
    Ok(view.map(|view| Then {
        view,
        version: version.unwrap_or_default(),
    }))
}
