//! The read-model tables, one module each.
//!
//! What a read model does with an event is said **once**, as a pure function of the rows it touches and the
//! event (`fold` in each module: row state + event → row state, over [`Rows`]). Every reader of the log uses
//! it the same way:
//! - the live projector ([`apply_batch`]): loads the rows a batch of events touches, folds the batch in
//!   memory, writes the changed rows back (one statement per table);
//! - a rebuild ([`crate::rebuild`]): folds the whole log in memory, holding one row per aggregate (never the
//!   log itself), and writes the final rows in bulk;
//! - an as-of view ([`crate::audit::as_of`]): folds a resource's events up to a point, through
//!   [`apply_batch`] into temporary tables.

pub mod connections;
pub mod jobs;
pub mod source_groups;
pub mod sources;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{ReadError, StoredEvent};

/// Every read-model table, in the order a rebuild creates them: what a rebuild replaces and an as-of fold
/// shadows. A new read model adds its tables here.
pub const TABLES: &[&str] = &[
    "read_connections",
    "read_sources",
    "read_source_groups",
    "read_source_group_members",
    "read_jobs",
    "read_webhooks",
];

/// A row of a read-model table, (de)serialized with the table's column names as keys: how rows are loaded
/// (`to_jsonb(row)`) and written (`jsonb_populate_recordset`). Every column of the table is a field.
pub(crate) trait Table: Serialize + DeserializeOwned {
    const NAME: &'static str;
    /// The primary key's column.
    const KEY: &'static str;
    /// Every column but the key, for the upsert's `DO UPDATE`.
    const COLUMNS: &'static [&'static str];
    fn key(&self) -> &str;
}

/// The event's envelope, as a fold needs it.
pub(crate) struct Header<'a> {
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    pub metadata: Metadata<'a>,
}

/// An event's metadata: parsed already, or its JSON text parsed only if a fold asks (a rebuild reads the log
/// without parsing what no read model uses).
pub(crate) enum Metadata<'a> {
    Parsed(&'a Value),
    Text(&'a [u8]),
}

impl Metadata<'_> {
    /// Who caused the event (`actor` of the metadata), empty if unknown.
    pub fn actor(&self) -> String {
        let actor = |v: &Value| v["actor"].as_str().unwrap_or_default().to_owned();
        match self {
            Self::Parsed(v) => actor(v),
            Self::Text(text) => serde_json::from_slice::<Value>(text)
                .map(|v| actor(&v))
                .unwrap_or_default(),
        }
    }
}

/// An event decoded for the read model of its aggregate.
pub(crate) enum Decoded {
    Connection(listbackup_domain::connection::ConnectionEvent),
    Source(listbackup_domain::source::SourceEvent),
    SourceGroup(listbackup_domain::source_group::SourceGroupEvent),
    Job(listbackup_domain::job::JobEvent),
    Webhook(listbackup_domain::webhook::WebhookEvent),
    /// An aggregate with no read model (yet): the log keeps its events, a later rebuild picks them up.
    Other,
}

impl Decoded {
    /// Decodes `payload` (cqrs-es's `{"<EventType>": {...}}`, already through the upcasters) for the read
    /// model of `aggregate_type`.
    pub fn from_json<'a, D: serde::Deserializer<'a>>(
        aggregate_type: &str,
        payload: D,
    ) -> Result<Self, D::Error> {
        use serde::Deserialize;
        Ok(match aggregate_type {
            listbackup_domain::connection::AGGREGATE_TYPE => {
                Self::Connection(Deserialize::deserialize(payload)?)
            }
            listbackup_domain::source::AGGREGATE_TYPE => {
                Self::Source(Deserialize::deserialize(payload)?)
            }
            listbackup_domain::source_group::AGGREGATE_TYPE => {
                Self::SourceGroup(Deserialize::deserialize(payload)?)
            }
            listbackup_domain::job::AGGREGATE_TYPE => Self::Job(Deserialize::deserialize(payload)?),
            listbackup_domain::webhook::AGGREGATE_TYPE => {
                Self::Webhook(Deserialize::deserialize(payload)?)
            }
            _ => Self::Other,
        })
    }

