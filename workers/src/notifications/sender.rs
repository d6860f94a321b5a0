//! The delivery sender: works off `webhook_deliveries`, one process at a time (an advisory lock).
//!
//! - **In order per resource.** Only the oldest pending delivery of each (webhook, resource) is ever
//!   attempted; the next one waits until it is delivered or given up. Different resources go in parallel.
//! - **At least once.** A delivery is marked delivered only after a 2xx answer (or the SMTP server's
//!   acceptance); a crash in between sends it again, with the same `Webhook-Id`, which receivers use to drop
//!   repeats.
//! - **Retries.** After a failed attempt the next one is due after [`NotificationSettings::retry_delay`];
//!   once that would fall later than `retry_for` (a day) after the notification, the delivery is given up
//!   (`failed`). Every attempt is recorded with its status code, duration, error and next attempt.
//! - **Requests.** `POST` of the JSON notification with `Content-Type: application/json`, `Webhook-Id`,
//!   `Webhook-Timestamp` and `Webhook-Signature` ([`super::signature`]); at most `timeout` (10 s) each;
//!   redirects are not followed (a 3xx is a failed attempt); only the first 256 characters of the response
//!   body are kept. Unless private targets are allowed, a host name that resolves to a loopback, private or
//!   link-local address is refused at connection time (DNS rebinding).
//! - **Erased accounts.** Once `AccountErased` is in the log (issue 13 §2), the account's pending deliveries
//!   are given up without a request (the attempt says why) and the dispatcher queues no new ones: a customer
//!   who erased their account hears nothing more from ListBackup.
//! - **Shutdown.** On shutdown the attempts in flight are abandoned, not waited for: their deliveries stay
//!   `pending`, their attempt count unchanged and already due, so the next sender (after the restart, or in
//!   another process) sends them first. A receiver may have got an abandoned request: at least once, the same
//!   `Webhook-Id` again. Recording an attempt is one transaction, so an abandoned one leaves no half record.
//! - **Metrics** ([`crate::metrics`]): deliveries ended by event type and outcome, attempts by event type and
//!   outcome, deliveries handed back at shutdown, and the pending queue's size, oldest age and how overdue
//!   its most overdue due delivery is.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::StreamExt as _;
use listbackup_commands::error_chain;
use listbackup_commands::public_addresses::PublicAddressesOnly;
use listbackup_commands::webhooks::WebhookSecrets;
use listbackup_domain::webhook::is_public;
use listbackup_domain::ErrorChain;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::email::Mailer;
use super::signature;
use super::NotificationSettings;

/// Names the sender's advisory lock among all advisory locks ("LBWHSND").
const SENDER_LOCK: i64 = 0x004c_4257_4853_4e44;

/// Deliveries attempted at once (each to another webhook or resource).
const CONCURRENCY: usize = 8;

/// How much of a response body is kept, in characters.
const EXCERPT_CHARS: usize = 256;

/// Why the sender paused (it starts over after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("database")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Sends queued deliveries.
pub struct DeliverySender {
    pool: Pool,
    secrets: WebhookSecrets,
    settings: NotificationSettings,
    http: reqwest::Client,
    mailer: Option<Mailer>,
    queued: Arc<Notify>,
    /// Attempts started and not yet recorded: what a shutdown hands back.
    in_flight: AtomicUsize,
    /// When the queue's gauges were last read ([`GAUGE_EVERY`]).
    gauged_at: std::sync::Mutex<Option<Instant>>,
    /// Whether the last look sent anything: the gauges are then read at the next look.
    sending: AtomicBool,
}

/// How often a sender with nothing to send reads the queue's gauges (`listbackup_webhook_queue_*`: pending
/// deliveries, the oldest's and the most overdue's age): at every look while it sends, otherwise at most this
/// often, so an idle service's look for due deliveries (once a second) is one statement, not two.
const GAUGE_EVERY: Duration = Duration::from_secs(10);

/// A delivery due now, with its webhook's current target.
struct Due {
    delivery_id: Uuid,
    webhook_id: String,
    account_id: String,
    notification_id: String,
    /// `job.failed`, `ping`…: the metrics' `event` label.
    event_type: String,
    payload: Value,
    attempts: i32,
    created_at: DateTime<Utc>,
    /// `None` when the webhook is gone.
    url: Option<String>,
    /// The account was erased (`AccountErased` is in the log): no more requests.
    erased: bool,
}

/// How one attempt went.
struct Attempt {
    delivered: bool,
    status_code: Option<i32>,
    error: Option<String>,
    excerpt: Option<String>,
    duration: Duration,
}

impl Attempt {
    fn refused(error: impl Into<String>) -> Self {
        Self {
            delivered: false,
            status_code: None,
            error: Some(error.into()),
            excerpt: None,
            duration: Duration::ZERO,
        }
    }
}

