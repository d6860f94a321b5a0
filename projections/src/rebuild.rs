//! `listbackup projections rebuild` without a gap: fresh read-model tables are built beside the live ones,
//! which keep serving (and the live projector keeps updating) until the new ones have caught up; then one
//! short transaction swaps them in.
//!
//! 1. Shadow tables: `listbackup_rebuild.<table>` for each read-model table, `LIKE` the live one, with its
//!    primary and unique keys under their own names (the projector's `ON CONFLICT`s need them).
//! 2. Build: the log is folded into them batch by batch, committing each, by the projector's own code
//!    ([`read_models::apply`]) on a connection of its own whose `search_path` starts with the shadow schema,
//!    so the unqualified table names of the read models resolve to the shadow tables.
//! 3. Indexes: the live tables' other indexes are created on the shadow tables once they are full (faster
//!    than maintaining them row by row), under the same names.
//! 4. Swap, in one transaction: lock the projector's checkpoint row (waiting for a live batch to commit),
//!    then the live tables; apply the tail of the log that arrived meanwhile; move the live tables out to
//!    `listbackup_retired` and the shadow tables in; set the checkpoint to where the fold got. Readers wait
//!    for the lock at most as long as the tail takes, then see the new tables, complete: there is no moment
//!    when a list is empty or behind. Prepared statements that named the old tables are re-planned by
//!    PostgreSQL on their next use (moving a table invalidates plans that depend on it).
//! 5. The retired tables are dropped.
//!
//! Speed: applying one event is one or two statements, each a round trip. The fold therefore runs the events
//! of a batch in **lanes**, one per independent group of rows, all at once on the one connection, so that
//! tokio-postgres pipelines their statements; within a lane, events are applied in log order. Events touch
//! the rows of their own aggregate, except a source's `SyncRequested`, which creates its job's row (reading
//! the source's row): a job's events therefore share its source's lane (the `SyncRequested` names the job),
//! and everything else has a lane per aggregate. The result is the one a sequential fold gives.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{ClientWrapper, GenericClient, Pool};
use futures::future::try_join_all;

use crate::event_log::{lock_checkpoint, read_after, save_checkpoint};
use crate::projector::CHECKPOINT;
use crate::read_models::{self, TABLES};
use crate::{LogPosition, ReadError, StoredEvent};

/// Events per batch of the fold (each batch one transaction per connection).
const BATCH: i64 = 5000;
/// Connections the fold runs on side by side (PostgreSQL runs each on a core of its own).
const WORKERS: usize = 2;

/// Which lane each event goes to: the jobs' sources, learnt from `SyncRequested` as the fold passes them.
#[derive(Default)]
struct Lanes {
    job_sources: HashMap<String, String>,
    /// Jobs that ended in the current batch: forgotten once it is applied, so memory follows the running
    /// jobs, not the whole log.
    ended: HashSet<String>,
}

impl Lanes {
    fn key(&mut self, event: &StoredEvent) -> (String, String) {
        let body = event.body();
        match event.aggregate_type.as_str() {
            listbackup_domain::source::AGGREGATE_TYPE => {
                if let Some(job) = body.get("jobId").and_then(|v| v.as_str()) {
                    self.job_sources
                        .insert(job.to_owned(), event.aggregate_id.clone());
                }
                (event.aggregate_type.clone(), event.aggregate_id.clone())
            }
            listbackup_domain::job::AGGREGATE_TYPE => {
                if matches!(
                    event.event_type.as_str(),
                    "JobSucceeded" | "JobPartiallySucceeded" | "JobFailed" | "JobCancelled"
                ) {
                    self.ended.insert(event.aggregate_id.clone());
                }
                let source = self
                    .job_sources
                    .get(&event.aggregate_id)
                    .cloned()
                    .or_else(|| {
                        body.get("sourceId")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned)
                    });
                match source {
                    Some(source) => (listbackup_domain::source::AGGREGATE_TYPE.to_owned(), source),
                    None => (event.aggregate_type.clone(), event.aggregate_id.clone()),
                }
            }
            _ => (event.aggregate_type.clone(), event.aggregate_id.clone()),
        }
    }

    /// Splits a batch into lanes (log order within each), the lanes dealt out to `workers` connections by
    /// their key.
    fn split<'a>(
        &mut self,
        batch: &'a [StoredEvent],
        workers: usize,
    ) -> Vec<Vec<Vec<&'a StoredEvent>>> {
        let mut lanes: HashMap<(String, String), Vec<&StoredEvent>> = HashMap::new();
        for event in batch {
            lanes.entry(self.key(event)).or_default().push(event);
        }
        let mut dealt: Vec<Vec<Vec<&StoredEvent>>> = (0..workers).map(|_| Vec::new()).collect();
        for (key, lane) in lanes {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&key, &mut hasher);
            let worker = (std::hash::Hasher::finish(&hasher) % workers as u64) as usize;
            dealt[worker].push(lane);
        }
        dealt
    }

    /// Forgets the jobs that ended in the batch just applied.
    fn batch_done(&mut self) {
        for job in self.ended.drain() {
            self.job_sources.remove(&job);
        }
    }
}