    fn of(event: &StoredEvent) -> Result<Self, ReadError> {
        Self::from_json(&event.aggregate_type, &event.payload).map_err(|e| ReadError::BadEvent {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            source: e.into(),
        })
    }
}

/// The read-model rows a fold works on, keyed by their ids: all of them in a rebuild, the ones a batch
/// touches in the live projector.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Rows {
    pub connections: HashMap<String, connections::ConnectionRow>,
    pub sources: HashMap<String, sources::SourceRow>,
    pub groups: HashMap<String, source_groups::GroupRow>,
    /// Group id → its members (source id → when it was added).
    pub members: HashMap<String, BTreeMap<String, DateTime<Utc>>>,
    pub jobs: HashMap<String, jobs::JobRow>,
    pub webhooks: HashMap<String, webhooks::WebhookRow>,
}

impl Rows {
    /// Folds one event into the rows (the one definition of what each read model does with it).
    pub fn fold(&mut self, header: &Header<'_>, event: Decoded) {
        match event {
            Decoded::Connection(event) => connections::fold(self, header, event),
            Decoded::Source(event) => sources::fold(self, header, event),
            Decoded::SourceGroup(event) => source_groups::fold(self, header, event),
            Decoded::Job(event) => jobs::fold(self, header, event),
            Decoded::Webhook(event) => webhooks::fold(self, header, event),
            Decoded::Other => {}
        }
    }

    /// Folds a stored (already upcast) event.
    pub fn fold_stored(&mut self, event: &StoredEvent) -> Result<(), ReadError> {
        let decoded = Decoded::of(event)?;
        self.fold(
            &Header {
                aggregate_id: &event.aggregate_id,
                sequence: event.sequence,
                recorded_at: event.recorded_at,
                metadata: Metadata::Parsed(&event.metadata),
            },
            decoded,
        );
        Ok(())
    }
}

/// The rows of table `T` whose key is among `ids`.
async fn load<T: Table>(client: &impl GenericClient, ids: &[&str]) -> Result<Vec<T>, ReadError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Unprepared on purpose: the table name resolves on the connection's search path at each call (a
    // rebuild's shadow tables, an as-of fold's temporary tables).
    let sql = format!(
        "SELECT to_jsonb(t) FROM {} t WHERE {} = ANY($1)",
        T::NAME,
        T::KEY
    );
    let rows = client.query(&sql, &[&ids]).await?;
    rows.iter()
        .map(|row| {
            serde_json::from_value(row.get(0)).map_err(|e| ReadError::BadEvent {
                event_id: uuid::Uuid::nil(),
                event_type: format!("row of {}", T::NAME),
                source: e.into(),
            })
        })
        .collect()
}

/// Inserts `rows` into table `T`, or replaces the rows with the same key: one statement for up to `CHUNK`
/// rows, however many.
pub(crate) async fn write<'a, T: Table + 'a>(
    client: &impl GenericClient,
    rows: impl IntoIterator<Item = &'a T>,
    upsert: bool,
) -> Result<u64, ReadError> {
    const CHUNK: usize = 5000;
    let conflict = if upsert {
        let set: Vec<String> = T::COLUMNS
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        format!(" ON CONFLICT ({}) DO UPDATE SET {}", T::KEY, set.join(", "))
    } else {
        String::new()
    };
    let sql = format!(
        "INSERT INTO {name} SELECT * FROM jsonb_populate_recordset(NULL::{name}, $1){conflict}",
        name = T::NAME
    );
    let mut written = 0;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        chunk.clear();
        chunk.extend(
            rows.by_ref()
                .take(CHUNK)
                .map(|row| serde_json::to_value(row).unwrap_or(Value::Null)),
        );
        written += client
            .execute(&sql, &[&Value::Array(chunk.clone())])
            .await?;
    }
    Ok(written)
}

