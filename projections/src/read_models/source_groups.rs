//! `read_source_groups` and `read_source_group_members`: groups with their members. `sourceCount` and
//! `sourceIds` count live sources only (a deleted source disappears from its groups at once, before the
//! membership saga records its removal).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::source_group::SourceGroupEvent;
use serde::Serialize;
use tokio_postgres::Row;

use super::{Header, Rows, Table};
use crate::pagination::{into_page, Page, PageRequest};
use crate::ReadError;

/// A source group as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceGroupView {
    #[schema(value_type = String, format = Uuid)]
    pub group_id: listbackup_domain::SourceGroupId,
    pub name: String,
    pub description: Option<String>,
    /// How many live sources the group holds.
    pub source_count: i64,
    /// The members, newest first (on `GET /source-groups/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ids: Option<Vec<String>>,
    /// The group's event-stream sequence: send it back in `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "g.group_id, g.name, g.description, g.version, g.created_at, g.updated_at, \
    (SELECT count(*) FROM read_source_group_members m \
       JOIN read_sources s ON s.source_id = m.source_id AND s.status <> 'deleted' \
      WHERE m.group_id = g.group_id) AS source_count";

impl SourceGroupView {
    fn from_row(row: &Row) -> Self {
        Self {
            group_id: row.get("group_id"),
            name: row.get("name"),
            description: row.get("description"),
            source_count: row.get("source_count"),
            source_ids: None,
            version: row.get("version"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

/// A row of `read_source_groups`, column for column (members are [`Rows::members`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct GroupRow {
    pub group_id: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Table for GroupRow {
    const NAME: &'static str = "read_source_groups";
    const KEY: &'static str = "group_id";
    const COLUMNS: &'static [&'static str] = &[
        "account_id",
        "name",
        "description",
        "status",
        "version",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.group_id
    }
}

/// What `read_source_groups` and `read_source_group_members` do with a group's event. Every event but the
/// creation first moves the group's version; if it had already moved past (an event folded twice), nothing
/// else is touched either.
pub(crate) fn fold(rows: &mut Rows, header: &Header<'_>, event: SourceGroupEvent) {
    let (id, seq, at) = (header.aggregate_id, header.sequence, header.recorded_at);
    if let SourceGroupEvent::SourceGroupCreated {
        group_id,
        account_id,
        name,
        description,
    } = event
    {
        let group_id = group_id.to_string();
        rows.groups
            .entry(group_id.clone())
            .or_insert_with(|| GroupRow {
                group_id,
                account_id,
                name,
                description,
                status: "active".into(),
                version: seq,
                created_at: at,
                updated_at: at,
            });
        return;
    }
    let Some(row) = rows.groups.get_mut(id) else {
        return;
    };
    if row.version >= seq {
        return;
    }
    row.version = seq;
    row.updated_at = at;
    match event {
        SourceGroupEvent::SourceGroupCreated { .. } => {}
        SourceGroupEvent::SourceGroupUpdated { name, description } => {
            if let Some(name) = name {
                row.name = name;
            }
            // `Some(None)` clears the description; `None` keeps it.
            if let Some(description) = description {
                row.description = description;
            }
        }
        SourceGroupEvent::SourceAddedToGroup { source_id } => {
            rows.members
                .entry(id.to_owned())
                .or_default()
                .entry(source_id.to_string())
                .or_insert(at);
        }
        SourceGroupEvent::SourceRemovedFromGroup { source_id } => {
            if let Some(members) = rows.members.get_mut(id) {
                members.remove(&source_id.to_string());
            }
        }
        SourceGroupEvent::SourceGroupDeleted { .. } => {
            row.status = "deleted".into();
            if let Some(members) = rows.members.get_mut(id) {
                members.clear();
            }
        }
    }
}

/// One live group of the account, with its members.
pub async fn get(
    client: &impl GenericClient,
    account_id: &str,
    group_id: listbackup_domain::SourceGroupId,
) -> Result<Option<SourceGroupView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_source_groups g \
         WHERE g.account_id = $1 AND g.group_id = $2 AND g.status <> 'deleted'"
    );
    let Some(row) = client.query_opt(&sql, &[&account_id, &group_id]).await? else {
        return Ok(None);
    };
    let mut view = SourceGroupView::from_row(&row);
    let members = client
        .query(
            "SELECT m.source_id FROM read_source_group_members m \
               JOIN read_sources s ON s.source_id = m.source_id AND s.status <> 'deleted' \
              WHERE m.group_id = $1 ORDER BY m.source_id DESC",
            &[&group_id],
        )
        .await?;
    view.source_ids = Some(members.iter().map(|r| r.get(0)).collect());
    Ok(Some(view))
}

/// Whether a live group of the account exists (for `GET /source-groups/{id}/sources`).
pub async fn exists(
    client: &impl GenericClient,
    account_id: &str,
    group_id: listbackup_domain::SourceGroupId,
) -> Result<bool, ReadError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM read_source_groups \
             WHERE account_id = $1 AND group_id = $2 AND status <> 'deleted'",
            &[&account_id, &group_id],
        )
        .await?;
    Ok(row.is_some())
}

/// The version the read model has reached for a group, deleted or not (for read-your-writes).
pub async fn projected_version(
    client: &impl GenericClient,
    group_id: listbackup_domain::SourceGroupId,
) -> Result<Option<i64>, ReadError> {
    let row = client
        .query_opt(
            "SELECT version FROM read_source_groups WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The account's live groups, newest first, with their `sourceCount`.
pub async fn list(
    client: &impl GenericClient,
    account_id: &str,
    page: &PageRequest,
) -> Result<Page<SourceGroupView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_source_groups g \
         WHERE g.account_id = $1 AND g.status <> 'deleted' \
           AND ($2::text IS NULL OR g.group_id < $2) \
         ORDER BY g.group_id DESC LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&account_id, &page.before_id, &(page.limit + 1)])
        .await?;
    let views = rows.iter().map(SourceGroupView::from_row).collect();
    Ok(into_page(views, page.limit, |v: &SourceGroupView| {
        v.group_id
    }))
}
