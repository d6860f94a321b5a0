//! `read_webhooks`: the account's notification targets (issue 14 §5), never with their signing secret; and
//! the queries of a webhook's deliveries (`webhook_deliveries`, `webhook_delivery_attempts`: the sender's
//! operational tables, not folded from the log).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::webhook::{NotificationType, WebhookEvent};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;

use super::{Header, Rows, Table};
use crate::pagination::{into_page, Page, PageRequest};
use crate::ReadError;

/// A webhook as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub webhook_id: String,
    /// `https://…`, or `mailto:address` for e-mail.
    pub url: String,
    /// The notification types it receives.
    pub events: Vec<NotificationType>,
    pub description: Option<String>,
    /// The webhook's event-stream sequence: send it back in `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookView {
    fn from_row(row: &Row) -> Result<Self, ReadError> {
        let events: Value = row.get("events");
        Ok(Self {
            webhook_id: row.get("webhook_id"),
            url: row.get("url"),
            events: serde_json::from_value(events).map_err(|e| ReadError::BadEvent {
                event_id: uuid::Uuid::nil(),
                event_type: "row of read_webhooks".into(),
                source: e.into(),
            })?,
            description: row.get("description"),
            version: row.get("version"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        })
    }
}

/// A row of `read_webhooks`, column for column.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct WebhookRow {
    pub webhook_id: String,
    pub account_id: String,
    pub url: String,
    pub events: Vec<NotificationType>,
    pub description: Option<String>,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Table for WebhookRow {
    const NAME: &'static str = "read_webhooks";
    const KEY: &'static str = "webhook_id";
    const COLUMNS: &'static [&'static str] = &[
        "account_id",
        "url",
        "events",
        "description",
        "status",
        "version",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.webhook_id
    }
}

/// What `read_webhooks` does with a webhook's event (an event folded twice changes nothing).
pub(crate) fn fold(rows: &mut Rows, header: &Header<'_>, event: WebhookEvent) {
    let (id, seq, at) = (header.aggregate_id, header.sequence, header.recorded_at);
    if let WebhookEvent::WebhookCreated {
        webhook_id,
        account_id,
        url,
        events,
        description,
    } = event
    {
        let webhook_id = webhook_id.to_string();
        rows.webhooks
            .entry(webhook_id.clone())
            .or_insert_with(|| WebhookRow {
                webhook_id,
                account_id,
                url,
                events,
                description,
                status: "active".into(),
                version: seq,
                created_at: at,
                updated_at: at,
            });
        return;
    }
    let Some(row) = rows.webhooks.get_mut(id) else {
        return;
    };
    if row.version >= seq {
        return;
    }
    row.version = seq;
    row.updated_at = at;
    match event {
        WebhookEvent::WebhookCreated { .. } | WebhookEvent::WebhookSecretRotated {} => {}
        WebhookEvent::WebhookUpdated {
            url,
            events,
            description,
        } => {
            if let Some(url) = url {
                row.url = url;
            }
            if let Some(events) = events {
                row.events = events;
            }
            if let Some(description) = description {
                row.description = description;
            }
        }
        WebhookEvent::WebhookDeleted {} => row.status = "deleted".into(),
    }
}

const COLUMNS: &str = "webhook_id, url, events, description, version, created_at, updated_at";

/// One live webhook of the account.
pub async fn get(
    client: &impl GenericClient,
    account_id: &str,
    webhook_id: listbackup_domain::WebhookId,
) -> Result<Option<WebhookView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_webhooks \
         WHERE account_id = $1 AND webhook_id = $2 AND status <> 'deleted'"
    );
    client
        .query_opt(&sql, &[&account_id, &webhook_id])
        .await?
        .map(|row| WebhookView::from_row(&row))
        .transpose()
}