impl DeliverySender {
    /// `queued` wakes the sender when deliveries were queued in this process.
    pub fn new(
        pool: Pool,
        secrets: WebhookSecrets,
        settings: NotificationSettings,
        queued: Arc<Notify>,
    ) -> Result<Self, String> {
        let mut http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("ListBackup-Webhooks/1");
        if !settings.allow_private {
            // A webhook URL must not reach into ListBackup's network.
            http = http.dns_resolver(Arc::new(PublicAddressesOnly::new()));
        }
        let http = http
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        let mailer = settings
            .smtp
            .as_ref()
            .map(|smtp| Mailer::new(smtp, settings.timeout))
            .transpose()?;
        Ok(Self {
            pool,
            secrets,
            settings,
            http,
            mailer,
            queued,
            in_flight: AtomicUsize::new(0),
            gauged_at: std::sync::Mutex::new(None),
            sending: AtomicBool::new(false),
        })
    }

    /// Runs until `shutdown`: waits for the sender lock, then sends what is due, waking when deliveries
    /// are queued here or at least every second (sooner when retries are shorter).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            // `lead` itself watches `shutdown`, so that it releases the sender lock on its way out.
            match self.lead(&shutdown).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(
                        error = %ErrorChain(&err),
                        "webhook sender paused; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), SendError> {
        let session = self.pool.get().await?;
        loop {
            let locked: bool = session
                .query_one("SELECT pg_try_advisory_lock($1)", &[&SENDER_LOCK])
                .await?
                .get(0);
            if locked {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let poll = self.settings.retry_base.min(Duration::from_secs(1));
        let result = async {
            loop {
                let sent = tokio::select! {
                    _ = shutdown.cancelled() => {
                        // The attempts in flight are dropped here, unrecorded: handed back (module docs).
                        let handed_back = self.in_flight.swap(0, Ordering::SeqCst);
                        if handed_back > 0 {
                            crate::metrics::webhook_handed_back(handed_back);
                            tracing::info!(handed_back,
                                "shutdown: webhook deliveries in flight handed back for a later attempt");
                        }
                        return Ok(());
                    }
                    sent = self.send_due() => sent?,
                };
                if sent == 0 {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = self.queued.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                    }
                }
            }
        }
        .await;
        let _ = session
            .execute("SELECT pg_advisory_unlock($1)", &[&SENDER_LOCK])
            .await;
        result
    }

    /// Reads the queue's gauges: pending deliveries, the oldest's age, the most overdue's.
    async fn read_gauges(&self, client: &deadpool_postgres::Object) -> Result<(), SendError> {
        let queue = client
            .query_one(
                // Overdue: first in line and due, yet not attempted (the same rule as `send_due`'s).
                "SELECT count(*), EXTRACT(EPOCH FROM $1 - min(d.created_at))::float8, \
                        EXTRACT(EPOCH FROM $1 - min(d.next_attempt_at) FILTER (WHERE d.next_attempt_at <= $1 \
                          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                                          WHERE e.status = 'pending' AND e.webhook_id = d.webhook_id \
                                            AND e.ordering_key = d.ordering_key AND e.seq < d.seq)))::float8 \
                 FROM webhook_deliveries d WHERE d.status = 'pending'",
                &[&Utc::now()],
            )
            .await?;
        crate::metrics::webhook_queue(queue.get(0), queue.get(1), queue.get(2));
        if let Ok(mut at) = self.gauged_at.lock() {
            *at = Some(Instant::now());
        }
        Ok(())
    }

    /// Attempts every delivery due now that is first in line for its webhook and resource; returns how many.
    /// Reads the queue's gauges first when due ([`GAUGE_EVERY`]).
    pub async fn send_due(&self) -> Result<usize, SendError> {
        let client = self.pool.get().await?;
        let gauge = self.sending.load(Ordering::SeqCst)
            || self
                .gauged_at
                .lock()
                .map_or(true, |at| at.is_none_or(|at| at.elapsed() >= GAUGE_EVERY));
        if gauge {
            self.read_gauges(&client).await?;
        }
        let rows = client
            .query(
                "SELECT d.delivery_id, d.webhook_id, d.account_id, d.notification_id::text, d.payload, \
                        d.attempts, d.created_at, w.url, d.event_type, \
                        EXISTS (SELECT 1 FROM events a WHERE a.aggregate_type = 'account' \
                                  AND a.aggregate_id = d.account_id AND a.event_type = 'AccountErased') \
                 FROM webhook_deliveries d \
                 LEFT JOIN read_webhooks w ON w.webhook_id = d.webhook_id AND w.status <> 'deleted' \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                                   WHERE e.status = 'pending' AND e.webhook_id = d.webhook_id \
                                     AND e.ordering_key = d.ordering_key AND e.seq < d.seq) \
                 ORDER BY d.seq LIMIT 64",
                &[&Utc::now()],
            )
            .await?;
        drop(client);
        let due: Vec<Due> = rows
            .iter()
            .map(|row| Due {
                delivery_id: row.get(0),
                webhook_id: row.get(1),
                account_id: row.get(2),
                notification_id: row.get(3),
                payload: row.get(4),
                attempts: row.get(5),
                created_at: row.get(6),
                url: row.get(7),
                event_type: row.get(8),
                erased: row.get(9),
            })
            .collect();
        let count = due.len();
        self.sending.store(count > 0, Ordering::SeqCst);
        let results: Vec<Result<(), SendError>> = futures::stream::iter(due)
            .map(|due| async move {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                let attempt = self.attempt(&due).await;
                let recorded = self.record(&due, attempt).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                recorded
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(count)
    }

    async fn attempt(&self, due: &Due) -> Attempt {
        if due.erased {
            return Attempt::refused("the account was erased");
        }
        let Some(url) = &due.url else {
            return Attempt::refused("the webhook was deleted");
        };
        if let Some(address) = url.strip_prefix("mailto:") {
            return self.email(address, &due.payload).await;
        }
        let parsed = match url::Url::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return Attempt::refused(format!("the URL does not parse ({e})")),
        };
        let literal_ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if !self.settings.allow_private && literal_ip.is_some_and(|ip| !is_public(ip)) {
            return Attempt::refused("the URL points at a private address");
        }
        let secret = match self.secrets.load(&due.account_id, &due.webhook_id).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Attempt::refused("the webhook was deleted"),
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), webhook_id = %due.webhook_id,
                    "a webhook secret could not be opened");
                return Attempt::refused("the webhook's signing secret could not be read");
            }
        };
        let body = serde_json::to_vec(&due.payload).unwrap_or_default();
        let timestamp = Utc::now().timestamp();
        let started = Instant::now();
        let sent = self
            .http
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Webhook-Id", &due.notification_id)
            .header("Webhook-Timestamp", timestamp.to_string())
            .header(
                signature::HEADER,
                signature::sign(secret.expose(), timestamp, &body),
            )
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                let error = if e.is_timeout() {
                    format!("no response within {} s", self.settings.timeout.as_secs())
                } else {
                    error_chain(&e)
                };
                return Attempt {
                    duration: started.elapsed(),
                    ..Attempt::refused(error)
                };
            }
        };
        let status = response.status();
        let mut excerpt = Vec::new();
        while excerpt.len() < EXCERPT_CHARS * 4 {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let excerpt: String = String::from_utf8_lossy(&excerpt)
            .chars()
            .take(EXCERPT_CHARS)
            .collect();
        let delivered = status.is_success();
        Attempt {
            delivered,
            status_code: Some(i32::from(status.as_u16())),
            error: (!delivered).then(|| {
                if status.is_redirection() {
                    format!("the receiver answered {status}; redirects are not followed")
                } else {
                    format!("the receiver answered {status}")
                }
            }),
            excerpt: (!excerpt.is_empty()).then_some(excerpt),
            duration: started.elapsed(),
        }
    }

    async fn email(&self, address: &str, payload: &Value) -> Attempt {
        let Some(mailer) = &self.mailer else {
            return Attempt::refused("no SMTP server is configured (LISTBACKUP_SMTP_URL)");
        };
        let started = Instant::now();
        match mailer.send(address, payload).await {
            Ok(()) => Attempt {
                delivered: true,
                status_code: None,
                error: None,
                excerpt: None,
                duration: started.elapsed(),
            },
            Err(e) => Attempt {
                duration: started.elapsed(),
                ..Attempt::refused(error_chain(&e))
            },
        }
    }

    /// Records the attempt and decides what follows: delivered, another attempt later, or given up.
    async fn record(&self, due: &Due, attempt: Attempt) -> Result<(), SendError> {
        let now = Utc::now();
        let attempts = due.attempts + 1;
        let gone = due.url.is_none() || due.erased;
        let next = (!attempt.delivered && !gone)
            .then(|| now + self.settings.retry_delay(attempts as u32))
            .filter(|next| *next <= due.created_at + self.settings.retry_for);
        let status = match (attempt.delivered, next) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE webhook_deliveries SET attempts = $2, status = $3, \
                 next_attempt_at = COALESCE($4, next_attempt_at), \
                 finished_at = CASE WHEN $3::text = 'pending' THEN NULL ELSE $5::timestamptz END \
             WHERE delivery_id = $1",
            &[&due.delivery_id, &attempts, &status, &next, &now],
        )
        .await?;
        tx.execute(
            "INSERT INTO webhook_delivery_attempts (delivery_id, attempt, attempted_at, status_code, \
                 duration_ms, error, response_excerpt, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &due.delivery_id,
                &attempts,
                &now,
                &attempt.status_code,
                &(attempt.duration.as_millis() as i64),
                &attempt.error,
                &attempt.excerpt,
                &next,
            ],
        )
        .await?;
        tx.commit().await?;
        crate::metrics::webhook_attempt(&due.event_type, attempt.delivered, status);
        match status {
            "failed" => {
                tracing::warn!(delivery_id = %due.delivery_id, webhook_id = %due.webhook_id,
                attempts, error = attempt.error.as_deref().unwrap_or_default(), "webhook delivery given up")
            }
            "pending" => {
                tracing::info!(delivery_id = %due.delivery_id, webhook_id = %due.webhook_id,
                attempts, error = attempt.error.as_deref().unwrap_or_default(), "webhook delivery failed; will retry")
            }
            _ => {
                tracing::debug!(delivery_id = %due.delivery_id, webhook_id = %due.webhook_id, "webhook delivered")
            }
        }
        Ok(())
    }
}