/// Applies lanes side by side on one connection (tokio-postgres pipelines their statements), each lane's
/// events in order.
async fn apply_lanes(
    client: &impl GenericClient,
    lanes: Vec<Vec<&StoredEvent>>,
) -> Result<(), ReadError> {
    try_join_all(lanes.into_iter().map(|lane| async move {
        for event in lane {
            read_models::apply(client, event).await?;
        }
        Ok::<_, ReadError>(())
    }))
    .await?;
    Ok(())
}

/// The schema fresh read models are built in.
pub const SHADOW_SCHEMA: &str = "listbackup_rebuild";
/// Where replaced read models go until they are dropped.
pub const RETIRED_SCHEMA: &str = "listbackup_retired";
/// Names the rebuild among advisory locks: one rebuild at a time.
const REBUILD_LOCK: i64 = 0x4c42_5245_4255; // "LBREBU"

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events folded into the new tables (all of the log below the commit horizon at the swap).
    pub events: usize,
    /// Of which during the swap (the tail that arrived while building).
    pub tail: usize,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Runs a rebuild on a connection taken out of `pool` for good (its session settings must not leak back).
pub async fn rebuild(pool: &Pool) -> Result<Rebuilt, ReadError> {
    let mut client: ClientWrapper = deadpool_postgres::Object::take(pool.get().await?);
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&REBUILD_LOCK])
        .await?;
    let mut helpers = Vec::new();
    for _ in 1..WORKERS {
        helpers.push(deadpool_postgres::Object::take(pool.get().await?));
    }
    // The sessions end with the connections, and the advisory lock with them.
    run(&mut client, &mut helpers).await
}

/// Points a connection's unqualified table names at the shadow tables.
async fn use_shadow(client: &mut ClientWrapper, live: &str) -> Result<(), ReadError> {
    client
        .batch_execute(&format!(
            "SET search_path = {SHADOW_SCHEMA}, {live}; SET synchronous_commit = off"
        ))
        .await?;
    client.statement_cache.clear();
    Ok(())
}

