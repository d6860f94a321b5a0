//! `read_connections`: one row per connection, what `GET /connections` shows. Never any secret: the
//! events it is built from carry none.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::connection::ConnectionEvent;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;

use super::{Header, Rows, Table};
use crate::pagination::{into_page, Page, PageRequest};
use crate::statements;
use crate::ReadError;

/// The last result of `POST /connections/{id}/test`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastTest {
    pub ok: bool,
    pub checked_at: DateTime<Utc>,
    pub latency_ms: u64,
    pub message: String,
    /// Why the test failed, as the test's own answer says it (`UNAUTHORIZED`, `FORBIDDEN`, `RATE_LIMITED`,
    /// `PLATFORM_ERROR`, `UNAVAILABLE`, `VALIDATION_ERROR`). Absent when it passed, or when the test was
    /// recorded before the code was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "UNAUTHORIZED")]
    pub code: Option<String>,
}

/// The platform account an OAuth connection is authorized for.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountView {
    pub id: String,
    pub name: String,
}

/// A connection as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    #[schema(value_type = String, format = Uuid)]
    pub connection_id: listbackup_domain::ConnectionId,
    pub platform_id: String,
    pub name: String,
    /// `oauth2` or `api_key`.
    pub auth_type: String,
    /// `active`, or `expired` when the platform needs the customer to authorize again.
    pub status: String,
    /// Non-secret credential fields (e.g. a Zendesk subdomain).
    pub settings: BTreeMap<String, String>,
    /// Names of the credential fields stored in the vault; their values are never shown.
    pub credential_fields: Vec<String>,
    /// Tells two credential sets apart without revealing either.
    pub credential_fingerprint: Option<String>,
    pub last_test: Option<LastTest>,
    /// OAuth connections: the platform account they are authorized for.
    pub external_account: Option<ExternalAccountView>,
    /// The connection's event-stream sequence: send it back in `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "connection_id, platform_id, name, auth_type, status, settings, credential_fields, \
    credential_fingerprint, last_test, external_account, version, created_at, updated_at";

impl ConnectionView {
    /// The view of a row read with [`COLUMNS`] (which leave out the account: the query names it).
    fn from_row(row: &Row) -> Self {
        Self::of(
            row.get("connection_id"),
            ConnectionRow {
                connection_id: String::new(),
                account_id: String::new(),
                platform_id: row.get("platform_id"),
                name: row.get("name"),
                auth_type: row.get("auth_type"),
                status: row.get("status"),
                settings: row.get("settings"),
                credential_fields: row.get("credential_fields"),
                credential_fingerprint: row.get("credential_fingerprint"),
                last_test: row.get("last_test"),
                version: row.get("version"),
                created_at: row.get("created_at"),
                updated_at: row.get("updated_at"),
                external_account: row.get("external_account"),
            },
        )
    }

    /// The view of a row as the projector wrote it: what [`ConnectionView::from_row`] makes of the same row
    /// read back from the table. `None` if the row's id is not a connection id (never, for rows the
    /// projector folds from events).
    fn from_written(row: ConnectionRow) -> Option<Self> {
        Some(Self::of(row.connection_id.parse().ok()?, row))
    }

