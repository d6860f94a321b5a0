//! One event of the log as auditors see it, and its place in the hash chain.
//!
//! The JSON of a [`LoggedEvent`] is what `GET /events`, `GET /{resource}/{id}/history` and exports show. Its
//! fields other than `previousHash` and `hash` are exactly the event's canonical encoding (migration
//! `0010_audit_hash_chain.sql`):
//!
//! ```text
//! hash = SHA-256(previousHash ‖ RFC 8785 canonical JSON of {aggregateId, aggregateType, eventId, eventType,
//!                eventVersion, metadata, payload, position, recordedAt, sequence, transactionId})
//! ```
//!
//! with `previousHash` the hash of the event before it in its stream (32 zero bytes for the first), both
//! as raw bytes (they are shown as lower-case hex). PostgreSQL computes it when the event is appended;
//! [`LoggedEvent::computed_hash`] computes it again from the fields, here or offline.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::ReadError;

/// A SHA-256 hash of the chain.
pub type ChainHash = [u8; 32];

/// The `previousHash` of a stream's first event.
pub const GENESIS: ChainHash = [0; 32];

/// One stored event with its chain hashes. Field names are those of the canonical encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggedEvent {
    /// The event's position in the log (`global_position`). Log order is (`transactionId`, `position`):
    /// positions are handed out at insert, so a later position can commit first.
    pub position: i64,
    /// The appending transaction (`xid8`, decimal): the first key of log order.
    pub transaction_id: String,
    pub event_id: Uuid,
    /// `connection`, `source`, `source_group` or `job`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The aggregate's version after this event (its stream sequence, from 1).
    pub sequence: i64,
    pub event_type: String,
    /// The event's schema version (`1.0`, …).
    pub event_version: String,
    /// As cqrs-es stores it: `{"<eventType>": {…fields}}`.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `{accountId, actor, requestId, correlationId, causationId}`.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// When it was recorded, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fractional digits: this exact text
    /// is hashed).
    pub recorded_at: String,
    /// The hash of the event before it in its stream, hex (64 zeros for the first).
    pub previous_hash: String,
    /// This event's chain hash, hex.
    pub hash: String,
}

/// The columns [`LoggedEvent::from_row`] reads, for `SELECT … FROM events e`.
pub const LOGGED_COLUMNS: &str = "e.global_position, e.transaction_id::text AS txid, e.event_id, \
    e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata, \
    e.recorded_at, e.previous_hash, e.hash";

/// `recordedAt` as hashed: RFC 3339, UTC, microseconds (PostgreSQL's precision).
pub fn format_recorded_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl LoggedEvent {
    pub fn from_row(row: &Row) -> Self {
        let previous: Vec<u8> = row.get("previous_hash");
        let hash: Vec<u8> = row.get("hash");
        Self {
            position: row.get("global_position"),
            transaction_id: row.get("txid"),
            event_id: row.get("event_id"),
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            sequence: row.get("sequence"),
            event_type: row.get("event_type"),
            event_version: row.get("event_version"),
            payload: row.get("payload"),
            metadata: row.get("metadata"),
            recorded_at: format_recorded_at(row.get("recorded_at")),
            previous_hash: hex::encode(previous),
            hash: hex::encode(hash),
        }
    }

    /// The transaction id as a number (log order's first key).
    pub fn transaction(&self) -> u64 {
        self.transaction_id.parse().unwrap_or_default()
    }

    /// The RFC 8785 canonical JSON of the event's fields (everything but the two hashes).
    pub fn canonical(&self) -> Result<Vec<u8>, ReadError> {
        let envelope = json!({
            "aggregateId": self.aggregate_id,
            "aggregateType": self.aggregate_type,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "eventVersion": self.event_version,
            "metadata": self.metadata,
            "payload": self.payload,
            "position": self.position,
            "recordedAt": self.recorded_at,
            "sequence": self.sequence,
            "transactionId": self.transaction_id,
        });
        serde_json_canonicalizer::to_vec(&envelope).map_err(|e| ReadError::BadEvent {
            event_id: self.event_id,
            event_type: self.event_type.clone(),
            source: Box::new(Uncanonicalizable(e)),
        })
    }

    /// SHA-256(`previous` ‖ canonical encoding): what `hash` must be if the event follows `previous`.
    pub fn hash_after(&self, previous: &ChainHash) -> Result<ChainHash, ReadError> {
        let mut digest = Sha256::new();
        digest.update(previous);
        digest.update(self.canonical()?);
        Ok(digest.finalize().into())
    }

    /// The hash recomputed from the fields and the stated `previousHash`.
    pub fn computed_hash(&self) -> Result<ChainHash, ReadError> {
        let previous = parse_hash(&self.previous_hash).ok_or_else(|| ReadError::BadEvent {
            event_id: self.event_id,
            event_type: self.event_type.clone(),
            source: "previousHash is not 64 hex digits".into(),
        })?;
        self.hash_after(&previous)
    }

    /// `hash` as bytes (`None`: not 64 hex digits).
    pub fn stated_hash(&self) -> Option<ChainHash> {
        parse_hash(&self.hash)
    }
}

/// 64 hex digits as a hash.
pub fn parse_hash(text: &str) -> Option<ChainHash> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// The envelope's JSON could not be put in canonical form (RFC 8785); the serializer's error says why.
#[derive(Debug, thiserror::Error)]
#[error("cannot be canonicalized")]
struct Uncanonicalizable(#[source] serde_json::Error);

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> LoggedEvent {
        LoggedEvent {
            position: 7,
            transaction_id: "1234".into(),
            event_id: Uuid::nil(),
            aggregate_type: "source".into(),
            aggregate_id: "s1".into(),
            sequence: 2,
            event_type: "SourcePaused".into(),
            event_version: "1.0".into(),
            payload: json!({"SourcePaused": {"b": 2.50, "a": "é\u{0}"}}),
            metadata: json!({"actor": "user:x", "accountId": "acme"}),
            recorded_at: "2026-01-02T03:04:05.000006Z".into(),
            previous_hash: hex::encode(GENESIS),
            hash: String::new(),
        }
    }

    #[test]
    fn the_canonical_encoding_sorts_keys_and_normalizes_numbers() {
        let text = String::from_utf8(event().canonical().unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"aggregateId\":\"s1\",\"aggregateType\":\"source\",\
             \"eventId\":\"00000000-0000-0000-0000-000000000000\",\"eventType\":\"SourcePaused\",\
             \"eventVersion\":\"1.0\",\"metadata\":{\"accountId\":\"acme\",\"actor\":\"user:x\"},\
             \"payload\":{\"SourcePaused\":{\"a\":\"é\\u0000\",\"b\":2.5}},\"position\":7,\
             \"recordedAt\":\"2026-01-02T03:04:05.000006Z\",\"sequence\":2,\"transactionId\":\"1234\"}"
        );
    }

    #[test]
    fn the_hash_depends_on_the_previous_hash_and_every_field() {
        let base = event();
        let h = base.hash_after(&GENESIS).unwrap();
        assert_ne!(h, base.hash_after(&[1; 32]).unwrap());
        let mut moved = base.clone();
        moved.sequence = 3;
        assert_ne!(h, moved.hash_after(&GENESIS).unwrap());
        let mut reworded = base.clone();
        reworded.payload = json!({"SourcePaused": {"b": 2.51, "a": "é\u{0}"}});
        assert_ne!(h, reworded.hash_after(&GENESIS).unwrap());
        assert_eq!(
            format_recorded_at(DateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
    }
}