async fn run(
    client: &mut ClientWrapper,
    helpers: &mut [ClientWrapper],
) -> Result<Rebuilt, ReadError> {
    let live_schema: String = client
        .query_one("SELECT current_schema()", &[])
        .await?
        .get(0);
    let live = quote(&live_schema);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE; DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE; \
             CREATE SCHEMA {SHADOW_SCHEMA}"
        ))
        .await?;
    let mut deferred_indexes = Vec::new();
    for table in TABLES {
        client
            .batch_execute(&format!(
                // Unlogged while it is built (no WAL for every row written); logged before it is swapped in.
                "CREATE UNLOGGED TABLE {SHADOW_SCHEMA}.{table} \
                 (LIKE {live}.{table} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .await?;
        let qualified = format!("{live}.{table}");
        for row in client
            .query(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE conrelid = $1::text::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname",
                &[&qualified],
            )
            .await?
        {
            let (name, definition): (String, String) = (row.get(0), row.get(1));
            client
                .batch_execute(&format!(
                    "ALTER TABLE {SHADOW_SCHEMA}.{table} ADD CONSTRAINT {} {definition}",
                    quote(&name)
                ))
                .await?;
        }
        for row in client
            .query(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid = $1::text::regclass \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY i.indexrelid",
                &[&qualified],
            )
            .await?
        {
            let definition: String = row.get(0);
            // `CREATE INDEX name ON schema.table USING …`: the same index on the shadow table.
            let on_live = format!(" ON {live_schema}.{table} ");
            let on_live_quoted = format!(" ON {live}.{table} ");
            let on_shadow = format!(" ON {SHADOW_SCHEMA}.{table} ");
            deferred_indexes.push(
                definition
                    .replacen(&on_live_quoted, &on_shadow, 1)
                    .replacen(&on_live, &on_shadow, 1),
            );
        }
    }

    // The projector's statements name tables unqualified: on these connections they find the shadow ones.
    use_shadow(client, &live).await?;
    for helper in helpers.iter_mut() {
        use_shadow(helper, &live).await?;
    }

    let mut lanes = Lanes::default();
    let mut at = LogPosition::default();
    let mut events = 0;
    loop {
        let read = client.transaction().await?;
        let batch = read_after(&read, at, BATCH).await?;
        read.commit().await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        // A batch's lanes on every connection at once, each in a transaction of its own: the shadow tables
        // are nobody else's, and a failure anywhere fails the whole rebuild (the next one starts afresh).
        let mut dealt = lanes.split(&batch, 1 + helpers.len()).into_iter();
        let mine = dealt.next().unwrap_or_default();
        let theirs = helpers
            .iter_mut()
            .zip(dealt)
            .map(|(helper, lanes)| async move {
                let tx = helper.transaction().await?;
                apply_lanes(&tx, lanes).await?;
                tx.commit().await?;
                Ok::<_, ReadError>(())
            });
        let own = async {
            let tx = client.transaction().await?;
            apply_lanes(&tx, mine).await?;
            tx.commit().await?;
            Ok::<_, ReadError>(())
        };
        let (own, theirs) = futures::join!(own, try_join_all(theirs));
        own?;
        theirs?;
        lanes.batch_done();
        events += batch.len();
        at = last;
    }
    for table in TABLES {
        client
            .batch_execute(&format!("ALTER TABLE {SHADOW_SCHEMA}.{table} SET LOGGED"))
            .await?;
    }
    for index in &deferred_indexes {
        client.batch_execute(index).await?;
    }
    for table in TABLES {
        client
            .batch_execute(&format!("ANALYZE {SHADOW_SCHEMA}.{table}"))
            .await?;
    }

    // The swap. The checkpoint row first, as the live projector takes it first: no deadlock with it.
    let tx = client.transaction().await?;
    lock_checkpoint(&tx, CHECKPOINT).await?;
    let live_tables: Vec<String> = TABLES.iter().map(|t| format!("{live}.{t}")).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        live_tables.join(", ")
    ))
    .await?;
    let mut tail = 0;
    loop {
        let batch = read_after(&tx, at, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        let all = lanes.split(&batch, 1).into_iter().flatten().collect();
        apply_lanes(&tx, all).await?;
        lanes.batch_done();
        tail += batch.len();
        at = last;
    }
    save_checkpoint(&tx, CHECKPOINT, at).await?;
    tx.batch_execute(&format!("CREATE SCHEMA {RETIRED_SCHEMA}"))
        .await?;
    for table in TABLES {
        tx.batch_execute(&format!(
            "ALTER TABLE {live}.{table} SET SCHEMA {RETIRED_SCHEMA}; \
             ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA {live}"
        ))
        .await?;
    }
    tx.commit().await?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA {RETIRED_SCHEMA} CASCADE; DROP SCHEMA {SHADOW_SCHEMA} CASCADE"
        ))
        .await?;
    Ok(Rebuilt {
        events: events + tail,
        tail,
    })
}