/// The version the read model has reached for a webhook, deleted or not (for read-your-writes).
pub async fn projected_version(
    client: &impl GenericClient,
    webhook_id: listbackup_domain::WebhookId,
) -> Result<Option<i64>, ReadError> {
    let row = client
        .query_opt(
            "SELECT version FROM read_webhooks WHERE webhook_id = $1",
            &[&webhook_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The account's live webhooks, newest first.
pub async fn list(
    client: &impl GenericClient,
    account_id: &str,
    page: &PageRequest,
) -> Result<Page<WebhookView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_webhooks \
         WHERE account_id = $1 AND status <> 'deleted' AND ($2::text IS NULL OR webhook_id < $2) \
         ORDER BY webhook_id DESC LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&account_id, &page.before_id, &(page.limit + 1)])
        .await?;
    let views = rows
        .iter()
        .map(WebhookView::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(into_page(views, page.limit, |v: &WebhookView| {
        v.webhook_id.clone()
    }))
}

/// The live webhooks of `account_id` subscribed to `kind` that existed when the event was recorded (`at`):
/// (webhook id, url). What the notification dispatcher queues a delivery for.
pub async fn subscribed(
    client: &impl GenericClient,
    account_id: &str,
    kind: NotificationType,
    at: DateTime<Utc>,
) -> Result<Vec<String>, ReadError> {
    let rows = client
        .query(
            "SELECT webhook_id FROM read_webhooks \
             WHERE account_id = $1 AND status <> 'deleted' AND events ? $2 AND created_at <= $3 \
             ORDER BY webhook_id",
            &[&account_id, &kind.as_str(), &at],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// 1 for the first attempt.
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; absent when there was no response (and for e-mail).
    pub status_code: Option<i32>,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: i64,
    /// Why it failed; absent when it was delivered.
    pub error: Option<String>,
    /// The first 256 characters of the receiver's response body.
    pub response_excerpt: Option<String>,
    /// When the next attempt is due; absent after the last one.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A notification queued for a webhook, with every attempt made so far.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub delivery_id: String,
    /// The notification's id: the `Webhook-Id` header, the same on every attempt.
    pub notification_id: String,
    /// `job.failed`, …, or `ping`.
    pub event_type: String,
    /// `pending` (being retried), `delivered`, or `failed` (given up).
    pub status: String,
    /// What was (or will be) sent.
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

/// The deliveries of a live webhook of the account, newest first; `None` when there is no such webhook.
pub async fn deliveries(
    client: &impl GenericClient,
    account_id: &str,
    webhook_id: listbackup_domain::WebhookId,
    page: &PageRequest,
) -> Result<Option<Page<DeliveryView>>, ReadError> {
    if get(client, account_id, webhook_id).await?.is_none() {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT d.delivery_id::text AS delivery_id, d.notification_id::text AS notification_id, \
                    d.event_type, d.status, d.payload, d.created_at, d.next_attempt_at, d.finished_at, \
                    COALESCE((SELECT jsonb_agg(jsonb_build_object( \
                        'attempt', a.attempt, 'attemptedAt', a.attempted_at, 'statusCode', a.status_code, \
                        'durationMs', a.duration_ms, 'error', a.error, 'responseExcerpt', a.response_excerpt, \
                        'nextAttemptAt', a.next_attempt_at) ORDER BY a.attempt) \
                      FROM webhook_delivery_attempts a WHERE a.delivery_id = d.delivery_id), '[]') AS attempts \
             FROM webhook_deliveries d \
             WHERE d.account_id = $1 AND d.webhook_id = $2 AND ($3::text IS NULL OR d.delivery_id < $3::uuid) \
             ORDER BY d.delivery_id DESC LIMIT $4",
            &[&account_id, &webhook_id, &page.before_id, &(page.limit + 1)],
        )
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        let status: String = row.get("status");
        let attempts: Value = row.get("attempts");
        let attempts: Vec<DeliveryAttempt> =
            serde_json::from_value(attempts).map_err(|e| ReadError::BadEvent {
                event_id: uuid::Uuid::nil(),
                event_type: "row of webhook_delivery_attempts".into(),
                source: e.into(),
            })?;
        views.push(DeliveryView {
            delivery_id: row.get("delivery_id"),
            notification_id: row.get("notification_id"),
            event_type: row.get("event_type"),
            next_attempt_at: (status == "pending").then(|| row.get("next_attempt_at")),
            status,
            payload: row.get("payload"),
            created_at: row.get("created_at"),
            finished_at: row.get("finished_at"),
            attempts,
        });
    }
    Ok(Some(into_page(views, page.limit, |v: &DeliveryView| {
        v.delivery_id.clone()
    })))
}