    /// The one mapping of a `read_connections` row to what clients see (its JSON columns parsed).
    fn of(connection_id: listbackup_domain::ConnectionId, row: ConnectionRow) -> Self {
        Self {
            connection_id,
            platform_id: row.platform_id,
            name: row.name,
            auth_type: row.auth_type,
            status: row.status,
            settings: serde_json::from_value(row.settings).unwrap_or_default(),
            credential_fields: serde_json::from_value(row.credential_fields).unwrap_or_default(),
            credential_fingerprint: row.credential_fingerprint,
            last_test: row.last_test.and_then(|v| serde_json::from_value(v).ok()),
            external_account: row
                .external_account
                .and_then(|v| serde_json::from_value(v).ok()),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// What [`get`] would answer once the projector has applied `connection_id` at `version`, from the row this
/// process's projector wrote last (committed) when it wrote it at `version` or later: a request reading back
/// its own write then needs no query. `Some(None)`: the connection is not a live one of `account_id`.
/// `None`: no such row in memory (another process projected it, or it left the projector's bounded memory):
/// read the table.
pub fn recently_projected(
    watch: &crate::ProjectedWatch,
    account_id: &str,
    connection_id: listbackup_domain::ConnectionId,
    version: u64,
) -> Option<Option<ConnectionView>> {
    let row = watch.written_connection(&connection_id.to_string())?;
    if row.version < i64::try_from(version).ok()? {
        return None;
    }
    if row.account_id != account_id || row.status == "deleted" {
        return Some(None);
    }
    ConnectionView::from_written(row).map(Some)
}

/// A row of `read_connections`, column for column.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct ConnectionRow {
    pub connection_id: String,
    pub account_id: String,
    pub platform_id: String,
    pub name: String,
    pub auth_type: String,
    pub status: String,
    pub settings: Value,
    pub credential_fields: Value,
    pub credential_fingerprint: Option<String>,
    pub last_test: Option<Value>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub external_account: Option<Value>,
}

impl Table for ConnectionRow {
    const NAME: &'static str = "read_connections";
    const KEY: &'static str = "connection_id";
    const COLUMNS: &'static [&'static str] = &[
        "account_id",
        "platform_id",
        "name",
        "auth_type",
        "status",
        "settings",
        "credential_fields",
        "credential_fingerprint",
        "last_test",
        "version",
        "created_at",
        "updated_at",
        "external_account",
    ];
    fn key(&self) -> &str {
        &self.connection_id
    }
}

/// What `read_connections` does with a connection's event. Every change but the creation is guarded by
/// `version < sequence`, so folding an event twice changes nothing.
pub(crate) fn fold(rows: &mut Rows, header: &Header<'_>, event: ConnectionEvent) {
    let (seq, at) = (header.sequence, header.recorded_at);
    if let ConnectionEvent::ConnectionCreated {
        connection_id,
        account_id,
        platform_id,
        name,
        auth_type,
        settings,
        credential_fields,
        credential,
        external_account,
    } = event
    {
        let connection_id = connection_id.to_string();
        rows.connections
            .entry(connection_id.clone())
            .or_insert_with(|| ConnectionRow {
                connection_id,
                account_id,
                platform_id,
                name,
                auth_type: auth_type.as_str().to_owned(),
                status: "active".into(),
                settings: serde_json::to_value(settings).unwrap_or_default(),
                credential_fields: serde_json::to_value(credential_fields).unwrap_or_default(),
                credential_fingerprint: Some(credential.fingerprint),
                last_test: None,
                version: seq,
                created_at: at,
                updated_at: at,
                external_account: external_account.and_then(|a| serde_json::to_value(a).ok()),
            });
        return;
    }
    let Some(row) = rows.connections.get_mut(header.aggregate_id) else {
        return;
    };
    if row.version >= seq {
        return;
    }
    row.version = seq;
    row.updated_at = at;
    match event {
        ConnectionEvent::ConnectionCreated { .. } => {}
        ConnectionEvent::ConnectionRenamed { name } => row.name = name,
        ConnectionEvent::CredentialsReplaced {
            settings,
            credential_fields,
            credential,
        } => {
            row.settings = serde_json::to_value(settings).unwrap_or_default();
            row.credential_fields = serde_json::to_value(credential_fields).unwrap_or_default();
            row.credential_fingerprint = Some(credential.fingerprint);
        }
        ConnectionEvent::ConnectionTested(result) => {
            row.last_test = Some(
                serde_json::to_value(LastTest {
                    ok: result.ok,
                    checked_at: result.checked_at,
                    latency_ms: result.latency_ms,
                    message: result.message,
                    code: result.code,
                })
                .unwrap_or_default(),
            );
        }
        ConnectionEvent::TokenRefreshed { credential, .. } => {
            row.credential_fingerprint = Some(credential.fingerprint);
        }
        // Shown only through the event history; the version still moves.
        ConnectionEvent::TokenRefreshFailed { .. } => {}
        ConnectionEvent::ConnectionReauthRequired { .. } => row.status = "expired".into(),
        ConnectionEvent::ConnectionReauthorized {
            settings,
            credential_fields,
            credential,
            external_account,
        } => {
            row.status = "active".into();
            row.settings = serde_json::to_value(settings).unwrap_or_default();
            row.credential_fields = serde_json::to_value(credential_fields).unwrap_or_default();
            row.credential_fingerprint = Some(credential.fingerprint);
            if let Some(account) = external_account.and_then(|a| serde_json::to_value(a).ok()) {
                row.external_account = Some(account);
            }
        }
        ConnectionEvent::ConnectionDeleted {} => row.status = "deleted".into(),
    }
}

/// Filters of `GET /connections`, already validated.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub platform_id: Option<String>,
    pub status: Option<String>,
}