/// Writes every member of `members` into `read_source_group_members` (rows known to be new).
pub(crate) async fn write_members<'a>(
    client: &impl GenericClient,
    members: impl IntoIterator<Item = (&'a str, &'a str, DateTime<Utc>)>,
) -> Result<(), ReadError> {
    #[derive(Serialize, serde::Deserialize)]
    struct MemberRow<'r> {
        group_id: &'r str,
        source_id: &'r str,
        added_at: DateTime<Utc>,
    }
    let rows: Vec<Value> = members
        .into_iter()
        .map(|(group_id, source_id, added_at)| {
            serde_json::to_value(MemberRow {
                group_id,
                source_id,
                added_at,
            })
            .unwrap_or(Value::Null)
        })
        .collect();
    for chunk in rows.chunks(5000) {
        client
            .execute(
                "INSERT INTO read_source_group_members \
                 SELECT * FROM jsonb_populate_recordset(NULL::read_source_group_members, $1)",
                &[&Value::Array(chunk.to_vec())],
            )
            .await?;
    }
    Ok(())
}

/// Writes every row of `rows` into empty tables (a rebuild's shadow tables).
pub(crate) async fn write_all(client: &impl GenericClient, rows: &Rows) -> Result<(), ReadError> {
    write(client, rows.connections.values(), false).await?;
    write(client, rows.sources.values(), false).await?;
    write(client, rows.groups.values(), false).await?;
    write_members(
        client,
        rows.members.iter().flat_map(|(group, members)| {
            members
                .iter()
                .map(move |(source, at)| (group.as_str(), source.as_str(), *at))
        }),
    )
    .await?;
    write(client, rows.jobs.values(), false).await?;
    write(client, rows.webhooks.values(), false).await?;
    Ok(())
}

/// What [`apply_batch`] wrote, as it wrote it: what the live projector keeps in memory so a request reading
/// back its own write need not read the table ([`crate::ProjectedWatch`]).
#[derive(Debug, Default)]
pub struct Written {
    /// The `read_connections` rows the batch changed.
    pub(crate) connections: Vec<connections::ConnectionRow>,
}

