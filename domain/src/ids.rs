//! The ids of the resources clients name: UUIDs (v7 when this service makes them), one type per resource so a
//! source id can never be passed where a connection id is meant. Each is the id of its aggregate's event
//! stream (the event store's `aggregate_id`) and reads and writes as the UUID's hyphenated lower-case string,
//! exactly the form every stored event and read-model row already holds (`#[serde(transparent)]`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ResourceKind;

/// The id of one event stream: what the event store's `aggregate_id` holds for it. The one place each id type
/// says how its stream is named.
pub trait StreamId {
    /// The `aggregate_id` of the stream.
    fn stream_id(&self) -> String;
}

/// Text that is not an id: anything but a UUID in its hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an id: ids are UUIDs in their hyphenated form (8-4-4-4-12 hexadecimal digits)")]
pub struct InvalidId;

/// Parses the one text form of an id: the UUID hyphenated (`0190f5c2-7d3e-7a11-8b2c-0123456789ab`, 36
/// characters), in either case. The other forms `uuid` reads (simple, `{braced}`, `urn:uuid:`) are refused,
/// so that one resource has one name: a client that sends another form names nothing, like any text that
/// is not an id.
pub fn parse_hyphenated(raw: &str) -> Result<Uuid, InvalidId> {
    if raw.len() != 36 {
        return Err(InvalidId);
    }
    Uuid::try_parse(raw).map_err(|_| InvalidId)
}

/// An id a client can name in a path or a body: parsed from its text form, refused as its kind's not-found
/// when it is not one (a path id that is not a UUID names nothing).
pub trait ResourceId: Copy + FromStr<Err = InvalidId> + fmt::Display + StreamId {
    /// What clients call the resource this id names.
    const KIND: ResourceKind;
    /// The aggregate type of the resource's stream (the event store's `aggregate_type`).
    const AGGREGATE_TYPE: &'static str;
}

macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $aggregate_type:expr) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id: UUID v7 (time-ordered, RFC 9562 §5.7), as every resource this service creates.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The id holding `uuid` (of any version: a scheduled job's id is derived, not drawn).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID itself.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// The hyphenated lower-case form (`0190f5c2-…`), the only form ids are stored and shown in.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// The hyphenated form only, in either case ([`parse_hyphenated`]).
            fn from_str(raw: &str) -> Result<Self, InvalidId> {
                parse_hyphenated(raw).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl StreamId for $name {
            fn stream_id(&self) -> String {
                self.to_string()
            }
        }

        impl<'a> postgres_types::FromSql<'a> for $name {
            /// A `uuid` column, or a text one holding a UUID's text form (the read models' ids); text that is
            /// not a UUID is an error.
            fn from_sql(
                ty: &postgres_types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                sql::from_sql(ty, raw).map(Self)
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                sql::accepts(ty)
            }
        }

        impl postgres_types::ToSql for $name {
            /// To a `uuid` parameter as the UUID, to a text one as its hyphenated lower-case form.
            fn to_sql(
                &self,
                ty: &postgres_types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                sql::to_sql(&self.0, ty, out)
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                sql::accepts(ty)
            }

            postgres_types::to_sql_checked!();
        }

        impl ResourceId for $name {
            const KIND: ResourceKind = $kind;
            const AGGREGATE_TYPE: &'static str = $aggregate_type;
        }
    };
}

/// How every id type reads from and binds to Postgres: a `uuid` (binary, 16 bytes) or a text type
/// (`text`, `varchar`, … holding the hyphenated form).
mod sql {
    use std::error::Error;

    use postgres_types::{FromSql, IsNull, ToSql, Type};
    use uuid::Uuid;

    type BoxError = Box<dyn Error + Sync + Send>;

    pub(super) fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID || <&str as FromSql>::accepts(ty)
    }

    pub(super) fn from_sql(ty: &Type, raw: &[u8]) -> Result<Uuid, BoxError> {
        if *ty == Type::UUID {
            Ok(Uuid::from_slice(raw)?)
        } else {
            Ok(Uuid::parse_str(<&str as FromSql>::from_sql(ty, raw)?)?)
        }
    }

    pub(super) fn to_sql(
        id: &Uuid,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, BoxError> {
        if *ty == Type::UUID {
            out.extend_from_slice(id.as_bytes());
            Ok(IsNull::No)
        } else {
            let mut text = Uuid::encode_buffer();
            <&str as ToSql>::to_sql(&&*id.hyphenated().encode_lower(&mut text), ty, out)
        }
    }
}