/// One live connection of the account.
pub async fn get(
    client: &impl GenericClient,
    account_id: &str,
    connection_id: listbackup_domain::ConnectionId,
) -> Result<Option<ConnectionView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_connections \
         WHERE account_id = $1 AND connection_id = $2 AND status <> 'deleted'"
    );
    let row = statements::query_opt(client, &sql, &[&account_id, &connection_id]).await?;
    Ok(row.as_ref().map(ConnectionView::from_row))
}

/// The version the read model has reached for a connection, deleted or not (for read-your-writes).
/// When the connection last showed that its credentials work again: the latest of its `CredentialsReplaced`,
/// `ConnectionReauthorized` and successful `ConnectionTested` (`None`: never since it was created). Asked of
/// the event log itself, which the write side commits before answering, so a retry right after
/// `PUT /connections/{id}` sees it.
pub async fn credentials_fixed_at(
    client: &impl GenericClient,
    connection_id: listbackup_domain::ConnectionId,
) -> Result<Option<DateTime<Utc>>, ReadError> {
    let row = statements::query_one(
        client,
        "SELECT max(recorded_at) FROM events \
         WHERE aggregate_type = 'connection' AND aggregate_id = $1 \
           AND (event_type IN ('CredentialsReplaced', 'ConnectionReauthorized') \
                OR (event_type = 'ConnectionTested' \
                    AND (payload -> 'ConnectionTested' ->> 'ok')::boolean))",
        &[&connection_id],
    )
    .await?;
    Ok(row.get(0))
}

pub async fn projected_version(
    client: &impl GenericClient,
    connection_id: listbackup_domain::ConnectionId,
) -> Result<Option<i64>, ReadError> {
    let row = statements::query_opt(
        client,
        "SELECT version FROM read_connections WHERE connection_id = $1",
        &[&connection_id],
    )
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The account's live connections, newest first.
pub async fn list(
    client: &impl GenericClient,
    account_id: &str,
    filter: &ConnectionFilter,
    page: &PageRequest,
) -> Result<Page<ConnectionView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_connections \
         WHERE account_id = $1 AND status <> 'deleted' \
           AND ($2::text IS NULL OR platform_id = $2) \
           AND ($3::text IS NULL OR status = $3) \
           AND ($4::text IS NULL OR connection_id < $4) \
         ORDER BY connection_id DESC LIMIT $5"
    );
    let rows = statements::query(
        client,
        &sql,
        &[
            &account_id,
            &filter.platform_id,
            &filter.status,
            &page.before_id,
            &(page.limit + 1),
        ],
    )
    .await?;
    let views = rows.iter().map(ConnectionView::from_row).collect();
    Ok(into_page(views, page.limit, |v: &ConnectionView| {
        v.connection_id
    }))
}