/// Applies a batch of events (in log order) to the read-model tables the connection's search path finds:
/// loads the rows the batch touches, folds the events in memory, writes back what changed, and returns
/// some of what it wrote ([`Written`]). Applying an event twice changes nothing (every fold is guarded by
/// the row's version).
pub async fn apply_batch(
    client: &impl GenericClient,
    events: &[StoredEvent],
) -> Result<Written, ReadError> {
    use listbackup_domain::{connection, job, source, source_group, webhook};
    // Every row the batch may read or write.
    let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
    for event in events {
        let kind = event.aggregate_type.as_str();
        if ![
            connection::AGGREGATE_TYPE,
            source::AGGREGATE_TYPE,
            source_group::AGGREGATE_TYPE,
            job::AGGREGATE_TYPE,
            webhook::AGGREGATE_TYPE,
        ]
        .contains(&kind)
        {
            continue;
        }
        ids.entry(kind).or_default().insert(&event.aggregate_id);
        // A source's SyncRequested creates its job's row (unless it exists).
        if kind == source::AGGREGATE_TYPE {
            if let Some(job_id) = event.body().get("jobId").and_then(Value::as_str) {
                ids.entry(job::AGGREGATE_TYPE).or_default().insert(job_id);
            }
        }
    }
    if ids.is_empty() {
        return Ok(Written::default());
    }
    let of = |kind: &str| -> Vec<&str> {
        let mut v: Vec<&str> = ids
            .get(kind)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    };
    let (connection_ids, source_ids, group_ids, job_ids, webhook_ids) = (
        of(connection::AGGREGATE_TYPE),
        of(source::AGGREGATE_TYPE),
        of(source_group::AGGREGATE_TYPE),
        of(job::AGGREGATE_TYPE),
        of(webhook::AGGREGATE_TYPE),
    );
    let mut rows = Rows::default();
    for row in load::<connections::ConnectionRow>(client, &connection_ids).await? {
        rows.connections.insert(row.key().to_owned(), row);
    }
    for row in load::<sources::SourceRow>(client, &source_ids).await? {
        rows.sources.insert(row.key().to_owned(), row);
    }
    for row in load::<source_groups::GroupRow>(client, &group_ids).await? {
        rows.groups.insert(row.key().to_owned(), row);
    }
    for row in load::<jobs::JobRow>(client, &job_ids).await? {
        rows.jobs.insert(row.key().to_owned(), row);
    }
    for row in load::<webhooks::WebhookRow>(client, &webhook_ids).await? {
        rows.webhooks.insert(row.key().to_owned(), row);
    }
    if !group_ids.is_empty() {
        for row in client
            .query(
                "SELECT group_id, source_id, added_at FROM read_source_group_members \
                 WHERE group_id = ANY($1)",
                &[&group_ids],
            )
            .await?
        {
            rows.members
                .entry(row.get(0))
                .or_default()
                .insert(row.get(1), row.get(2));
        }
    }
    let before = rows.clone();
    for event in events {
        rows.fold_stored(event)?;
    }

    fn changed<'a, T: PartialEq>(
        after: &'a HashMap<String, T>,
        before: &'a HashMap<String, T>,
    ) -> impl Iterator<Item = &'a T> {
        after
            .iter()
            .filter(move |(id, row)| before.get(*id) != Some(*row))
            .map(|(_, row)| row)
    }
    let connections: Vec<connections::ConnectionRow> =
        changed(&rows.connections, &before.connections)
            .cloned()
            .collect();
    if !connections.is_empty() {
        write(client, &connections, true).await?;
    }
    let sources: Vec<_> = changed(&rows.sources, &before.sources).collect();
    if !sources.is_empty() {
        write(client, sources, true).await?;
    }
    let groups: Vec<_> = changed(&rows.groups, &before.groups).collect();
    if !groups.is_empty() {
        write(client, groups, true).await?;
    }
    // Members: delete the ones gone, insert the new ones.
    let empty = BTreeMap::new();
    let mut gone_groups = Vec::new();
    let mut gone_sources = Vec::new();
    let mut added = Vec::new();
    for group in &group_ids {
        let was = before.members.get(*group).unwrap_or(&empty);
        let is = rows.members.get(*group).unwrap_or(&empty);
        for source in was.keys().filter(|s| !is.contains_key(*s)) {
            gone_groups.push(*group);
            gone_sources.push(source.as_str());
        }
        for (source, at) in is.iter().filter(|(s, _)| !was.contains_key(*s)) {
            added.push((*group, source.as_str(), *at));
        }
    }
    if !gone_groups.is_empty() {
        client
            .execute(
                "DELETE FROM read_source_group_members m USING unnest($1::text[], $2::text[]) AS g(group_id, source_id) \
                 WHERE m.group_id = g.group_id AND m.source_id = g.source_id",
                &[&gone_groups, &gone_sources],
            )
            .await?;
    }
    if !added.is_empty() {
        write_members(client, added).await?;
    }
    let jobs: Vec<_> = changed(&rows.jobs, &before.jobs).collect();
    if !jobs.is_empty() {
        write(client, jobs, true).await?;
    }
    let webhooks: Vec<_> = changed(&rows.webhooks, &before.webhooks).collect();
    if !webhooks.is_empty() {
        write(client, webhooks, true).await?;
    }
    Ok(Written { connections })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, id: &str, sequence: i64, payload: Value) -> StoredEvent {
        let event_type = payload
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default();
        StoredEvent {
            position: crate::LogPosition::default(),
            event_id: uuid::Uuid::nil(),
            aggregate_type: kind.into(),
            aggregate_id: id.into(),
            sequence,
            event_type,
            event_version: "1.0".into(),
            payload,
            metadata: json!({"actor": "user:alice"}),
            recorded_at: DateTime::UNIX_EPOCH + chrono::Duration::seconds(sequence),
        }
    }

    fn log() -> Vec<StoredEvent> {
        vec![
            event(
                "source",
                "0190f5c2-7d3e-7a11-8b2c-00000000b001",
                1,
                json!({"SourceCreated": {"sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b001", "accountId": "a", "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c001",
                    "platformId": "stripe", "name": "S", "dataTypes": ["charges"], "schedule": {"frequency": "manual"},
                    "retentionDays": 30, "incremental": false, "keepLast": 2}}),
            ),
            event(
                "source",
                "0190f5c2-7d3e-7a11-8b2c-00000000b001",
                2,
                json!({"SyncRequested": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a001", "trigger": "manual"}}),
            ),
            event(
                "job",
                "0190f5c2-7d3e-7a11-8b2c-00000000a001",
                1,
                json!({"JobStarted": {"jobId": "0190f5c2-7d3e-7a11-8b2c-00000000a001", "accountId": "a", "sourceId": "0190f5c2-7d3e-7a11-8b2c-00000000b001",
                    "connectionId": "0190f5c2-7d3e-7a11-8b2c-00000000c001", "platformId": "stripe", "trigger": "manual", "attempt": 1,
                    "worker": "w", "dataTypes": ["charges", "refunds"]}}),
            ),
            event(
                "job",
                "0190f5c2-7d3e-7a11-8b2c-00000000a001",
                2,
                json!({"ResourceBackedUp": {"dataType": "charges", "records": 4, "bytes": 40,
                    "sha256": "x", "object": "o"}}),
            ),
            event(
                "job",
                "0190f5c2-7d3e-7a11-8b2c-00000000a001",
                3,
                json!({"JobAttemptStarted": {"attempt": 2, "worker": "w2"}}),
            ),
            event(
                "job",
                "0190f5c2-7d3e-7a11-8b2c-00000000a001",
                4,
                json!({"BackupHeld": {"reason": "keep"}}),
            ),
            event(
                "source",
                "0190f5c2-7d3e-7a11-8b2c-00000000b001",
                3,
                json!({"SourceUpdated": {"keepLast": 0}}),
            ),
        ]
    }

    #[test]
    fn folding_a_log_twice_changes_nothing_and_each_event_does_what_its_model_says() {
        let mut once = Rows::default();
        for e in &log() {
            once.fold_stored(e).unwrap();
        }
        let mut twice = once.clone();
        for e in &log() {
            twice.fold_stored(e).unwrap();
        }
        assert_eq!(once, twice);

        let source = &once.sources["0190f5c2-7d3e-7a11-8b2c-00000000b001"];
        assert_eq!(
            (
                source.version,
                source.keep_last,
                source.last_job_id.as_deref()
            ),
            (3, None, Some("0190f5c2-7d3e-7a11-8b2c-00000000a001"))
        );
        let job = &once.jobs["0190f5c2-7d3e-7a11-8b2c-00000000a001"];
        assert_eq!(
            (job.status.as_str(), job.attempt, job.version),
            ("running", 2, 4)
        );
        // A second attempt makes every data type pending again.
        assert_eq!(job.data_types[0]["status"], "pending");
        assert_eq!(job.data_types[0]["records"], 0);
        assert_eq!(job.hold.as_ref().unwrap()["by"], "user:alice");
        assert_eq!(
            job.account_id, "a",
            "the queued row took the source's account"
        );
    }

    /// The live projector and a rebuild may meet a job's `JobStarted` before its source's `SyncRequested`
    /// (load run of 2026-11-30: rebuilt rows had `queuedAt` = `startedAt`, the live ones the request's time):
    /// the rows must not depend on how the two streams interleave.
    #[test]
    fn a_job_started_before_its_request_is_folded_gives_the_same_rows() {
        let log = log();
        let mut request_first = Rows::default();
        for e in &log {
            request_first.fold_stored(e).unwrap();
        }
        // The same streams, each in its own order, the request met after the job's events.
        let mut started_first = Rows::default();
        for i in [0, 2, 3, 4, 5, 1, 6] {
            started_first.fold_stored(&log[i]).unwrap();
        }
        assert_eq!(
            started_first.jobs["0190f5c2-7d3e-7a11-8b2c-00000000a001"].queued_at,
            log[1].recorded_at,
            "queued when requested"
        );
        assert_eq!(started_first, request_first);
        // And folding the request again changes nothing.
        let mut again = started_first.clone();
        again.fold_stored(&log[1]).unwrap();
        assert_eq!(again, started_first);
    }

    #[test]
    fn a_job_is_not_queued_without_its_source_row() {
        let mut rows = Rows::default();
        rows.fold_stored(&log()[1]).unwrap();
        assert!(rows.jobs.is_empty());
        assert!(rows.sources.is_empty());
    }

    #[test]
    fn metadata_text_is_parsed_only_for_the_actor() {
        let text = br#"{"actor": "user:bob", "requestId": "r"}"#;
        assert_eq!(Metadata::Text(text).actor(), "user:bob");
        assert_eq!(Metadata::Text(b"not json").actor(), "");
    }
}
