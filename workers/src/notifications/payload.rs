//! Which events customers are told about, and what a notification says: ids and a summary, never a secret.
//!
//! Every notification has the same envelope, sent as the webhook's JSON body and summarised in an e-mail:
//!
//! ```json
//! {"id": "<the event's id>", "type": "job.failed", "createdAt": "<when it was recorded>",
//!  "accountId": "…", "data": {"jobId": "…", "sourceId": "…", "connectionId": "…", "platformId": "stripe",
//!                              "error": {"code": "UNAUTHORIZED", "message": "…", "retryable": false}}}
//! ```

use chrono::{DateTime, Utc};
use listbackup_domain::webhook::NotificationType;
use listbackup_domain::{connection, job};
use listbackup_projections::StoredEvent;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// A notification of one event, before it is queued for each webhook subscribed to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: NotificationType,
    pub account_id: String,
    /// What order is kept per: `source:<id>` for job and backup notifications, `connection:<id>`.
    pub ordering_key: String,
    /// The event's id: the notification's id and `Webhook-Id`.
    pub id: Uuid,
    pub recorded_at: DateTime<Utc>,
    /// The body sent.
    pub payload: Value,
}

/// The notification type of an event, if customers are told about it.
pub fn notification_type(event: &StoredEvent) -> Option<NotificationType> {
    match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        (job::AGGREGATE_TYPE, "JobFailed") => Some(NotificationType::JobFailed),
        (job::AGGREGATE_TYPE, "JobPartiallySucceeded") => Some(NotificationType::JobPartial),
        (job::AGGREGATE_TYPE, "JobSucceeded") => Some(NotificationType::JobSucceeded),
        (job::AGGREGATE_TYPE, "BackupCorrupted") => Some(NotificationType::BackupCorrupted),
        (connection::AGGREGATE_TYPE, "ConnectionReauthRequired") => {
            Some(NotificationType::ConnectionReauthRequired)
        }
        _ => None,
    }
}

/// The ids that say what a notification is about, from the first event of its stream (`JobStarted`, or
/// the `queued` identity of a job that ended before it started; `ConnectionCreated`): `sourceId`,
/// `connectionId`, `platformId` where known.
pub fn identity(first_event: &Value) -> Map<String, Value> {
    let body = first_event
        .as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    let body = body.get("queued").cloned().unwrap_or(body);
    ["sourceId", "connectionId", "platformId"]
        .iter()
        .filter_map(|key| {
            body.get(*key)
                .and_then(Value::as_str)
                .map(|v| (key.to_string(), Value::from(v)))
        })
        .collect()
}

/// The notification of `event` (of type `kind`), about the stream whose first event gave `identity`.
/// `None` when the event does not say which account it belongs to.
pub fn notification(
    event: &StoredEvent,
    kind: NotificationType,
    identity: Map<String, Value>,
) -> Option<Notification> {
    let account_id = event.metadata.get("accountId")?.as_str()?.to_owned();
    let body = event.body();
    let mut data = identity;
    let ordering_key = match kind {
        NotificationType::ConnectionReauthRequired => {
            data.insert("connectionId".into(), json!(event.aggregate_id));
            data.insert("reason".into(), body["reason"].clone());
            format!("connection:{}", event.aggregate_id)
        }
        _ => {
            data.insert("jobId".into(), json!(event.aggregate_id));
            match kind {
                NotificationType::JobFailed => {
                    data.insert(
                        "error".into(),
                        json!({"code": body["code"], "message": body["message"],
                               "retryable": body["retryable"]}),
                    );
                }
                NotificationType::JobPartial => {
                    data.insert("records".into(), body["records"].clone());
                    data.insert("bytes".into(), body["bytes"].clone());
                    data.insert("failedDataTypes".into(), body["failedDataTypes"].clone());
                }
                NotificationType::JobSucceeded => {
                    data.insert("records".into(), body["records"].clone());
                    data.insert("bytes".into(), body["bytes"].clone());
                }
                NotificationType::BackupCorrupted => {
                    data.insert("file".into(), body["file"].clone());
                    data.insert("expectedSha256".into(), body["expected"].clone());
                    data.insert("foundSha256".into(), body["found"].clone());
                }
                NotificationType::ConnectionReauthRequired => {}
            }
            match data.get("sourceId").and_then(Value::as_str) {
                Some(source) => format!("source:{source}"),
                None => format!("job:{}", event.aggregate_id),
            }
        }
    };
    Some(Notification {
        kind,
        payload: json!({
            "id": event.event_id,
            "type": kind.as_str(),
            "createdAt": event.recorded_at,
            "accountId": account_id,
            "data": data,
        }),
        account_id,
        ordering_key,
        id: event.event_id,
        recorded_at: event.recorded_at,
    })
}

/// One line saying what happened, for an e-mail's subject.
pub fn summary(payload: &Value) -> String {
    let data = &payload["data"];
    let text = |key: &str| data[key].as_str().unwrap_or("?").to_owned();
    match payload["type"].as_str().unwrap_or_default() {
        "job.failed" => format!(
            "Backup job {} failed: {}",
            text("jobId"),
            data["error"]["code"].as_str().unwrap_or("?")
        ),
        "job.partial" => format!("Backup job {} stored only part of its data", text("jobId")),
        "job.succeeded" => format!("Backup job {} succeeded", text("jobId")),
        "backup.corrupted" => format!("The backup of job {} is corrupted", text("jobId")),
        "connection.reauth_required" => {
            format!(
                "Connection {} must be authorized again",
                text("connectionId")
            )
        }
        "ping" => "Test notification".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use listbackup_projections::LogPosition;

    fn event(kind: &str, event_type: &str, body: Value) -> StoredEvent {
        StoredEvent {
            position: LogPosition::default(),
            event_id: Uuid::nil(),
            aggregate_type: kind.into(),
            aggregate_id: "j1".into(),
            sequence: 3,
            event_type: event_type.into(),
            event_version: "1.0".into(),
            payload: json!({ event_type: body }),
            metadata: json!({"accountId": "acme"}),
            recorded_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_failed_job_notifies_with_its_ids_and_error_ordered_per_source() {
        let failed = event(
            "job",
            "JobFailed",
            json!({"code": "UNAUTHORIZED", "message": "the key was refused", "retryable": false}),
        );
        let kind = notification_type(&failed).unwrap();
        let started = json!({"JobStarted": {"jobId": "j1", "sourceId": "s1", "connectionId": "c1",
                                            "platformId": "stripe", "worker": "w"}});
        let n = notification(&failed, kind, identity(&started)).unwrap();
        assert_eq!(n.ordering_key, "source:s1");
        assert_eq!(n.payload["type"], "job.failed");
        assert_eq!(n.payload["accountId"], "acme");
        assert_eq!(
            n.payload["data"],
            json!({"jobId": "j1", "sourceId": "s1", "connectionId": "c1", "platformId": "stripe",
                   "error": {"code": "UNAUTHORIZED", "message": "the key was refused", "retryable": false}})
        );
        assert_eq!(summary(&n.payload), "Backup job j1 failed: UNAUTHORIZED");
        // A job that failed before it started names its source in `queued`.
        let queued = json!({"JobFailed": {"queued": {"jobId": "j1", "accountId": "acme", "sourceId": "s2"}}});
        assert_eq!(identity(&queued)["sourceId"], "s2");
        assert!(notification_type(&event("job", "JobProgressed", json!({}))).is_none());
    }
}