resource_id!(
    /// A connection's id (`connectionId`): the stream of a [`crate::connection::Connection`].
    ConnectionId,
    ResourceKind::Connection,
    crate::connection::AGGREGATE_TYPE
);
resource_id!(
    /// A source's id (`sourceId`): the stream of a [`crate::source::Source`].
    SourceId,
    ResourceKind::Source,
    crate::source::AGGREGATE_TYPE
);
resource_id!(
    /// A source group's id (`groupId`): the stream of a [`crate::source_group::SourceGroup`].
    SourceGroupId,
    ResourceKind::SourceGroup,
    crate::source_group::AGGREGATE_TYPE
);
resource_id!(
    /// A job's id (`jobId`): the stream of a [`crate::job::Job`].
    JobId,
    ResourceKind::Job,
    crate::job::AGGREGATE_TYPE
);

resource_id!(
    /// A webhook's id (`webhookId`): the stream of a [`crate::webhook::Webhook`].
    WebhookId,
    ResourceKind::Webhook,
    crate::webhook::AGGREGATE_TYPE
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_write_the_stored_form_unchanged() {
        let stored = "0190f5c2-7d3e-7a11-8b2c-0123456789ab";
        let id: SourceId = serde_json::from_value(serde_json::json!(stored)).unwrap();
        assert_eq!(id.to_string(), stored);
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(stored));
        assert_eq!(id.stream_id(), stored);
        // Upper case parses to the same id, shown in the one stored form.
        let upper: SourceId = stored.to_uppercase().parse().unwrap();
        assert_eq!(upper, id);
        assert_eq!(upper.to_string(), stored);
    }

    #[test]
    fn anything_but_a_uuid_is_refused() {
        // The other text forms of a UUID are not the id's: one resource, one name.
        let stored = "0190f5c2-7d3e-7a11-8b2c-0123456789ab";
        for other in [
            format!("{{{stored}}}"),
            format!("urn:uuid:{stored}"),
            stored.replace('-', ""),
            format!(" {stored}"),
            format!("{stored}\n"),
        ] {
            assert_eq!(other.parse::<SourceId>(), Err(InvalidId), "{other:?}");
        }
        assert!("s1".parse::<ConnectionId>().is_err());
        assert!("".parse::<JobId>().is_err());
        assert!(serde_json::from_value::<SourceGroupId>(serde_json::json!("nope")).is_err());
        assert!(serde_json::from_value::<SourceGroupId>(serde_json::json!(7)).is_err());
    }

    #[test]
    fn ids_bind_and_read_as_uuid_or_text_columns() {
        use postgres_types::{FromSql, ToSql, Type};
        let id: JobId = "0190f5c2-7d3e-7a11-8b2c-0123456789ab".parse().unwrap();
        let mut out = bytes::BytesMut::new();
        id.to_sql_checked(&Type::UUID, &mut out).unwrap();
        assert_eq!(&out[..], id.as_uuid().as_bytes());
        assert_eq!(JobId::from_sql(&Type::UUID, &out).unwrap(), id);
        let mut out = bytes::BytesMut::new();
        id.to_sql_checked(&Type::TEXT, &mut out).unwrap();
        assert_eq!(&out[..], b"0190f5c2-7d3e-7a11-8b2c-0123456789ab");
        assert_eq!(JobId::from_sql(&Type::TEXT, &out).unwrap(), id);
        // A text column holding something else is an error, not an id; other column types are refused.
        assert!(JobId::from_sql(&Type::TEXT, b"j1").is_err());
        assert!(!<JobId as ToSql>::accepts(&Type::INT8));
    }

    /// One stored event per aggregate, as `events.payload` holds it, reads and writes back byte for byte: the
    /// ids typed in the events (issue 11 §3) keep the stored text (the Job's: `job/tests.rs`).
    #[test]
    fn one_stored_event_per_aggregate_writes_back_byte_for_byte() {
        fn same<E: serde::de::DeserializeOwned + Serialize>(stored: &str) {
            let event: E = serde_json::from_str(stored).unwrap();
            assert_eq!(serde_json::to_string(&event).unwrap(), stored);
        }
        same::<crate::connection::ConnectionEvent>(
            r#"{"ConnectionCreated":{"connectionId":"0190f5c2-7d3e-7a11-8b2c-00000000c001","accountId":"acme","platformId":"stripe","name":"Payments","authType":"api_key","settings":{},"credentialFields":["secretKey"],"credential":{"keyId":"k1","fingerprint":"f1"}}}"#,
        );
        same::<crate::source::SourceEvent>(
            r#"{"SyncRequested":{"jobId":"0190f5c2-7d3e-7a11-8b2c-00000000a001","trigger":"manual"}}"#,
        );
        same::<crate::source_group::SourceGroupEvent>(
            r#"{"SourceAddedToGroup":{"sourceId":"0190f5c2-7d3e-7a11-8b2c-00000000b001"}}"#,
        );
        // Every other id the Source and SourceGroup events hold.
        for stored in [
            r#"{"SourceCreated":{"sourceId":"0190f5c2-7d3e-7a11-8b2c-00000000b003","accountId":"acme","connectionId":"0190f5c2-7d3e-7a11-8b2c-00000000c001","platformId":"zendesk","name":"Gone","dataTypes":["tickets"],"schedule":{"frequency":"manual","timezone":"UTC"},"retentionDays":1,"incremental":false}}"#,
            r#"{"SyncRequested":{"jobId":"0190f5c2-7d3e-7a11-8b2c-00000000a003","trigger":"retry","retryOf":"0190f5c2-7d3e-7a11-8b2c-00000000a000","groupId":"0190f5c2-7d3e-7a11-8b2c-00000000d001","dataTypes":["tickets"]}}"#,
            r#"{"RestoreRequested":{"jobId":"0190f5c2-7d3e-7a11-8b2c-00000000a004","snapshot":"0190f5c2-7d3e-7a11-8b2c-00000000a001","dataTypes":["customers"],"mode":"missing","dryRun":false}}"#,
            r#"{"SyncSkipped":{"slot":"2026-03-10T12:01:00Z","activeJobId":"0190f5c2-7d3e-7a11-8b2c-00000000a001","reason":"job_in_progress"}}"#,
            r#"{"SyncFinished":{"jobId":"0190f5c2-7d3e-7a11-8b2c-00000000a001","outcome":"succeeded","cursors":{}}}"#,
        ] {
            same::<crate::source::SourceEvent>(stored);
        }
        for stored in [
            r#"{"SourceGroupCreated":{"groupId":"0190f5c2-7d3e-7a11-8b2c-00000000d001","accountId":"acme","name":"Finance","description":null}}"#,
            // Members in the stored (text) order, which is the ids' order too.
            r#"{"SourceGroupDeleted":{"sourceIds":["0190f5c2-7d3e-7a11-8b2c-00000000b009","0190f5c2-7d3e-7a11-8b2c-00000000b00a"]}}"#,
        ] {
            same::<crate::source_group::SourceGroupEvent>(stored);
        }
        same::<crate::job::JobEvent>(
            r#"{"JobCancelRequested":{"queued":{"jobId":"0190f5c2-7d3e-7a11-8b2c-00000000a001","accountId":"acme","sourceId":"0190f5c2-7d3e-7a11-8b2c-00000000b001"}}}"#,
        );
        same::<crate::webhook::WebhookEvent>(
            r#"{"WebhookCreated":{"webhookId":"0190f5c2-7d3e-7a11-8b2c-00000000e001","accountId":"acme","url":"https://hooks.example.com/lb","events":["job.failed"],"description":null}}"#,
        );
    }

    #[test]
    fn new_ids_are_v7() {
        assert_eq!(JobId::new().as_uuid().get_version_num(), 7);
        assert_ne!(JobId::new(), JobId::new());
    }
}
